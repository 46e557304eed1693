package policy

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/interlock/interlock/model"
)

// TestSessionDecidesAsPolicy: a session's kept decisions are the ones
// Decide makes, operation after operation, asked twice over.
func TestSessionDecidesAsPolicy(t *testing.T) {
	p := MustNew(parse(t, evalConfig))
	ctx := context.Background()
	ops := []model.Operation{
		pg("select", []string{"orders"}, true, false),
		pg("select", []string{"customers"}, true, false),
		pg("select", []string{"billing.invoices"}, true, false),
		pg("drop_table", []string{"orders"}, false, false),
		pg("insert", []string{"orders"}, false, false),
		pg("update", []string{"orders"}, false, false),
		{Protocol: model.ProtoPostgres, Kind: "unknown", Kinds: []string{"unknown"}, Detail: "syntax error at or near \"SELEC\""},
		{Protocol: model.ProtoPostgres, Kind: "unknown", Kinds: []string{"unknown"}, Detail: "syntax error at end of input"},
		{Protocol: model.ProtoPostgres, Kind: "select", Kinds: []string{"select", "opaque"}},
	}
	for _, o := range []model.Origin{
		origin("db", 1000, knownProc(), nil),
		origin("db", 4242, knownProc(), nil),
		origin("db-replica", 1000, knownProc(), nil),
		origin("db", 1000, &model.ProcFacts{Exe: "/usr/bin/psql", User: "ci"}, map[string]string{"GITHUB_REPOSITORY": "acme/app"}),
	} {
		s := p.Session(o)
		for pass := 0; pass < 2; pass++ {
			for _, op := range ops {
				want := p.Evaluate(o, op)
				if want.Action == model.Review {
					continue
				}
				if got := s.Decide(ctx, op); !reflect.DeepEqual(got, want) {
					t.Errorf("uid %d on %s, pass %d, %s %v: session decided %+v, policy %+v", o.Identity.Kernel.UID, o.Target.Name, pass, op.Kind, op.Tables, got, want)
				}
			}
		}
	}
}

// TestSessionReload: a reload changes the next decision, and an undo
// puts the old rules' decisions back.
func TestSessionReload(t *testing.T) {
	allow := parse(t, evalConfig)
	deny := parse(t, evalConfig+`    - name: no-orders
      match: {operation: {tables: [orders]}}
      action: deny
`)
	p := MustNew(allow)
	ctx := context.Background()
	s := p.Session(origin("db", 1000, knownProc(), nil))
	op := pg("select", []string{"orders"}, true, false)
	if d := s.Decide(ctx, op); d.Action != model.Allow {
		t.Fatalf("before the reload: %+v", d)
	}
	if err := p.SetConfig(deny); err != nil {
		t.Fatal(err)
	}
	if d := s.Decide(ctx, op); d.Action != model.Deny || d.Rule != "no-orders" {
		t.Fatalf("after the reload: %+v, want a deny by no-orders", d)
	}
	apply, err := p.PrepareConfig(allow)
	if err != nil {
		t.Fatal(err)
	}
	if d := s.Decide(ctx, op); d.Action != model.Deny {
		t.Fatalf("a prepared reload changed the decision before it was applied: %+v", d)
	}
	undo := apply()
	if d := s.Decide(ctx, op); d.Action != model.Allow {
		t.Fatalf("after apply: %+v", d)
	}
	undo()
	if d := s.Decide(ctx, op); d.Action != model.Deny {
		t.Fatalf("after undo: %+v, want the deny back", d)
	}
}

// TestSessionKeysWhatRulesRead: a condition that reads the text makes the
// text part of the key; one that reads the time keeps nothing.
func TestSessionKeysWhatRulesRead(t *testing.T) {
	ctx := context.Background()
	o := origin("db", 1000, knownProc(), nil)
	sel := func(text string) model.Operation {
		op := pg("select", []string{"orders"}, true, false)
		op.Text = text
		return op
	}
	// Conditions that read other parts of the operation leave the text
	// out of the key, so that statements of one shape share a decision.
	if rs := MustNew(parse(t, evalConfig)).rs.Load(); rs.keyText || rs.uncacheable != "" {
		t.Errorf("evalConfig: text in the key %v, uncacheable %q", rs.keyText, rs.uncacheable)
	}
	for _, when := range []string{
		`op.text.contains("secret")`,
		`op["te" + "xt"].contains("secret")`,
		`has(op.text) && op.text.contains("secret")`,
		`op.exists(k, k == "text" && op[k].contains("secret"))`,
	} {
		p := MustNew(parse(t, evalConfig+fmt.Sprintf(`    - name: no-secret
      match: {}
      when: '%s'
      action: deny
`, when)))
		s := p.Session(o)
		if d := s.Decide(ctx, sel("SELECT x FROM orders")); d.Action != model.Allow {
			t.Errorf("%s: a plain select: %+v", when, d)
		}
		if d := s.Decide(ctx, sel("SELECT secret FROM orders")); d.Action != model.Deny {
			t.Errorf("%s: the same kinds and tables with another text got the kept decision: %+v", when, d)
		}
	}

	p := MustNew(parse(t, evalConfig+`    - name: not-at-three
      match: {}
      when: 'now.getHours("UTC") == 3'
      action: deny
`))
	clock := time.Date(2024, 1, 1, 2, 0, 0, 0, time.UTC)
	p.now = func() time.Time { return clock }
	s := p.Session(o)
	if d := s.Decide(ctx, sel("SELECT 1")); d.Action != model.Allow {
		t.Fatalf("at two: %+v", d)
	}
	clock = clock.Add(time.Hour)
	if d := s.Decide(ctx, sel("SELECT 1")); d.Action != model.Deny {
		t.Errorf("at three, under a rule that reads the time: %+v (a kept decision)", d)
	}
}

// TestSessionCommandsKeyText: an ssh exec rule matches commands: the
// text is part of the key.
func TestSessionCommandsKeyText(t *testing.T) {
	p := MustNew(parse(t, `
targets:
  - {name: box, protocol: ssh, address: "127.0.0.3:22", credentials: {user: app, key_file: /k}, host_key: x}
policy:
  default: allow
  rules:
    - {name: no-rm, match: {operation: {kinds: [exec], commands: ["rm *"]}}, action: deny}
`))
	o := origin("box", 1000, knownProc(), nil)
	o.Target.Protocol = model.ProtoSSH
	s := p.Session(o)
	exec := func(cmd string) model.Operation {
		return model.Operation{Protocol: model.ProtoSSH, Kind: "exec", Kinds: []string{"exec"}, Text: cmd}
	}
	if d := s.Decide(context.Background(), exec("ls /")); d.Action != model.Allow {
		t.Fatalf("ls: %+v", d)
	}
	if d := s.Decide(context.Background(), exec("rm -rf /")); d.Action != model.Deny {
		t.Errorf("rm after ls: %+v", d)
	}
}

type countingReviewer struct{ n int }

func (c *countingReviewer) Review(_ context.Context, req ReviewRequest) model.Decision {
	c.n++
	return model.Decision{Action: model.Allow, Rule: req.Rule, Request: fmt.Sprint("r", c.n)}
}

// TestSessionReviewsNotKept: each held operation is a review of its own.
func TestSessionReviewsNotKept(t *testing.T) {
	p := MustNew(parse(t, evalConfig))
	r := &countingReviewer{}
	p.SetReviewer(r)
	s := p.Session(origin("db", 1000, knownProc(), nil))
	op := pg("delete", []string{"orders"}, false, true)
	for i := 1; i <= 3; i++ {
		if d := s.Decide(context.Background(), op); d.Request != fmt.Sprint("r", i) {
			t.Fatalf("review %d: %+v", i, d)
		}
	}
}

func TestSessionBounded(t *testing.T) {
	p := MustNew(parse(t, evalConfig))
	s := p.Session(origin("db", 1000, knownProc(), nil))
	for i := 0; i < 3*maxSessionDecisions; i++ {
		s.Decide(context.Background(), pg("select", []string{fmt.Sprint("t", i)}, true, false))
	}
	if n := len(s.kept); n > maxSessionDecisions {
		t.Errorf("%d decisions kept, bound %d", n, maxSessionDecisions)
	}
}

// BenchmarkSessionDecide100Rules is BenchmarkDecide100Rules through a
// session, as the postgres handler asks.
func BenchmarkSessionDecide100Rules(b *testing.B) {
	p := MustNew(parse(b, hundredRules()))
	s := p.Session(origin("db", 1000, &model.ProcFacts{Exe: "/usr/bin/psql", User: "ci"}, nil))
	op := pg("select", []string{"public.orders"}, true, false)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if d := s.Decide(ctx, op); d.Action != model.Allow {
			b.Fatal(d)
		}
	}
}

// TestSessionKeyCoversOperation ties the key of kept decisions to
// model.Operation: a field added there that rules can read must be added
// to keyOf, sameOp and hash too (Effects is never kept).
func TestSessionKeyCoversOperation(t *testing.T) {
	keyed := map[string]bool{"Protocol": true, "Kind": true, "Text": true, "Kinds": true, "Tables": true,
		"ReadOnly": true, "NoWhere": true, "Path": true, "Detail": true, "Open": true, "Effects": true,
		"Resource": true, "Namespace": true, "Name": true, "Pod": true, "K8sUser": true, "K8sGroups": true}
	typ := reflect.TypeOf(model.Operation{})
	for i := 0; i < typ.NumField(); i++ {
		if f := typ.Field(i); !keyed[f.Name] {
			t.Errorf("model.Operation.%s is not part of a kept decision's key (policy/session.go)", f.Name)
		}
	}
	if typ.NumField() != len(keyed) {
		t.Errorf("model.Operation has %d fields, the key knows %d", typ.NumField(), len(keyed))
	}
}
