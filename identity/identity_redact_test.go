package identity

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
)

// TestIdentityCmdlineRedacted: a secret on a process's command line never
// reaches its facts (fresh, from the cache, or as an agent glob sees it),
// and the facts say the command line was altered.
func TestIdentityCmdlineRedacted(t *testing.T) {
	f := newIdentTestFake(t)
	f.tool.cmdline = "tool\x00--token=SECRET1\x00postgresql://app:SECRET2@db/app\x00--kubeconfig\x00/k\x00"
	identTestWrite(t, f.proc, f.tool)
	ctx := context.Background()
	want := []string{"tool", "--token=[redacted]", "postgresql://app:[redacted]@db/app", "--kubeconfig", "/k"}
	for i := 0; i < 2; i++ { // the second comes from the cache
		id := f.r.Resolve(ctx, f.k)
		if id.Proc == nil {
			t.Fatalf("no proc facts: %s", id.ProcError)
		}
		if strings.Join(id.Proc.Cmdline, "|") != strings.Join(want, "|") || id.Proc.CmdlineRedacted != 2 {
			t.Fatalf("resolution %d: cmdline %q, redacted %d", i, id.Proc.Cmdline, id.Proc.CmdlineRedacted)
		}
		b, err := json.Marshal(id)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), "SECRET") || !strings.Contains(string(b), `"cmdline_redacted":2`) {
			t.Fatalf("resolution %d journals %s", i, b)
		}
	}

	// Agent globs match the command line as journaled: one written for
	// the secret matches nothing, one for the redacted form matches.
	f.r.SetAgents([]AgentSpec{{Name: "leaky", Cmdlines: []string{"tool --token=SECRET1*"}}})
	if id := f.r.Resolve(ctx, f.k); id.Agent != nil {
		t.Fatalf("a glob over the secret matched: %+v", id.Agent)
	}
	f.r.SetAgents([]AgentSpec{{Name: "tool", Cmdlines: []string{"tool --token=?redacted? *"}}})
	if id := f.r.Resolve(ctx, f.k); id.Agent == nil || id.Agent.Name != "tool" || id.Agent.MatchedBy != "cmdline" {
		t.Fatalf("the redacted command line did not match: %+v (%s)", id.Agent, id.AgentError)
	}
	// An ancestor's command line, read for agents only, likewise.
	identTestWrite(t, f.proc, identTestProc{pid: 50, ppid: 1, comm: "Runner.Listener", startTicks: 500, uid: 1001, euid: 1001,
		exe: "/opt/runner/bin/Runner.Listener", cmdline: "runner\x00--password\x00SECRET3\x00"})
	f.r.SetAgents([]AgentSpec{{Name: "leaky", Cmdlines: []string{"runner --password SECRET3"}}})
	if id := f.r.Resolve(ctx, f.k); id.Agent != nil {
		t.Fatalf("a glob over an ancestor's secret matched: %+v", id.Agent)
	}
	f.r.SetAgents([]AgentSpec{{Name: "runner", Cmdlines: []string{"runner --password ?redacted?"}}})
	if id := f.r.Resolve(ctx, f.k); id.Agent == nil || id.Agent.Name != "runner" || id.Agent.PID != 50 {
		t.Fatalf("the ancestor's redacted command line did not match: %+v (%s)", id.Agent, id.AgentError)
	}
}

// TestIdentityCmdlinePlainUnmarked: a command line with nothing to redact
// is the argv as read, and its facts carry no count.
func TestIdentityCmdlinePlainUnmarked(t *testing.T) {
	f := newIdentTestFake(t)
	id := f.r.Resolve(context.Background(), f.k)
	if id.Proc == nil || id.Proc.CmdlineRedacted != 0 {
		t.Fatalf("facts %+v", id.Proc)
	}
	b, _ := json.Marshal(id.Proc)
	if strings.Contains(string(b), "cmdline_redacted") {
		t.Fatalf("a zero count is journaled: %s", b)
	}
}
