// Package identity resolves who made a connection: it turns the kernel's
// facts about the connecting task (pid, tgid, uid, cgroup id, captured by
// the BPF hook) into a model.Identity by reading /proc and the cgroup
// filesystem, checking each read against the process's start time so a
// reused pid is never mistaken for the original, and marking every
// attribute with its provenance (kernel, proc, claimed, or verified for a
// CI job whose OIDC ID token checked out: workload.go).
package identity

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/interlock/interlock/identity/argvredact"
	"github.com/interlock/interlock/internal/accounts"
	"github.com/interlock/interlock/internal/cgroupfs"
	"github.com/interlock/interlock/model"
)

// ResolverOptions configure a Resolver.
type ResolverOptions struct {
	// ProcRoot is where procfs is mounted; "" means "/proc".
	ProcRoot string
	// Cgroup2Root is the cgroup2 mount point (/sys/fs/cgroup when pure,
	// /sys/fs/cgroup/unified when hybrid). "" means: find it with
	// cgroupfs.Root, but only when ProcRoot is the real /proc;
	// without a root the cgroup id cross-check is skipped.
	Cgroup2Root string
	// Logger receives debug messages for misses and warnings for
	// inconsistencies; nil discards them.
	Logger *slog.Logger
}

// Resolver turns the kernel facts of a connection into an Identity: it
// reads /proc for the process (exe and its SHA-256, cmdline, parent chain,
// ids, cgroup) and the allow-listed CI claims of its environment, guarding
// against pid reuse with the process start time. It is safe for concurrent
// use; its caches are bounded.
type Resolver struct {
	procRoot  string
	log       *slog.Logger
	tickNS    uint64
	cg        *cgroupinfoCache
	hashes    *identHashCache
	names     *accounts.Names
	ancestors *identLRU[uint32, identAncestor]
	chains    *identLRU[identChainKey, identChain]
	procs     *identLRU[identProcKey, identProc]
	// containers are the containers of cgroups seen (container.go).
	containers *identLRU[uint64, containerEntry]
	croots     containerRoots
	// fds are the descriptors kept open for processes seen recently
	// (identity_procfds.go); nil when procRoot is not a procfs.
	fds     *identLRU[uint32, *identFDs]
	mmSlots chan struct{}
	scratch procfsScratchPool
	hostNS  hostNamespaces
	// agents are the configured agents (SetAgents, agent.go).
	agents atomic.Pointer[[]AgentSpec]
	// lin is the kernel-kept agent lineage (lineage.go).
	lin lineageState

	// testHookMidRead, when set, runs between the two reads of the start
	// time (tests use it to simulate pid reuse mid-read).
	testHookMidRead func(tgid uint32)

	// wl verifies the job's ID token (workload.go); nil when no issuer
	// is configured.
	wl atomic.Pointer[workloadConf]
}

// ProcError texts.
const (
	identErrExited    = "process exited before it could be inspected"
	identErrReused    = "pid reused: the process now at this pid started after the connection"
	identErrReusedMid = "pid reused: the process start time changed while it was being inspected"
	identErrNoTGID    = "no process id in the kernel facts"
	identErrInternal  = "internal error while inspecting the process"
)

// At most identMMSlots reads of process memory (cmdline, environ) run at
// once; a resolution waits at most identMMWait for a slot, then goes
// without cmdline and claims.
const (
	identMMSlots = 64
	identMMWait  = 100 * time.Millisecond
)

// identAtClkTck is the auxiliary vector entry holding the clock tick rate.
const identAtClkTck = 17

// NewResolver returns a Resolver; it never fails: what cannot be found
// (such as the cgroup2 mount) only disables the checks that need it.
func NewResolver(opts ResolverOptions) *Resolver {
	r := &Resolver{
		procRoot:  opts.ProcRoot,
		log:       opts.Logger,
		tickNS:    uint64(time.Second) / identClockTicks(),
		hashes:    newIdentHashCache(identHashCacheSize),
		names:     accounts.NewNames(),
		ancestors: newIdentLRU[uint32, identAncestor](identAncestorCacheSize),
		chains:    newIdentLRU[identChainKey, identChain](identAncestorCacheSize),
		procs:     newIdentLRU[identProcKey, identProc](identProcCacheSize),
		mmSlots:   make(chan struct{}, identMMSlots),
		// containers: by cgroup id (container.go)
		containers: newIdentLRU[uint64, containerEntry](containerCacheSize),
		croots:     defaultContainerRoots,
	}
	if r.procRoot == "" {
		r.procRoot = "/proc"
	}
	if len(r.procRoot) > 1 && r.procRoot[len(r.procRoot)-1] == '/' {
		r.procRoot = r.procRoot[:len(r.procRoot)-1]
	}
	if realProcfs(r.procRoot) {
		r.fds = newIdentLRU[uint32, *identFDs](identFDProcs)
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	root := cgroupinfoCleanRoot(opts.Cgroup2Root)
	if root == "" && r.procRoot == "/proc" {
		if mp, err := cgroupfs.Root(); err == nil {
			root = mp
		} else {
			r.log.Warn("identity: no cgroup2 mount found; cgroup id cross-check disabled", "err", err)
		}
	}
	r.cg = newCgroupinfoCache(root)
	return r
}

// identClockTicks returns USER_HZ, the unit of /proc/PID/stat times.
func identClockTicks() uint64 {
	if auxv, err := unix.Auxv(); err == nil {
		for _, kv := range auxv {
			if kv[0] == identAtClkTck && kv[1] > 0 && kv[1] <= 1e9 {
				return uint64(kv[1])
			}
		}
	}
	return 100
}

// Resolve returns the identity for a connection. The kernel facts are always
// kept. Proc and Claimed are filled from /proc when the process is still
// there and is the one that connected; otherwise Proc is nil and ProcError
// says why. Resolve never panics.
//
// Pids are taken as they are in the /proc given (the BPF hook records them
// in the initial pid namespace, so ProcRoot must be a procfs of that
// namespace).
//
// The warm path costs a few dozen syscalls. The slow paths are bounded:
// hashing an executable not seen before (it honours ctx, and waits at most
// identHashWait for another caller hashing it or for one of identHashSlots
// slots) and reading cmdline/environ, which the kernel does under the
// process's mmap lock (at most identMMSlots at once).
func (r *Resolver) Resolve(ctx context.Context, k model.KernelFacts) (id model.Identity) {
	if ctx == nil {
		ctx = context.Background()
	}
	id.Kernel = k
	defer func() {
		if p := recover(); p != nil {
			r.log.Error("identity: panic while resolving", "tgid", k.TGID, "panic", fmt.Sprint(p))
			id = model.Identity{Kernel: k, ProcError: identErrInternal}
		}
	}()
	if k.TGID == 0 {
		id.ProcError = identErrNoTGID
		return id
	}
	s := r.scratch.get()
	defer r.scratch.put(s)
	id.Proc, id.Claimed, id.ProcError = r.inspect(ctx, s, k)
	r.container(&id)
	if id.Proc != nil && id.ProcError == "" {
		id.ProcError = s.degraded
	}
	if id.Proc != nil {
		id.Human = s.login.human()
	}
	r.principals(ctx, &id, s.job)
	return id
}

// identGone reports whether err means the process is no longer there.
func identGone(err error) bool {
	return err == unix.ENOENT || err == unix.ESRCH
}

func (r *Resolver) debugMiss(ctx context.Context, what string, pid uint32, err error) {
	if r.log.Enabled(ctx, slog.LevelDebug) {
		r.log.LogAttrs(ctx, slog.LevelDebug, "identity: "+what,
			slog.Uint64("pid", uint64(pid)), slog.Any("err", err))
	}
}

// reused reports whether a process that started at startTicks cannot be
// the one that connected at k.ConnectBootNS (one tick of tolerance).
func (r *Resolver) reused(startTicks uint64, k model.KernelFacts) bool {
	if k.ConnectBootNS == 0 {
		return false
	}
	return startTicks*r.tickNS > k.ConnectBootNS+r.tickNS
}

// inspect reads the process k.TGID. Every file is read through one
// directory fd: once /proc/TGID is open it stays bound to that process,
// and reads fail (ENOENT/ESRCH) rather than reach a later process that
// reuses the pid; the start time is still read before and after.
func (r *Resolver) inspect(ctx context.Context, s *procfsScratch, k model.KernelFacts) (*model.ProcFacts, map[string]string, string) {
	tgid := k.TGID
	if pf, claims, ok := r.heldProc(ctx, s, k); ok {
		return pf, claims, ""
	}
	dir := r.procRoot + "/" + strconv.FormatUint(uint64(tgid), 10)
	dirfd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		if identGone(err) {
			return nil, nil, identErrExited
		}
		return nil, nil, fmt.Sprintf("opening %s: %v", dir, err)
	}
	// held: the descriptor is kept for the process's next connections.
	held := false
	defer func() {
		if !held {
			unix.Close(dirfd)
		}
	}()

	// Start time, first read.
	data, _, err := procfsReadAt(s, dirfd, "stat", procfsMaxSmallFile)
	if err != nil {
		if identGone(err) {
			return nil, nil, identErrExited
		}
		return nil, nil, fmt.Sprintf("reading %s/stat: %v", dir, err)
	}
	st, ok := procfsParseStat(data)
	if !ok {
		return nil, nil, fmt.Sprintf("reading %s/stat: unparsable", dir)
	}
	if r.reused(st.startTicks, k) || r.startDiffers(st.startTicks, k) {
		return nil, nil, identErrReused
	}
	start, state := st.startTicks, st.state
	procKey := identProcKey{tgid: tgid, startTicks: start, uid: k.UID, gid: k.GID, cgroupID: k.CgroupID}
	if state != 'Z' && state != 'X' {
		if pf, claims, ok := r.cachedProc(ctx, s, procDir{fd: dirfd}, procKey, st.ppid, k); ok {
			held = r.holdFDs(tgid, start, dirfd)
			return pf, claims, ""
		}
	}
	pf := &model.ProcFacts{StartBootNS: start * r.tickNS, PPID: st.ppid}

	// Ids (and the thread count, to tell an exited process from a
	// thread group whose leader alone has exited).
	var sts procfsStatus
	data, _, err = procfsReadAt(s, dirfd, "status", procfsMaxSmallFile)
	switch {
	case err == nil:
		sts = procfsParseStatus(data)
		if !sts.haveUID || !sts.haveGID {
			r.debugMiss(ctx, "status without Uid/Gid", tgid, nil)
		}
	default:
		// an exit shows in the second read of stat
		r.debugMiss(ctx, "reading status", tgid, err)
	}
	if (state == 'Z' || state == 'X') && sts.threads <= 1 {
		return nil, nil, identErrExited
	}
	pf.EUID, pf.EGID = sts.euid, sts.egid
	pf.IDsUnread = !sts.haveUID || !sts.haveGID

	exeKey := r.readExe(ctx, s, dirfd, tgid, k.UID, pf)

	cgd, cgKnown := r.readCgroup(ctx, s, dirfd, k)
	claims, cmdline := r.readMemory(ctx, s, dirfd, tgid, pf)
	// Redacted as soon as it is read (outside the memory-read slot: a
	// long crafted command line costs CPU, not a slot), so that every
	// record, cache entry, export and match sees only this copy.
	pf.Cmdline, pf.CmdlineRedacted = argvredact.Argv(pf.Cmdline)
	s.login = r.readLogin(ctx, s, dirfd, tgid)

	if r.testHookMidRead != nil {
		r.testHookMidRead(tgid)
	}

	// Start time, second read: the same process all along?
	data, _, err = procfsReadAt(s, dirfd, "stat", procfsMaxSmallFile)
	if err != nil {
		if identGone(err) {
			return nil, nil, identErrExited
		}
		return nil, nil, fmt.Sprintf("reading %s/stat: %v", dir, err)
	}
	if st2, ok := procfsParseStat(data); !ok || st2.startTicks != start {
		return nil, nil, identErrReusedMid
	}

	pf.Runner, pf.Program = classifyRunner(pf.Exe, pf.Cmdline)
	s.degraded = r.judgeProgram(dirfd, k, exeKey, pf)
	if pf.ExeTrust == model.ExeVerified && pf.ExeSHA256 == "" && s.hashWhy != "" {
		s.degraded = "the executable was not hashed (" + s.hashWhy + "): hash rules cannot match"
	}
	pf.Parents = r.parentChain(ctx, s, pf.PPID, tgid, time.Now())
	if cgKnown {
		cgd.apply(pf)
	} else {
		r.applyCgroup(ctx, pf, cgd, k)
	}
	pf.User = r.names.User(k.UID)
	pf.Group = r.names.Group(k.GID)
	if r.rememberProc(procKey, pf, claims, s.job, exeKey, cmdline, s.login) {
		held = r.holdFDs(tgid, start, dirfd)
	}
	return pf, claims, ""
}

// readCgroup returns the details of the process's cgroup, and whether
// they are known to be those of the kernel's cgroup id. When that id was
// placed before, its path is known (a cgroup v2 directory cannot be
// renamed and ids are not reused), and /proc/TGID/cgroup is not read.
func (r *Resolver) readCgroup(ctx context.Context, s *procfsScratch, dirfd int, k model.KernelFacts) (*cgroupinfoDetails, bool) {
	if k.CgroupID != 0 && r.cg.root != "" {
		if p, found, _ := r.cg.cachedID(k.CgroupID); found {
			return r.cg.details(p), true
		}
	}
	data, _, err := procfsReadAt(s, dirfd, "cgroup", procfsMaxSmallFile)
	if err != nil {
		r.debugMiss(ctx, "reading cgroup", k.TGID, err)
		return nil, false
	}
	p, ok := cgroupinfoV2Path(data)
	if !ok {
		r.debugMiss(ctx, "no cgroup v2 line in cgroup", k.TGID, nil)
		return nil, false
	}
	return r.cg.detailsBytes(p), false
}

// readMemory reads cmdline and environ (the claims, and into s.job the
// variables that may hold the job's ID token). Both come from the
// process's memory, under its mmap lock, and a process can make these
// reads block: a bounded number of them run at once, so a hostile process
// cannot park every thread of ours. It also returns the raw cmdline it
// parsed (nil when unread), which validates a cached resolution.
func (r *Resolver) readMemory(ctx context.Context, s *procfsScratch, dirfd int, tgid uint32, pf *model.ProcFacts) (claims map[string]string, cmdline []byte) {
	if !identAcquire(ctx, r.mmSlots, identMMWait) {
		if r.log.Enabled(ctx, slog.LevelWarn) {
			r.log.LogAttrs(ctx, slog.LevelWarn, "identity: too many blocked reads of process memory; skipping cmdline and environ",
				slog.Uint64("tgid", uint64(tgid)))
		}
		return nil, nil
	}
	defer func() { <-r.mmSlots }()
	data, trunc, err := procfsReadAt(s, dirfd, "cmdline", procfsCmdlineMaxBytes)
	if err == nil {
		pf.Cmdline = procfsParseCmdline(data, trunc)
		cmdline = bytes.Clone(data)
	} else {
		r.debugMiss(ctx, "reading cmdline", tgid, err)
	}
	data, trunc, err = procfsReadAt(s, dirfd, "environ", procfsEnvironMaxBytes)
	if err != nil {
		r.debugMiss(ctx, "reading environ", tgid, err)
		return nil, cmdline
	}
	var secretVars map[string]struct{}
	if wc := r.wl.Load(); wc != nil {
		secretVars = wc.vars
	}
	claims, s.job = procfsParseEnv(data, trunc, secretVars)
	return claims, cmdline
}

// readExe fills Exe and ExeSHA256. The hash is of /proc/TGID/exe itself,
// the file that runs, even when its path was deleted or replaced. It
// returns the file's key, which is valid when ExeSHA256 was set.
func (r *Resolver) readExe(ctx context.Context, s *procfsScratch, dirfd int, tgid, uid uint32, pf *model.ProcFacts) (key identFileKey) {
	n, err := unix.Readlinkat(dirfd, "exe", s.link[:])
	if err != nil {
		r.debugMiss(ctx, "reading exe link", tgid, err)
		return key
	}
	pf.Exe = procfsString(s.link[:n])
	var st unix.Statx_t
	if err := identStatx(dirfd, "exe", &st); err != nil {
		r.debugMiss(ctx, "stat of exe", tgid, err)
		return key
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		r.debugMiss(ctx, "exe is not a regular file", tgid, nil)
		return key
	}
	key = identFileKeyOf(&st)
	sum, err := r.hashes.sum(ctx, key, uid, func() (int, error) {
		return unix.Openat(dirfd, "exe", unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	})
	if err != nil {
		r.debugMiss(ctx, "hashing exe", tgid, err)
		s.hashWhy = err.Error()
		return key
	}
	pf.ExeSHA256 = sum
	return key
}

// parentChain walks from ppid up to pid 1, nearest first, at most
// identMaxParents entries. Ancestors are not hashed.
//
// The parent itself is always read (its start time proves the pid still
// holds the same process; comm and exe are fresh). What lies above it is
// taken from a chain cache keyed by the parent's pid and start time, valid
// for identChainTTL and only while the parent's ppid is unchanged: a
// grandparent's exec, exit or reparenting shows within that time.
func (r *Resolver) parentChain(ctx context.Context, s *procfsScratch, ppid, self uint32, now time.Time) []model.ProcessRef {
	if ppid == 0 {
		return nil
	}
	first, next, start, ok := r.ancestor(ctx, s, ppid, now, true)
	if !ok {
		return nil
	}
	if ppid == 1 || next == 0 || next == self || next == ppid {
		return []model.ProcessRef{first}
	}
	key := identChainKey{pid: ppid, startTicks: start}
	if c, hit := r.chains.get(key); hit && c.next == next && now.Before(c.expires) {
		out := make([]model.ProcessRef, 0, 1+len(c.refs))
		out = append(out, first)
		return append(out, c.refs...)
	}
	out := make([]model.ProcessRef, 1, 8)
	out[0] = first
	pid := next
	for len(out) < identMaxParents {
		ref, nxt, _, ok := r.ancestor(ctx, s, pid, now, false)
		if !ok {
			break
		}
		out = append(out, ref)
		if pid == 1 || nxt == 0 || nxt == self || nxt == pid || identInChain(out, nxt) {
			break
		}
		pid = nxt
	}
	r.chains.add(key, identChain{next: next, refs: slices.Clone(out[1:]), expires: now.Add(identChainTTL)})
	return out
}

func identInChain(refs []model.ProcessRef, pid uint32) bool {
	for i := range refs {
		if refs[i].PID == pid {
			return true
		}
	}
	return false
}

// ancestor reads one ancestor: stat (always: it proves the pid still
// holds the same process, and gives comm and ppid), the exe link (always:
// cheap, and exec changes it), and the uid from status, cached for
// identAncestorTTL under the same pid, start time and comm. With hold
// (the parent, read for every connection) it reads through the
// descriptors kept for pid, and keeps them if there are none yet.
func (r *Resolver) ancestor(ctx context.Context, s *procfsScratch, pid uint32, now time.Time, hold bool) (ref model.ProcessRef, ppid uint32, startTicks uint64, ok bool) {
	if hold && r.fds != nil {
		if h, kept := r.fds.get(pid); kept && h.acquire() {
			ref, ppid, startTicks, ok = r.ancestorIn(ctx, s, procDir{fd: h.dir, held: h}, pid, now)
			h.release()
			// Bound to the process they were opened for: a failed read
			// means it has exited.
			if ok && startTicks == h.startTicks {
				return ref, ppid, startTicks, ok
			}
			r.dropFDs(pid, h)
		}
	}
	dir := r.procRoot + "/" + strconv.FormatUint(uint64(pid), 10)
	dirfd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		r.debugMiss(ctx, "opening ancestor", pid, err)
		return model.ProcessRef{PID: pid}, 0, 0, false
	}
	ref, ppid, startTicks, ok = r.ancestorIn(ctx, s, procDir{fd: dirfd}, pid, now)
	if !ok || !hold || !r.holdFDs(pid, startTicks, dirfd) {
		unix.Close(dirfd)
	}
	return ref, ppid, startTicks, ok
}

// ancestorIn is ancestor's reading of the process at d.
func (r *Resolver) ancestorIn(ctx context.Context, s *procfsScratch, d procDir, pid uint32, now time.Time) (ref model.ProcessRef, ppid uint32, startTicks uint64, ok bool) {
	ref.PID = pid
	data, _, err := d.read(s, "stat", procfsMaxSmallFile)
	if err != nil {
		r.debugMiss(ctx, "reading ancestor stat", pid, err)
		return ref, 0, 0, false
	}
	st, parsed := procfsParseStat(data)
	if !parsed {
		r.debugMiss(ctx, "unparsable ancestor stat", pid, nil)
		return ref, 0, 0, false
	}
	ref.StartBootNS = st.startTicks * r.tickNS
	cached, hit := r.ancestors.get(pid)
	hit = hit && cached.startTicks == st.startTicks && cached.comm == string(st.comm) && now.Before(cached.expires)
	if hit {
		ref.Comm, ref.UID = cached.comm, cached.uid
	} else {
		cached = identAncestor{startTicks: st.startTicks, comm: procfsString(st.comm), expires: now.Add(identAncestorTTL)}
		ref.Comm = cached.comm
	}
	changed := false
	// uidRead: ref.UID is the process's (a cached uid was read too). An
	// unread one is not cached: 0 would pass for root.
	uidRead := hit
	if n, err := unix.Readlinkat(d.fd, "exe", s.link[:]); err == nil {
		if string(s.link[:n]) != cached.exe {
			cached.exe = procfsString(s.link[:n])
			changed = true
		}
		ref.Exe = cached.exe
	} else if cached.exe != "" {
		cached.exe = ""
		changed = true
	}
	if !hit {
		data, _, err := d.read(s, "status", procfsMaxSmallFile)
		if err == nil {
			if sts := procfsParseStatus(data); sts.haveUID {
				ref.UID = sts.ruid
				cached.uid = sts.ruid
				uidRead = true
			}
		} else {
			r.debugMiss(ctx, "reading ancestor status", pid, err)
		}
	}
	ref.UIDUnread = !uidRead
	if uidRead && (!hit || changed) {
		r.ancestors.add(pid, cached)
	}
	return ref, st.ppid, st.startTicks, true
}

// applyCgroup sets the cgroup path and what it implies. The path must be
// the one whose inode is the kernel's cgroup id: /proc shows where the
// process is now (it may have moved since it connected) and, inside a
// cgroup namespace, a relative view.
func (r *Resolver) applyCgroup(ctx context.Context, pf *model.ProcFacts, d *cgroupinfoDetails, k model.KernelFacts) {
	final := d
	switch {
	case r.cg.root == "" || k.CgroupID == 0:
	case d != nil && r.cg.matches(d, k.CgroupID):
		r.cg.ids.add(k.CgroupID, cgroupinfoIDEntry{path: d.path})
	default:
		p, found, walked, err := r.cg.pathForID(ctx, k.CgroupID)
		if found {
			final = r.cg.details(p)
		} else {
			procPath := ""
			if d != nil {
				procPath = d.path
			}
			lvl := slog.LevelDebug
			if walked {
				lvl = slog.LevelWarn
			}
			if r.log.Enabled(ctx, lvl) {
				r.log.LogAttrs(ctx, lvl, "identity: kernel cgroup id not found under the cgroup2 root; keeping the /proc path",
					slog.Uint64("tgid", uint64(k.TGID)), slog.Uint64("cgroup_id", k.CgroupID),
					slog.String("proc_path", procPath), slog.String("cgroup2_root", r.cg.root), slog.Any("err", err))
			}
		}
	}
	if final != nil {
		final.apply(pf)
	}
}
