package redirector

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/interlock/interlock/bpf"
	"github.com/interlock/interlock/internal/cgroupfs"
)

// Serving containers' network namespaces.
//
// A container's process connects in its own network namespace, where the
// host's 127.0.0.1 listener does not exist. The connect hook finds the
// namespace's own listener in netns_listeners by the socket's netns
// cookie; when there is none it refuses the connect (EPERM) and reports
// the namespace on the netns_events ring. nsServer reads the ring, enters
// the namespace of the process that connected on a locked OS thread,
// opens marked listeners on its loopback, and publishes them in the map:
// the process's next connect goes through interlock. The namespace is
// found from the pid through a pidfd (PIDFD_GET_NET_NAMESPACE), and a
// probe socket made inside it must carry the reported cookie, so a pid
// reused by another process in another namespace is never served in its
// place.
//
// The listeners hold the namespace alive, so interlock watches the
// processes in it (a pidfd, then the next process found in /proc) and
// closes them when the last one is gone: nothing stays open for an ended
// container. A namespace kept by a bind mount and entered again later is
// served again at its first connect.

// nsServer serves the namespaces the hooks ask for.
type nsServer struct {
	r      *Redirector
	rd     *ringbuf.Reader
	accept func(net.Listener)

	mu     sync.Mutex
	served map[uint64]*nsEntry
	closed bool
	done   chan struct{}
	// execWatch reports namespaces at their first exec (netnswatch.go); nil
	// without BTF.
	execWatch *netnsWatch
	// failed are the namespaces that could not be served, and when: one
	// is tried again at most every second (its connects keep asking),
	// and said once at warning level.
	failed map[uint64]time.Time
	// gateways are the gateway listeners by address (gateway mode).
	gateways map[netip.Addr]*gwListener
}

// nsEntry is interlock's presence in one container namespace.
type nsEntry struct {
	cookie uint64
	// dev and ino identify the namespace in /proc/PID/ns/net.
	dev, ino  uint64
	listeners []net.Listener
	diag      *sockDiag
	// gateway is the gateway listener's address the namespace is served
	// through in gateway mode (gateway.go); invalid otherwise.
	gateway netip.Addr
	// watch is a pidfd of a process in the namespace; closing it ends
	// the watcher.
	watch *os.File
}

// ServeNamespaces starts serving containers' network namespaces; accept
// is called with each listener opened in one, and must accept on it until
// it is closed. Without a call, connects from other namespaces stay
// refused.
func (r *Redirector) ServeNamespaces(accept func(net.Listener)) error {
	if r.hostCfg.NetnsCookie == 0 {
		return errors.New("this kernel does not tell network namespaces apart (SO_NETNS_COOKIE): connects from containers stay refused")
	}
	rd, err := ringbuf.NewReader(r.progs.objs.NetnsEvents)
	if err != nil {
		return fmt.Errorf("read the BPF netns_events ring: %w", err)
	}
	s := &nsServer{r: r, rd: rd, accept: accept, served: map[uint64]*nsEntry{}, done: make(chan struct{}), failed: map[uint64]time.Time{},
		gateways: map[netip.Addr]*gwListener{}}
	if s.execWatch, err = loadNetnsWatch(r.progs); err != nil {
		r.log.Warn("containers' namespaces are served at their first connect to a target, which is refused", "err", err)
	}
	r.mu.Lock()
	r.ns = s
	r.mu.Unlock()
	go s.loop()
	return nil
}

func (s *nsServer) loop() {
	defer close(s.done)
	for {
		rec, err := s.rd.Read()
		if err != nil {
			if !errors.Is(err, os.ErrClosed) {
				s.r.log.Error("reading the netns_events ring failed: containers' namespaces are no longer served", "err", err)
			}
			return
		}
		if len(rec.RawSample) < 24 {
			continue
		}
		var ev bpf.InterlockNetnsEvent
		ev.NetnsCookie = binary.NativeEndian.Uint64(rec.RawSample[0:8])
		ev.CgroupId = binary.NativeEndian.Uint64(rec.RawSample[8:16])
		ev.Tgid = binary.NativeEndian.Uint32(rec.RawSample[16:20])
		ev.Pid = binary.NativeEndian.Uint32(rec.RawSample[20:24])
		last, seen := s.failed[ev.NetnsCookie]
		if seen && time.Since(last) < nsRetry {
			continue
		}
		if err := s.serve(ev); err != nil {
			lvl := slog.LevelWarn
			if seen {
				lvl = slog.LevelDebug
			}
			s.r.log.Log(context.Background(), lvl, "cannot serve a network namespace: its connects to targets are refused",
				"netns_cookie", ev.NetnsCookie, "pid", ev.Tgid, "cgroup_id", ev.CgroupId, "err", err)
			if len(s.failed) >= maxNetnsFailed {
				for c, t := range s.failed {
					if time.Since(t) > time.Minute {
						delete(s.failed, c)
					}
				}
			}
			if len(s.failed) < maxNetnsFailed || seen {
				s.failed[ev.NetnsCookie] = time.Now()
			}
		} else {
			delete(s.failed, ev.NetnsCookie)
		}
	}
}

// serve opens listeners in the namespace of the event's process.
func (s *nsServer) serve(ev bpf.InterlockNetnsEvent) error {
	s.mu.Lock()
	_, ok := s.served[ev.NetnsCookie]
	closed, n := s.closed, len(s.served)
	s.mu.Unlock()
	if ok || closed {
		return nil
	}
	if n >= maxServed {
		// A job that makes namespaces by the thousand (unshare -Urn
		// needs no privilege) must not run the daemon out of
		// descriptors: beyond the bound, namespaces stay refused.
		return fmt.Errorf("%d namespaces are served already, the most interlock serves at once", n)
	}
	pidfd, nsfd, err := s.findNetns(ev)
	if err != nil {
		return err
	}
	defer unix.Close(nsfd)
	e := &nsEntry{cookie: ev.NetnsCookie, watch: pidfd}
	var st unix.Stat_t
	if err := unix.Fstat(nsfd, &st); err != nil {
		pidfd.Close()
		return fmt.Errorf("stat the namespace of pid %d: %w", ev.Tgid, err)
	}
	e.dev, e.ino = st.Dev, st.Ino
	mark, err := newMark()
	if err != nil {
		pidfd.Close()
		return err
	}
	var nl bpf.InterlockNsListener
	if s.r.opts.Gateway {
		err = s.serveGateway(e, nsfd, ev.NetnsCookie, &nl)
	} else {
		err = inNetns(nsfd, func() error { return s.listenHere(e, ev.NetnsCookie, mark, &nl) })
		nl.Mark = mark
	}
	fail := func() {
		e.closeSockets()
		s.releaseGateway(e.gateway, e.cookie)
		pidfd.Close()
	}
	if err != nil {
		fail()
		return err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		fail()
		return nil
	}
	if err := s.r.progs.objs.NetnsListeners.Put(ev.NetnsCookie, nl); err != nil {
		s.mu.Unlock()
		fail()
		return fmt.Errorf("write BPF netns_listeners map: %w", err)
	}
	s.served[ev.NetnsCookie] = e
	s.mu.Unlock()
	for _, ln := range e.listeners {
		s.accept(ln)
	}
	s.r.log.Info("serving a container's network namespace", "netns_cookie", ev.NetnsCookie, "netns_inode", e.ino,
		"pid", ev.Tgid, "listener", netip.AddrPortFrom(netip.AddrFrom4([4]byte(binary.NativeEndian.AppendUint32(nil, nl.ListenIp4))), nl.ListenPort4).String())
	go s.watch(e)
	return nil
}

// findNetns opens the namespace the event reports, and a pidfd of a
// process in it. The process that connected has often exited by now (a
// client that gave up at the refusal), so the other processes of its
// cgroup are tried too; each namespace must carry the event's cookie.
func (s *nsServer) findNetns(ev bpf.InterlockNetnsEvent) (*os.File, int, error) {
	try := func(pid int) (*os.File, int, error) {
		pidfd, nsfd, err := openNetns(pid)
		if err != nil {
			return nil, -1, err
		}
		got, err := netnsCookieOf(nsfd)
		if err == nil && got == ev.NetnsCookie {
			return pidfd, nsfd, nil
		}
		unix.Close(nsfd)
		pidfd.Close()
		if err == nil {
			err = fmt.Errorf("pid %d is in network namespace %d, not %d", pid, got, ev.NetnsCookie)
		}
		return nil, -1, err
	}
	pidfd, nsfd, first := try(int(ev.Tgid))
	if first == nil {
		return pidfd, nsfd, nil
	}
	for _, dir := range s.cgroupDirs(ev.CgroupId) {
		pids, _ := cgroupfs.Procs(dir)
		for i, pid := range pids {
			if i == maxNetnsCandidates {
				break
			}
			if pidfd, nsfd, err := try(pid); err == nil {
				return pidfd, nsfd, nil
			}
		}
	}
	return nil, -1, fmt.Errorf("no process of cgroup %d is left in the namespace: %w", ev.CgroupId, first)
}

// maxServed bounds the namespaces served at once (each holds up to four
// descriptors).
const maxServed = 1024

// nsRetry is how soon a namespace that could not be served is tried
// again; maxNetnsFailed bounds how many such are remembered.
const (
	nsRetry        = time.Second
	maxNetnsFailed = 4096
)

// maxNetnsCandidates bounds how many of a cgroup's processes are entered
// to find a namespace.
const maxNetnsCandidates = 64

// cgroupDirs finds the cgroup with this id below the intercepted ones
// (where every event comes from).
func (s *nsServer) cgroupDirs(id uint64) []string {
	s.r.mu.Lock()
	var roots []string
	for _, a := range s.r.attached {
		roots = append(roots, a.cgroupDir)
	}
	s.r.mu.Unlock()
	for _, root := range roots {
		p, found, err := cgroupfs.FindID(context.Background(), root, id, 10000, 32)
		if err == nil && found {
			return []string{filepath.Join(root, p)}
		}
	}
	return nil
}

// netnsCookieOf is the cookie of the network namespace nsfd, read from a
// probe socket made inside it.
func netnsCookieOf(nsfd int) (uint64, error) {
	var cookie uint64
	err := inNetns(nsfd, func() (err error) {
		cookie, err = cookieHere()
		return err
	})
	return cookie, err
}

// cookieHere is the cookie of the calling thread's network namespace.
func cookieHere() (uint64, error) {
	probe, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("probe socket in the namespace: %w", err)
	}
	defer unix.Close(probe)
	cookie, err := unix.GetsockoptUint64(probe, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
	if err != nil {
		return 0, fmt.Errorf("SO_NETNS_COOKIE in the namespace: %w", err)
	}
	return cookie, nil
}

// listenHere runs on a thread inside the namespace: it checks that this
// is the namespace the hook reported, and opens the listeners and the
// sock_diag socket there.
func (s *nsServer) listenHere(e *nsEntry, cookie uint64, mark uint32, nl *bpf.InterlockNsListener) error {
	if err := checkCookieHere(cookie); err != nil {
		return err
	}
	ctx := context.Background()
	lc := markedListenConfig(mark)
	host := s.r.hostCfg
	ln4, err := lc.Listen(ctx, "tcp4", fmt.Sprintf("127.0.0.1:%d", host.Listen4.Port()))
	if err != nil {
		ln4, err = lc.Listen(ctx, "tcp4", "127.0.0.1:0")
	}
	if err != nil {
		return fmt.Errorf("listen on 127.0.0.1 in the namespace (is its loopback up?): %w", err)
	}
	e.listeners = append(e.listeners, ln4)
	ap4 := ln4.Addr().(*net.TCPAddr).AddrPort()
	ip4 := ap4.Addr().As4()
	nl.ListenIp4 = binary.NativeEndian.Uint32(ip4[:])
	nl.ListenPort4 = ap4.Port()
	if host.Listen6.IsValid() {
		ln6, err := lc.Listen(ctx, "tcp6", fmt.Sprintf("[::1]:%d", host.Listen6.Port()))
		if err != nil {
			ln6, err = lc.Listen(ctx, "tcp6", "[::1]:0")
		}
		if err != nil {
			// IPv6 targets are then refused from this namespace.
			s.r.log.Warn("no IPv6 loopback listener in a container's namespace; its connects to IPv6 targets are refused", "netns_cookie", cookie, "err", err)
		} else {
			e.listeners = append(e.listeners, ln6)
			ap6 := ln6.Addr().(*net.TCPAddr).AddrPort()
			ip6 := ap6.Addr().As16()
			for i := range 4 {
				nl.ListenIp6[i] = binary.NativeEndian.Uint32(ip6[4*i:])
			}
			nl.ListenPort6 = ap6.Port()
		}
	}
	e.diag, err = openDiagHere()
	return err
}

// openDiagHere opens a sock_diag socket in the calling thread's namespace.
func openDiagHere() (*sockDiag, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, fmt.Errorf("open sock_diag netlink socket in the namespace: %w", err)
	}
	tv := unix.NsecToTimeval(sockDiagTimeout)
	for _, opt := range []int{unix.SO_RCVTIMEO, unix.SO_SNDTIMEO} {
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, opt, &tv); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("sock_diag socket timeout: %w", err)
		}
	}
	return newSockDiagIn(fd), nil
}

// inNetns runs fn on an OS thread that has entered the network namespace
// nsfd. Sockets keep the namespace they were made in, so what fn opens
// stays there while ordinary goroutines use it. The thread goes back to
// interlock's namespace before it is unlocked; if it cannot, it stays
// locked and the runtime ends it with its goroutine.
func inNetns(nsfd int, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open interlock's network namespace: %w", err)
			return
		}
		defer unix.Close(orig)
		if err := unix.Setns(nsfd, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter the container's network namespace: %w", err)
			return
		}
		ferr := fn()
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("return to interlock's network namespace: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// openNetns opens a pidfd of pid and, through it, the process's network
// namespace. Asking the pidfd (Linux 6.11) names the namespace of exactly
// that process; older kernels go through /proc, and the pidfd is checked
// to be alive after, so the namespace is of the process the pidfd names
// (or the caller's cookie check fails).
func openNetns(pid int) (*os.File, int, error) {
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return nil, -1, fmt.Errorf("pidfd of pid %d: %w", pid, err)
	}
	pidfd := os.NewFile(uintptr(fd), "pidfd:"+strconv.Itoa(pid))
	nsfd, err := unix.IoctlRetInt(fd, unix.PIDFD_GET_NET_NAMESPACE)
	if err == nil {
		return pidfd, nsfd, nil
	}
	nsfd, err = unix.Open("/proc/"+strconv.Itoa(pid)+"/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		pidfd.Close()
		return nil, -1, fmt.Errorf("open the network namespace of pid %d: %w", pid, err)
	}
	if err := unix.PidfdSendSignal(fd, 0, nil, 0); err != nil {
		unix.Close(nsfd)
		pidfd.Close()
		return nil, -1, fmt.Errorf("pid %d exited while its namespace was opened: %w", pid, err)
	}
	return pidfd, nsfd, nil
}

// watch waits for the namespace's processes to exit, one after another,
// and stops serving it when none is left.
func (s *nsServer) watch(e *nsEntry) {
	for {
		if err := waitExit(e.watch); err != nil {
			return // closed by stop
		}
		next := s.nextProcess(e)
		s.mu.Lock()
		if s.served[e.cookie] != e {
			s.mu.Unlock()
			if next != nil {
				next.Close()
			}
			return
		}
		e.watch.Close()
		if next != nil {
			e.watch = next
			s.mu.Unlock()
			continue
		}
		delete(s.served, e.cookie)
		s.mu.Unlock()
		// The map entry goes first: from then on a connect from the
		// namespace (if anything enters it again) is refused and asks.
		_ = s.r.progs.objs.NetnsListeners.Delete(e.cookie)
		e.closeSockets()
		s.releaseGateway(e.gateway, e.cookie)
		s.r.log.Info("a container's network namespace has no process left: its listeners are closed", "netns_cookie", e.cookie)
		return
	}
}

// nextProcess finds another process in the namespace and returns its
// pidfd, or nil when there is none.
func (s *nsServer) nextProcess(e *nsEntry) *os.File {
	d, err := os.Open("/proc")
	if err != nil {
		return nil
	}
	defer d.Close()
	names, _ := d.Readdirnames(-1)
	for _, n := range names {
		pid, err := strconv.Atoi(n)
		if err != nil {
			continue
		}
		var st unix.Stat_t
		if unix.Stat("/proc/"+n+"/ns/net", &st) != nil || st.Dev != e.dev || st.Ino != e.ino {
			continue
		}
		pidfd, nsfd, err := openNetns(pid)
		if err != nil {
			continue
		}
		err = unix.Fstat(nsfd, &st)
		unix.Close(nsfd)
		if err == nil && st.Dev == e.dev && st.Ino == e.ino {
			return pidfd
		}
		pidfd.Close()
	}
	return nil
}

// waitExit blocks until the pidfd's process exits (the pidfd turns
// readable), or returns an error when the pidfd is closed.
func waitExit(pidfd *os.File) error {
	rc, err := pidfd.SyscallConn()
	if err != nil {
		return err
	}
	return rc.Read(func(fd uintptr) bool {
		p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(p, 0)
		return err == nil && n > 0
	})
}

func (e *nsEntry) closeSockets() {
	for _, ln := range e.listeners {
		ln.Close()
	}
	e.listeners = nil
	if e.diag != nil {
		e.diag.close()
	}
}

// diagFor is the sock_diag of the namespace with this cookie, nil when
// interlock does not serve it.
func (r *Redirector) diagFor(cookie uint64) *sockDiag {
	if cookie == r.hostCfg.NetnsCookie {
		return r.diag
	}
	r.mu.Lock()
	s := r.ns
	r.mu.Unlock()
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.served[cookie]; e != nil {
		return e.diag
	}
	return nil
}

// ServedNamespaces lists the container namespaces served, by cookie, with
// their listeners' addresses.
func (r *Redirector) ServedNamespaces() map[uint64][]netip.AddrPort {
	out := map[uint64][]netip.AddrPort{}
	r.mu.Lock()
	s := r.ns
	r.mu.Unlock()
	if s == nil {
		return out
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for c, e := range s.served {
		for _, ln := range e.listeners {
			out[c] = append(out[c], ln.Addr().(*net.TCPAddr).AddrPort())
		}
		if g := s.gateways[e.gateway]; g != nil {
			out[c] = append(out[c], g.ln.Addr().(*net.TCPAddr).AddrPort())
		}
	}
	return out
}

// stop closes every namespace's listeners and stops serving new ones.
func (s *nsServer) stop() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	served := s.served
	s.served = map[uint64]*nsEntry{}
	s.mu.Unlock()
	if s.execWatch != nil {
		s.execWatch.close()
	}
	s.rd.Close()
	<-s.done
	for c, e := range served {
		_ = s.r.progs.objs.NetnsListeners.Delete(c)
		e.watch.Close()
		e.closeSockets()
		s.releaseGateway(e.gateway, c)
	}
}
