package policy

import (
	"context"
	"strings"
	"testing"

	"github.com/interlock/interlock/model"
)

// The controls a watched session cannot talk its way around: a mask rule
// never grants, allow rules must cover every kind, unparsable and opaque
// statements fail closed.

const pgTarget = `
targets:
  - {name: db, protocol: postgres, address: "127.0.0.2:5432", credentials: {user: app}}
  - {name: other, protocol: postgres, address: "127.0.0.3:5432", credentials: {user: app}}
`

// op builds a postgres operation whose kinds are kinds, its own kind the
// first.
func op(kinds ...string) model.Operation {
	return model.Operation{Protocol: model.ProtoPostgres, Kind: kinds[0], Kinds: kinds}
}

func withTables(o model.Operation, tables ...string) model.Operation {
	o.Tables = tables
	return o
}

func expect(t *testing.T, p *Policy, o model.Origin, what string, in model.Operation, action model.Action, rule string) model.Decision {
	t.Helper()
	d := p.Evaluate(o, in)
	if d.Action != action || (rule != "" && d.Rule != rule) {
		t.Errorf("%s %v: got %s by %q (%s), want %s by %q", what, in.Kinds, d.Action, d.Rule, d.Reason, action, rule)
	}
	return d
}

// TestNewcomersPolicy is the example: default deny, one allow
// rule for select, one mask rule. Only a plain select goes through, masked.
func TestNewcomersPolicy(t *testing.T) {
	p := MustNew(parse(t, pgTarget+`
policy:
  default: deny
  rules:
    - {name: reads, match: {operation: {kinds: [select]}}, action: allow}
    - {name: pii, match: {targets: [db]}, action: mask, mask: {columns: [customers.email]}}
`))
	o := origin("db", 1000, &model.ProcFacts{Exe: "/usr/bin/psql"}, nil)
	for _, c := range []struct {
		what string
		op   model.Operation
	}{
		{"insert", op("insert")},
		{"delete", op("delete")},
		{"drop table", op("drop_table")},
		{"alter role", op("alter_role")},
		{"writable CTE", op("select", "delete")},
		{"select for update", op("select", "lock")},
		{"select calling a user function", op("select", "opaque")},
		{"unparsable", op("unknown")},
	} {
		d := expect(t, p, o, c.what, c.op, model.Deny, "policy.default")
		if !strings.Contains(d.Reason, "mask rule only masks") {
			t.Errorf("%s: the reason should say a mask rule does not allow: %q", c.what, d.Reason)
		}
	}
	d := expect(t, p, o, "plain select", withTables(op("select"), "customers"), model.Mask, "pii")
	if d.Mask == nil || len(d.Mask.Rules) != 1 || d.Mask.Rules[0].Rule != "pii" || !strings.Contains(d.Reason, "allowed by rule reads") {
		t.Errorf("plain select: %+v", d)
	}
	// The session may start: the allow rule opens it, each statement is
	// judged on its own.
	if d := p.DecideConnect(context.Background(), o); d.Action != model.Allow || d.Mask != nil {
		t.Errorf("connect: %+v", d)
	}
}

func TestMaskNeverGrants(t *testing.T) {
	o := origin("db", 1000, knownProc(), nil)
	onlyMask := MustNew(parse(t, pgTarget+`
policy:
  default: deny
  rules:
    - {name: pii, match: {targets: [db]}, action: mask, mask: {detectors: [email]}}
`))
	expect(t, onlyMask, o, "default deny, mask only", op("select"), model.Deny, "policy.default")
	expect(t, onlyMask, o, "default deny, mask only", op("delete"), model.Deny, "policy.default")
	if d := onlyMask.DecideConnect(context.Background(), o); d.Action != model.Deny || d.Rule != "policy.default" {
		t.Errorf("a mask rule opened a session: %+v", d)
	}

	defAllow := MustNew(parse(t, pgTarget+`
policy:
  rules:
    - {name: pii, match: {targets: [db]}, action: mask, mask: {detectors: [email]}}
    - {name: hold, match: {operation: {kinds: [delete]}}, action: review, review: {approvers: [alice]}}
`))
	d := expect(t, defAllow, o, "default allow, mask", op("insert"), model.Mask, "pii")
	if !strings.Contains(d.Reason, "allowed by policy.default") {
		t.Errorf("reason %q does not name what allowed it", d.Reason)
	}
	d = expect(t, defAllow, o, "review and mask", op("delete"), model.Review, "hold")
	if d.Mask == nil {
		t.Errorf("an approved operation must be masked: %+v", d)
	}
	if d := defAllow.DecideConnect(context.Background(), o); d.Action != model.Allow || d.Mask != nil {
		t.Errorf("connect under default allow: %+v", d)
	}
}

func TestAllowMustCoverEveryKind(t *testing.T) {
	p := MustNew(parse(t, pgTarget+`
policy:
  default: deny
  rules:
    - {name: rw, match: {operation: {kinds: [select, insert, update]}}, action: allow}
    - {name: code, match: {targets: [other], operation: {kinds: [do, opaque]}}, action: allow}
    - {name: anything, match: {targets: [other], identity: {uids: [7]}}, action: allow}
    - {name: no-big-delete, match: {targets: [db], operation: {kinds: [delete], tables: [orders]}}, action: deny}
`))
	o := origin("db", 1000, knownProc(), nil)
	expect(t, p, o, "covered", op("select"), model.Allow, "rw")
	expect(t, p, o, "covered (several)", op("insert", "select"), model.Allow, "rw")
	expect(t, p, o, "one kind not covered", op("insert", "select", "delete"), model.Deny, "policy.default")
	expect(t, p, o, "nested kind not covered", op("select", "truncate"), model.Deny, "policy.default")
	// Deny rules apply when any kind matches.
	expect(t, p, o, "deny on a nested kind", withTables(op("select", "delete"), "orders"), model.Deny, "no-big-delete")

	other := origin("other", 1000, knownProc(), nil)
	expect(t, p, other, "opaque named", op("do", "opaque"), model.Allow, "code")
	seven := origin("other", 7, knownProc(), nil)
	expect(t, p, seven, "kindless allow", op("delete"), model.Allow, "anything")
	// A rule without kinds never covers opaque or unknown.
	expect(t, p, seven, "kindless allow, opaque", op("select", "opaque"), model.Deny, "policy.default")
	expect(t, p, seven, "kindless allow, unknown", op("unknown"), model.Deny, "policy.default")

	// ssh and tcp operations have one kind.
	ssh := MustNew(parse(t, `
targets:
  - {name: box, protocol: ssh, address: "127.0.0.2:22", credentials: {user: u, key_file: /k}, host_key: x}
policy:
  default: deny
  rules:
    - {name: execs, match: {operation: {kinds: [exec]}}, action: allow}
`))
	box := model.Origin{Target: model.Target{Name: "box", Protocol: model.ProtoSSH}, Identity: knownIdentity}
	expect(t, ssh, box, "exec", model.Operation{Protocol: model.ProtoSSH, Kind: "exec", Text: "ls"}, model.Allow, "execs")
	expect(t, ssh, box, "shell", model.Operation{Protocol: model.ProtoSSH, Kind: "shell"}, model.Deny, "policy.default")
	if d := ssh.DecideConnect(context.Background(), box); d.Action != model.Allow || d.Rule != "execs" {
		t.Errorf("ssh session under an exec allow rule: %+v", d)
	}
}

// TestConnectSession: deny rules still refuse a session; a tcp target's
// connect is its only operation, so an allow rule must cover it.
func TestConnectSession(t *testing.T) {
	p := MustNew(parse(t, `
targets:
  - {name: db, protocol: postgres, address: "127.0.0.2:5432", credentials: {user: app}}
  - {name: web, protocol: tcp, address: "127.0.0.2:80"}
policy:
  default: deny
  rules:
    - {name: reads, match: {operation: {kinds: [select]}}, action: allow}
    - {name: no-bob, match: {identity: {uids: [666]}}, action: deny}
    - {name: web-ok, match: {targets: [web], operation: {kinds: [connect]}}, action: allow}
`))
	ctx := context.Background()
	if d := p.DecideConnect(ctx, origin("db", 1, knownProc(), nil)); d.Action != model.Allow || d.Rule != "reads" {
		t.Errorf("postgres session: %+v", d)
	}
	if d := p.DecideConnect(ctx, origin("db", 666, knownProc(), nil)); d.Action != model.Deny || d.Rule != "no-bob" {
		t.Errorf("denied identity: %+v", d)
	}
	web := model.Origin{Target: model.Target{Name: "web", Protocol: model.ProtoTCP}, Identity: knownIdentity}
	if d := p.DecideConnect(ctx, web); d.Action != model.Allow || d.Rule != "web-ok" {
		t.Errorf("tcp connect: %+v", d)
	}
	p2 := MustNew(parse(t, `
targets:
  - {name: web, protocol: tcp, address: "127.0.0.2:80"}
policy:
  default: deny
  rules:
    - {name: reads, match: {operation: {kinds: [select]}}, action: allow}
`))
	if d := p2.DecideConnect(ctx, web); d.Action != model.Deny {
		t.Errorf("a select rule opened a tcp target: %+v", d)
	}
}

type recordingReviewer struct {
	got []ReviewRequest
}

func (f *recordingReviewer) Review(_ context.Context, req ReviewRequest) model.Decision {
	f.got = append(f.got, req)
	return model.Decision{Action: model.Allow, Rule: req.Rule, Request: "r1"}
}

func TestUnknownStatements(t *testing.T) {
	const rules = `
    - {name: no-drop, match: {targets: [db], operation: {kinds: [drop_table]}}, action: deny}
    - {name: everything, match: {}, action: allow}
    - {name: pii, match: {targets: [db]}, action: mask, mask: {detectors: [email]}}
`
	o := origin("db", 1000, knownProc(), nil)
	bad := op("unknown")
	bad.Detail = `syntax error at or near "SELEKT"`

	p := MustNew(parse(t, pgTarget+"policy:\n  rules:"+rules))
	d := expect(t, p, o, "guarded target, default unknown", bad, model.Deny, "policy.unknown")
	for _, want := range []string{"could not parse", `syntax error at or near "SELEKT"`, "policy.unknown is deny"} {
		if !strings.Contains(d.Reason, want) {
			t.Errorf("reason %q lacks %q", d.Reason, want)
		}
	}
	// No deny or review rule on "other": the ordinary evaluation, where
	// an allow rule must name unknown.
	expect(t, p, origin("other", 1000, knownProc(), nil), "unguarded target", bad, model.Allow, "policy.default")

	p = MustNew(parse(t, pgTarget+"policy:\n  default: deny\n  rules:"+rules))
	expect(t, p, origin("other", 1000, knownProc(), nil), "unguarded target, default deny", bad, model.Deny, "policy.default")

	p = MustNew(parse(t, pgTarget+"policy:\n  unknown: allow\n  default: deny\n  rules:"+rules))
	d = expect(t, p, o, "unknown: allow", bad, model.Mask, "pii")
	if !strings.Contains(d.Reason, "allowed by policy.unknown") {
		t.Errorf("reason %q", d.Reason)
	}

	p = MustNew(parse(t, pgTarget+`policy:
  unknown: review
  unknown_review: {approvers: [dba], timeout: 1m}
  rules:`+rules+`    - {name: no-unknown-for-bob, match: {identity: {uids: [666]}, operation: {kinds: [unknown]}}, action: deny}
`))
	expect(t, p, o, "unknown: review", bad, model.Review, "policy.unknown")
	// A deny rule naming unknown still applies.
	expect(t, p, origin("db", 666, knownProc(), nil), "deny naming unknown", bad, model.Deny, "no-unknown-for-bob")
	f := &recordingReviewer{}
	p.SetReviewer(f)
	if d := p.Decide(context.Background(), o, bad); d.Action != model.Allow || len(f.got) != 1 {
		t.Fatalf("review through the reviewer: %+v %+v", d, f.got)
	}
	req := f.got[0]
	if req.Rule != "policy.unknown" || len(req.Review.Approvers) != 1 || req.Review.Approvers[0] != "dba" ||
		req.Timeout.String() != "1m0s" || req.Mask == nil || !strings.Contains(req.Reason, "SELEKT") {
		t.Errorf("request %+v", req)
	}
	// An effects rule guards its target too.
	p = MustNew(parse(t, pgTarget+`policy:
  rules:
    - {name: no-drops, match: {targets: [other], effects: {dropped: true}}, action: deny}
`))
	expect(t, p, origin("other", 1, knownProc(), nil), "effects rule guards", bad, model.Deny, "policy.unknown")
	expect(t, p, o, "no rule on db", bad, model.Allow, "policy.default")
}

func TestIncludeOpaque(t *testing.T) {
	p := MustNew(parse(t, pgTarget+`
policy:
  rules:
    - {name: no-orders-delete, match: {targets: [db], operation: {kinds: [delete], tables: [orders], no_where: true}}, action: deny}
    - {name: hold-ddl, match: {targets: [other], operation: {kinds: [alter_table]}}, action: review, review: {approvers: [a]}}
    - {name: reads-only, match: {targets: [other], operation: {kinds: [show]}}, action: deny}
`))
	db := origin("db", 1, knownProc(), nil)
	other := origin("other", 1, knownProc(), nil)
	d := expect(t, p, db, "opaque select", withTables(op("select", "opaque"), "customers"), model.Deny, "no-orders-delete")
	if !strings.Contains(d.Reason, "opaque") || !strings.Contains(d.Reason, "include_opaque") {
		t.Errorf("reason %q does not say why", d.Reason)
	}
	// Tables and no_where count as matched for an opaque statement.
	expect(t, p, db, "opaque delete of another table", withTables(op("delete", "opaque"), "audit"), model.Deny, "no-orders-delete")
	expect(t, p, db, "plain delete of another table", withTables(op("delete"), "audit"), model.Allow, "policy.default")
	d = expect(t, p, other, "opaque DO, review rule", op("do", "opaque"), model.Review, "hold-ddl")
	if !strings.Contains(d.Reason, "opaque") {
		t.Errorf("review reason %q", d.Reason)
	}
	// A rule naming only read kinds is not extended.
	if d := p.Evaluate(other, op("do", "opaque")); d.Rule == "reads-only" {
		t.Errorf("a read-kind rule applied to an opaque statement")
	}

	off := MustNew(parse(t, pgTarget+`
policy:
  rules:
    - {name: no-orders-delete, match: {operation: {kinds: [delete], tables: [orders], include_opaque: false}}, action: deny}
    - {name: allow-ddl, match: {operation: {kinds: [drop_table]}}, action: allow}
    - {name: pii, match: {operation: {kinds: [insert]}}, action: mask, mask: {detectors: [email]}}
`))
	expect(t, off, db, "include_opaque: false", withTables(op("select", "opaque"), "customers"), model.Allow, "policy.default")
	// Allow and mask rules are never extended.
	if d := off.Evaluate(db, op("select", "opaque")); d.Action != model.Allow || d.Mask != nil {
		t.Errorf("an allow or mask rule took in an opaque statement: %+v", d)
	}

	// deny_statements is a deny rule, opaque statements included.
	sugar := MustNew(parse(t, `
targets:
  - {name: db, protocol: postgres, address: "127.0.0.2:5432", credentials: {user: app}, deny_statements: [truncate]}
`))
	expect(t, sugar, db, "deny_statements and opaque", op("call", "opaque"), model.Deny, "targets.db.deny_statements")
	expect(t, sugar, db, "deny_statements, plain", op("select"), model.Allow, "policy.default")
}

// TestIndexReachesOpaqueRules: a rule found through the kind index is
// also found for an opaque statement that does not hold its kinds, among
// many rules.
func TestIndexReachesOpaqueRules(t *testing.T) {
	y := pgTarget + "policy:\n  rules:\n"
	for _, k := range []string{"insert", "update", "merge", "create_index"} {
		y += "    - {name: r-" + strings.ReplaceAll(k, "_", "-") + ", match: {targets: [other], operation: {kinds: [" + k + "]}}, action: deny}\n"
	}
	y += "    - {name: last, match: {targets: [db], operation: {kinds: [copy_from]}}, action: deny}\n"
	p := MustNew(parse(t, y))
	expect(t, p, origin("db", 1, knownProc(), nil), "opaque via index", op("fetch", "opaque"), model.Deny, "last")
}

func TestExplain(t *testing.T) {
	p := MustNew(parse(t, pgTarget+`
policy:
  default: deny
  rules:
    - {name: reads, match: {operation: {kinds: [select]}}, action: allow}
    - {name: pii, match: {targets: [db]}, action: mask, mask: {detectors: [email]}}
    - {name: no-drop, match: {operation: {kinds: [drop_table]}}, action: deny}
    - {name: elsewhere, match: {targets: [other]}, action: deny}
    - {name: rows, match: {targets: [db], effects: {dropped: true}}, action: deny}
`))
	o := origin("db", 1, knownProc(), nil)
	d, ex := p.Explain(o, withTables(op("select", "delete"), "t"))
	if d != p.Evaluate(o, withTables(op("select", "delete"), "t")) {
		t.Fatalf("Explain decided otherwise than Evaluate: %+v", d)
	}
	if strings.Join(ex.Kinds, ",") != "select,delete" || ex.ReadOnly || len(ex.Tables) != 1 {
		t.Errorf("facts %+v", ex)
	}
	notes := map[string]RuleTrace{}
	for _, r := range ex.Rules {
		notes[r.Rule] = r
	}
	if _, ok := notes["elsewhere"]; ok {
		t.Errorf("a rule of another target is listed")
	}
	if r := notes["reads"]; r.Applies || !strings.Contains(r.Note, "does not cover kind delete") {
		t.Errorf("reads: %+v", r)
	}
	if r := notes["pii"]; !r.Applies {
		t.Errorf("pii: %+v", r)
	}
	if r := notes["no-drop"]; r.Applies || !strings.Contains(r.Note, "drop_table") {
		t.Errorf("no-drop: %+v", r)
	}
	if r := notes["rows"]; r.Applies || !strings.Contains(r.Note, "effects rule") {
		t.Errorf("rows: %+v", r)
	}
	if !strings.Contains(ex.Why, "no allow rule covers every kind") || !strings.Contains(ex.Why, "never allows") {
		t.Errorf("why %q", ex.Why)
	}

	_, ex = p.Explain(o, op("select"))
	if !strings.Contains(ex.Why, "allowed by rule reads") {
		t.Errorf("why %q", ex.Why)
	}
	bad := op("unknown")
	bad.Detail = "syntax error"
	d, ex = p.Explain(o, bad)
	if d.Rule != "policy.unknown" || !ex.Unknown || ex.ParseError != "syntax error" || !strings.Contains(ex.Why, "policy.unknown decides") {
		t.Errorf("unknown: %+v %+v", d, ex)
	}
	_, ex = p.Explain(origin("gone", 1, knownProc(), nil), op("select"))
	if ex.Why == "" {
		t.Errorf("no explanation for a target that is gone")
	}
}
