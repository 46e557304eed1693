package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/interlock/interlock/test/e2e/pgtest"
)

// TestIdentityAgent: a shell copied to an agent's path runs psql under
// interlock run; the session is recorded with that agent, found by its
// executable although the shell renamed its comm, and a rule for the
// agent refuses its statement. With the hash pinned, a copy with one
// byte more is not the agent, and the same statement goes through.
func TestIdentityAgent(t *testing.T) {
	srv := requirePG(t)
	sh, err := os.ReadFile("/bin/sh")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	agent := filepath.Join(dir, "agents", "agentsh")
	modified := filepath.Join(dir, "agents", "agentsh-modified")
	os.Mkdir(filepath.Dir(agent), 0o755)
	if err := os.WriteFile(agent, sh, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(modified, append(append([]byte(nil), sh...), 0), 0o755); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(sh)
	extra := fmt.Sprintf(`identity:
  agents:
    - name: shell
      exes: [%q]
      sha256: [%s]
policy:
  rules:
    - {name: no-agent-drop, match: {identity: {agents: [shell]}, operation: {kinds: [drop_table]}}, action: deny}
`, filepath.Dir(agent)+"/*", hex.EncodeToString(sum[:]))
	e := newEnv(t, []target{pgTarget(t, "db", srv.Addr(), pgtest.AppPassword, "")}, extra)

	psql := func(shell, sql string) (string, string) {
		t.Helper()
		// The shell renames itself before it starts psql (a child, not
		// an exec: the trailing ':' keeps it there).
		script := fmt.Sprintf(`printf innocent >/proc/self/comm && %s -X -A -t -v ON_ERROR_STOP=0 %q -c %q; :`,
			filepath.Join(srv.BinDir, "psql"), conninfo(srv, "sslmode=disable"), sql)
		cmd := exec.Command(interlockBin, "run", "-q", "-c", e.cfgPath, "--", shell, "-c", script)
		stdout, stderr, _ := runCmd(t, cmd)
		return stdout, stderr
	}

	const agentSQL = "DROP TABLE IF EXISTS agent_was_here"
	_, stderr := psql(agent, agentSQL)
	if !strings.Contains(stderr, "no-agent-drop") {
		t.Errorf("the agent's DROP was not refused by its rule: %s", stderr)
	}
	_, so, ok := e.findStatement(agentSQL)
	if !ok {
		t.Fatalf("no statement %q in the journal", agentSQL)
	}
	a := so.Identity.Agent
	if a == nil || a.Name != "shell" || a.Exe != agent || a.MatchedBy != "sha256" || a.Provenance != "proc" || a.ExeSHA256 != hex.EncodeToString(sum[:]) {
		t.Fatalf("agent %+v", a)
	}
	if p := so.Identity.Proc; p == nil || len(p.Parents) == 0 || p.Parents[0].Comm != "innocent" || p.Parents[0].PID != a.PID {
		t.Fatalf("the agent's comm was not renamed (the test proves nothing): %+v", p)
	}

	// The human: the test's own login uid, inherited through interlock
	// run and the agent (none when the test runs from a service).
	own, err := os.ReadFile("/proc/self/loginuid")
	if err != nil {
		t.Fatal(err)
	}
	h := so.Identity.Human
	switch ownUID := strings.TrimSpace(string(own)); {
	case h == nil || h.Provenance != "proc":
		t.Errorf("human %+v", h)
	case ownUID == "4294967295" && (!h.NoLogin || h.LoginUID != nil):
		t.Errorf("no login expected: human %+v", h)
	case ownUID != "4294967295" && (h.LoginUID == nil || fmt.Sprint(*h.LoginUID) != ownUID):
		t.Errorf("login uid %s expected: human %+v", ownUID, h)
	}

	const modSQL = "DROP TABLE IF EXISTS modified_was_here"
	_, stderr = psql(modified, modSQL)
	if strings.Contains(stderr, "no-agent-drop") {
		t.Errorf("a modified copy was refused as the agent: %s", stderr)
	}
	if _, so, ok := e.findStatement(modSQL); !ok || so.Identity.Agent != nil || so.Identity.Proc == nil {
		t.Fatalf("modified copy: found %v, agent %+v", ok, so.Identity.Agent)
	}
}
