package policy

import (
	"testing"

	"github.com/interlock/interlock/model"
)

// TestHumanAndAgentRules: login_users, login_uids and agents match what
// was established; a missing fact (no Human, no Proc) makes a deny rule
// apply and an allow rule not, and "none" matches a process without an
// agent, unless the agent could not be established (AgentError: the look
// for agents could not finish, or the lineage was unread).
func TestHumanAndAgentRules(t *testing.T) {
	cfg := parse(t, `
identity:
  agents:
    - {name: claude, exes: ["*/claude"]}
targets:
  - {name: db, protocol: postgres, address: "127.0.0.2:5432", credentials: {user: app}}
policy:
  default: allow
  unknown_identity: allow
  rules:
    - {name: no-alice-drop, match: {identity: {login_users: ["ali*"]}, operation: {kinds: [drop_table]}}, action: deny}
    - {name: no-1000-delete, match: {identity: {login_uids: [1000]}, operation: {kinds: [delete]}}, action: deny}
    - {name: no-agent-update, match: {identity: {agents: [claude]}, operation: {kinds: [update]}}, action: deny}
`)
	p := MustNew(cfg)
	p2 := MustNew(parse(t, `
identity:
  agents:
    - {name: claude, exes: ["*/claude"]}
targets:
  - {name: db, protocol: postgres, address: "127.0.0.2:5432", credentials: {user: app}}
policy:
  default: deny
  unknown_identity: allow
  rules:
    - {name: humans-insert, match: {identity: {agents: [none], login_users: ["*"]}, operation: {kinds: [insert]}}, action: allow}
    - {name: bot-truncates, match: {identity: {agents: [claude]}, operation: {kinds: [truncate]}}, action: allow}
`))
	u := func(v uint32) *uint32 { return &v }
	pf := &model.ProcFacts{Exe: "/usr/bin/psql", ExeTrust: model.ExeVerified}
	with := func(h *model.Human, a *model.Agent, proc *model.ProcFacts) model.Origin {
		o := origin("db", 1001, proc, nil)
		o.Identity.Human, o.Identity.Agent = h, a
		return o
	}
	// unfinished is with, the look for agents having stopped short.
	unfinished := func(h *model.Human, a *model.Agent) model.Origin {
		o := with(h, a, pf)
		o.Identity.AgentError = "pid 7: executable not hashed: hash budget spent"
		return o
	}
	alice := &model.Human{LoginUID: u(1000), LoginUser: "alice", Provenance: model.ProvProc}
	bob := &model.Human{LoginUID: u(1002), LoginUser: "bob", Provenance: model.ProvProc}
	service := &model.Human{NoLogin: true, Provenance: model.ProvProc}
	nameless := &model.Human{LoginUID: u(4242), Provenance: model.ProvProc}
	claude := &model.Agent{Name: "claude", MatchedBy: "exe", Provenance: model.ProvProc}
	claimedClaude := &model.Agent{Name: "claude", MatchedBy: "cmdline", Provenance: model.ProvClaimed}
	lineage := &model.Agent{Name: "claude", PID: 42, MatchedBy: "lineage", Provenance: model.ProvKernel}
	// No agent in the ancestry, and the lineage that would show one it
	// was orphaned from could not be read.
	unread := with(bob, nil, pf)
	unread.Identity.AgentError = "agent lineage not read: process exited before it could be inspected"

	for _, c := range []struct {
		name    string
		o       model.Origin
		kind    string
		allowed bool
	}{
		{"alice's login drops", with(alice, nil, pf), "drop_table", false},
		{"bob's login drops", with(bob, nil, pf), "drop_table", true},
		{"a service drops", with(service, nil, pf), "drop_table", true},
		{"no human read: the deny applies", with(nil, nil, pf), "drop_table", false},
		{"a login uid without a name: the deny applies", with(nameless, nil, pf), "drop_table", false},
		{"login uid 1000 deletes", with(alice, nil, pf), "delete", false},
		{"login uid 1002 deletes", with(bob, nil, pf), "delete", true},
		{"no human read: the uid deny applies", with(nil, nil, pf), "delete", false},
		{"the agent updates", with(bob, claude, pf), "update", false},
		{"no agent updates", with(bob, nil, pf), "update", true},
		{"no process facts: the agent deny applies", with(nil, nil, nil), "update", false},
		{"a person without an agent inserts", with(bob, nil, pf), "insert", true},
		{"the agent inserts: allow for none does not apply", with(bob, claude, pf), "insert", false},
		{"a service inserts: allow for a login does not apply", with(service, nil, pf), "insert", false},
		{"no human read: the allow does not apply", with(nil, nil, pf), "insert", false},
		{"an unfinished look found no agent: the agent deny applies", unfinished(bob, nil), "update", false},
		{"an unfinished look found the agent: the agent deny applies", unfinished(bob, claude), "update", false},
		{"an unfinished look found no agent: the allow for none does not apply", unfinished(bob, nil), "insert", false},
		{"an unfinished look does not touch a rule on the login alone", unfinished(bob, nil), "drop_table", true},
		{"a claimed agent updates: the agent deny applies", with(bob, claimedClaude, pf), "update", false},
		{"the agent truncates: its allow applies", with(bob, claude, pf), "truncate", true},
		{"a claimed agent truncates: its allow does not open", with(bob, claimedClaude, pf), "truncate", false},
		{"the agent found by lineage updates", with(bob, lineage, pf), "update", false},
		{"lineage not read: the agent deny applies", unread, "update", false},
		{"lineage not read: allow for none does not apply", unread, "insert", false},
	} {
		pol := p
		if c.kind == "insert" || c.kind == "truncate" {
			pol = p2
		}
		d := pol.Evaluate(c.o, pg(c.kind, nil, false, false))
		if (d.Action == model.Allow) != c.allowed {
			t.Errorf("%s: %+v, want allowed=%v", c.name, d, c.allowed)
		}
	}
}
