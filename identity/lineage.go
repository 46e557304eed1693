package identity

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/interlock/interlock/model"
)

// Agent lineage: the kernel tags a task that executes a registered agent
// executable, and copies the tag to every task forked from a tagged one
// (bpf/lineage.c). A tool the agent orphaned is reparented away from it,
// so the /proc ancestry no longer shows the agent; the tag, inherited at
// fork, still does. The resolver registers the agents' executables, tags
// agents that were running before the programs were (a scan of /proc),
// and reads a connecting process's tag through a pidfd.

// LineageTag is the agent lineage the kernel keeps for a task.
type LineageTag struct {
	AgentID uint32
	// RootTGID and RootStartNS are the process that executed the agent.
	RootTGID    uint32
	RootStartNS uint64
	// Exe is the registered executable it ran.
	Exe LineageExe
}

// LineageExe names an executable file: its device (as stat reports it)
// and inode.
type LineageExe struct{ Dev, Ino uint64 }

// LineageKernel is the kernel side of agent lineage (the redirector's
// tracing programs and their maps).
type LineageKernel interface {
	// Lookup reads the tag of the process pidfd refers to; ok is false
	// when it has none.
	Lookup(pidfd int) (t LineageTag, ok bool, err error)
	// Tag sets the tag of the process pidfd refers to.
	Tag(pidfd int, t LineageTag) error
	// SetExes replaces the registered agent executables.
	SetExes(exes map[LineageExe]uint32) error
}

// AgentLineage texts.
const (
	lineageErrNone   = "agent lineage is not kept (no kernel programs)"
	lineageErrClosed = "agent lineage is no longer kept (its programs were detached)"
)

// lineageState is the resolver's side of agent lineage.
type lineageState struct {
	kernel atomic.Pointer[lineageKernelRef]

	mu sync.Mutex
	// ids gives each agent name an id, for as long as the resolver
	// lives: a reload that keeps an agent keeps its id, so the tags of
	// its descendants still name it.
	ids   map[string]uint32
	names map[uint32]string
	// exes are the registered executables, with what they were seen as.
	exes map[LineageExe]lineageExeInfo
	// seen are agent processes already registered and tagged at a
	// connect, so the next connect does not redo it.
	seen map[lineageProcKey]bool
}

type lineageKernelRef struct {
	k LineageKernel
	// why is the reason lineage cannot be read when k is nil.
	why string
}

type lineageExeInfo struct {
	agent     uint32
	path, sha string
}

type lineageProcKey struct {
	pid        uint32
	startTicks uint64
}

// lineageSeenMax bounds lineageState.seen; it is cleared when full.
const lineageSeenMax = 4096

// SetLineage gives the resolver the kernel side of agent lineage, or nil
// and why there is none (no BTF, the programs did not attach). With a
// kernel it registers the configured agents' executables and tags the
// agents already running and their descendants.
func (r *Resolver) SetLineage(ctx context.Context, k LineageKernel, why string) {
	if k == nil && why == "" {
		why = lineageErrClosed
	}
	r.lin.kernel.Store(&lineageKernelRef{k: k, why: why})
	if k != nil {
		r.lineageScan(ctx)
	}
}

func (l *lineageState) idOf(name string) uint32 {
	if l.ids == nil {
		l.ids, l.names = map[string]uint32{}, map[uint32]string{}
	}
	id, ok := l.ids[name]
	if !ok {
		id = uint32(len(l.ids) + 1)
		l.ids[name], l.names[id] = id, name
	}
	return id
}

// lineageAgent fills id.Agent from the kernel's tag of the process when
// its ancestry showed no agent, or says in id.AgentError why it could
// not be read.
func (r *Resolver) lineageAgent(id *model.Identity, specs []AgentSpec) {
	ref := r.lin.kernel.Load()
	if ref == nil {
		id.AgentError = lineageErrNone
		return
	}
	if ref.k == nil {
		id.AgentError = ref.why
		return
	}
	tgid := id.Kernel.TGID
	pidfd, err := r.pidfdOf(tgid, id.Proc.StartBootNS/r.tickNS)
	if err != nil {
		id.AgentError = "agent lineage not read: " + err.Error()
		return
	}
	defer unix.Close(pidfd)
	t, ok, err := ref.k.Lookup(pidfd)
	if err != nil {
		id.AgentError = "agent lineage not read: " + err.Error()
		return
	}
	if !ok {
		return
	}
	r.lin.mu.Lock()
	name := r.lin.names[t.AgentID]
	exe := r.lin.exes[t.Exe]
	r.lin.mu.Unlock()
	if !agentConfigured(specs, name) {
		// An agent a reload removed: its descendants are no one's now.
		return
	}
	id.Agent = &model.Agent{
		Name: name, PID: t.RootTGID, MatchedBy: agentByLineage, Provenance: model.ProvKernel,
	}
	if exe.agent == t.AgentID {
		id.Agent.Exe, id.Agent.ExeSHA256 = exe.path, exe.sha
	}
}

func agentConfigured(specs []AgentSpec, name string) bool {
	for i := range specs {
		if name != "" && specs[i].Name == name {
			return true
		}
	}
	return false
}

// pidfdOf opens a pidfd for pid and checks that it is the process that
// started at startTicks: the pidfd stays bound to the process it was
// opened for, so once the start time read after it matches, a reused pid
// cannot be what it refers to.
func (r *Resolver) pidfdOf(pid uint32, startTicks uint64) (int, error) {
	fd, err := unix.PidfdOpen(int(pid), 0)
	if err != nil {
		if identGone(err) {
			return -1, errors.New(identErrExited)
		}
		return -1, fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	data, err := os.ReadFile(r.procRoot + "/" + strconv.FormatUint(uint64(pid), 10) + "/stat")
	if err != nil {
		unix.Close(fd)
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ESRCH) {
			return -1, errors.New(identErrExited)
		}
		return -1, fmt.Errorf("read stat of %d: %w", pid, err)
	}
	if st, ok := procfsParseStat(data); !ok || st.startTicks != startTicks {
		unix.Close(fd)
		return -1, errors.New(identErrReused)
	}
	return fd, nil
}

// lineageRegister registers the executable of an agent found at a
// connect by its executable (not by its command line: that is claimed)
// and tags the agent and its descendants, once per agent process: an
// agent started after the daemon, under a path only a glob names, is
// known from its first connect on.
func (r *Resolver) lineageRegister(ctx context.Context, a *model.Agent, startTicks uint64) {
	if a.Provenance != model.ProvProc || (a.MatchedBy != agentByExe && a.MatchedBy != agentBySHA256) {
		return
	}
	ref := r.lin.kernel.Load()
	if ref == nil || ref.k == nil {
		return
	}
	key := lineageProcKey{pid: a.PID, startTicks: startTicks}
	r.lin.mu.Lock()
	done := r.lin.seen[key]
	if !done {
		if r.lin.seen == nil || len(r.lin.seen) >= lineageSeenMax {
			r.lin.seen = map[lineageProcKey]bool{}
		}
		r.lin.seen[key] = true
	}
	r.lin.mu.Unlock()
	if done {
		return
	}
	root := lineageRoot{pid: a.PID, startTicks: startTicks, name: a.Name, exe: a.Exe, sha: a.ExeSHA256}
	if !r.lineageAddExe(ctx, ref.k, &root) {
		return
	}
	procs, err := r.lineageProcs()
	if err != nil {
		r.log.Warn("identity: agent lineage: listing processes", "err", err)
		return
	}
	r.lineageTagTrees(ctx, ref.k, procs, []lineageRoot{root})
}
