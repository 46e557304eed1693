// Package rawconn reads and writes a network connection's socket with raw
// system calls, outside the Go scheduler's system-call accounting.
//
// A read or write of a net.Conn enters the runtime's system-call state
// (entersyscall), as any system call that might block must. A socket of a
// net.Conn never blocks (it is non-blocking; the poller parks the goroutine
// on EAGAIN), but the runtime cannot know that: each entry may wake the
// sysmon thread from its sleep, keeps it polling every 20 µs while Ps sit
// in system calls, and lets it hand a P held by a short write to another
// thread. On a VM where a wake-up is an interrupt through the hypervisor,
// that bookkeeping cost a proxy relaying PostgreSQL's small messages about
// a third of its CPU (docs/benchmarks.md, "Raw socket I/O").
//
// Wrap keeps everything else of the connection: deadlines (the poller
// still parks the goroutine and honours them), Close, CloseWrite, and
// NetConn for code that splices the underlying *net.TCPConn.
package rawconn

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// Conn is a net.Conn whose Read and Write use raw system calls on its
// socket. Concurrent Reads (or Writes) are serialized, as net.Conn's are.
type Conn struct {
	net.Conn
	rc syscall.RawConn
	// network names the socket's kind in errors ("tcp", "unix"), as
	// net's own errors do, even when the local address is unknown.
	network string

	rmu   sync.Mutex
	rbuf  []byte
	rn    int
	rerr  syscall.Errno
	readF func(uintptr) bool

	wmu    sync.Mutex
	wbuf   []byte
	wn     int
	werr   syscall.Errno
	wzero  bool // write(2) took nothing and said nothing
	writeF func(uintptr) bool
}

// Wrap returns c reading and writing through raw system calls when c is a
// stream connection with a socket the runtime polls (a *net.TCPConn, or a
// *net.UnixConn of a SOCK_STREAM socket: on a datagram socket an empty
// read is a message, not the end); any other connection is returned as it
// is.
func Wrap(c net.Conn) net.Conn {
	var rc syscall.RawConn
	var err error
	network := "tcp"
	switch x := c.(type) {
	case *net.TCPConn:
		rc, err = x.SyscallConn()
	case *net.UnixConn:
		network = "unix"
		rc, err = x.SyscallConn()
		if err == nil && !isStream(rc) {
			return c
		}
	default:
		return c
	}
	if err != nil {
		return c
	}
	w := &Conn{Conn: c, rc: rc, network: network}
	// Method values made once: a closure per call would be allocated.
	w.readF = w.rawRead
	w.writeF = w.rawWrite
	return w
}

// isStream reports whether rc's socket is SOCK_STREAM (false when that
// cannot be read).
func isStream(rc syscall.RawConn) bool {
	typ, serr := -1, error(nil)
	if err := rc.Control(func(fd uintptr) {
		typ, serr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_TYPE)
	}); err != nil || serr != nil {
		return false
	}
	return typ == syscall.SOCK_STREAM
}

// NetConn returns the wrapped connection, for code that needs its type
// (splice between two *net.TCPConn).
func (c *Conn) NetConn() net.Conn { return c.Conn }

// SyscallConn returns the wrapped connection's raw connection.
func (c *Conn) SyscallConn() (syscall.RawConn, error) { return c.rc, nil }

// CloseWrite shuts down the writing side (Wrap wraps only connections
// that have one).
func (c *Conn) CloseWrite() error {
	return c.Conn.(interface{ CloseWrite() error }).CloseWrite()
}

// Read reads like net.Conn's Read: at most len(p) bytes of what the socket
// holds, waiting (and honouring the read deadline) while it holds none.
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	c.rbuf, c.rn, c.rerr = p, 0, 0
	err := c.rc.Read(c.readF)
	n, errno := c.rn, c.rerr
	c.rbuf = nil
	switch {
	case err != nil:
		return 0, c.opError("read", err)
	case errno != 0:
		return 0, c.opError("read", os.NewSyscallError("read", errno))
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// rawRead is one attempt: false asks the poller to wait for the socket.
func (c *Conn) rawRead(fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&c.rbuf[0])), uintptr(len(c.rbuf)))
		switch e {
		case 0:
			c.rn = int(n)
			return true
		case syscall.EINTR:
			// The goroutine is not in a system call to the runtime, so
			// its preemption signal can interrupt the read.
			continue
		case syscall.EAGAIN:
			return false
		}
		c.rerr = e
		return true
	}
}

// Write writes all of p like net.Conn's Write, waiting (and honouring the
// write deadline) while the socket's buffer is full.
func (c *Conn) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wbuf, c.wn, c.werr, c.wzero = p, 0, 0, false
	err := c.rc.Write(c.writeF)
	n, errno := c.wn, c.werr
	c.wbuf = nil
	switch {
	case err != nil:
		return n, c.opError("write", err)
	case errno != 0:
		return n, c.opError("write", os.NewSyscallError("write", errno))
	case c.wzero:
		// As net's own Write says it: retrying would spin.
		return n, c.opError("write", io.ErrUnexpectedEOF)
	}
	return n, nil
}

func (c *Conn) rawWrite(fd uintptr) bool {
	for c.wn < len(c.wbuf) {
		rest := c.wbuf[c.wn:]
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&rest[0])), uintptr(len(rest)))
		switch e {
		case 0:
			if n == 0 {
				c.wzero = true
				return true
			}
			c.wn += int(n)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			c.werr = e
			return true
		}
	}
	return true
}

// opError gives errors the form net.Conn's have (a *net.OpError naming
// the operation and the addresses), so that errors.Is(err, net.ErrClosed)
// and os.ErrDeadlineExceeded, and net.Error's Timeout, work as before.
func (c *Conn) opError(op string, err error) error {
	if oe, ok := err.(*net.OpError); ok {
		err = oe.Err
	}
	return &net.OpError{Op: op, Net: c.network, Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}
