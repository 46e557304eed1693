package policy

import (
	"testing"

	"github.com/interlock/interlock/model"
)

// TestWhenSeesPrincipals: `when` conditions read the human, the agent and
// the workload, and what interlock could not establish reads "unknown",
// so a condition asking for "none" does not hold for it.
func TestWhenSeesPrincipals(t *testing.T) {
	p := MustNew(parse(t, `
targets:
  - {name: db, protocol: postgres, address: "127.0.0.2:5432", credentials: {user: app}}
policy:
  default: deny
  rules:
    - {name: alice-writes, match: {targets: [db]}, when: 'identity.login == "known" && identity.login_user == "alice" && identity.login_uid == 1000', action: allow}
    - {name: no-agent-reads, match: {targets: [db], operation: {kinds: [show]}}, when: 'identity.agent == "none"', action: allow}
    - {name: verified-main, match: {targets: [db], operation: {kinds: [select]}}, when: 'identity.workload == "verified" && identity.verified["ref"] == "refs/heads/main"', action: allow}
`))
	uid := uint32(1000)
	alice := &model.Human{LoginUID: &uid, LoginUser: "alice", Provenance: model.ProvProc}
	proc := &model.ProcFacts{Exe: "/usr/bin/psql"}
	with := func(proc *model.ProcFacts, h *model.Human, a *model.Agent, w *model.Workload) model.Origin {
		o := origin("db", 1000, proc, nil)
		o.Identity.Human, o.Identity.Agent, o.Identity.Workload = h, a, w
		return o
	}
	main := map[string]string{"ref": "refs/heads/main"}
	for _, c := range []struct {
		name string
		o    model.Origin
		op   string
		want model.Action
	}{
		{"alice", with(proc, alice, nil, nil), "insert", model.Allow},
		{"no login", with(proc, &model.Human{NoLogin: true}, nil, nil), "insert", model.Deny},
		{"login unread", with(proc, nil, nil, nil), "insert", model.Deny},
		{"no agent", with(proc, nil, nil, nil), "show", model.Allow},
		{"an agent", with(proc, nil, &model.Agent{Name: "claude", Provenance: model.ProvProc}, nil), "show", model.Deny},
		{"process gone: agent unknown", with(nil, nil, nil, nil), "show", model.Deny},
		{"agent look unfinished", func() model.Origin {
			o := with(proc, nil, nil, nil)
			o.Identity.AgentError = "an ancestor exited before it was read"
			return o
		}(), "show", model.Deny},
		{"verified main", with(proc, nil, nil, &model.Workload{Provenance: model.ProvVerified, Claims: main}), "select", model.Allow},
		{"claimed main", with(proc, nil, nil, &model.Workload{Provenance: model.ProvClaimed, Claims: main}), "select", model.Deny},
	} {
		if d := p.Evaluate(c.o, pg(c.op, nil, c.op != "insert", false)); d.Action != c.want {
			t.Errorf("%s: %s (rule %q), want %s", c.name, d.Action, d.Rule, c.want)
		}
	}
}
