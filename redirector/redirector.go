// Package redirector is the only part of interlock that knows the BPF
// side: it loads, attaches and pins the BPF programs, keeps the targets map
// in step with the config, owns the listeners the programs redirect to, and
// turns an accepted connection into (conn, Origin): the original
// destination and, through package identity, the identity of the process
// that connected. Cgroup paths are joined by internal/cgroupfs.
package redirector

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/interlock/interlock/identity"
	"github.com/interlock/interlock/internal/cgroupfs"
	"github.com/interlock/interlock/model"
)

// Options configures a Redirector.
type Options struct {
	// MapPin pins the BPF maps there (a daemon); "" keeps them private to
	// this process and the links that use them (an `interlock run`).
	MapPin string
	// LinkPin is the directory under which attachments are pinned, one
	// subdirectory per cgroup. "" leaves links unpinned: they go away with
	// this process, and with them the interception.
	LinkPin string
	// FailOpen lets intercepted connects through to the real target when
	// the listener is gone. The default refuses them.
	FailOpen bool
	// Gateway serves containers' namespaces through a listener on their
	// network's gateway address (gateway.go) instead of one inside each.
	Gateway bool
	// ContainerGateway is that address; invalid takes each namespace's
	// default route's gateway.
	ContainerGateway netip.Addr
	// Cgroup2Root is the cgroup v2 mount point; detected when "".
	Cgroup2Root string
	Hosts       HostResolver
	Identities  *identity.Resolver
	Logger      *slog.Logger
}

// Redirector owns one loaded set of programs and its listeners.
type Redirector struct {
	opts  Options
	root  string
	progs *programs
	// lin is the agent lineage's programs (lineage.go); nil when they
	// could not be attached.
	lin  *lineage
	diag *sockDiag
	log  *slog.Logger

	listeners []net.Listener
	// hostCfg is where the host listeners are; a container's namespace
	// gets listeners on the same addresses and, when free, ports.
	hostCfg redirectConfig
	// ns serves containers' network namespaces (netns.go).
	ns *nsServer
	// taken counts connect records consumed by Origin; with the hooks'
	// rekeyed count it gives how many wait in the origins map.
	taken atomic.Uint64

	mu       sync.Mutex
	targets  map[uint32]resolvedTarget
	attached map[string]*attachment
	guard    *attachment
	placer   *placer
}

// New loads the programs and starts listening. Nothing is intercepted
// until SetTargets and Attach are called.
func New(ctx context.Context, opts Options) (*Redirector, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Hosts == nil {
		opts.Hosts = net.DefaultResolver
	}
	if opts.Identities == nil {
		return nil, errors.New("redirector: an identity resolver is required")
	}
	root := opts.Cgroup2Root
	if root == "" {
		var err error
		if root, err = cgroupfs.Root(); err != nil {
			return nil, err
		}
	}
	progs, err := loadPrograms(opts.MapPin, opts.Logger)
	if err != nil {
		return nil, err
	}
	r := &Redirector{
		opts:     opts,
		root:     root,
		progs:    progs,
		diag:     newSockDiag(8),
		log:      opts.Logger,
		targets:  map[uint32]resolvedTarget{},
		attached: map[string]*attachment{},
	}
	if err := r.listen(ctx); err != nil {
		r.Close()
		return nil, err
	}
	if err := r.attachGuard(); err != nil {
		r.Close()
		return nil, err
	}
	// Without lineage interlock still runs: an agent is then found by
	// ancestry only, and a process without one in its ancestry has an
	// unknown agent (identity.AgentError), which opens nothing.
	if lin, err := loadLineage(); err != nil {
		r.log.Warn("agent lineage is not kept: an agent's orphaned tools cannot be told from other processes, so rules about agents treat every process without an agent in its ancestry as unknown", "err", err)
		opts.Identities.SetLineage(ctx, nil, "agent lineage is not kept: "+err.Error())
	} else {
		r.lin = lin
		opts.Identities.SetLineage(ctx, lin, "")
	}
	return r, nil
}

// attachGuard attaches the guard programs at the cgroup root: they refuse
// connects to targets that the intercepted cgroups' own programs could not
// see (sockets made outside an intercepted cgroup, cgroups not placed
// yet). The daemon pins them like its other links.
func (r *Redirector) attachGuard() error {
	// Only a daemon (whose maps are pinned) pins its guard: an `interlock
	// run`'s guard covers the run's own cgroup and goes with the run.
	pin := ""
	if r.opts.LinkPin != "" && r.opts.MapPin != "" {
		pin = filepath.Join(r.opts.LinkPin, "guard")
	}
	a, err := r.progs.attachSet(r.root, pin, r.progs.guardProgs())
	if err != nil {
		return fmt.Errorf("attach the guard programs at the cgroup root %s: %w", r.root, err)
	}
	r.guard = a
	return nil
}

// listen opens the loopback listeners, marks them so the hooks can tell
// them from an impostor on the same port, and tells the hooks where they
// are.
func (r *Redirector) listen(ctx context.Context) error {
	mark, err := newMark()
	if err != nil {
		return err
	}
	lc := markedListenConfig(mark)
	ln4, err := lc.Listen(ctx, "tcp4", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listen on 127.0.0.1: %w", err)
	}
	r.listeners = append(r.listeners, ln4)
	cfg := redirectConfig{Listen4: ln4.Addr().(*net.TCPAddr).AddrPort(), FailOpen: r.opts.FailOpen, ListenerMark: mark}
	cfg.NetnsCookie = netnsCookie(ln4, r.log)
	// Prefer the same port on ::1 so both are easy to spot in ss output.
	ln6, err := lc.Listen(ctx, "tcp6", fmt.Sprintf("[::1]:%d", cfg.Listen4.Port()))
	if err != nil {
		ln6, err = lc.Listen(ctx, "tcp6", "[::1]:0")
	}
	if err != nil {
		// Without ::1, IPv6 targets are refused by the hook (no v6
		// listener configured): closed, not open.
		r.log.Warn("no IPv6 loopback listener; connects to IPv6 targets will be refused", "err", err)
	} else {
		r.listeners = append(r.listeners, ln6)
		ap := ln6.Addr().(*net.TCPAddr).AddrPort()
		cfg.Listen6 = netip.AddrPortFrom(ap.Addr().WithZone(""), ap.Port())
	}
	selfPath, err := cgroupfs.Self()
	if err != nil {
		return err
	}
	selfDir, err := cgroupfs.Dir(r.root, selfPath)
	if err != nil {
		return err
	}
	if cfg.SelfCgroup, err = cgroupfs.ID(selfDir); err != nil {
		return err
	}
	r.hostCfg = cfg
	return r.progs.setConfig(cfg)
}

// newMark is a random SO_MARK for a set of listeners (never 0, which
// every unmarked socket has).
func newMark() (uint32, error) {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return 0, fmt.Errorf("choose a listener mark: %w", err)
	}
	return binary.LittleEndian.Uint32(b[:]) | 1, nil
}

// markedListenConfig makes listeners carrying mark.
func markedListenConfig(mark uint32) net.ListenConfig {
	// No TCP keepalive on the accepted connections: their peer is a
	// process on this host's loopback, whose kernel closes them when it
	// dies and answers probes while it lives, so probes could never tell
	// anything; arming them costs four setsockopt calls per connect.
	return net.ListenConfig{KeepAlive: -1, Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(mark))
		})
		if err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("set SO_MARK on the listener: %w", serr)
		}
		return nil
	}}
}

// netnsCookie is the network namespace of a socket; the hooks refuse
// intercepted connects from other namespaces, whose loopback interlock
// does not listen on. Kernels before 5.14 cannot tell (0 disables the
// check).
func netnsCookie(ln net.Listener, log *slog.Logger) uint64 {
	raw, err := ln.(*net.TCPListener).SyscallConn()
	if err != nil {
		return 0
	}
	var cookie uint64
	_ = raw.Control(func(fd uintptr) {
		c, err := unix.GetsockoptUint64(int(fd), unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
		if err != nil {
			log.Debug("SO_NETNS_COOKIE unavailable", "err", err)
			return
		}
		cookie = c
	})
	return cookie
}

// Listeners returns the sockets intercepted connections arrive on. The
// caller accepts on them and calls Origin for each connection.
func (r *Redirector) Listeners() []net.Listener { return r.listeners }

// Cgroup2Root is the cgroup v2 mount point in use.
func (r *Redirector) Cgroup2Root() string { return r.root }

// SetTargets resolves the targets and makes the kernel intercept exactly
// their addresses. If a name does not resolve, the other targets are still
// applied and the error says which one failed; addresses the failed target
// had before stay intercepted, since dropping them would let its
// connections through uninspected.
func (r *Redirector) SetTargets(ctx context.Context, targets []model.Target) error {
	resolved, resolveErr := resolveTargets(ctx, r.opts.Hosts, targets)
	r.mu.Lock()
	defer r.mu.Unlock()
	if resolveErr != nil {
		got := map[uint32]bool{}
		for _, t := range resolved {
			got[t.id] = true
		}
		for _, t := range targets {
			id := targetID(t.Name)
			if prev, ok := r.targets[id]; ok && !got[id] {
				resolved = append(resolved, prev)
			}
		}
	}
	if err := syncTargets(r.progs.objs.Targets, resolved); err != nil {
		return errors.Join(resolveErr, err)
	}
	r.targets = make(map[uint32]resolvedTarget, len(resolved))
	for _, t := range resolved {
		r.targets[t.id] = t
		r.log.Debug("intercepting target", "name", t.Name, "addresses", t.addrs)
	}
	return resolveErr
}

// TargetAddrs reports the addresses currently intercepted per target.
func (r *Redirector) TargetAddrs() map[string][]netip.AddrPort {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string][]netip.AddrPort, len(r.targets))
	for _, t := range r.targets {
		out[t.Name] = append([]netip.AddrPort(nil), t.addrs...)
	}
	return out
}

// Attach intercepts the connects of every process in a cgroup (a path
// relative to the cgroup2 root) and its descendants.
func (r *Redirector) Attach(cgroupPath string) error {
	dir, err := cgroupfs.Dir(r.root, cgroupPath)
	if err != nil {
		return err
	}
	id, err := cgroupfs.ID(dir)
	if err != nil {
		return fmt.Errorf("intercept cgroup %s: %w (create it, or fix intercept.cgroups)", cgroupPath, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if a, ok := r.attached[cgroupPath]; ok {
		if a.cgroupID == 0 || a.cgroupID == id {
			return nil
		}
		// Removed and made anew: the kernel dropped the old links.
		r.progs.clearClass(a.cgroupID)
		_ = a.detach()
		delete(r.attached, cgroupPath)
	}
	pin := ""
	if r.opts.LinkPin != "" {
		pin = PinnedCgroupDir(r.opts.LinkPin, id)
	}
	a, err := r.progs.attach(dir, pin)
	if err != nil {
		return err
	}
	a.cgroupID = id
	r.attached[cgroupPath] = a
	if err := r.progs.setClass(id, cgIntercepted); err != nil {
		r.log.Warn("the guard will not know this cgroup is intercepted", "cgroup", cgroupPath, "err", err)
	}
	return nil
}

// Stale lists attached cgroups that were removed, or removed and made
// again, since they were attached: the kernel dropped the programs with
// the old cgroup.
func (r *Redirector) Stale() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for path, a := range r.attached {
		if a.cgroupID == 0 {
			continue
		}
		if id, err := cgroupfs.ID(a.cgroupDir); err != nil || id != a.cgroupID {
			out = append(out, path)
		}
	}
	return out
}

// Detach stops intercepting a cgroup, removing pinned links too. For a
// pattern, it stops expecting it and detaches every cgroup it matched.
func (r *Redirector) Detach(cgroupPath string) error {
	if IsPattern(cgroupPath) {
		r.mu.Lock()
		p := r.placer
		var matched []string
		for a := range r.attached {
			if ok, _ := path.Match(cgroupPath, a); ok {
				matched = append(matched, a)
			}
		}
		r.mu.Unlock()
		if p != nil {
			p.unexpect(cgroupPath)
		}
		var errs []error
		for _, a := range matched {
			errs = append(errs, r.Detach(a))
		}
		return errors.Join(errs...)
	}
	r.mu.Lock()
	a, ok := r.attached[cgroupPath]
	delete(r.attached, cgroupPath)
	r.mu.Unlock()
	if !ok {
		return fmt.Errorf("cgroup %s is not intercepted", cgroupPath)
	}
	if a.cgroupID != 0 {
		r.progs.clearClass(a.cgroupID)
	}
	return a.detach()
}

// Attached lists the intercepted cgroup paths.
func (r *Redirector) Attached() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.attached))
	for p := range r.attached {
		out = append(out, p)
	}
	return out
}

// Stats returns the BPF hooks' counters.
func (r *Redirector) Stats() (Stats, error) { return r.progs.stats() }

// Gauges returns the hooks' counters and the maps' fill, for metrics.
func (r *Redirector) Gauges() map[string]float64 {
	out := map[string]float64{}
	if st, err := r.progs.stats(); err == nil {
		out["redirected"] = float64(st.Redirected)
		out["refused_no_listener"] = float64(st.RefusedNoListener)
		out["passed_fail_open"] = float64(st.PassedFailOpen)
		out["refused_other_netns"] = float64(st.RefusedOtherNetns)
		out["pending_map_full"] = float64(st.PendingMapFull)
		out["origins_map_full"] = float64(st.OriginsMapFull)
		out["refused_not_tcp"] = float64(st.RefusedNotTCP)
		out["refused_foreign_socket"] = float64(st.RefusedForeignSocket)
		out["refused_unplaced_cgroup"] = float64(st.RefusedUnplacedCgroup)
		out["stale_records"] = float64(st.StaleRecords)
		out["netns_asked"] = float64(st.NetnsAsked)
		// Records re-keyed but not taken: connections not accepted yet,
		// or ones the LRU will age out.
		if taken := r.taken.Load(); st.Rekeyed >= taken {
			out["origins_waiting"] = float64(st.Rekeyed - taken)
		}
	}
	r.mu.Lock()
	n := 0
	for _, t := range r.targets {
		n += len(t.addrs)
	}
	r.mu.Unlock()
	out["targets_map_entries"] = float64(n)
	out["netns_served"] = float64(len(r.ServedNamespaces()))
	out["targets_map_capacity"] = float64(r.progs.objs.Targets.MaxEntries())
	return out
}

// CloseListeners stops listening, in the host's namespace and in every
// container's, and stops serving new namespaces.
func (r *Redirector) CloseListeners() error {
	var errs []error
	for _, ln := range r.listeners {
		if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	r.mu.Lock()
	s := r.ns
	r.mu.Unlock()
	if s != nil {
		s.stop()
	}
	return errors.Join(errs...)
}

// Close stops listening (from then on the hooks refuse intercepted
// connects, since the sockmap empties when the sockets close) and releases
// this process's handles. Pinned links stay attached; unpinned ones go.
func (r *Redirector) Close() error {
	errs := []error{r.CloseListeners()}
	if r.placer != nil {
		r.placer.close()
	}
	r.mu.Lock()
	for _, a := range r.attached {
		a.close()
	}
	r.attached = map[string]*attachment{}
	if r.guard != nil {
		r.guard.close()
	}
	r.mu.Unlock()
	r.diag.close()
	if r.lin != nil {
		r.opts.Identities.SetLineage(context.Background(), nil, "")
		errs = append(errs, r.lin.close())
	}
	if r.progs != nil {
		errs = append(errs, r.progs.close())
	}
	return errors.Join(errs...)
}
