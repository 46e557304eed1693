package redirector

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/interlock/interlock/bpf"
)

// Gateway mode.
//
// Instead of listening inside a container's namespace, interlock listens
// on the container network's gateway address in its own namespace, and
// the connect hook sends the container's connects there. The hook cannot
// see interlock's namespace by itself: the daemon gives the container's
// namespace an id for interlock's (RTM_NEWNSID; ids cannot be changed or
// removed once set) and writes it in the map entry, and the hook looks up
// the listener there (bpf_sk_lookup_tcp takes a peer namespace's id): a
// TCP listener on the gateway address and port, carrying the gateway
// listener's mark. It also requires that no socket in the container's
// namespace would take the address first. So, as in namespace mode, a
// connect is sent on only while interlock's own listener is there.
//
// Connections from every namespace on one gateway arrive on one listener,
// in interlock's namespace; the connect record is keyed by the client's
// namespace (sockops runs there), so at accept the record is looked for
// under each namespace served through that listener, and must be found
// under exactly one.

// gwListener is interlock's listener on one gateway address, shared by
// the namespaces served through it.
type gwListener struct {
	addr netip.Addr
	ln   net.Listener
	mark uint32
	// users are the namespaces (cookies) whose map entries point here.
	users map[uint64]bool
}

// nsidFlags are the ns_listener flags of gateway mode (bpf/interlock.c).
const nslPeerNetns = 1

// serveGateway fills nl for a namespace served through the gateway: it
// runs inside the namespace to check its cookie, read its gateway and
// the id it gives interlock's namespace, and open a sock_diag socket
// there; then it opens or shares the gateway listener. Called without
// s.mu held.
func (s *nsServer) serveGateway(e *nsEntry, nsfd int, cookie uint64, nl *bpf.InterlockNsListener) error {
	self, err := unix.Open("/proc/self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open interlock's network namespace: %w", err)
	}
	defer unix.Close(self)
	var gw netip.Addr
	var nsid int32
	err = inNetns(nsfd, func() error {
		if err := checkCookieHere(cookie); err != nil {
			return err
		}
		gw = s.r.opts.ContainerGateway
		if !gw.IsValid() {
			if gw, err = defaultGateway(); err != nil {
				return err
			}
		}
		if nsid, err = peerNsid(self); err != nil {
			return err
		}
		e.diag, err = openDiagHere()
		return err
	})
	if err != nil {
		return err
	}
	if err := localAddress(gw); err != nil {
		return err
	}
	g, err := s.gatewayListener(gw, cookie)
	if err != nil {
		return err
	}
	e.gateway = gw
	ap := g.ln.Addr().(*net.TCPAddr).AddrPort()
	ip4 := gw.As4()
	nl.ListenIp4 = binary.NativeEndian.Uint32(ip4[:])
	nl.ListenPort4 = ap.Port()
	// IPv6 targets stay refused from the namespace: no v6 gateway.
	nl.Mark = g.mark
	nl.Flags = nslPeerNetns
	nl.PeerNsid = uint32(nsid)
	return nil
}

// gatewayListener opens, or shares, interlock's listener on gw and counts
// the namespace as its user.
func (s *nsServer) gatewayListener(gw netip.Addr, cookie uint64) (*gwListener, error) {
	s.mu.Lock()
	g := s.gateways[gw]
	if g != nil {
		g.users[cookie] = true
		s.mu.Unlock()
		return g, nil
	}
	s.mu.Unlock()
	mark, err := newMark()
	if err != nil {
		return nil, err
	}
	lc := markedListenConfig(mark)
	ln, err := lc.Listen(context.Background(), "tcp4", netip.AddrPortFrom(gw, 0).String())
	if err != nil {
		return nil, fmt.Errorf("listen on the gateway address %s: %w", gw, err)
	}
	s.mu.Lock()
	if old := s.gateways[gw]; old != nil {
		// Another namespace on this gateway was served meanwhile.
		old.users[cookie] = true
		s.mu.Unlock()
		ln.Close()
		return old, nil
	}
	g = &gwListener{addr: gw, ln: ln, mark: mark, users: map[uint64]bool{cookie: true}}
	s.gateways[gw] = g
	s.mu.Unlock()
	s.accept(ln)
	s.r.log.Info("listening on a container network's gateway", "listener", ln.Addr().String())
	return g, nil
}

// releaseGateway drops the namespace from its gateway listener, closing
// the listener when it was the last. The namespace's map entry must be
// gone first.
func (s *nsServer) releaseGateway(gw netip.Addr, cookie uint64) {
	if !gw.IsValid() {
		return
	}
	s.mu.Lock()
	g := s.gateways[gw]
	if g == nil {
		s.mu.Unlock()
		return
	}
	delete(g.users, cookie)
	if len(g.users) > 0 {
		s.mu.Unlock()
		return
	}
	delete(s.gateways, gw)
	s.mu.Unlock()
	g.ln.Close()
	s.r.log.Info("no namespace is served through a gateway any more: its listener is closed", "listener", g.ln.Addr().String())
}

// gatewayUsers are the namespaces served through interlock's gateway
// listener at ap, nil when ap is none.
func (r *Redirector) gatewayUsers(ap netip.AddrPort) []uint64 {
	r.mu.Lock()
	s := r.ns
	r.mu.Unlock()
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.gateways[ap.Addr().Unmap()]
	if g == nil || g.ln.Addr().(*net.TCPAddr).AddrPort().Port() != ap.Port() {
		return nil
	}
	out := make([]uint64, 0, len(g.users))
	for c := range g.users {
		out = append(out, c)
	}
	return out
}

// gatewayRecord finds the record of a connection accepted on a gateway
// listener: made in one of the namespaces served through it, under
// exactly one of them (a container that took another's address and port
// makes the records ambiguous, and the connection is refused), and not
// from a socket in interlock's own namespace. It returns the namespace
// the record was found in.
func (r *Redirector) gatewayRecord(key bpf.InterlockTupleKey, users []uint64, rec *bpf.InterlockOrigin) (uint64, error) {
	m := r.progs.objs.Origins
	var found []uint64
	for _, c := range users {
		key.NetnsCookie = c
		var o bpf.InterlockOrigin
		if m.Lookup(&key, &o) == nil {
			found = append(found, c)
			*rec = o
		}
	}
	for _, c := range found {
		key.NetnsCookie = c
		_ = m.Delete(&key)
	}
	if len(found) == 0 {
		return 0, errors.New("no record in any namespace served through this gateway")
	}
	if len(found) > 1 {
		return 0, fmt.Errorf("records in %d namespaces for the same connection", len(found))
	}
	// A container's client socket is in its own namespace; one with that
	// address in interlock's is a host process passing for the container
	// (IP_FREEBIND needs no privilege) to take its record.
	peer := netip.AddrPortFrom(netip.AddrFrom16(key.Saddr).Unmap(), key.Sport)
	local := netip.AddrPortFrom(netip.AddrFrom16(key.Daddr).Unmap(), key.Dport)
	if _, err := r.diag.lookup(peer, local); !errors.Is(err, errNoSocket) {
		if err == nil {
			err = errors.New("a socket in interlock's own namespace made it")
		}
		return 0, fmt.Errorf("not a container's connection: %w", err)
	}
	return found[0], nil
}

// checkCookieHere checks, on a thread inside a namespace, that it is the
// one with this cookie.
func checkCookieHere(cookie uint64) error {
	got, err := cookieHere()
	if err != nil {
		return err
	}
	if got != cookie {
		return fmt.Errorf("the process's namespace has cookie %d, not the %d that connected (it exited and its pid was reused?)", got, cookie)
	}
	return nil
}

// defaultGateway reads the IPv4 default route's gateway of the calling
// thread's namespace (the lowest metric wins).
func defaultGateway() (netip.Addr, error) {
	f, err := os.Open("/proc/thread-self/net/route")
	if err != nil {
		return netip.Addr{}, fmt.Errorf("read the namespace's routes: %w", err)
	}
	defer f.Close()
	var best netip.Addr
	bestMetric := -1
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		// Iface Destination Gateway Flags RefCnt Use Metric Mask ...
		fs := strings.Fields(sc.Text())
		if len(fs) < 8 || fs[1] != "00000000" || fs[7] != "00000000" {
			continue
		}
		flags, err1 := strconv.ParseUint(fs[3], 16, 32)
		metric, err2 := strconv.Atoi(fs[6])
		raw, err3 := hex.DecodeString(fs[2])
		if err1 != nil || err2 != nil || err3 != nil || len(raw) != 4 || flags&unix.RTF_GATEWAY == 0 {
			continue
		}
		// The kernel prints the address's bytes as a host-order word.
		var b [4]byte
		binary.NativeEndian.PutUint32(b[:], binary.BigEndian.Uint32(raw))
		if bestMetric < 0 || metric < bestMetric {
			best, bestMetric = netip.AddrFrom4(b), metric
		}
	}
	if !best.IsValid() {
		return netip.Addr{}, errors.New("the namespace has no IPv4 default route through a gateway (set intercept.container_gateway)")
	}
	return best, nil
}

// localAddress checks that gw is an address of one of interlock's
// namespace's interfaces, not loopback: the container's routes choose it,
// and interlock must not listen wherever a container says.
func localAddress(gw netip.Addr) error {
	if gw.IsLoopback() || gw.IsUnspecified() || gw.IsMulticast() {
		return fmt.Errorf("the gateway %s cannot be listened on", gw)
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return fmt.Errorf("list interlock's addresses: %w", err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap() == gw {
				return nil
			}
		}
	}
	return fmt.Errorf("the gateway %s is not an address of this host", gw)
}

// peerNsid is the id the calling thread's namespace gives the namespace
// nsfd, assigned if it has none.
func peerNsid(nsfd int) (int32, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return -1, fmt.Errorf("route netlink socket in the namespace: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return -1, fmt.Errorf("bind route netlink socket: %w", err)
	}
	id, err := nsidRequest(fd, unix.RTM_GETNSID, nsfd, false)
	if err == nil && id < 0 {
		// Assign one (-1: the kernel chooses). EEXIST: someone else
		// assigned it meanwhile; it cannot change after.
		if _, err = nsidRequest(fd, unix.RTM_NEWNSID, nsfd, true); err == nil || errors.Is(err, unix.EEXIST) {
			id, err = nsidRequest(fd, unix.RTM_GETNSID, nsfd, false)
		}
	}
	if err != nil {
		return -1, fmt.Errorf("the id of interlock's namespace in the container's: %w", err)
	}
	if id < 0 {
		return -1, errors.New("the container's namespace gives interlock's no id")
	}
	return id, nil
}

// nsidRequest sends one RTM_GETNSID or RTM_NEWNSID for nsfd and returns
// the NETNSA_NSID of the answer (-1 when none).
func nsidRequest(fd int, typ uint16, nsfd int, assign bool) (int32, error) {
	attr := func(t uint16, v uint32) []byte {
		b := make([]byte, 8)
		binary.NativeEndian.PutUint16(b[0:], 8)
		binary.NativeEndian.PutUint16(b[2:], t)
		binary.NativeEndian.PutUint32(b[4:], v)
		return b
	}
	body := []byte{unix.AF_UNSPEC, 0, 0, 0} // rtgenmsg, padded
	body = append(body, attr(unix.NETNSA_FD, uint32(nsfd))...)
	flags := uint16(unix.NLM_F_REQUEST)
	if assign {
		body = append(body, attr(unix.NETNSA_NSID, ^uint32(0))...)
		flags |= unix.NLM_F_ACK
	}
	msg := make([]byte, unix.NLMSG_HDRLEN, unix.NLMSG_HDRLEN+len(body))
	binary.NativeEndian.PutUint32(msg[0:], uint32(unix.NLMSG_HDRLEN+len(body)))
	binary.NativeEndian.PutUint16(msg[4:], typ)
	binary.NativeEndian.PutUint16(msg[6:], flags)
	binary.NativeEndian.PutUint32(msg[8:], 1)
	msg = append(msg, body...)
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return -1, err
	}
	buf := make([]byte, 4096)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return -1, err
	}
	for b := buf[:n]; len(b) >= unix.NLMSG_HDRLEN; {
		l := int(binary.NativeEndian.Uint32(b))
		if l < unix.NLMSG_HDRLEN || l > len(b) {
			break
		}
		data := b[unix.NLMSG_HDRLEN:l]
		typ := binary.NativeEndian.Uint16(b[4:])
		b = b[min((l+3)&^3, len(b)):]
		switch typ {
		case unix.NLMSG_ERROR:
			if len(data) < 4 {
				return -1, errors.New("short netlink error")
			}
			if e := int32(binary.NativeEndian.Uint32(data)); e != 0 {
				return -1, unix.Errno(-e)
			}
			return -1, nil
		case unix.RTM_NEWNSID:
			if len(data) < 4 {
				return -1, nil
			}
			for b := data[4:]; len(b) >= 4; {
				l := int(binary.NativeEndian.Uint16(b))
				if l < 4 || l > len(b) {
					break
				}
				if binary.NativeEndian.Uint16(b[2:]) == unix.NETNSA_NSID && l >= 8 {
					return int32(binary.NativeEndian.Uint32(b[4:])), nil
				}
				if next := (l + 3) &^ 3; next < len(b) {
					b = b[next:]
				} else {
					break
				}
			}
			return -1, nil
		}
	}
	return -1, errors.New("no answer")
}
