package redirector

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// sockDiag looks up one TCP socket by its exact 4-tuple through
// NETLINK_SOCK_DIAG. The kernel reports the socket's owner uid and inode,
// which cross-check the BPF connect record: the record says who called
// connect(), sock_diag says whose socket it is.
type sockDiag struct {
	handles chan *nl.SocketHandle
}

// sockInfo is what sock_diag reports about a socket.
type sockInfo struct {
	UID   uint32
	Inode uint32
	// Cookie is the socket's cookie, the one the BPF hooks key their
	// records by (0 when the kernel gave none).
	Cookie uint64
}

func newSockDiag(poolSize int) *sockDiag {
	return &sockDiag{handles: make(chan *nl.SocketHandle, poolSize)}
}

func (d *sockDiag) get() (*nl.SocketHandle, error) {
	select {
	case h := <-d.handles:
		return h, nil
	default:
	}
	s, err := nl.Subscribe(unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, fmt.Errorf("open sock_diag netlink socket: %w", err)
	}
	tv := unix.NsecToTimeval(int64(2e9))
	if err := s.SetReceiveTimeout(&tv); err != nil {
		s.Close()
		return nil, err
	}
	return &nl.SocketHandle{Socket: s}, nil
}

func (d *sockDiag) put(h *nl.SocketHandle) {
	select {
	case d.handles <- h:
	default:
		h.Close()
	}
}

func (d *sockDiag) close() {
	for {
		select {
		case h := <-d.handles:
			h.Close()
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

func (r *inetDiagReq) Len() int { return 56 }

func (r *inetDiagReq) Serialize() []byte {
	b := make([]byte, 56)
	b[0] = r.family
	b[1] = unix.IPPROTO_TCP
	binary.NativeEndian.PutUint32(b[4:], 0xffffffff) // all states
	binary.BigEndian.PutUint16(b[8:], r.src.Port())
	binary.BigEndian.PutUint16(b[10:], r.dst.Port())
	putDiagAddr(b[12:28], r.family, r.src.Addr())
	putDiagAddr(b[28:44], r.family, r.dst.Addr())
	// b[44:48] interface 0; cookie "none" so the kernel matches by tuple.
	binary.NativeEndian.PutUint32(b[48:], 0xffffffff)
	binary.NativeEndian.PutUint32(b[52:], 0xffffffff)
	return b
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
	h, err := d.get()
	if err != nil {
		return sockInfo{}, err
	}
	req := nl.NewNetlinkRequest(nl.SOCK_DIAG_BY_FAMILY, 0)
	req.AddData(&inetDiagReq{family: fam, src: src, dst: dst})
	req.Sockets = map[int]*nl.SocketHandle{unix.NETLINK_SOCK_DIAG: h}
	var info sockInfo
	found := false
	err = req.ExecuteIter(unix.NETLINK_SOCK_DIAG, nl.SOCK_DIAG_BY_FAMILY, func(msg []byte) bool {
		// struct inet_diag_msg: 4 bytes header, 48 bytes id, expires,
		// rqueue, wqueue, uid, inode (u32 each).
		if len(msg) < 72 {
			return false
		}
		if lo, hi := binary.NativeEndian.Uint32(msg[44:]), binary.NativeEndian.Uint32(msg[48:]); lo != 0xffffffff || hi != 0xffffffff {
			info.Cookie = uint64(lo) | uint64(hi)<<32
		}
		info.UID = binary.NativeEndian.Uint32(msg[64:])
		info.Inode = binary.NativeEndian.Uint32(msg[68:])
		found = true
		return false
	})
	if err != nil {
		// ENOENT is an answer; anything else may have left the socket
		// in a bad state, so it is not reused.
		if errors.Is(err, unix.ENOENT) {
			d.put(h)
			return sockInfo{}, errNoSocket
		}
		h.Close()
		return sockInfo{}, fmt.Errorf("sock_diag lookup: %w", err)
	}
	d.put(h)
	if !found {
		return sockInfo{}, errNoSocket
	}
	return info, nil
}
