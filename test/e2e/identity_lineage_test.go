package e2e

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/interlock/interlock/internal/testkit"
	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/test/e2e/pgtest"
)

// TestIdentityLineage: an agent's tool that was orphaned (the agent
// starts a subshell that starts psql in the background, and both exit,
// so psql is reparented away from the agent before it connects) is still
// the agent's: the kernel tagged it at fork. Its session names the agent
// (matched_by lineage, provenance kernel) and the agent's deny rule
// refuses its statement. An agent that was running before the daemon
// started is found by the daemon's scan, and its tool orphaned after
// that is the agent's too. A shell that is not the agent, doing the
// same, is not tagged: its statement goes through.
func TestIdentityLineage(t *testing.T) {
	srv := requirePG(t)
	sh, err := os.ReadFile("/bin/sh")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	agent := filepath.Join(dir, "agentsh")
	if err := os.WriteFile(agent, sh, 0o755); err != nil {
		t.Fatal(err)
	}
	cgPath, cgDir := makeCgroup(t, "lineage")
	extra := fmt.Sprintf(`intercept:
  cgroups: [%s]
%sidentity:
  agents:
    - {name: shell, exes: [%q]}
policy:
  rules:
    - {name: no-agent-drop, match: {identity: {agents: [shell]}, operation: {kinds: [drop_table]}}, action: deny}
`, cgPath, noRateLimits, agent)
	e := newEnv(t, []target{pgTarget(t, "db", srv.Addr(), pgtest.AppPassword, "")}, extra)

	// orphanScript starts psql two forks down, in the background, and
	// returns at once: psql connects after its parents have exited.
	orphanScript := func(sql, out string) string {
		psql := fmt.Sprintf(`%s -X -A -t -v ON_ERROR_STOP=0 %q -c %q`, filepath.Join(srv.BinDir, "psql"), conninfo(srv, "sslmode=disable"), sql)
		inner := fmt.Sprintf(`sleep 0.5; %s >%s 2>&1; echo done >%s.done`, psql, out, out)
		return fmt.Sprintf(`( /bin/sh -c %q </dev/null >/dev/null 2>&1 & ); exit 0`, inner)
	}
	waitOut := func(out string) string {
		t.Helper()
		testkit.WaitFor(t, 20*time.Second, 50*time.Millisecond, func() bool {
			_, err := os.Stat(out + ".done")
			return err == nil
		})
		b, _ := os.ReadFile(out)
		return string(b)
	}
	check := func(sql, out string, agentPID int) model.SessionOpen {
		t.Helper()
		got := waitOut(out)
		if !strings.Contains(got, "no-agent-drop") {
			t.Errorf("%s: the orphaned tool's statement was not refused by the agent's rule: %s", sql, got)
		}
		_, so, ok := e.findStatement(sql)
		if !ok {
			t.Fatalf("no statement %q in the journal", sql)
		}
		a := so.Identity.Agent
		if a == nil || a.Name != "shell" || a.MatchedBy != "lineage" || a.Provenance != model.ProvKernel ||
			a.PID != uint32(agentPID) || a.Exe != agent {
			t.Fatalf("%s: agent %+v (agent_error %q), want shell by lineage rooted at %d", sql, a, so.Identity.AgentError, agentPID)
		}
		p := so.Identity.Proc
		if p == nil {
			t.Fatalf("%s: no proc facts", sql)
		}
		for _, anc := range p.Parents {
			if anc.PID == uint32(agentPID) || anc.Exe == agent {
				t.Fatalf("%s: the agent is still in the ancestry (the test proves nothing): %+v", sql, p.Parents)
			}
		}
		return so
	}

	// Started before the daemon: it waits for a line, then orphans psql.
	const beforeSQL = "DROP TABLE IF EXISTS lineage_before_daemon"
	beforeOut := filepath.Join(dir, "before.out")
	before := inCgroup(t, cgDir, agent, "-c", "read x; "+orphanScript(beforeSQL, beforeOut))
	stdin, err := before.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := before.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { before.Process.Kill(); before.Wait() })

	e.startDaemon()

	io.WriteString(stdin, "go\n")
	if err := before.Wait(); err != nil {
		t.Fatalf("agent started before the daemon: %v", err)
	}
	check(beforeSQL, beforeOut, before.Process.Pid)

	// Started after the daemon: tagged at its exec.
	const afterSQL = "DROP TABLE IF EXISTS lineage_after_daemon"
	afterOut := filepath.Join(dir, "after.out")
	after := inCgroup(t, cgDir, agent, "-c", orphanScript(afterSQL, afterOut))
	if out, err := after.CombinedOutput(); err != nil {
		t.Fatalf("agent: %v: %s", err, out)
	}
	check(afterSQL, afterOut, after.Process.Pid)

	// Not the agent's descendant: nothing tags it.
	const otherSQL = "DROP TABLE IF EXISTS lineage_not_an_agent"
	otherOut := filepath.Join(dir, "other.out")
	other := inCgroup(t, cgDir, "/bin/sh", "-c", orphanScript(otherSQL, otherOut))
	if out, err := other.CombinedOutput(); err != nil {
		t.Fatalf("shell: %v: %s", err, out)
	}
	if got := waitOut(otherOut); strings.Contains(got, "no-agent-drop") {
		t.Errorf("a process outside the agent's tree was refused as the agent: %s", got)
	}
	_, so, ok := e.findStatement(otherSQL)
	if !ok {
		t.Fatalf("no statement %q in the journal", otherSQL)
	}
	if so.Identity.Agent != nil || so.Identity.AgentError != "" || so.Identity.Proc == nil {
		t.Fatalf("not an agent's: agent %+v, agent_error %q", so.Identity.Agent, so.Identity.AgentError)
	}
}
