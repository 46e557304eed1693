package identity

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// lineageRoot is a running agent process: the root of the tree it tags.
type lineageRoot struct {
	pid        uint32
	startTicks uint64
	name       string
	exe, sha   string
	// tag is filled by lineageAddExe.
	tag LineageTag
}

// lineageProc is one process of a /proc listing.
type lineageProc struct {
	ppid       uint32
	startTicks uint64
}

// lineageScan registers the executables of the configured agents that
// are running and tags them and their descendants, so an agent started
// before interlock (or before a reload that names it) is covered too.
// It runs at SetLineage and at each SetAgents. Agents are recognised by
// their executable or its hash only: a command line is claimed.
func (r *Resolver) lineageScan(ctx context.Context) {
	ref := r.lin.kernel.Load()
	specs := r.agents.Load()
	if ref == nil || ref.k == nil || specs == nil {
		return
	}
	r.lin.mu.Lock()
	for i := range *specs {
		r.lin.idOf((*specs)[i].Name)
	}
	// A reload may have dropped an agent or changed its globs and pins:
	// an executable stays registered only if it is still its agent's.
	exes := map[LineageExe]lineageExeInfo{}
	for e, info := range r.lin.exes {
		if s := specByName(*specs, r.lin.names[info.agent]); s != nil && specHolds(s, info.path, info.sha) {
			exes[e] = info
		}
	}
	r.lin.exes = exes
	r.lin.seen = nil
	r.lin.mu.Unlock()
	r.lineageAddLiteral(*specs)
	hostUser, hostMnt, nsErr := r.hostNS.get(r.procRoot)
	procs, err := r.lineageProcs()
	if err != nil {
		r.log.Warn("identity: agent lineage: listing processes", "err", err)
		return
	}
	var roots []lineageRoot
	for pid, p := range procs {
		dirfd, err := unix.Open(r.procRoot+"/"+strconv.FormatUint(uint64(pid), 10), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			continue
		}
		root, ok := r.lineageScanOne(ctx, dirfd, pid, p, *specs, nsErr == nil, hostUser, hostMnt)
		unix.Close(dirfd)
		if ok && r.lineageAddExe(ctx, ref.k, &root) {
			roots = append(roots, root)
		}
	}
	if err := r.lineagePushExes(ref.k); err != nil {
		r.log.Warn("identity: agent lineage: registering the agents' executables", "err", err)
	}
	r.lineageTagTrees(ctx, ref.k, procs, roots)
	if len(roots) > 0 {
		r.log.Info("identity: agent lineage: tagged running agents and their descendants", "agents", len(roots))
	}
}

// lineageScanOne says whether the process at dirfd is a configured agent
// by its executable. A process in another user or mount namespace is
// skipped: its executable link is what it claims, and registering that
// file would make whoever runs it an agent.
func (r *Resolver) lineageScanOne(ctx context.Context, dirfd int, pid uint32, p lineageProc, specs []AgentSpec, nsKnown bool, hostUser, hostMnt uint64) (lineageRoot, bool) {
	var link [unix.PathMax]byte
	n, err := unix.Readlinkat(dirfd, "exe", link[:])
	if err != nil || n == 0 {
		return lineageRoot{}, false // a kernel thread, or gone
	}
	if !nsKnown {
		return lineageRoot{}, false
	}
	if u, m, err := nsInodes(dirfd); err != nil || u != hostUser || m != hostMnt {
		return lineageRoot{}, false
	}
	var st unix.Stat_t
	if err := unix.Fstat(dirfd, &st); err != nil {
		return lineageRoot{}, false
	}
	c := agentCandidate{pid: pid, startTicks: p.startTicks, exe: string(link[:n]), cmdRead: true}
	var why string
	a := r.matchAgent(ctx, specs, &c, st.Uid, &why)
	if a == nil || a.MatchedBy == agentByCmdline {
		return lineageRoot{}, false
	}
	return lineageRoot{pid: pid, startTicks: p.startTicks, name: a.Name, exe: a.Exe, sha: a.ExeSHA256}, true
}

// lineageAddExe registers root's executable (the file its exe link
// names, checked against its path and start time) under its agent's id
// and fills root.tag.
func (r *Resolver) lineageAddExe(ctx context.Context, k LineageKernel, root *lineageRoot) bool {
	s := r.scratch.get()
	defer r.scratch.put(s)
	dirfd, why := r.agentOpen(ctx, s, &agentCandidate{pid: root.pid, startTicks: root.startTicks})
	if why != "" {
		return false
	}
	defer unix.Close(dirfd)
	n, err := unix.Readlinkat(dirfd, "exe", s.link[:])
	if err != nil || procfsString(s.link[:n]) != root.exe {
		return false // exec'd since it was matched
	}
	var st unix.Statx_t
	if err := identStatx(dirfd, "exe", &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return false
	}
	if !agentStillSame(s, dirfd, root.startTicks) {
		return false
	}
	exe := LineageExe{Dev: unix.Mkdev(st.Dev_major, st.Dev_minor), Ino: st.Ino}
	r.lin.mu.Lock()
	id := r.lin.idOf(root.name)
	if r.lin.exes == nil {
		r.lin.exes = map[LineageExe]lineageExeInfo{}
	}
	r.lin.exes[exe] = lineageExeInfo{agent: id, path: root.exe, sha: root.sha}
	r.lin.mu.Unlock()
	if err := r.lineagePushExes(k); err != nil {
		r.log.Warn("identity: agent lineage: registering an agent's executable", "agent", root.name, "exe", root.exe, "err", err)
		return false
	}
	root.tag = LineageTag{AgentID: id, RootTGID: root.pid, RootStartNS: root.startTicks * r.tickNS, Exe: exe}
	return true
}

// lineageProcs lists the processes by pid.
func (r *Resolver) lineageProcs() (map[uint32]lineageProc, error) {
	ents, err := os.ReadDir(r.procRoot)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", r.procRoot, err)
	}
	out := make(map[uint32]lineageProc, len(ents))
	for _, e := range ents {
		pid, err := strconv.ParseUint(e.Name(), 10, 32)
		if err != nil {
			continue
		}
		data, err := os.ReadFile(r.procRoot + "/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		if st, ok := procfsParseStat(data); ok {
			out[uint32(pid)] = lineageProc{ppid: st.ppid, startTicks: st.startTicks}
		}
	}
	return out, nil
}

// lineageTagTrees tags each root and its descendants with the tag of the
// nearest root above them. It walks the tree twice: a process forked
// before its parent was tagged, but after the listing, is found by the
// second listing (one forked after its parent was tagged inherits the tag
// from the kernel).
func (r *Resolver) lineageTagTrees(ctx context.Context, k LineageKernel, procs map[uint32]lineageProc, roots []lineageRoot) {
	if len(roots) == 0 {
		return
	}
	for pass := 0; pass < 2; pass++ {
		if pass == 1 {
			var err error
			if procs, err = r.lineageProcs(); err != nil {
				return
			}
		}
		children := map[uint32][]uint32{}
		for pid, p := range procs {
			children[p.ppid] = append(children[p.ppid], pid)
		}
		isRoot := map[uint32]bool{}
		for _, rt := range roots {
			isRoot[rt.pid] = true
		}
		for _, rt := range roots {
			if p, ok := procs[rt.pid]; !ok || p.startTicks != rt.startTicks {
				continue
			}
			queue := []uint32{rt.pid}
			for len(queue) > 0 && ctx.Err() == nil {
				pid := queue[0]
				queue = queue[1:]
				if pid != rt.pid && isRoot[pid] {
					continue // the nearest agent tags its own tree
				}
				if !r.lineageTag(k, pid, procs[pid].startTicks, rt.tag) && pid == rt.pid {
					break
				}
				queue = append(queue, children[pid]...)
			}
		}
	}
}

// lineageTag tags one process through a pidfd checked against its start.
func (r *Resolver) lineageTag(k LineageKernel, pid uint32, startTicks uint64, t LineageTag) bool {
	fd, err := r.pidfdOf(pid, startTicks)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	if err := k.Tag(fd, t); err != nil {
		r.log.Warn("identity: agent lineage: tagging a process", "pid", pid, "err", err)
		return false
	}
	return true
}

// lineagePushExes makes the kernel's registered executables the
// resolver's.
func (r *Resolver) lineagePushExes(k LineageKernel) error {
	r.lin.mu.Lock()
	all := make(map[LineageExe]uint32, len(r.lin.exes))
	for e, info := range r.lin.exes {
		all[e] = info.agent
	}
	r.lin.mu.Unlock()
	return k.SetExes(all)
}

// lineageAddLiteral registers the executables that an agent's exes name
// by a literal path (no wildcard) and that no hash is pinned for, so an
// agent started later is tagged at its exec even before anything of it
// connects. An executable under a glob, or pinned by hash, is registered
// once seen running (the scan, or a connect).
func (r *Resolver) lineageAddLiteral(specs []AgentSpec) {
	for i := range specs {
		s := &specs[i]
		if len(s.SHA256) > 0 {
			continue
		}
		for _, path := range s.Exes {
			if strings.ContainsAny(path, "*?[\\") || !filepath.IsAbs(path) {
				continue
			}
			var st unix.Stat_t
			if err := unix.Stat(path, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
				continue
			}
			// The exe link of a process shows the resolved path.
			real, err := filepath.EvalSymlinks(path)
			if err != nil || !anyGlob(s.Exes, real) {
				continue
			}
			r.lin.mu.Lock()
			if r.lin.exes == nil {
				r.lin.exes = map[LineageExe]lineageExeInfo{}
			}
			r.lin.exes[LineageExe{Dev: st.Dev, Ino: st.Ino}] = lineageExeInfo{agent: r.lin.idOf(s.Name), path: real}
			r.lin.mu.Unlock()
		}
	}
}

func specByName(specs []AgentSpec, name string) *AgentSpec {
	for i := range specs {
		if name != "" && specs[i].Name == name {
			return &specs[i]
		}
	}
	return nil
}

// specHolds says whether an executable seen at path with hash sha is
// still s's by its executable (globs and pins).
func specHolds(s *AgentSpec, path, sha string) bool {
	if len(s.Exes) == 0 && len(s.SHA256) == 0 {
		return false
	}
	if len(s.Exes) > 0 && !anyGlob(s.Exes, path) {
		return false
	}
	return len(s.SHA256) == 0 || (sha != "" && slices.Contains(s.SHA256, sha))
}
