package identity

import (
	"context"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/interlock/interlock/model"
)

// A process that connects again and again (a pool, a load test) is read,
// while its resolution is cached (identity_procs.go), through descriptors
// kept open from an earlier one: its /proc directory, and its stat, status
// and cmdline read with pread, which procfs answers afresh. That is the
// same reads and checks as through fresh descriptors, without the open and
// the close of each file and of the directory: 8 syscalls fewer for every
// connection after the first.
//
// The descriptors are bound to the process they were opened for, not to
// its pid: once it has exited its files fail to read (ESRCH), whatever
// process has the pid now, and the entry is dropped. So they are kept only
// on a real procfs (a test's fake /proc is plain files, which stay
// readable) and for at most identFDProcs processes, the most recent.
const identFDProcs = 64

// identFDs are the descriptors kept open for one process.
type identFDs struct {
	// startTicks is the process's start time when they were opened.
	startTicks                 uint64
	dir, stat, status, cmdline int

	// refs counts the cache's reference and one per reader; the last to
	// let go closes the descriptors, so a reader never reads a number
	// reused by another file, and nobody waits for a reader (a reader
	// evicts others while it reads: the parent's set is kept during the
	// child's resolution).
	refs atomic.Int32
}

// acquire takes a reference for a reader, unless the descriptors are
// closed or about to be.
func (h *identFDs) acquire() bool {
	for {
		n := h.refs.Load()
		if n <= 0 {
			return false
		}
		if h.refs.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// release lets go of a reference; the last one closes the descriptors.
func (h *identFDs) release() {
	if h.refs.Add(-1) == 0 {
		for _, fd := range []int{h.dir, h.stat, h.status, h.cmdline} {
			unix.Close(fd)
		}
	}
}

// procDir is the /proc directory of the process being resolved: its
// descriptor, and the files kept open for it (nil: each file is opened).
type procDir struct {
	fd   int
	held *identFDs
}

// read reads one file of the process, through its kept descriptor if any.
func (d procDir) read(s *procfsScratch, name string, limit int) ([]byte, bool, error) {
	if h := d.held; h != nil {
		switch name {
		case "stat":
			return procfsReadFD(s, h.stat, limit, true)
		case "status":
			return procfsReadFD(s, h.status, limit, true)
		case "cmdline":
			return procfsReadFD(s, h.cmdline, limit, true)
		}
	}
	return procfsReadAt(s, d.fd, name, limit)
}

// realProcfs says whether root is a procfs mount.
func realProcfs(root string) bool {
	var st unix.Statfs_t
	return unix.Statfs(root, &st) == nil && st.Type == unix.PROC_SUPER_MAGIC
}

// heldProc is cachedProc through the descriptors kept for k.TGID, if any.
// It reports false for anything it cannot answer from them; the caller
// then resolves the usual way, which makes its own judgement of a reused
// pid or an exited process.
func (r *Resolver) heldProc(ctx context.Context, s *procfsScratch, k model.KernelFacts) (*model.ProcFacts, map[string]string, bool) {
	if r.fds == nil {
		return nil, nil, false
	}
	h, ok := r.fds.get(k.TGID)
	if !ok || !h.acquire() {
		return nil, nil, false
	}
	pf, claims, hit, gone := r.heldProcIn(ctx, s, h, k)
	h.release()
	if gone {
		r.dropFDs(k.TGID, h)
	}
	return pf, claims, hit
}

func (r *Resolver) heldProcIn(ctx context.Context, s *procfsScratch, h *identFDs, k model.KernelFacts) (pf *model.ProcFacts, claims map[string]string, hit, gone bool) {
	data, _, err := procfsReadFD(s, h.stat, procfsMaxSmallFile, true)
	if err != nil {
		// The process they were opened for has exited.
		return nil, nil, false, true
	}
	st, ok := procfsParseStat(data)
	if !ok || st.startTicks != h.startTicks {
		return nil, nil, false, true
	}
	if st.state == 'Z' || st.state == 'X' || r.reused(st.startTicks, k) || r.startDiffers(st.startTicks, k) {
		return nil, nil, false, false
	}
	key := identProcKey{tgid: k.TGID, startTicks: st.startTicks, uid: k.UID, gid: k.GID, cgroupID: k.CgroupID}
	pf, claims, hit = r.cachedProc(ctx, s, procDir{fd: h.dir, held: h}, key, st.ppid, k)
	return pf, claims, hit, false
}

// holdFDs keeps dirfd (the process's /proc directory, whose start time
// was read as startTicks) open for the next connections of tgid, with its
// stat, status and cmdline. It reports whether it took dirfd over; if not,
// the caller still owns it.
func (r *Resolver) holdFDs(tgid uint32, startTicks uint64, dirfd int) bool {
	if r.fds == nil {
		return false
	}
	if h, ok := r.fds.get(tgid); ok && h.startTicks == startTicks {
		return false // kept already
	}
	h := &identFDs{startTicks: startTicks, dir: dirfd, stat: -1, status: -1, cmdline: -1}
	h.refs.Store(1) // the cache's
	for _, f := range []struct {
		name string
		fd   *int
	}{{"stat", &h.stat}, {"status", &h.status}, {"cmdline", &h.cmdline}} {
		fd, err := unix.Openat(dirfd, f.name, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
		if err != nil {
			for _, o := range []int{h.stat, h.status, h.cmdline} {
				if o >= 0 {
					unix.Close(o)
				}
			}
			return false
		}
		*f.fd = fd
	}
	if old, ok := r.fds.add(tgid, h); ok {
		old.release()
	}
	return true
}

// dropFDs forgets and closes h, the descriptors kept for tgid, unless
// another set has replaced them.
func (r *Resolver) dropFDs(tgid uint32, h *identFDs) {
	if old, ok := r.fds.removeIf(tgid, func(v *identFDs) bool { return v == h }); ok {
		old.release()
	}
}

// Close closes the descriptors the resolver keeps open. It may still be
// used afterwards; it then keeps new ones until the next Close.
func (r *Resolver) Close() error {
	if r.fds != nil {
		for _, h := range r.fds.drain() {
			h.release()
		}
	}
	return nil
}
