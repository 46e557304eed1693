package identity

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/interlock/interlock/model"
)

// lineageFake is the kernel side of agent lineage, in a map by pid (the
// pidfd's, from its fdinfo).
type lineageFake struct {
	mu   sync.Mutex
	tags map[int]LineageTag
	exes map[LineageExe]uint32
	err  error
}

func lineageFakePID(t *testing.T, pidfd int) int {
	b, err := os.ReadFile("/proc/self/fdinfo/" + strconv.Itoa(pidfd))
	if err != nil {
		t.Fatalf("fdinfo of pidfd %d: %v", pidfd, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Pid:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	t.Fatalf("pidfd %d: no Pid in fdinfo", pidfd)
	return 0
}

type lineageFakeKernel struct {
	t *testing.T
	*lineageFake
}

func (f lineageFakeKernel) Lookup(pidfd int) (LineageTag, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return LineageTag{}, false, f.err
	}
	tag, ok := f.tags[lineageFakePID(f.t, pidfd)]
	return tag, ok, nil
}

func (f lineageFakeKernel) Tag(pidfd int, t LineageTag) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tags[lineageFakePID(f.t, pidfd)] = t
	return nil
}

func (f lineageFakeKernel) SetExes(exes map[LineageExe]uint32) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.exes = exes
	return nil
}

func newLineageFake(t *testing.T) lineageFakeKernel {
	return lineageFakeKernel{t: t, lineageFake: &lineageFake{tags: map[int]LineageTag{}}}
}

// TestLineageAgent: with no agent in its ancestry, a process's agent is
// the one its kernel tag names (matched_by lineage, provenance kernel);
// an untagged process has none; lineage that is not kept or not readable
// leaves the agent unknown with the reason; a tag naming an agent a
// reload removed names no one.
func TestLineageAgent(t *testing.T) {
	cmd := identTestStartSleep(t, "", nil)
	pid := cmd.Process.Pid
	resolve := func(r *Resolver) model.Identity {
		k := model.KernelFacts{PID: uint32(pid), TGID: uint32(pid), UID: uint32(os.Getuid()), GID: uint32(os.Getgid()),
			ConnectBootNS: identTestBootNS(t)}
		return r.Resolve(context.Background(), k)
	}
	r := NewResolver(ResolverOptions{})
	r.SetAgents([]AgentSpec{{Name: "claude", Exes: []string{"*/claude"}}})
	if id := resolve(r); id.Agent != nil || id.AgentError != lineageErrNone {
		t.Fatalf("without lineage: agent %+v, error %q; want none and %q", id.Agent, id.AgentError, lineageErrNone)
	}

	fake := newLineageFake(t)
	r.SetLineage(context.Background(), fake, "")
	if id := resolve(r); id.Agent != nil || id.AgentError != "" {
		t.Fatalf("untagged: agent %+v, error %q; want none", id.Agent, id.AgentError)
	}
	fake.tags[pid] = LineageTag{AgentID: r.lin.ids["claude"], RootTGID: 4242, RootStartNS: 1}
	id := resolve(r)
	if a := id.Agent; a == nil || a.Name != "claude" || a.PID != 4242 || a.MatchedBy != "lineage" || a.Provenance != model.ProvKernel {
		t.Fatalf("tagged: agent %+v, error %q; want claude by lineage, rooted at 4242", a, id.AgentError)
	}

	fake.err = errors.New("map gone")
	if id := resolve(r); id.Agent != nil || !strings.Contains(id.AgentError, "map gone") {
		t.Fatalf("lookup failing: agent %+v, error %q", id.Agent, id.AgentError)
	}
	fake.err = nil

	r.SetAgents([]AgentSpec{{Name: "other", Exes: []string{"*/other"}}})
	if id := resolve(r); id.Agent != nil || id.AgentError != "" {
		t.Fatalf("tag of a removed agent: agent %+v, error %q; want none", id.Agent, id.AgentError)
	}
	r.SetAgents([]AgentSpec{{Name: "claude", Exes: []string{"*/claude"}}})
	if id := resolve(r); id.Agent == nil || id.Agent.Name != "claude" {
		t.Fatalf("an agent configured again keeps its id: agent %+v", id.Agent)
	}

	r.SetLineage(context.Background(), nil, "no BTF")
	if id := resolve(r); id.Agent != nil || id.AgentError != "no BTF" {
		t.Fatalf("lineage not kept: agent %+v, error %q", id.Agent, id.AgentError)
	}
}

// TestLineageScan: an agent running before lineage is kept is found by
// its executable, its file registered, and it and its descendants tagged
// from userspace; a process outside its tree is not.
func TestLineageScan(t *testing.T) {
	dir := t.TempDir()
	shPid, sleepPid := identTestAgentShell(t, dir, "claude", nil)
	other := identTestStartSleep(t, "", nil)
	r := NewResolver(ResolverOptions{})
	r.SetAgents([]AgentSpec{{Name: "claude", Exes: []string{dir + "/claude"}}})
	fake := newLineageFake(t)
	r.SetLineage(context.Background(), fake, "")

	id := r.lin.ids["claude"]
	for _, pid := range []int{shPid, sleepPid} {
		tag, ok := fake.tags[pid]
		if !ok || tag.AgentID != id || tag.RootTGID != uint32(shPid) {
			t.Errorf("pid %d: tag %+v, %v; want agent %d rooted at %d", pid, tag, ok, id, shPid)
		}
	}
	if tag, ok := fake.tags[other.Process.Pid]; ok {
		t.Errorf("a process outside the agent's tree is tagged: %+v", tag)
	}
	if len(fake.exes) != 1 {
		t.Fatalf("registered executables: %+v, want the agent's", fake.exes)
	}
	for e, agent := range fake.exes {
		info := r.lin.exes[e]
		if agent != id || info.path != dir+"/claude" {
			t.Errorf("registered %+v as agent %d (%+v)", e, agent, info)
		}
	}
}
