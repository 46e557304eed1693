package redirector

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"

	"github.com/interlock/interlock/internal/cgroupfs"
	"golang.org/x/sys/unix"
)

// Placement closes the window in which a configured cgroup exists but is
// not attached yet. Polling for it left ~200 ms in which a job could be
// moved in and connect directly.
//
// For each configured cgroup, the parent (or the nearest ancestor that
// exists) is marked CG_WATCHED in the guard's class map, and watched with
// inotify. The guard refuses connects to targets from any cgroup below a
// watched one that has no class of its own yet, so a cgroup is refused
// from the instant it is made until it is placed: attached if it is the
// configured one (its own programs then send its connects to the
// listener), marked CG_FREE otherwise (and with it its descendants).
// Siblings of a configured cgroup are refused for the time it takes to
// place them after they appear (microseconds to a few milliseconds).

type placer struct {
	r    *Redirector
	f    *os.File
	mu   sync.Mutex
	wds  map[int32]string // inotify watch -> cgroup path
	dirs map[string]int32
	// expected are the configured cgroup paths.
	expected map[string]bool
	// free are the cgroups placed CG_FREE, by path, so that their entry
	// goes when they are removed (the class map is bounded).
	free map[string]uint64
}

// Expect makes sure a configured cgroup is attached from the moment it
// appears (now, if it exists), and again whenever it is made anew.
//
// A path whose last element is a glob (IsPattern) expects every child of
// its parent whose name matches: each is attached as it appears, and
// detached when it is removed.
func (r *Redirector) Expect(cgroupPath string) error {
	if _, err := cgroupfs.Dir(r.root, cgroupPath); err != nil {
		return err
	}
	if cgroupPath == "/" {
		return r.Attach(cgroupPath)
	}
	r.mu.Lock()
	if r.placer == nil {
		p, err := newPlacer(r)
		if err != nil {
			r.mu.Unlock()
			return err
		}
		r.placer = p
	}
	p := r.placer
	r.mu.Unlock()
	return p.expect(cgroupPath)
}

func newPlacer(r *Redirector) (*placer, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("watch for new cgroups (inotify): %w", err)
	}
	p := &placer{
		r: r, f: os.NewFile(uintptr(fd), "inotify"),
		wds: map[int32]string{}, dirs: map[string]int32{}, expected: map[string]bool{}, free: map[string]uint64{},
	}
	go p.loop()
	return p, nil
}

func (p *placer) close() { p.f.Close() }

func (p *placer) expect(cg string) error {
	p.mu.Lock()
	p.expected[cg] = true
	p.mu.Unlock()
	// Watch the nearest existing ancestor, then place what is below it.
	anc := path.Dir(cg)
	for anc != "/" {
		if _, err := os.Stat(filepath.Join(p.r.root, anc)); err == nil {
			break
		}
		anc = path.Dir(anc)
	}
	return p.watch(anc)
}

// IsPattern says whether a configured cgroup path is a glob over the
// children of its parent.
func IsPattern(cgroupPath string) bool {
	return strings.ContainsAny(path.Base(cgroupPath), "*?[")
}

// wanted says whether cg is a configured cgroup or a child matching a
// configured pattern (matched is true for the latter).
func (p *placer) wanted(cg string) (want, matched bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.expected[cg] {
		return true, false
	}
	for e := range p.expected {
		if IsPattern(e) {
			if ok, _ := path.Match(e, cg); ok {
				return true, true
			}
		}
	}
	return false, false
}

// unexpect forgets a configured cgroup or pattern.
func (p *placer) unexpect(cg string) {
	p.mu.Lock()
	delete(p.expected, cg)
	p.mu.Unlock()
}

// isPrefix says whether cg is a proper ancestor of an expected cgroup.
func (p *placer) isPrefix(cg string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for e := range p.expected {
		if strings.HasPrefix(e, strings.TrimSuffix(cg, "/")+"/") {
			return true
		}
	}
	return false
}

// watch starts watching cg for new children, places the children it has,
// and only then marks it CG_WATCHED, so that existing siblings are never
// refused.
func (p *placer) watch(cg string) error {
	dir := filepath.Join(p.r.root, cg)
	p.mu.Lock()
	_, watching := p.dirs[cg]
	p.mu.Unlock()
	if !watching {
		wd, err := unix.InotifyAddWatch(int(p.f.Fd()), dir, unix.IN_CREATE|unix.IN_DELETE|unix.IN_ONLYDIR)
		if err != nil {
			return fmt.Errorf("watch cgroup %s for new children: %w", cg, err)
		}
		p.mu.Lock()
		p.wds[int32(wd)], p.dirs[cg] = cg, int32(wd)
		p.mu.Unlock()
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("list cgroup %s: %w", cg, err)
	}
	for _, e := range entries {
		if e.IsDir() {
			p.place(path.Join(cg, e.Name()))
		}
	}
	id, err := cgroupfs.ID(dir)
	if err != nil {
		return err
	}
	p.r.mu.Lock()
	_, intercepted := p.r.attached[cg]
	p.r.mu.Unlock()
	if intercepted {
		// Its own programs and class cover everything below it.
		return nil
	}
	return p.r.progs.setClass(id, cgWatched)
}

// place gives a cgroup that appeared below a watched one its class.
func (p *placer) place(cg string) {
	want, matched := p.wanted(cg)
	switch {
	case want:
		p.r.mu.Lock()
		a, had := p.r.attached[cg]
		p.r.mu.Unlock()
		if id, err := cgroupfs.ID(filepath.Join(p.r.root, cg)); had && err == nil && a.cgroupID == id {
			break
		}
		if err := p.r.Attach(cg); err == nil {
			p.r.log.Info("cgroup appeared; intercepting it", "cgroup", cg, "by_pattern", matched)
		} else if !errors.Is(err, fs.ErrNotExist) {
			p.r.log.Error("attach a configured cgroup that appeared; it stays refused", "cgroup", cg, "err", err)
		}
		if p.isPrefix(cg) {
			_ = p.watch(cg)
		}
	case p.isPrefix(cg):
		if err := p.watch(cg); err != nil && !errors.Is(err, fs.ErrNotExist) {
			p.r.log.Warn("watch a cgroup on the way to a configured one", "cgroup", cg, "err", err)
		}
	default:
		id, err := cgroupfs.ID(filepath.Join(p.r.root, cg))
		if err != nil {
			return
		}
		if err := p.r.progs.setClass(id, cgFree); err != nil {
			p.r.log.Warn("place a new cgroup; it stays refused", "cgroup", cg, "err", err)
			return
		}
		p.mu.Lock()
		p.free[cg] = id
		p.mu.Unlock()
	}
}

func (p *placer) loop() {
	buf := make([]byte, 64<<10)
	for {
		n, err := p.f.Read(buf)
		if err != nil {
			return
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			wd := int32(binary.NativeEndian.Uint32(buf[off:]))
			mask := binary.NativeEndian.Uint32(buf[off+4:])
			nameLen := int(binary.NativeEndian.Uint32(buf[off+12:]))
			name := strings.TrimRight(string(buf[off+unix.SizeofInotifyEvent:off+unix.SizeofInotifyEvent+nameLen]), "\x00")
			off += unix.SizeofInotifyEvent + nameLen
			switch {
			case mask&unix.IN_Q_OVERFLOW != 0:
				p.rescan()
			case mask&unix.IN_IGNORED != 0:
				p.mu.Lock()
				if cg, ok := p.wds[wd]; ok {
					delete(p.wds, wd)
					delete(p.dirs, cg)
				}
				p.mu.Unlock()
			case mask&unix.IN_DELETE != 0 && mask&unix.IN_ISDIR != 0:
				p.mu.Lock()
				cg := path.Join(p.wds[wd], name)
				id, ok := p.free[cg]
				delete(p.free, cg)
				p.mu.Unlock()
				if ok {
					p.r.progs.clearClass(id)
				}
				// A container's scope matched by a pattern goes
				// for good: its links (which hold the dead
				// cgroup) and pins go with it.
				if want, matched := p.wanted(cg); want && matched {
					if err := p.r.Detach(cg); err == nil {
						p.r.log.Debug("a cgroup matched by a pattern was removed; detached", "cgroup", cg)
					}
				}
			case mask&unix.IN_CREATE != 0 && mask&unix.IN_ISDIR != 0:
				p.mu.Lock()
				parent, ok := p.wds[wd]
				p.mu.Unlock()
				if ok {
					p.place(path.Join(parent, name))
				}
			}
		}
	}
}

// rescan places everything below the watched cgroups after events were
// lost.
func (p *placer) rescan() {
	p.mu.Lock()
	var cgs []string
	for cg := range p.dirs {
		cgs = append(cgs, cg)
	}
	p.mu.Unlock()
	for _, cg := range cgs {
		_ = p.watch(cg)
	}
}
