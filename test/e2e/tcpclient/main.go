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
	network := flag.String("net", "tcp", "tcp, tcp4, tcp6, raw6 (an AF_INET6 socket connecting to the address as written) or tfo (TCP Fast Open, no connect call)")
	bulk := flag.Int("bulk", 0, "bytes to send after the hello line, then half-close")
	hold := flag.String("hold", "", "after the first reply, wait until this file exists, then say hello again on the same connection")
	flag.Parse()
	res := result{PID: os.Getpid(), UID: os.Getuid()}
	err := run(*network, *addr, *bulk, *hold, &res)
	if err != nil {
		res.Error = err.Error()
	}
	json.NewEncoder(os.Stdout).Encode(res)
	if err != nil {
		os.Exit(1)
	}
}

func run(network, addr string, bulk int, hold string, res *result) error {
	var c net.Conn
	var err error
	switch network {
	case "raw6":
		c, err = dialRaw6(addr)
	case "tfo":
		return runTFO(addr, res)
	default:
		c, err = net.DialTimeout(network, addr, 5*time.Second)
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
