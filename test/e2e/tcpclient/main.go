// Command tcpclient is the end-to-end tests' client: it connects to an
// address, says who it is, optionally sends a bulk payload and half-closes,
// and prints what happened as one JSON line. Its code knows nothing of
// interlock: it is the unchanged client interlock must intercept.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"time"
)

type result struct {
	PID   int    `json:"pid"`
	UID   int    `json:"uid"`
	Local string `json:"local,omitempty"`
	// Peer is what getpeername() says the socket is connected to.
	Peer  string `json:"peer,omitempty"`
	Reply string `json:"reply,omitempty"`
	Error string `json:"error,omitempty"`
}

func main() {
	addr := flag.String("addr", "", "host:port to connect to")
	network := flag.String("net", "tcp", "tcp, tcp4, tcp6, raw6 (an AF_INET6 socket connecting to the address as written), tfo (TCP Fast Open, no connect call), "+
		"fd3 (connect the socket inherited as fd 3), udp (send the hello as a datagram) or stale6 (a v6-only socket's connect to the v4-mapped address fails, then the same socket connects to -listener)")
	listener := flag.String("listener", "", "with -net stale6: the address the second connect goes to")
	bulk := flag.Int("bulk", 0, "bytes to send after the hello line, then half-close")
	hold := flag.String("hold", "", "after the first reply, wait until this file exists, then say hello again on the same connection")
	bind := flag.String("bind", "", "with -net tcp4: the local address:port to connect from")
	flag.Parse()
	res := result{PID: os.Getpid(), UID: os.Getuid()}
	staleListener = *listener
	bindAddr = *bind
	err := run(*network, *addr, *bulk, *hold, &res)
	if err != nil {
		res.Error = err.Error()
	}
	json.NewEncoder(os.Stdout).Encode(res)
	if err != nil {
		os.Exit(1)
	}
}

// bindAddr is -bind.
var bindAddr string

func run(network, addr string, bulk int, hold string, res *result) error {
	var c net.Conn
	var err error
	switch network {
	case "raw6":
		c, err = dialRaw6(addr)
	case "tfo":
		return runTFO(addr, res)
	case "fd3":
		c, err = dialInherited(addr)
	case "stale6":
		c, err = dialStale6(addr, staleListener)
	case "udp":
		return runUDP(addr, res)
	default:
		d := net.Dialer{Timeout: 5 * time.Second}
		if bindAddr != "" {
			la, rerr := net.ResolveTCPAddr("tcp", bindAddr)
			if rerr != nil {
				return rerr
			}
			d.LocalAddr = la
			// Two clients in two namespaces take the same port.
			d.Control = func(_, _ string, rc syscall.RawConn) error {
				return rc.Control(func(fd uintptr) {
					syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
				})
			}
		}
		c, err = d.Dial(network, addr)
	}
	if err != nil {
		return err
	}
	defer c.Close()
	res.Local = c.LocalAddr().String()
	res.Peer = c.RemoteAddr().String()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := fmt.Fprintf(c, "hello pid=%d bulk=%d\n", os.Getpid(), bulk); err != nil {
		return err
	}
	if bulk > 0 {
		buf := make([]byte, 64<<10)
		for i := range buf {
			buf[i] = byte(i)
		}
		for left := bulk; left > 0; {
			n := min(left, len(buf))
			if _, err := c.Write(buf[:n]); err != nil {
				return err
			}
			left -= n
		}
		if err := c.(*net.TCPConn).CloseWrite(); err != nil {
			return err
		}
		b, err := io.ReadAll(c)
		if err != nil {
			return err
		}
		res.Reply = strings.TrimSpace(string(b))
		return nil
	}
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	res.Reply = strings.TrimSpace(line)
	if hold == "" {
		return nil
	}
	fmt.Fprintln(os.Stderr, "holding")
	for {
		if _, err := os.Stat(hold); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := fmt.Fprintf(c, "again pid=%d\n", os.Getpid()); err != nil {
		return fmt.Errorf("second hello: %w", err)
	}
	line, err = r.ReadString('\n')
	if err != nil {
		return fmt.Errorf("second reply: %w", err)
	}
	res.Reply += " | " + strings.TrimSpace(line)
	return nil
}

// dialRaw6 connects an AF_INET6 socket to addr as written. Go's Dial turns
// a v4-mapped address (::ffff:a.b.c.d) into an AF_INET connect; C clients
// on dual-stack sockets do not, and that is the path this exercises.
func dialRaw6(addr string) (net.Conn, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, err
	}
	fd, err := syscall.Socket(syscall.AF_INET6, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	sa := &syscall.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
	if err := syscall.Connect(fd, sa); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("connect %s: %w", addr, err)
	}
	f := os.NewFile(uintptr(fd), "raw6")
	defer f.Close()
	return net.FileConn(f)
}

// runTFO connects with TCP Fast Open: the hello line goes out with
// sendto(MSG_FASTOPEN) and there is no connect() call at all.
func runTFO(addr string, res *result) error {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return err
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	hello := []byte(fmt.Sprintf("hello pid=%d bulk=0\n", os.Getpid()))
	sa := &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	if err := syscall.Sendto(fd, hello, syscall.MSG_FASTOPEN, sa); err != nil {
		syscall.Close(fd)
		return fmt.Errorf("sendto MSG_FASTOPEN %s: %w", addr, err)
	}
	f := os.NewFile(uintptr(fd), "tfo")
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		return err
	}
	defer c.Close()
	res.Local = c.LocalAddr().String()
	res.Peer = c.RemoteAddr().String()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	res.Reply = strings.TrimSpace(line)
	return nil
}

var staleListener string

func sockaddr(addr string) (syscall.Sockaddr, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, err
	}
	if ap.Addr().Is4() {
		return &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}, nil
	}
	return &syscall.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}, nil
}

// dialInherited connects the socket this process inherited as fd 3 (made
// by whoever started it, perhaps in another cgroup).
func dialInherited(addr string) (net.Conn, error) {
	sa, err := sockaddr(addr)
	if err != nil {
		return nil, err
	}
	if err := syscall.Connect(3, sa); err != nil {
		return nil, fmt.Errorf("connect inherited fd 3 to %s: %w", addr, err)
	}
	f := os.NewFile(3, "inherited")
	defer f.Close()
	return net.FileConn(f)
}

// dialStale6 makes a connect that the hook sees and that then fails (a
// v6-only socket cannot reach a v4-mapped address), and connects the same
// socket to listener: a record the first connect left must not serve the
// second.
func dialStale6(addr, listener string) (net.Conn, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, err
	}
	fd, err := syscall.Socket(syscall.AF_INET6, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	if err := syscall.SetsockoptInt(fd, syscall.IPPROTO_IPV6, syscall.IPV6_V6ONLY, 1); err != nil {
		syscall.Close(fd)
		return nil, err
	}
	mapped := netip.AddrFrom16(ap.Addr().As16())
	err = syscall.Connect(fd, &syscall.SockaddrInet6{Port: int(ap.Port()), Addr: mapped.As16()})
	if err == nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("the v6-only connect to %s succeeded; the case needs it to fail", mapped)
	}
	fmt.Fprintf(os.Stderr, "first connect failed as meant: %v\n", err)
	sa, err := sockaddr(listener)
	if err != nil {
		syscall.Close(fd)
		return nil, err
	}
	if err := syscall.Connect(fd, sa); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("second connect to %s: %w", listener, err)
	}
	f := os.NewFile(uintptr(fd), "stale6")
	defer f.Close()
	return net.FileConn(f)
}

// runUDP sends the hello as a datagram and waits a moment for an echo.
func runUDP(addr string, res *result) error {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := fmt.Fprintf(c, "hello pid=%d udp\n", os.Getpid()); err != nil {
		return err
	}
	c.SetDeadline(time.Now().Add(time.Second))
	buf := make([]byte, 512)
	n, err := c.Read(buf)
	if err != nil {
		return err
	}
	res.Reply = strings.TrimSpace(string(buf[:n]))
	return nil
}
