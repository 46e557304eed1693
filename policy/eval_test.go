package policy

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/model"
)

func parse(t testing.TB, yaml string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return cfg
}

const evalConfig = `
targets:
  - name: db
    protocol: postgres
    address: 127.0.0.2:5432
    credentials: {user: app}
  - name: db-replica
    protocol: postgres
    address: 127.0.0.3:5432
    credentials: {user: app}
policy:
  default: allow
  rules:
    - name: no-drop
      match: {operation: {kinds: [drop_database, drop_table]}}
      action: deny
      reason: dropping is done by hand
    - name: hold-unbounded-delete
      match: {operation: {kinds: [delete, update], no_where: true}}
      action: review
      review: {approvers: [alice, "@dba"], scope: once}
    - name: mask-customers
      match: {targets: ["db*"], operation: {tables: [customers, "billing.*"]}}
      action: mask
      mask: {columns: [customers.email], detectors: [card]}
    - name: ci-may-write
      match:
        identity:
          claimed: ["GITHUB_REPOSITORY=acme/*"]
          exes: [/usr/bin/psql]
      action: allow
    - name: replica-readonly
      match: {targets: [db-replica], operation: {read_only: false}}
      action: deny
    - name: night-writes
      match: {targets: [db]}
      when: 'op.kinds.exists(k, k == "insert") && identity.uid == 4242'
      action: deny
`

// origin is a connection from target; a proc given without ExeTrust is
// taken as verified (the tests write the facts interlock established).
func origin(target string, uid uint32, proc *model.ProcFacts, claims map[string]string) model.Origin {
	if proc != nil && proc.ExeTrust == "" {
		proc.ExeTrust = model.ExeVerified
	}
	return model.Origin{
		Target:   model.Target{Name: target, Protocol: model.ProtoPostgres},
		Identity: model.Identity{Kernel: model.KernelFacts{UID: uid, TGID: 100}, Proc: proc, Claimed: claims},
	}
}

func pg(kind string, tables []string, readOnly, noWhere bool) model.Operation {
	return model.Operation{Protocol: model.ProtoPostgres, Kind: kind, Kinds: []string{kind}, Tables: tables, ReadOnly: readOnly, NoWhere: noWhere}
}

func TestPrecedenceAndMatching(t *testing.T) {
	p := MustNew(parse(t, evalConfig))
	psql := &model.ProcFacts{Exe: "/usr/bin/psql", User: "ci"}
	cases := []struct {
		name   string
		o      model.Origin
		op     model.Operation
		action model.Action
		rule   string
	}{
		{"deny beats everything", origin("db", 1000, psql, nil), pg("drop_table", []string{"customers"}, false, false), model.Deny, "no-drop"},
		{"review beats mask", origin("db", 1000, psql, nil), pg("delete", []string{"customers"}, false, true), model.Review, "hold-unbounded-delete"},
		{"allowed and masked", origin("db", 1000, psql, map[string]string{"GITHUB_REPOSITORY": "acme/app"}), pg("select", []string{"public.customers"}, true, false), model.Mask, "mask-customers"},
		{"schema glob", origin("db", 1000, psql, nil), pg("select", []string{"billing.invoices"}, true, false), model.Mask, "mask-customers"},
		{"delete with where is not held", origin("db", 1000, psql, nil), pg("delete", []string{"orders"}, false, false), model.Allow, "policy.default"},
		{"claimed + exe allow", origin("db", 1000, psql, map[string]string{"GITHUB_REPOSITORY": "acme/app"}), pg("insert", []string{"orders"}, false, false), model.Allow, "ci-may-write"},
		{"claim must match", origin("db", 1000, psql, map[string]string{"GITHUB_REPOSITORY": "evil/app"}), pg("insert", []string{"orders"}, false, false), model.Allow, "policy.default"},
		{"replica read-only", origin("db-replica", 1000, psql, nil), pg("insert", []string{"orders"}, false, false), model.Deny, "replica-readonly"},
		{"replica select", origin("db-replica", 1000, psql, nil), pg("select", []string{"orders"}, true, false), model.Allow, "policy.default"},
		{"CEL condition", origin("db", 4242, psql, nil), pg("insert", []string{"orders"}, false, false), model.Deny, "night-writes"},
		{"CEL condition false", origin("db", 4243, psql, nil), pg("insert", []string{"orders"}, false, false), model.Allow, "policy.default"},
		{"unknown target", origin("gone", 1, psql, nil), pg("select", nil, true, false), model.Deny, "no-target"},
	}
	for _, c := range cases {
		d := p.Evaluate(c.o, c.op)
		if d.Action != c.action || d.Rule != c.rule {
			t.Errorf("%s: got %s by %q (%s), want %s by %q", c.name, d.Action, d.Rule, d.Reason, c.action, c.rule)
		}
	}
}

// TestProcessGoneFailsClosed: a rule about the executable cannot allow a
// process interlock could not inspect, and a deny about it still applies.
func TestProcessGoneFailsClosed(t *testing.T) {
	cfg := parse(t, `
targets:
  - {name: db, protocol: postgres, address: "127.0.0.2:5432", credentials: {user: app}}
policy:
  default: deny
  unknown_identity: allow
  rules:
    - {name: psql-ok, match: {identity: {exes: [/usr/bin/psql]}}, action: allow}
    - {name: no-curl, match: {identity: {exes: [/usr/bin/curl]}, operation: {kinds: [select]}}, action: deny}
`)
	p := MustNew(cfg)
	gone := origin("db", 1000, nil, nil)
	if d := p.Evaluate(gone, pg("insert", nil, false, false)); d.Action != model.Deny || d.Rule != "policy.default" {
		t.Errorf("exe allow rule applied to an uninspected process: %+v", d)
	}
	if d := p.Evaluate(gone, pg("select", nil, true, false)); d.Action != model.Deny || d.Rule != "no-curl" {
		t.Errorf("exe deny rule did not apply to an uninspected process: %+v", d)
	}
	if d := p.Evaluate(origin("db", 1000, &model.ProcFacts{Exe: "/usr/bin/psql"}, nil), pg("insert", nil, false, false)); d.Action != model.Allow {
		t.Errorf("psql not allowed: %+v", d)
	}
}

func TestReviewWithoutBrokerDenies(t *testing.T) {
	p := MustNew(parse(t, evalConfig))
	d := p.Decide(context.Background(), origin("db", 1000, knownProc(), nil), pg("update", []string{"t"}, false, true))
	if d.Action != model.Deny || d.Rule != "hold-unbounded-delete" {
		t.Errorf("a review nobody can decide must deny: %+v", d)
	}
}

type fakeReviewer struct{ got ReviewRequest }

func (f *fakeReviewer) Review(_ context.Context, req ReviewRequest) model.Decision {
	f.got = req
	return model.Decision{Action: model.Allow, Rule: req.Rule, Request: "r1"}
}

func TestReviewGoesToReviewer(t *testing.T) {
	p := MustNew(parse(t, evalConfig))
	f := &fakeReviewer{}
	p.SetReviewer(f)
	o := origin("db", 1000, knownProc(), nil)
	o.Session = "s1"
	d := p.Decide(context.Background(), o, pg("delete", []string{"customers"}, false, true))
	if d.Action != model.Allow || d.Request != "r1" {
		t.Fatalf("decision %+v", d)
	}
	if f.got.Rule != "hold-unbounded-delete" || f.got.Origin.Session != "s1" || f.got.Mask == nil || len(f.got.Review.Approvers) != 2 {
		t.Errorf("request %+v", f.got)
	}
}

func TestBadCELRefused(t *testing.T) {
	cfg := parse(t, `
policy:
  rules:
    - {name: r, match: {}, when: 'op.kinds.size() > "x"', action: deny}
`)
	_, err := New(cfg)
	if err == nil {
		t.Fatalf("a CEL condition that does not type-check was accepted")
	}
	// The error names the file, the line and the key, as config errors do.
	if !strings.Contains(err.Error(), "test.yaml:4: policy.rules[0].when: CEL") {
		t.Errorf("error %q does not name test.yaml:4", err)
	}
}

// BenchmarkDecide100Rules: the aim is ≤ 5 µs per statement with 100 rules.
func BenchmarkDecide100Rules(b *testing.B) {
	p := MustNew(parse(b, hundredRules()))
	o := origin("db", 1000, &model.ProcFacts{Exe: "/usr/bin/psql", User: "ci"}, nil)
	op := pg("select", []string{"public.orders"}, true, false)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if d := p.Evaluate(o, op); d.Action != model.Allow {
			b.Fatal(d)
		}
	}
}

// hundredRules is a config of 100 rules of four sorts.
func hundredRules() string {
	y := "targets:\n  - {name: db, protocol: postgres, address: \"127.0.0.2:5432\", credentials: {user: app}}\npolicy:\n  rules:\n"
	for i := 0; i < 100; i++ {
		switch i % 4 {
		case 0:
			y += fmt.Sprintf("    - {name: r%d, match: {targets: [db], operation: {kinds: [drop_table], tables: [t%d]}}, action: deny}\n", i, i)
		case 1:
			y += fmt.Sprintf("    - {name: r%d, match: {identity: {users: [u%d]}, operation: {kinds: [delete]}}, action: deny}\n", i, i)
		case 2:
			y += fmt.Sprintf("    - {name: r%d, match: {operation: {tables: [\"s%d.*\"]}}, action: mask, mask: {columns: [\"*.email\"]}}\n", i, i)
		case 3:
			y += fmt.Sprintf("    - {name: r%d, match: {targets: [db]}, when: 'identity.uid == %d', action: deny}\n", i, 10000+i)
		}
	}
	return y
}
