package identity

import (
	"context"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/interlock/interlock/identity/argvredact"
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
	// read only when an agent needs them); shaWhy, cmdWhy say why one
	// looked for is not there.
	shaRead, cmdRead bool
	shaWhy, cmdWhy   string
	// claimedExe: the process's executable link is what it claims (it
	// runs in another user or mount namespace).
	claimedExe bool
}

// agent fills id.Agent with the first configured agent found in the
// process or its ancestors, nearest first. It matches the executable
// (the /proc/PID/exe link, which renaming comm or argv[0] does not
// change), its hash, or the command line; only the last is claimed.
//
// A fact an agent needs that could not be had (an ancestor gone or
// reused before it was read, an executable left unhashed by the limits,
// no slot to read a command line, a parent chain that stops short of
// pid 1) does not count as "not that agent": id.AgentError then says
// why, and policy takes the agent as unknown. The look goes on, so that
// the auditor sees the nearest agent found past it.
//
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
	if self.sha == "" {
		self.shaWhy = "executable not hashed"
	}
	if self.cmdline == "" {
		self.cmdWhy = "command line not read"
	}
	var why string
	if a := r.matchAgent(ctx, *specs, &self, id.Kernel.UID, &why); a != nil {
		id.Agent, id.AgentError = a, why
		r.lineageRegister(ctx, a, pf.StartBootNS/r.tickNS)
		return
	}
	for _, p := range pf.Parents {
		c := agentCandidate{pid: p.PID, startTicks: p.StartBootNS / r.tickNS, exe: p.Exe}
		if a := r.matchAgent(ctx, *specs, &c, id.Kernel.UID, &why); a != nil {
			if a.MatchedBy != agentByCmdline {
				if r.ancestorNSClaimed(ctx, &c); c.claimedExe {
					a.Provenance = model.ProvClaimed
				}
			}
			id.Agent, id.AgentError = a, why
			r.lineageRegister(ctx, a, c.startTicks)
			return
		}
	}
	// The ancestry shows none: the lineage may, for a process orphaned
	// from an agent. What the ancestry could not establish stays said
	// even when the lineage names an agent: an unread ancestor could be
	// a nearer one.
	r.lineageAgent(id, *specs)
	if why == "" {
		why = chainShort(pf)
	}
	if why != "" {
		id.AgentError = strings.TrimPrefix(id.AgentError+"; "+why, "; ")
	}
}

// chainShort says why pf's parent chain does not reach pid 1 (or
// kthreadd, whose parent is 0), where an ancestor it lacks could be an
// agent; "" when it does.
func chainShort(pf *model.ProcFacts) string {
	n := len(pf.Parents)
	switch {
	case n == 0 && pf.PPID != 0:
		return "the parent " + strconv.FormatUint(uint64(pf.PPID), 10) + " could not be read"
	case n > 0 && pf.Parents[n-1].PID > 2:
		return "the parent chain stops at pid " + strconv.FormatUint(uint64(pf.Parents[n-1].PID), 10) + ", short of pid 1"
	}
	return ""
}

// matchAgent returns the first of specs that c is, or nil. The hash of
// an ancestor's executable is charged to payer (the connecting uid), like
// the process's own. When a spec needs a fact of c that could not be had,
// *why says so (the first such, for the auditor).
func (r *Resolver) matchAgent(ctx context.Context, specs []AgentSpec, c *agentCandidate, payer uint32, why *string) *model.Agent {
	unknown := func(what string) {
		// pid 1 is started by the kernel, not by any launch a
		// process controls: what of it cannot be read (some
		// sandboxes hide its executable even from root) leaves no
		// doubt about an agent.
		if *why == "" && c.pid != 1 {
			*why = "pid " + strconv.FormatUint(uint64(c.pid), 10) + ": " + what
		}
	}
	for i := range specs {
		s := &specs[i]
		if len(s.Exes) > 0 || len(s.SHA256) > 0 {
			if c.exe == "" && len(s.Exes) > 0 {
				unknown("executable link not read")
			}
			exeOK := len(s.Exes) == 0 || (c.exe != "" && anyGlob(s.Exes, c.exe))
			if exeOK && len(s.SHA256) > 0 {
				r.agentHash(ctx, c, payer)
				if c.sha != "" && slices.Contains(s.SHA256, c.sha) {
					return c.agent(s.Name, agentBySHA256)
				}
				if c.sha == "" {
					unknown(c.shaWhy)
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
			if c.cmdWhy != "" {
				unknown(c.cmdWhy)
			}
		}
	}
	return nil
}

// ancestorNSClaimed checks an ancestor matched by its executable: in a
// user or mount namespace other than the host's, the process chose what
// its exe link says (a bind mount over an agent's path), so the match is
// only claimed. Namespaces that cannot be read count as another's.
func (r *Resolver) ancestorNSClaimed(ctx context.Context, c *agentCandidate) {
	s := r.scratch.get()
	defer r.scratch.put(s)
	dirfd, why := r.agentOpen(ctx, s, c)
	if why != "" {
		c.claimedExe = true
		return
	}
	defer unix.Close(dirfd)
	user, mnt, err := nsInodes(dirfd)
	hostUser, hostMnt, herr := r.hostNS.get(r.procRoot)
	if err != nil || herr != nil || user != hostUser || mnt != hostMnt {
		c.claimedExe = true
	}
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
// When it is not, it returns -1 and why.
func (r *Resolver) agentOpen(ctx context.Context, s *procfsScratch, c *agentCandidate) (int, string) {
	dirfd, err := unix.Open(r.procRoot+"/"+strconv.FormatUint(uint64(c.pid), 10), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		r.debugMiss(ctx, "opening ancestor for agents", c.pid, err)
		return -1, "gone before it was read (" + err.Error() + ")"
	}
	data, _, err := procfsReadAt(s, dirfd, "stat", procfsMaxSmallFile)
	if st, ok := procfsParseStat(data); err != nil || !ok || st.startTicks != c.startTicks {
		unix.Close(dirfd)
		return -1, "gone before it was read"
	}
	return dirfd, ""
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
	if c.exe == "" {
		c.shaWhy = "executable link not read"
		return
	}
	s := r.scratch.get()
	defer r.scratch.put(s)
	dirfd, why := r.agentOpen(ctx, s, c)
	if dirfd < 0 {
		c.shaWhy = why
		return
	}
	defer unix.Close(dirfd)
	n, err := unix.Readlinkat(dirfd, "exe", s.link[:])
	if err != nil || procfsString(s.link[:n]) != c.exe {
		c.shaWhy = "executable changed since the parent chain was read"
		return
	}
	var st unix.Statx_t
	if err := identStatx(dirfd, "exe", &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		c.shaWhy = "executable not a regular file that could be hashed"
		return
	}
	sum, err := r.hashes.sum(ctx, identFileKeyOf(&st), payer, func() (int, error) {
		return unix.Openat(dirfd, "exe", unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	})
	if err != nil {
		r.debugMiss(ctx, "hashing ancestor exe for agents", c.pid, err)
		c.shaWhy = "executable not hashed: " + err.Error()
		return
	}
	if !agentStillSame(s, dirfd, c.startTicks) {
		c.shaWhy = "gone while it was hashed"
		return
	}
	c.sha = sum
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
	dirfd, why := r.agentOpen(ctx, s, c)
	if dirfd < 0 {
		c.cmdWhy = why
		return
	}
	defer unix.Close(dirfd)
	if !identAcquire(ctx, r.mmSlots, identMMWait) {
		c.cmdWhy = "command line not read: no slot free in time"
		return
	}
	data, trunc, err := procfsReadAt(s, dirfd, "cmdline", procfsCmdlineMaxBytes)
	<-r.mmSlots
	if err != nil {
		r.debugMiss(ctx, "reading ancestor cmdline for agents", c.pid, err)
		c.cmdWhy = "command line not read: " + err.Error()
		return
	}
	// Globs see the command line redacted, as the process's own is
	// matched and journaled: a match an auditor can check on the record.
	argv, _ := argvredact.Argv(procfsParseCmdline(data, trunc))
	line := strings.Join(argv, " ")
	if !agentStillSame(s, dirfd, c.startTicks) {
		c.cmdWhy = "gone while its command line was read"
		return
	}
	c.cmdline = line
}
