package redirector

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/interlock/interlock/test/testenv"
)

// sockFacts are what the kernel says of c's socket through the socket
// itself: its inode (the /proc/self/fd link) and its cookie.
func sockFacts(t *testing.T, c net.Conn) (inode uint32, cookie uint64) {
	t.Helper()
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	rc.Control(func(fd uintptr) {
		var link string
		if link, serr = os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd)); serr != nil {
			return
		}
		if _, serr = fmt.Sscanf(link, "socket:[%d]", &inode); serr != nil {
			return
		}
		var b [8]byte
		l := uint32(len(b))
		// SO_COOKIE is a u64: x/sys has no getter of that size.
		_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_SOCKET, unix.SO_COOKIE,
			uintptr(unsafe.Pointer(&b[0])), uintptr(unsafe.Pointer(&l)), 0)
		if errno != 0 {
			serr = errno
		}
		cookie = binary.NativeEndian.Uint64(b[:])
	})
	if serr != nil {
		t.Fatal(serr)
	}
	return inode, cookie
}

func addrPort(a net.Addr) netip.AddrPort { return a.(*net.TCPAddr).AddrPort() }

// TestSockDiagLookup: sock_diag names the socket of a 4-tuple as the
// socket itself does (inode, cookie, owner), for an IPv4 socket and for
// the v4-mapped end of a dual-stack one; a tuple with no socket is
// errNoSocket, and the pooled netlink sockets keep answering.
func TestSockDiagLookup(t *testing.T) {
	d := newSockDiag(2)
	t.Cleanup(d.close)
	for _, tc := range []struct{ name, network, listen string }{
		{"ipv4", "tcp4", "127.0.0.1:0"},
		{"dual-stack", "tcp", "[::]:0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen(tc.network, tc.listen)
			testenv.Require(t, "a "+tc.name+" loopback listener", err)
			defer ln.Close()
			port := addrPort(ln.Addr()).Port()
			client, err := net.Dial("tcp4", fmt.Sprintf("127.0.0.1:%d", port))
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			server, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer server.Close()
			for i := range 3 {
				for _, c := range []net.Conn{client, server} {
					info, err := d.lookup(addrPort(c.LocalAddr()), addrPort(c.RemoteAddr()))
					if err != nil {
						t.Fatalf("lookup %d of %s→%s: %v", i, c.LocalAddr(), c.RemoteAddr(), err)
					}
					inode, cookie := sockFacts(t, c)
					if info.Inode != inode || info.Cookie != cookie || info.UID != uint32(os.Geteuid()) {
						t.Fatalf("%s→%s: sock_diag says %+v; the socket: inode %d cookie %d uid %d",
							c.LocalAddr(), c.RemoteAddr(), info, inode, cookie, os.Geteuid())
					}
				}
			}
			// The client's end with another peer: no socket has it (a
			// listener's own end would find the listener).
			if _, err := d.lookup(addrPort(client.LocalAddr()), netip.MustParseAddrPort("127.0.0.1:1")); !errors.Is(err, errNoSocket) {
				t.Fatalf("a tuple no socket has: %v, want errNoSocket", err)
			}
		})
	}
}

// TestParseDiagReply: a datagram holding only an earlier request's
// answer is skipped, not taken for this one's; errors and a malformed
// length are reported.
func TestParseDiagReply(t *testing.T) {
	msg := func(typ uint16, seq uint32, body []byte) []byte {
		b := make([]byte, nlmsgHdrLen+len(body))
		putU32(b[0:], uint32(len(b)))
		binary.NativeEndian.PutUint16(b[4:], typ)
		putU32(b[8:], seq)
		copy(b[nlmsgHdrLen:], body)
		return b
	}
	diag := make([]byte, 72)
	putU32(diag[64:], 1000)
	putU32(diag[68:], 4242)
	putU32(diag[44:], 7)
	putU32(diag[48:], 0)
	// struct nlmsgerr starts with the negated errno.
	nlerr := func(e unix.Errno) []byte {
		b := make([]byte, 4)
		putU32(b, uint32(-int32(e)))
		return b
	}
	enoent, eperm := nlerr(unix.ENOENT), nlerr(unix.EPERM)

	if _, done, _ := parseDiagReply(msg(unix.SOCK_DIAG_BY_FAMILY, 4, diag), 5); done {
		t.Fatal("an answer to request 4 was taken for request 5")
	}
	info, done, err := parseDiagReply(append(msg(unix.NLMSG_ERROR, 4, enoent), msg(unix.SOCK_DIAG_BY_FAMILY, 5, diag)...), 5)
	if !done || err != nil || info != (sockInfo{UID: 1000, Inode: 4242, Cookie: 7}) {
		t.Fatalf("answer after a stale one: %+v %v %v", info, done, err)
	}
	if _, done, err := parseDiagReply(msg(unix.NLMSG_ERROR, 5, enoent), 5); !done || !errors.Is(err, errNoSocket) {
		t.Fatalf("ENOENT: %v %v", done, err)
	}
	if _, done, err := parseDiagReply(msg(unix.NLMSG_ERROR, 5, eperm), 5); !done || !errors.Is(err, unix.EPERM) {
		t.Fatalf("EPERM: %v %v", done, err)
	}
	bad := msg(unix.SOCK_DIAG_BY_FAMILY, 5, diag)
	putU32(bad[0:], 4000)
	if _, done, err := parseDiagReply(bad, 5); !done || err == nil {
		t.Fatalf("a length past the datagram: %v %v", done, err)
	}
	if _, done, err := parseDiagReply(msg(unix.SOCK_DIAG_BY_FAMILY, 5, diag[:40]), 5); !done || err == nil {
		t.Fatalf("a short answer: %v %v", done, err)
	}
}

func putU32(b []byte, v uint32) { binary.NativeEndian.PutUint32(b, v) }

// BenchmarkSockDiagLookup is Origin's cross-check: one lookup of an
// established connection's tuple, on a goroutine of its own as Origin
// asks it (so a large stack frame costs its growth every time).
func BenchmarkSockDiagLookup(b *testing.B) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	d := newSockDiag(8)
	defer d.close()
	src, dst := addrPort(client.LocalAddr()), addrPort(client.RemoteAddr())
	done := make(chan error, 1)
	b.ReportAllocs()
	for b.Loop() {
		go func() {
			_, err := d.lookup(src, dst)
			done <- err
		}()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
}
