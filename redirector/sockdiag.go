package redirector

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// sockDiag looks up one TCP socket by its exact 4-tuple through
// NETLINK_SOCK_DIAG. The kernel reports the socket's owner uid and inode,
// which cross-check the BPF connect record: the record says who called
// connect(), sock_diag says whose socket it is.
//
// It speaks netlink with plain syscalls on blocking sockets kept in a
// pool: the kernel answers an exact lookup during the sendto, so the
// recvfrom that follows finds the answer waiting. A general netlink
// library cost every connect a 64 KiB receive buffer on the stack of the
// goroutine that asks (grown and copied for each new goroutine), a read
// deadline and a getsockname.
type sockDiag struct {
	socks chan int
	seq   atomic.Uint32
	bufs  sync.Pool
	// fixed: the pool holds sockets opened in another network namespace
	// (a container's), and a socket opened here would ask the wrong one:
	// get waits for a pooled socket instead.
	fixed bool
	// mu orders put against close, so that a socket handed back after
	// close is closed rather than left in the pool.
	mu     sync.Mutex
	closed bool
}

// newSockDiagIn is a sockDiag over one netlink socket already opened in
// the namespace to ask about.
func newSockDiagIn(fd int) *sockDiag {
	d := newSockDiag(1)
	d.fixed = true
	d.socks <- fd
	return d
}

// sockInfo is what sock_diag reports about a socket.
type sockInfo struct {
	UID   uint32
	Inode uint32
	// Cookie is the socket's cookie, the one the BPF hooks key their
	// records by (0 when the kernel gave none).
	Cookie uint64
}

// sockDiagTimeout bounds each send and receive; the kernel answers at
// once, so it only matters if it does not.
const sockDiagTimeout = 2e9 // ns

// sockDiagReplySize holds one answer: a netlink header and an inet_diag_msg
// with the few attributes the kernel adds when asked for none.
const sockDiagReplySize = 8 << 10

func newSockDiag(poolSize int) *sockDiag {
	d := &sockDiag{socks: make(chan int, poolSize)}
	d.bufs.New = func() any { b := make([]byte, sockDiagReplySize); return &b }
	return d
}

func (d *sockDiag) get() (int, error) {
	if d.fixed {
		select {
		case fd := <-d.socks:
			return fd, nil
		case <-time.After(sockDiagTimeout):
			return -1, errors.New("sock_diag: the namespace's netlink socket is busy or closed")
		}
	}
	select {
	case fd := <-d.socks:
		return fd, nil
	default:
	}
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return -1, fmt.Errorf("open sock_diag netlink socket: %w", err)
	}
	tv := unix.NsecToTimeval(sockDiagTimeout)
	for _, opt := range []int{unix.SO_RCVTIMEO, unix.SO_SNDTIMEO} {
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, opt, &tv); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("sock_diag socket timeout: %w", err)
		}
	}
	return fd, nil
}

func (d *sockDiag) put(fd int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		unix.Close(fd)
		return
	}
	select {
	case d.socks <- fd:
	default:
		unix.Close(fd)
	}
}

func (d *sockDiag) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	for {
		select {
		case fd := <-d.socks:
			unix.Close(fd)
		default:
			return
		}
	}
}

// inetDiagReq is struct inet_diag_req_v2 for an exact lookup.
type inetDiagReq struct {
	family   uint8
	src, dst netip.AddrPort
}

const (
	nlmsgHdrLen    = 16
	inetDiagReqLen = 56
)

// put writes the request's netlink message (header and
// inet_diag_req_v2) into b, which must hold nlmsgHdrLen+inetDiagReqLen
// bytes.
func (r *inetDiagReq) put(b []byte, seq uint32) {
	clear(b[:nlmsgHdrLen+inetDiagReqLen])
	binary.NativeEndian.PutUint32(b[0:], nlmsgHdrLen+inetDiagReqLen)
	binary.NativeEndian.PutUint16(b[4:], unix.SOCK_DIAG_BY_FAMILY)
	binary.NativeEndian.PutUint16(b[6:], unix.NLM_F_REQUEST)
	binary.NativeEndian.PutUint32(b[8:], seq)
	// b[12:16]: port id 0, the kernel fills in the socket's.
	q := b[nlmsgHdrLen:]
	q[0] = r.family
	q[1] = unix.IPPROTO_TCP
	binary.NativeEndian.PutUint32(q[4:], 0xffffffff) // all states
	binary.BigEndian.PutUint16(q[8:], r.src.Port())
	binary.BigEndian.PutUint16(q[10:], r.dst.Port())
	putDiagAddr(q[12:28], r.family, r.src.Addr())
	putDiagAddr(q[28:44], r.family, r.dst.Addr())
	// q[44:48] interface 0; cookie "none" so the kernel matches by tuple.
	binary.NativeEndian.PutUint32(q[48:], 0xffffffff)
	binary.NativeEndian.PutUint32(q[52:], 0xffffffff)
}

func putDiagAddr(dst []byte, family uint8, a netip.Addr) {
	if family == unix.AF_INET {
		v4 := a.Unmap().As4()
		copy(dst, v4[:])
		return
	}
	v6 := a.As16()
	copy(dst, v6[:])
}

var errNoSocket = errors.New("sock_diag: no such socket")

// lookup finds the socket whose local end is src and remote end is dst.
// An IPv4 (or v4-mapped) tuple may belong to an AF_INET socket or to a
// dual-stack AF_INET6 socket, so both families are tried.
func (d *sockDiag) lookup(src, dst netip.AddrPort) (sockInfo, error) {
	families := []uint8{unix.AF_INET6}
	if src.Addr().Unmap().Is4() {
		families = []uint8{unix.AF_INET, unix.AF_INET6}
	}
	var lastErr error = errNoSocket
	for _, fam := range families {
		s, a := src, dst
		if fam == unix.AF_INET6 && src.Addr().Unmap().Is4() {
			s = netip.AddrPortFrom(netip.AddrFrom16(src.Addr().As16()), src.Port())
			a = netip.AddrPortFrom(netip.AddrFrom16(dst.Addr().As16()), dst.Port())
		}
		info, err := d.lookupFamily(fam, s, a)
		if err == nil {
			return info, nil
		}
		lastErr = err
	}
	return sockInfo{}, lastErr
}

func (d *sockDiag) lookupFamily(fam uint8, src, dst netip.AddrPort) (sockInfo, error) {
	fd, err := d.get()
	if err != nil {
		return sockInfo{}, err
	}
	bp := d.bufs.Get().(*[]byte)
	defer d.bufs.Put(bp)
	info, err := d.exchange(fd, *bp, &inetDiagReq{family: fam, src: src, dst: dst})
	switch {
	case err == nil, errors.Is(err, errNoSocket):
		// An answer: the socket is clean for the next one.
		d.put(fd)
	default:
		// It may hold a late answer to this request: not reused.
		unix.Close(fd)
	}
	return info, err
}

// exchange sends req on fd and reads the kernel's answer into buf.
func (d *sockDiag) exchange(fd int, buf []byte, req *inetDiagReq) (sockInfo, error) {
	seq := d.seq.Add(1)
	req.put(buf, seq)
	kernel := &unix.SockaddrNetlink{Family: unix.AF_NETLINK}
	for {
		err := unix.Sendto(fd, buf[:nlmsgHdrLen+inetDiagReqLen], 0, kernel)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return sockInfo{}, fmt.Errorf("sock_diag send: %w", err)
		}
		break
	}
	for {
		n, from, err := unix.Recvfrom(fd, buf, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return sockInfo{}, fmt.Errorf("sock_diag receive: %w", err)
		}
		if nl, ok := from.(*unix.SockaddrNetlink); !ok || nl.Pid != 0 {
			continue // not from the kernel
		}
		info, done, err := parseDiagReply(buf[:n], seq)
		if done {
			return info, err
		}
	}
}

// parseDiagReply reads the messages of one datagram: the answer to
// request seq (done), or none of it (an earlier request's, skipped).
func parseDiagReply(b []byte, seq uint32) (info sockInfo, done bool, err error) {
	for len(b) >= nlmsgHdrLen {
		l := int(binary.NativeEndian.Uint32(b[0:]))
		if l < nlmsgHdrLen || l > len(b) {
			return sockInfo{}, true, errors.New("sock_diag: malformed answer")
		}
		typ := binary.NativeEndian.Uint16(b[4:])
		msg := b[nlmsgHdrLen:l]
		if binary.NativeEndian.Uint32(b[8:]) == seq {
			switch typ {
			case unix.NLMSG_ERROR:
				if len(msg) < 4 {
					return sockInfo{}, true, errors.New("sock_diag: malformed error")
				}
				errno := -int32(binary.NativeEndian.Uint32(msg))
				if errno == 0 {
					return sockInfo{}, true, errNoSocket // an ack, no answer
				}
				if unix.Errno(errno) == unix.ENOENT {
					return sockInfo{}, true, errNoSocket
				}
				return sockInfo{}, true, fmt.Errorf("sock_diag lookup: %w", unix.Errno(errno))
			case unix.NLMSG_DONE:
				return sockInfo{}, true, errNoSocket
			case unix.SOCK_DIAG_BY_FAMILY:
				// struct inet_diag_msg: 4 bytes header, 48 bytes id,
				// expires, rqueue, wqueue, uid, inode (u32 each).
				if len(msg) < 72 {
					return sockInfo{}, true, errors.New("sock_diag: short answer")
				}
				if lo, hi := binary.NativeEndian.Uint32(msg[44:]), binary.NativeEndian.Uint32(msg[48:]); lo != 0xffffffff || hi != 0xffffffff {
					info.Cookie = uint64(lo) | uint64(hi)<<32
				}
				info.UID = binary.NativeEndian.Uint32(msg[64:])
				info.Inode = binary.NativeEndian.Uint32(msg[68:])
				return info, true, nil
			}
		}
		// Messages are aligned to 4 bytes.
		l = (l + 3) &^ 3
		if l >= len(b) {
			break
		}
		b = b[l:]
	}
	return sockInfo{}, false, nil
}
