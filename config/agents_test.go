package config

import (
	"strings"
	"testing"
)

const agentSHA = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestAgentErrors(t *testing.T) {
	for _, tt := range []struct {
		name string
		src  string
		line int
		key  string
		msg  string
	}{
		{"no name", "identity:\n  agents:\n    - {exes: [/usr/bin/claude]}\n", 0, "identity.agents[0].name", "is required"},
		{"bad name", "identity:\n  agents:\n    - {name: Claude, exes: [/usr/bin/claude]}\n", 3, "identity.agents[0].name", `must be lowercase: "claude"`},
		{"duplicate", "identity:\n  agents:\n    - {name: a, exes: [/x]}\n    - {name: a, exes: [/y]}\n", 4, "identity.agents[1].name", `"a" is already the name of`},
		{"reserved", "identity:\n  agents:\n    - {name: none, exes: [/x]}\n", 3, "identity.agents[0].name", "is reserved"},
		{"nothing to match", "identity:\n  agents:\n    - {name: a}\n", 3, "identity.agents[0]", "give exes, sha256 or cmdlines"},
		{"bad exe glob", "identity:\n  agents:\n    - {name: a, exes: [\"[x\"]}\n", 3, "identity.agents[0].exes[0]", "is not a valid glob"},
		{"empty cmdline glob", "identity:\n  agents:\n    - {name: a, cmdlines: [\"\"]}\n", 3, "identity.agents[0].cmdlines[0]", "is empty"},
		{"short hash", "identity:\n  agents:\n    - {name: a, sha256: [abc]}\n", 3, "identity.agents[0].sha256[0]", "is not a SHA-256"},
		{"rule names an unknown agent", "identity:\n  agents:\n    - {name: claude, exes: [/x]}\npolicy:\n  rules:\n    - {name: r, match: {identity: {agents: [claud]}}, action: deny}\n",
			6, "policy.rules[0].match.identity.agents[0]", `"claud" is not an agent of identity.agents; did you mean "claude"?`},
		{"rule names an agent with none configured", "policy:\n  rules:\n    - {name: r, match: {identity: {agents: [codex]}}, action: deny}\n",
			3, "policy.rules[0].match.identity.agents[0]", `(nor "none", for a process with no agent)`},
		{"bad login user glob", "policy:\n  rules:\n    - {name: r, match: {identity: {login_users: [\"[a\"]}}, action: deny}\n",
			3, "policy.rules[0].match.identity.login_users[0]", "is not a valid glob"},
		{"unset login uid", "policy:\n  rules:\n    - {name: r, match: {identity: {login_uids: [4294967295]}}, action: deny}\n",
			3, "policy.rules[0].match.identity.login_uids[0]", "is not a login uid"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e, err := firstError(t, tt.src)
			if (tt.line != 0 && e.Line != tt.line) || e.Key != tt.key || !strings.Contains(e.Msg, tt.msg) {
				t.Errorf("got %v\nwant line %d key %s msg containing %q", err, tt.line, tt.key, tt.msg)
			}
		})
	}
}

func TestAgentsAccepted(t *testing.T) {
	src := `identity:
  agents:
    - name: claude
      exes: ["*/claude"]
      sha256: [` + agentSHA + `]
    - name: claude-node
      cmdlines: ["node */claude-code/cli.js*"]
policy:
  rules:
    - {name: r, match: {identity: {agents: [claude, none], login_users: [alice, "ops-*"], login_uids: [1000]}}, action: deny}
`
	cfg, err := Parse("test.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	a := cfg.Identity.Agents
	if len(a) != 2 || a[0].Exes[0] != "*/claude" || a[0].SHA256[0] != agentSHA || a[1].Cmdlines[0] != "node */claude-code/cli.js*" {
		t.Errorf("agents %+v", a)
	}
	if got := strings.Join(cfg.Identity.AgentNames(), ","); got != "claude,claude-node" {
		t.Errorf("names %s", got)
	}
	id := cfg.Policy.Rules[0].Match.Identity
	if len(id.Agents) != 2 || len(id.LoginUsers) != 2 || id.LoginUIDs[0] != 1000 {
		t.Errorf("rule identity %+v", id)
	}
}
