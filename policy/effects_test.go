package policy

import (
	"context"
	"strings"
	"testing"

	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/model"
)

func i64(n int64) *int64 { return &n }

// effectsConfig: the row thresholds are set in code (see
// config.EffectsMatch); the rest comes from YAML.
func effectsConfig(t *testing.T) *config.Config {
	t.Helper()
	cfg := parse(t, pgTarget+`
policy:
  rules:
    - name: no-destruction
      match: {targets: [db], effects: {dropped: true, truncated: true, altered: true}}
      action: deny
      reason: schema changes go through migrations
    - name: big-orders-delete
      match: {targets: [db], effects: {tables: [orders], dropped: true}}
      action: review
      review: {approvers: [dba], timeout: 2m}
    - name: roles
      match: {effects: {roles: true}}
      action: deny
    - name: catalog
      match: {targets: [other], effects: {catalog: true}}
      action: review
      review: {approvers: [dba]}
    - name: ci-writes
      match: {targets: [other], identity: {exes: [/usr/bin/ci]}, effects: {tables: ["billing.*"], dropped: true}}
      action: deny
    - name: sys
      match: {targets: [other], effects: {tables: ["pg_catalog.*"], dropped: true}}
      action: deny
    - name: plain
      match: {targets: [db]}
      action: allow
`)
	r := &cfg.Policy.Rules[1]
	r.Match.Effects.Dropped = false
	r.Match.Effects.RowsDeletedOver = i64(100)
	w := &cfg.Policy.Rules[4]
	w.Match.Effects.Dropped = false
	w.Match.Effects.RowsWrittenOver = i64(0)
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func commit(tables ...model.PGTableEffect) model.Operation {
	return model.Operation{Protocol: model.ProtoPostgres, Kind: "commit", Kinds: []string{"commit"}, Text: "COMMIT",
		Effects: &model.PGEffects{Tables: tables}}
}

func TestDecideEffects(t *testing.T) {
	p := MustNew(effectsConfig(t))
	db := origin("db", 1, &model.ProcFacts{Exe: "/usr/bin/psql"}, nil)
	other := origin("other", 1, &model.ProcFacts{Exe: "/usr/bin/psql"}, nil)
	ci := origin("other", 1, &model.ProcFacts{Exe: "/usr/bin/ci"}, nil)
	gone := origin("other", 1, nil, nil)
	cases := []struct {
		name   string
		o      model.Origin
		op     model.Operation
		action model.Action
		rule   string
		reason string
	}{
		{"nothing", db, commit(), model.Allow, "policy.effects", ""},
		{"small delete", db, commit(model.PGTableEffect{Name: "public.orders", Deleted: 100}), model.Allow, "policy.effects", ""},
		{"big delete", db, commit(model.PGTableEffect{Name: "public.orders", Deleted: 250}), model.Review, "big-orders-delete", "public.orders: 250 rows deleted > 100"},
		{"big delete through a parent", db, commit(model.PGTableEffect{Name: "public.orders_2024", Also: []string{"public.orders"}, Deleted: 250}), model.Review, "big-orders-delete", "public.orders_2024: 250 rows deleted"},
		{"big delete elsewhere", db, commit(model.PGTableEffect{Name: "public.audit", Deleted: 250}), model.Allow, "policy.effects", ""},
		{"dropped", db, commit(model.PGTableEffect{Name: "public.t", Dropped: true}), model.Deny, "no-destruction", "schema changes go through migrations (public.t dropped)"},
		{"created and dropped", db, commit(model.PGTableEffect{Name: "public.tmp", Created: true, Dropped: true}), model.Allow, "policy.effects", ""},
		{"truncated", db, commit(model.PGTableEffect{Name: "public.t", Rewritten: true}), model.Deny, "no-destruction", "truncated"},
		{"altered", db, commit(model.PGTableEffect{Name: "public.t", Lock: "AccessExclusiveLock"}), model.Deny, "no-destruction", "altered"},
		{"deny beats review", db, commit(model.PGTableEffect{Name: "public.orders", Deleted: 500}, model.PGTableEffect{Name: "public.t", Dropped: true}), model.Deny, "no-destruction", ""},
		{"system relation not selected without tables", db, commit(model.PGTableEffect{Name: "pg_catalog.pg_class", System: true, Dropped: true}), model.Allow, "policy.effects", ""},
		{"roles", db, commit(model.PGTableEffect{Name: "pg_catalog.pg_authid", System: true, Updated: 1}), model.Deny, "roles", "pg_catalog.pg_authid: roles changed"},
		{"catalog", other, commit(model.PGTableEffect{Name: "pg_catalog.pg_class", System: true, Inserted: 1}), model.Review, "catalog", "system catalog changed"},
		{"catalog on db", db, commit(model.PGTableEffect{Name: "pg_catalog.pg_class", System: true, Inserted: 1}), model.Allow, "policy.effects", ""},
		{"identity", ci, commit(model.PGTableEffect{Name: "billing.invoices", Inserted: 1}), model.Deny, "ci-writes", "billing.invoices: 1 rows written"},
		{"identity does not match", other, commit(model.PGTableEffect{Name: "billing.invoices", Inserted: 1}), model.Allow, "policy.effects", ""},
		{"process gone: deny applies", gone, commit(model.PGTableEffect{Name: "billing.invoices", Inserted: 1}), model.Deny, "ci-writes", ""},
		{"system relation through its schema", other, commit(model.PGTableEffect{Name: "pg_catalog.pg_foo", System: true, Dropped: true}), model.Deny, "sys", ""},
		{"incomplete effects fail closed", db, model.Operation{Protocol: model.ProtoPostgres, Kind: "commit", Effects: &model.PGEffects{Error: "permission denied for pg_locks"}}, model.Deny, "no-destruction", "could not be read in full (permission denied for pg_locks)"},
		{"no effects fail closed", other, model.Operation{Protocol: model.ProtoPostgres, Kind: "commit"}, model.Deny, "roles", "no effects were read"},
		{"target gone", origin("gone", 1, nil, nil), commit(), model.Deny, "no-target", ""},
	}
	for _, c := range cases {
		d := p.EvaluateEffects(c.o, c.op)
		if d.Action != c.action || d.Rule != c.rule || !strings.Contains(d.Reason, c.reason) {
			t.Errorf("%s: got %s by %q (%s), want %s by %q (%s)", c.name, d.Action, d.Rule, d.Reason, c.action, c.rule, c.reason)
		}
	}

	// Decide and Evaluate ignore effects rules: the commit statement
	// itself is allowed by the text rules.
	bigDelete := commit(model.PGTableEffect{Name: "public.t", Dropped: true})
	if d := p.Evaluate(db, bigDelete); d.Action != model.Allow || d.Rule != "plain" {
		t.Errorf("Evaluate used an effects rule: %+v", d)
	}

	// A review goes to the reviewer, carrying the effects.
	f := &recordingReviewer{}
	p.SetReviewer(f)
	in := commit(model.PGTableEffect{Name: "public.orders", Deleted: 250})
	if d := p.DecideEffects(context.Background(), db, in); d.Action != model.Allow || d.Request != "r1" || len(f.got) != 1 {
		t.Fatalf("DecideEffects: %+v %+v", d, f.got)
	}
	req := f.got[0]
	if req.Operation.Effects == nil || req.Operation.Effects.Tables[0].Deleted != 250 || req.Rule != "big-orders-delete" ||
		req.Reason != "public.orders: 250 rows deleted > 100" || req.Timeout.String() != "2m0s" {
		t.Errorf("review request %+v", req)
	}
}

func TestEffectsRules(t *testing.T) {
	p := MustNew(effectsConfig(t))
	if !p.EffectsRules(origin("db", 1, nil, nil)) || !p.EffectsRules(origin("other", 1, nil, nil)) {
		t.Errorf("effects rules not found")
	}
	none := MustNew(parse(t, pgTarget+`
policy:
  rules:
    - {name: x, match: {targets: [db], identity: {uids: [5]}, effects: {dropped: true}}, action: deny}
    - {name: y, match: {targets: [db], operation: {kinds: [delete]}}, action: deny}
`))
	if none.EffectsRules(origin("other", 1, nil, nil)) || none.EffectsRules(origin("db", 1, nil, nil)) {
		t.Errorf("an effects rule of another target or identity counted")
	}
	if !none.EffectsRules(origin("db", 5, nil, nil)) {
		t.Errorf("the effects rule of uid 5 not found")
	}
	if d := none.EvaluateEffects(origin("db", 1, nil, nil), commit(model.PGTableEffect{Name: "public.t", Dropped: true})); d.Action != model.Allow {
		t.Errorf("%+v", d)
	}
}

func TestEffectsCEL(t *testing.T) {
	cfg := parse(t, pgTarget+`
policy:
  rules:
    - name: wide-update
      match: {targets: [db], effects: {altered: true}}
      when: 'effects.exists(e, e.name == "public.t" && e.altered) && identity.uid != 0'
      action: deny
    - name: text
      match: {targets: [db]}
      when: 'effects.size() == 0'
      action: allow
`)
	p := MustNew(cfg)
	altered := commit(model.PGTableEffect{Name: "public.t", Lock: "AccessExclusiveLock", Updated: 3})
	if d := p.EvaluateEffects(origin("db", 1, nil, nil), altered); d.Action != model.Deny {
		t.Errorf("CEL over effects: %+v", d)
	}
	if d := p.EvaluateEffects(origin("db", 0, nil, nil), altered); d.Action != model.Allow {
		t.Errorf("CEL false: %+v", d)
	}
	if d := p.Evaluate(origin("db", 1, knownProc(), nil), op("select")); d.Rule != "text" {
		t.Errorf("effects is empty for statements: %+v", d)
	}
}
