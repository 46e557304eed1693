package tcp

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/interlock/interlock/inspect"
)

// Why not io.Copy: between two *net.TCPConn it splices through a pipe it
// takes from the runtime's pool for the whole copy, so every idle session
// holds two pipes (four fds) for its whole life, and the pool gives them
// back to the kernel only when the garbage collector empties it: after a
// flood of sessions, thousands of pipe fds stayed open long after the
// sessions closed. Here a session waits for bytes without a pipe, takes
// one from a bounded pool only while bytes move, and idle pipes are
// closed after a while.

// Pipe pool bounds.
const (
	// DefaultMaxPipes is how many pipes may be open at once; past it a
	// burst is copied through a buffer instead.
	DefaultMaxPipes = 512
	// DefaultKeepPipes is how many idle pipes are kept for the next
	// burst; the rest are closed at once.
	DefaultKeepPipes = 16
	// pipeIdleTTL: an idle pipe unused this long is closed on the next
	// use of the pool.
	pipeIdleTTL = 10 * time.Second
	// spliceMax is the most asked of one splice call; a pipe holds 64
	// KiB by default, so this is never the bound.
	spliceMax   = 1 << 20
	copyBufSize = 32 << 10
)

// Pipes is a bounded pool of kernel pipes for splice(2). It is safe for
// concurrent use.
type Pipes struct {
	max, keep int

	mu   sync.Mutex
	free []*kpipe // idle pipes, the most recently used last
	open int      // pipes open: in use and idle
	bufs sync.Pool
}

type kpipe struct {
	r, w int
	idle time.Time
}

// NewPipes returns a pool of at most max pipes keeping at most keep idle.
func NewPipes(max, keep int) *Pipes {
	return &Pipes{max: max, keep: min(keep, max)}
}

// Open is how many pipes are open, in use or idle.
func (p *Pipes) Open() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.open
}

// get returns a pipe, or nil when max are open and none is free.
func (p *Pipes) get() *kpipe {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reapLocked(time.Now())
	if n := len(p.free); n > 0 {
		k := p.free[n-1]
		p.free[n-1] = nil
		p.free = p.free[:n-1]
		return k
	}
	if p.open >= p.max {
		return nil
	}
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		// EMFILE and friends: the burst goes through a buffer.
		return nil
	}
	p.open++
	return &kpipe{r: fds[0], w: fds[1]}
}

// put gives a pipe back; one that may still hold bytes is closed.
func (p *Pipes) put(k *kpipe, empty bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if !empty || len(p.free) >= p.keep {
		p.closeLocked(k)
	} else {
		k.idle = now
		p.free = append(p.free, k)
	}
	p.reapLocked(now)
}

// reapLocked closes the pipes idle longer than pipeIdleTTL (the oldest
// are first in free).
func (p *Pipes) reapLocked(now time.Time) {
	n := 0
	for n < len(p.free) && now.Sub(p.free[n].idle) > pipeIdleTTL {
		p.closeLocked(p.free[n])
		n++
	}
	if n > 0 {
		m := copy(p.free, p.free[n:])
		clear(p.free[m:])
		p.free = p.free[:m]
	}
}

func (p *Pipes) closeLocked(k *kpipe) {
	unix.Close(k.r)
	unix.Close(k.w)
	p.open--
}

// Close closes the idle pipes; pipes in use are closed when given back.
func (p *Pipes) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, k := range p.free {
		p.closeLocked(k)
	}
	p.free = nil
	p.keep = 0
}

func (p *Pipes) buffer() *[]byte {
	if b, ok := p.bufs.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, copyBufSize)
	return &b
}

// relay moves one direction's bytes and shares the session's idle clock
// with the other direction.
type relay struct {
	pipes *Pipes
	idle  time.Duration
	// last is when a byte last moved either way (Unix nanoseconds).
	last *atomic.Int64
}

func (r *relay) touch() { r.last.Store(time.Now().UnixNano()) }

// armIdle sets src's read deadline to the end of the idle period.
func (r *relay) armIdle(src net.Conn) {
	if r.idle > 0 {
		src.SetReadDeadline(time.Unix(0, r.last.Load()).Add(r.idle))
	}
}

// timedOut says what a read error means: idle says the session is idle
// (nothing moved either way for r.idle), retry that only this direction
// was quiet.
func (r *relay) timedOut(err error) (idle, retry bool) {
	if r.idle <= 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		return false, false
	}
	if time.Since(time.Unix(0, r.last.Load())) < r.idle {
		return false, true
	}
	return true, false
}

func (r *relay) idleErr() error {
	return fmt.Errorf("%w: no byte either way for %s", inspect.ErrIdle, r.idle)
}

// netConner is a connection wrapping another (the engine's first-byte
// guard): past the first byte, the bytes can move between the sockets
// underneath.
type netConner interface{ NetConn() net.Conn }

func rawTCP(c net.Conn) (*net.TCPConn, bool) {
	for {
		switch x := c.(type) {
		case *net.TCPConn:
			return x, true
		case netConner:
			c = x.NetConn()
		default:
			return nil, false
		}
	}
}

// copy moves src's bytes to dst until src's EOF (nil) or an error.
func (r *relay) copy(dst, src net.Conn) (n int64, err error) {
	rs, sok := rawTCP(src)
	rd, dok := rawTCP(dst)
	if !sok || !dok {
		return r.buffered(dst, src, false)
	}
	if _, raw := src.(*net.TCPConn); !raw {
		// The first bytes go through the wrapper, which may refuse a
		// client that sends none in time.
		m, err := r.buffered(dst, src, true)
		n += m
		if err != nil || m == 0 {
			return n, err
		}
	}
	m, err := r.splice(rd, rs)
	return n + m, err
}

// buffered copies through a buffer: all of src, or with once only its
// next read (m == 0 then means EOF).
func (r *relay) buffered(dst, src net.Conn, once bool) (n int64, err error) {
	bp := r.pipes.buffer()
	defer r.pipes.bufs.Put(bp)
	buf := *bp
	for {
		r.armIdle(src)
		nr, er := src.Read(buf)
		if nr > 0 {
			nw, ew := dst.Write(buf[:nr])
			n += int64(nw)
			r.touch()
			if ew != nil {
				return n, ew
			}
			if once {
				return n, nil
			}
		}
		if er != nil {
			if er == io.EOF {
				return n, nil
			}
			if idle, retry := r.timedOut(er); retry {
				continue
			} else if idle {
				return n, r.idleErr()
			}
			return n, er
		}
	}
}

// splice moves src's bytes to dst through a pipe taken only while they
// move.
func (r *relay) splice(dst, src *net.TCPConn) (n int64, err error) {
	srcRC, err := src.SyscallConn()
	if err != nil {
		return 0, err
	}
	dstRC, err := dst.SyscallConn()
	if err != nil {
		return 0, err
	}
	for {
		if err := r.waitReadable(src, srcRC); err != nil {
			return n, err
		}
		k := r.pipes.get()
		if k == nil {
			// No pipe to be had: this burst goes through a buffer.
			m, err := r.buffered(dst, src, true)
			n += m
			if err != nil || m == 0 {
				return n, err
			}
			continue
		}
		m, eof, empty, err := burst(k, srcRC, dstRC)
		r.pipes.put(k, empty)
		n += m
		if m > 0 {
			r.touch()
		}
		if err != nil || eof {
			return n, err
		}
	}
}

// waitReadable waits, holding no pipe, until src has bytes or its EOF, or
// returns its error (the peek reports a reset once: it must not be lost).
func (r *relay) waitReadable(src *net.TCPConn, rc syscall.RawConn) error {
	for {
		r.armIdle(src)
		var peekErr error
		err := rc.Read(func(fd uintptr) bool {
			var b [1]byte
			for {
				_, _, e := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
				switch e {
				case nil:
				case unix.EINTR:
					continue
				case unix.EAGAIN:
					return false // wait until readable
				default:
					peekErr = os.NewSyscallError("recvfrom", e)
				}
				return true
			}
		})
		if err == nil {
			return peekErr
		}
		if idle, retry := r.timedOut(err); retry {
			continue
		} else if idle {
			return r.idleErr()
		}
		return err
	}
}

// burst splices what src has into the pipe and out to dst until src has
// nothing more for now. empty says the pipe holds nothing (it can be
// reused).
func burst(k *kpipe, srcRC, dstRC syscall.RawConn) (moved int64, eof, empty bool, err error) {
	for {
		var in int64
		var serr error
		if cerr := srcRC.Control(func(fd uintptr) {
			for {
				in, serr = unix.Splice(int(fd), nil, k.w, nil, spliceMax, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
				if serr != unix.EINTR {
					return
				}
			}
		}); cerr != nil {
			return moved, false, true, cerr
		}
		switch {
		case serr == unix.EAGAIN:
			return moved, false, true, nil
		case serr != nil:
			return moved, false, true, os.NewSyscallError("splice", serr)
		case in == 0:
			return moved, true, true, nil
		}
		for in > 0 {
			var out int64
			var werr error
			if cerr := dstRC.Write(func(fd uintptr) bool {
				out, werr = unix.Splice(k.r, nil, int(fd), nil, int(in), unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
				return werr != unix.EAGAIN // wait for room in dst
			}); cerr != nil {
				return moved, false, false, cerr
			}
			if werr == unix.EINTR {
				continue
			}
			if werr != nil {
				return moved, false, false, os.NewSyscallError("splice", werr)
			}
			in -= out
			moved += out
		}
	}
}
