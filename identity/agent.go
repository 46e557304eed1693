package identity

import (
	"context"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/interlock/interlock/internal/glob"
	"github.com/interlock/interlock/model"
)

// AgentSpec is one agent of the config's identity.agents, as the
// resolver takes it (identity does not import config).
type AgentSpec struct {
	Name string
	// Exes are globs over the executable's path, SHA256 the hashes it may
	// have (lowercase hex); both given, both must hold.
	Exes, SHA256 []string
	// Cmdlines are globs over the command line joined with spaces.
	Cmdlines []string
}

// Agent matches.
const (
	agentByExe     = "exe"
	agentBySHA256  = "sha256"
	agentByCmdline = "cmdline"
	agentByLineage = "lineage"
)

// SetAgents sets the agents recognised from now on (at start and on each
// config reload). With agent lineage kept (SetLineage), the agents'
// running processes are found and tagged again.
func (r *Resolver) SetAgents(specs []AgentSpec) {
	cp := make([]AgentSpec, len(specs))
	for i, s := range specs {
		cp[i] = AgentSpec{Name: s.Name, Exes: slices.Clone(s.Exes), Cmdlines: slices.Clone(s.Cmdlines)}
		for _, h := range s.SHA256 {
			cp[i].SHA256 = append(cp[i].SHA256, strings.ToLower(h))
		}
	}
	r.agents.Store(&cp)
	r.lineageScan(context.Background())
}

// agentCandidate is one process of the line the agents are looked for in:
// the process itself, then its ancestors, nearest first.
type agentCandidate struct {
	pid        uint32
	startTicks uint64 // 0 for the process itself: its facts are read already
	exe, sha   string
	cmdline    string
	// shaRead, cmdRead: sha and cmdline were looked for (ancestors' are
	// read only when an agent needs them).
	shaRead, cmdRead bool
	// claimedExe: the process's executable link is what it claims (it
	// runs in another user or mount namespace).
	claimedExe bool
}

// agent fills id.Agent with the first configured agent found in the
// process or its ancestors, nearest first. It matches the executable
// (the /proc/PID/exe link, which renaming comm or argv[0] does not
// change), its hash, or the command line; only the last is claimed.
// When the ancestry shows none, the kernel-kept lineage may (lineage.go):
// the process was orphaned from an agent.
func (r *Resolver) agent(ctx context.Context, id *model.Identity) {
	specs := r.agents.Load()
	pf := id.Proc
	if specs == nil || len(*specs) == 0 || pf == nil {
		return
	}
	self := agentCandidate{
		pid: id.Kernel.TGID, exe: pf.Exe, sha: pf.ExeSHA256, shaRead: true,
		cmdline: strings.Join(pf.Cmdline, " "), cmdRead: true,
		claimedExe: pf.ExeTrust == model.ExeClaimed,
	}
	if a := r.matchAgent(ctx, *specs, &self, id.Kernel.UID); a != nil {
		id.Agent = a
		r.lineageRegister(ctx, a, pf.StartBootNS/r.tickNS)
		return
	}
	for _, p := range pf.Parents {
		c := agentCandidate{pid: p.PID, startTicks: p.StartBootNS / r.tickNS, exe: p.Exe}
		if a := r.matchAgent(ctx, *specs, &c, id.Kernel.UID); a != nil {
			id.Agent = a
			r.lineageRegister(ctx, a, c.startTicks)
			return
		}
	}
	r.lineageAgent(id, *specs)
}

// matchAgent returns the first of specs that c is, or nil. The hash of
// an ancestor's executable is charged to payer (the connecting uid), like
// the process's own.
func (r *Resolver) matchAgent(ctx context.Context, specs []AgentSpec, c *agentCandidate, payer uint32) *model.Agent {
	for i := range specs {
		s := &specs[i]
		if len(s.Exes) > 0 || len(s.SHA256) > 0 {
			exeOK := len(s.Exes) == 0 || (c.exe != "" && anyGlob(s.Exes, c.exe))
			if exeOK && len(s.SHA256) > 0 {
				r.agentHash(ctx, c, payer)
				if c.sha != "" && slices.Contains(s.SHA256, c.sha) {
					return c.agent(s.Name, agentBySHA256)
				}
			} else if exeOK {
				return c.agent(s.Name, agentByExe)
			}
		}
		if len(s.Cmdlines) > 0 {
			r.agentCmdline(ctx, c)
			if c.cmdline != "" && anyGlob(s.Cmdlines, c.cmdline) {
				return c.agent(s.Name, agentByCmdline)
			}
		}
	}
	return nil
}

func (c *agentCandidate) agent(name, by string) *model.Agent {
	a := &model.Agent{Name: name, PID: c.pid, Exe: c.exe, ExeSHA256: c.sha, MatchedBy: by, Provenance: model.ProvProc}
	if by == agentByCmdline || c.claimedExe {
		a.Provenance = model.ProvClaimed
	}
	return a
}

func anyGlob(globs []string, s string) bool {
	for _, g := range globs {
		if glob.Match(g, s) {
			return true
		}
	}
	return false
}

// agentOpen opens the ancestor's /proc directory and checks that it is
// still the process read in the parent chain (its start time). The
// descriptor stays bound to that process: reads through it fail once it
// has exited, whatever takes its pid.
func (r *Resolver) agentOpen(ctx context.Context, s *procfsScratch, c *agentCandidate) (int, bool) {
	dirfd, err := unix.Open(r.procRoot+"/"+strconv.FormatUint(uint64(c.pid), 10), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		r.debugMiss(ctx, "opening ancestor for agents", c.pid, err)
		return -1, false
	}
	data, _, err := procfsReadAt(s, dirfd, "stat", procfsMaxSmallFile)
	if st, ok := procfsParseStat(data); err != nil || !ok || st.startTicks != c.startTicks {
		unix.Close(dirfd)
		return -1, false
	}
	return dirfd, true
}

// agentStillSame reads the start time again after a read through dirfd.
func agentStillSame(s *procfsScratch, dirfd int, startTicks uint64) bool {
	data, _, err := procfsReadAt(s, dirfd, "stat", procfsMaxSmallFile)
	st, ok := procfsParseStat(data)
	return err == nil && ok && st.startTicks == startTicks
}

// agentHash hashes an ancestor's executable, once, through the resolver's
// hash cache and its limits.
func (r *Resolver) agentHash(ctx context.Context, c *agentCandidate, payer uint32) {
	if c.shaRead {
		return
	}
	c.shaRead = true
	s := r.scratch.get()
	defer r.scratch.put(s)
	dirfd, ok := r.agentOpen(ctx, s, c)
	if !ok {
		return
	}
	defer unix.Close(dirfd)
	n, err := unix.Readlinkat(dirfd, "exe", s.link[:])
	if err != nil || procfsString(s.link[:n]) != c.exe {
		return // exec'd since the chain was read
	}
	var st unix.Statx_t
	if err := identStatx(dirfd, "exe", &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return
	}
	sum, err := r.hashes.sum(ctx, identFileKeyOf(&st), payer, func() (int, error) {
		return unix.Openat(dirfd, "exe", unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	})
	if err != nil {
		r.debugMiss(ctx, "hashing ancestor exe for agents", c.pid, err)
		return
	}
	if agentStillSame(s, dirfd, c.startTicks) {
		c.sha = sum
	}
}

// agentCmdline reads an ancestor's command line, once, in one of the
// bounded slots for reads of process memory.
func (r *Resolver) agentCmdline(ctx context.Context, c *agentCandidate) {
	if c.cmdRead {
		return
	}
	c.cmdRead = true
	s := r.scratch.get()
	defer r.scratch.put(s)
	dirfd, ok := r.agentOpen(ctx, s, c)
	if !ok {
		return
	}
	defer unix.Close(dirfd)
	if !identAcquire(ctx, r.mmSlots, identMMWait) {
		return
	}
	data, trunc, err := procfsReadAt(s, dirfd, "cmdline", procfsCmdlineMaxBytes)
	<-r.mmSlots
	if err != nil {
		r.debugMiss(ctx, "reading ancestor cmdline for agents", c.pid, err)
		return
	}
	line := strings.Join(procfsParseCmdline(data, trunc), " ")
	if agentStillSame(s, dirfd, c.startTicks) {
		c.cmdline = line
	}
}
