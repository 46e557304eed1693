package engine

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// firstByteConn is a client connection that must deliver its first byte
// by a deadline (limits.timeouts.PROTOCOL.first_byte). Until it does, the
// read deadline underneath is the earlier of that deadline and the one
// the handler asked for; then the handler's alone. It does not read
// ahead, so a handler that peeks at the socket (postgres refusing
// plaintext sent after an SSLRequest) sees what the client sent.
//
// The guard is the engine's, not each handler's, so that every protocol
// gets it the same way: postgres before it dials anything, ssh before
// the client's SSH handshake (nothing upstream happens until the client
// has authenticated), tcp after the upstream connect (a tcp server may
// speak first, and the client answer it).
type firstByteConn struct {
	net.Conn
	limit    time.Duration
	deadline time.Time
	protocol string

	mu sync.Mutex
	// asked is the read deadline the handler set; got says the first
	// byte came.
	asked time.Time
	got   bool
	// gotFast mirrors got for the read path; expired says the guard
	// closed the door.
	gotFast atomic.Bool
	expired atomic.Bool
}

func guardFirstByte(c net.Conn, limit time.Duration, accepted time.Time, protocol string) *firstByteConn {
	if accepted.IsZero() {
		accepted = time.Now()
	}
	g := &firstByteConn{Conn: c, limit: limit, deadline: accepted.Add(limit), protocol: protocol}
	c.SetReadDeadline(g.deadline)
	return g
}

// firstByteError is the read error of a client that sent nothing in time.
// It is a timeout (net.Error), but not os.ErrDeadlineExceeded: code that
// retries its own deadlines must not retry this one.
type firstByteError struct {
	limit    time.Duration
	protocol string
}

func (e *firstByteError) Error() string {
	return fmt.Sprintf("the client sent nothing within %s of connecting (limits.timeouts.%s.first_byte)", e.limit, e.protocol)
}

func (e *firstByteError) Timeout() bool   { return true }
func (e *firstByteError) Temporary() bool { return false }

func (g *firstByteConn) Read(b []byte) (int, error) {
	if g.gotFast.Load() {
		return g.Conn.Read(b)
	}
	if g.expired.Load() {
		return 0, &firstByteError{g.limit, g.protocol}
	}
	n, err := g.Conn.Read(b)
	if n > 0 {
		g.mu.Lock()
		if !g.got {
			g.got = true
			g.gotFast.Store(true)
			g.Conn.SetReadDeadline(g.asked)
		}
		g.mu.Unlock()
		return n, err
	}
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		g.mu.Lock()
		// Ours, unless the handler's own deadline came first.
		ours := !g.got && !time.Now().Before(g.deadline) && (g.asked.IsZero() || !g.asked.Before(g.deadline))
		g.mu.Unlock()
		if ours {
			g.expired.Store(true)
			return 0, &firstByteError{g.limit, g.protocol}
		}
	}
	return n, err
}

// effective is the read deadline to set underneath for the handler's t.
func (g *firstByteConn) effective(t time.Time) time.Time {
	if g.got || (!t.IsZero() && t.Before(g.deadline)) {
		return t
	}
	return g.deadline
}

func (g *firstByteConn) SetDeadline(t time.Time) error {
	g.mu.Lock()
	g.asked = t
	rd := g.effective(t)
	g.mu.Unlock()
	if err := g.Conn.SetWriteDeadline(t); err != nil {
		return err
	}
	return g.Conn.SetReadDeadline(rd)
}

func (g *firstByteConn) SetReadDeadline(t time.Time) error {
	g.mu.Lock()
	g.asked = t
	rd := g.effective(t)
	g.mu.Unlock()
	return g.Conn.SetReadDeadline(rd)
}

// NetConn is the connection underneath (for splicing past the first
// byte).
func (g *firstByteConn) NetConn() net.Conn { return g.Conn }

// SyscallConn gives the socket underneath, for peeking at it.
func (g *firstByteConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := g.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errors.New("engine: the connection has no socket underneath")
}

// CloseWrite half-closes the connection underneath.
func (g *firstByteConn) CloseWrite() error {
	if cw, ok := g.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.New("engine: the connection cannot half-close")
}
