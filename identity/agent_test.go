package identity

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/test/testenv"
)

// identTestAgentShell copies the test binary to dir/name (with extra
// bytes appended: another hash) and starts it as TestAgentHelperProcess
// under argv[0] "innocent", which renames its comm and starts a sleep;
// it returns the two pids.
func identTestAgentShell(t *testing.T, dir, name string, extra []byte) (shPid, sleepPid int) {
	t.Helper()
	return identTestAgentShellIn(t, dir, name, extra, nil)
}

// identTestAgentShellIn is identTestAgentShell with the agent started
// with attr (namespaces of its own, say).
func identTestAgentShellIn(t *testing.T, dir, name string, extra []byte, attr *syscall.SysProcAttr) (shPid, sleepPid int) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, append(b, extra...), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(p, "-test.run=^TestAgentHelperProcess$")
	cmd.Args[0] = "innocent"
	cmd.Env = append(os.Environ(), "INTERLOCK_IDENT_AGENT_HELPER=1")
	cmd.SysProcAttr = attr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd.Process.Pid, identTestChild(t, cmd.Process.Pid, "sleep")
}

// TestAgentHelperProcess is the agent of TestResolveRealAgent, when run
// by it: it renames itself (its comm, as prctl(PR_SET_NAME) would) and
// runs a sleep.
func TestAgentHelperProcess(t *testing.T) {
	if os.Getenv("INTERLOCK_IDENT_AGENT_HELPER") != "1" {
		return
	}
	if err := os.WriteFile("/proc/self/comm", []byte("innocent"), 0); err != nil {
		os.Exit(3)
	}
	cmd := exec.Command("/usr/bin/sleep", "30")
	cmd.Run()
	os.Exit(0)
}

// identTestChild waits for a child of ppid whose comm is comm, and
// kills it at the end.
func identTestChild(t *testing.T, ppid int, comm string) int {
	t.Helper()
	for i := 0; i < 500; i++ {
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
			j := strings.LastIndexByte(string(b), ')')
			if err != nil || j < 0 {
				continue
			}
			f := strings.Fields(string(b[j+1:]))
			if len(f) > 1 && f[1] == strconv.Itoa(ppid) && strings.Contains(string(b), "("+comm+")") {
				t.Cleanup(func() {
					if p, err := os.FindProcess(pid); err == nil {
						p.Kill()
					}
				})
				identTestWaitExeced(t, pid)
				return pid
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("pid %d started no %s", ppid, comm)
	return 0
}

// TestResolveRealAgent: an agent is found in the ancestry by its
// executable whatever its argv[0] says; with the hash pinned, a modified
// copy is not the agent; a command-line match is only claimed.
func TestResolveRealAgent(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	self, _ := os.Executable()
	origSHA := identTestFileSHA(t, self)
	shPid, sleepPid := identTestAgentShell(t, dir, "agentsh", nil)
	_, modSleep := identTestAgentShell(t, dir, "agentsh-mod", []byte{0})
	shExe := filepath.Join(dir, "agentsh")

	r := NewResolver(ResolverOptions{})
	defer r.Close()
	// Lineage kept, and no process tagged: only the ancestry names agents.
	r.SetLineage(context.Background(), newLineageFake(t), "")
	r.SetAgents([]AgentSpec{{Name: "other", Exes: []string{"/nowhere/*"}}, {Name: "shell", Exes: []string{dir + "/agentsh*"}}})
	id := identTestResolvePid(t, r, sleepPid)
	want := model.Agent{Name: "shell", PID: uint32(shPid), Exe: shExe, MatchedBy: "exe", Provenance: model.ProvProc}
	if a := id.Agent; a == nil || *a != want {
		t.Fatalf("agent %+v, want %+v", a, want)
	}
	if comm := id.Proc.Parents[0].Comm; comm != "innocent" {
		t.Fatalf("comm %q: the test does not hide the name", comm)
	}

	// A fresh resolver: the scan at the first SetAgents tagged the
	// modified copy too (its name matched then), and a tag outlives a
	// reload that narrows its agent.
	r = NewResolver(ResolverOptions{})
	defer r.Close()
	r.SetLineage(context.Background(), newLineageFake(t), "")
	r.SetAgents([]AgentSpec{{Name: "shell", Exes: []string{dir + "/agentsh*"}, SHA256: []string{strings.ToUpper(origSHA)}}})
	want.MatchedBy, want.ExeSHA256 = "sha256", origSHA
	if a := identTestResolvePid(t, r, sleepPid).Agent; a == nil || *a != want {
		t.Fatalf("agent by hash %+v, want %+v", a, want)
	}
	if id := identTestResolvePid(t, r, modSleep); id.Agent != nil || id.AgentError != "" {
		t.Fatalf("a modified copy is the agent: %+v (%s)", id.Agent, id.AgentError)
	}

	r.SetAgents([]AgentSpec{{Name: "script", Cmdlines: []string{"innocent -test.run=*"}}})
	a := identTestResolvePid(t, r, sleepPid).Agent
	if a == nil || a.Name != "script" || a.PID != uint32(shPid) || a.MatchedBy != "cmdline" || a.Provenance != model.ProvClaimed {
		t.Fatalf("agent by command line %+v", a)
	}

	r.SetAgents(nil)
	if id := identTestResolvePid(t, r, sleepPid); id.Agent != nil || id.AgentError != "" {
		t.Fatalf("agent with none configured: %+v (%s)", id.Agent, id.AgentError)
	}
}

// TestResolveAgentUnfinished: when a fact an agent needs cannot be had
// (the hash limits leave the executable unhashed, the ancestor is gone,
// the parent chain stops short), the look records why instead of ending
// as "no agent", and goes on to the agent past it.
func TestResolveAgentUnfinished(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	self, _ := os.Executable()
	origSHA := identTestFileSHA(t, self)
	shPid, sleepPid := identTestAgentShell(t, dir, "agentsh", nil)
	shExe := filepath.Join(dir, "agentsh")

	r := NewResolver(ResolverOptions{})
	defer r.Close()
	r.SetLineage(context.Background(), newLineageFake(t), "")
	r.SetHashLimits(HashLimits{MaxBytes: 1})
	pinned := AgentSpec{Name: "shell", Exes: []string{dir + "/agentsh*"}, SHA256: []string{origSHA}}
	r.SetAgents([]AgentSpec{pinned})
	id := identTestResolvePid(t, r, sleepPid)
	want := "pid " + strconv.Itoa(shPid) + ": executable not hashed"
	if id.Agent != nil || !strings.HasPrefix(id.AgentError, want) {
		t.Fatalf("unhashed agent: %+v, error %q, want %q", id.Agent, id.AgentError, want)
	}
	// Past it, the test (the shell's parent) is found, with the error
	// kept: the nearer one may have been the shell.
	r.SetAgents([]AgentSpec{pinned, {Name: "test", Exes: []string{self}}})
	id = identTestResolvePid(t, r, sleepPid)
	if a := id.Agent; a == nil || a.Name != "test" || a.PID != uint32(os.Getpid()) || !strings.HasPrefix(id.AgentError, want) {
		t.Fatalf("agent past the unhashed one: %+v, error %q", a, id.AgentError)
	}

	// The ancestor read in the chain has gone by the time its command
	// line is wanted (its start time no longer matches).
	r.SetAgents([]AgentSpec{{Name: "script", Cmdlines: []string{"innocent *"}}})
	id = identTestResolvePid(t, r, sleepPid)
	if id.Agent == nil || id.AgentError != "" {
		t.Fatalf("agent by command line before the ancestor goes: %+v (%s)", id.Agent, id.AgentError)
	}
	pf := *id.Proc
	pf.Parents = append([]model.ProcessRef(nil), pf.Parents...)
	pf.Parents[0].StartBootNS += 10 * r.tickNS
	gone := model.Identity{Kernel: id.Kernel, Proc: &pf}
	r.agent(context.Background(), &gone)
	if gone.Agent != nil || gone.AgentError != "pid "+strconv.Itoa(shPid)+": gone before it was read" {
		t.Fatalf("ancestor gone: %+v, error %q", gone.Agent, gone.AgentError)
	}

	// A chain that stops short of pid 1: what lies above may be the
	// agent.
	r.SetAgents([]AgentSpec{{Name: "elsewhere", Exes: []string{"/nowhere/*"}}})
	pf.Parents = pf.Parents[:1]
	short := model.Identity{Kernel: id.Kernel, Proc: &pf}
	r.agent(context.Background(), &short)
	if short.Agent != nil || !strings.Contains(short.AgentError, "short of pid 1") {
		t.Fatalf("short chain: %+v, error %q", short.Agent, short.AgentError)
	}
	whole := model.Identity{Kernel: id.Kernel, Proc: id.Proc}
	r.agent(context.Background(), &whole)
	if whole.Agent != nil || whole.AgentError != "" || whole.Proc.Parents[0].Exe != shExe {
		t.Fatalf("whole chain: %+v, error %q", whole.Agent, whole.AgentError)
	}
}

// TestAgentAncestorInOtherNamespace: an ancestor matched by its
// executable while it runs in a mount namespace of its own is only a
// claimed agent: there it chooses what its exe link says (a bind mount
// over an agent's path), so an allow rule for that agent must not open
// for it.
func TestAgentAncestorInOtherNamespace(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	_, sleepPid := identTestAgentShellIn(t, dir, "agentsh", nil, &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS})
	r := NewResolver(ResolverOptions{})
	defer r.Close()
	r.SetLineage(context.Background(), newLineageFake(t), "")
	r.SetAgents([]AgentSpec{{Name: "shell", Exes: []string{dir + "/agentsh"}}})
	a := identTestResolvePid(t, r, sleepPid).Agent
	if a == nil || a.Name != "shell" || a.MatchedBy != "exe" || a.Provenance != model.ProvClaimed {
		t.Fatalf("agent in its own mount namespace: %+v, want shell by exe, claimed", a)
	}

	// The control: the same agent in the host's namespaces is proc.
	_, hostSleep := identTestAgentShell(t, dir, "agentsh2", nil)
	r.SetAgents([]AgentSpec{{Name: "shell", Exes: []string{dir + "/agentsh2"}}})
	if a := identTestResolvePid(t, r, hostSleep).Agent; a == nil || a.Provenance != model.ProvProc {
		t.Fatalf("agent in the host's namespaces: %+v, want proc", a)
	}
}
