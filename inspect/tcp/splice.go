package tcp

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
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
	// A 64 KiB pipe takes a wake-up per 64 KiB; io.Copy's pipes are
	// 1 MiB for that reason. Pages are only used while bytes are in the
	// pipe. Past the per-user pipe page limit the kernel refuses, and the
	// default size stays.
	for _, size := range []int{spliceMax, spliceMax / 4} {
		if _, err := unix.FcntlInt(uintptr(fds[0]), unix.F_SETPIPE_SZ, size); err == nil {
			break
		}
	}
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
// move. The read splice itself is the readiness check: when src has
// nothing, the pipe (empty then) goes back to the pool and the poller
// waits holding none. Per wake-up this costs what io.Copy's splice does;
// the idle deadline is armed once and again only when it expires while
// bytes still move.
func (r *relay) splice(dst, src *net.TCPConn) (n int64, err error) {
	srcRC, err := src.SyscallConn()
	if err != nil {
		return 0, err
	}
	dstRC, err := dst.SyscallConn()
	if err != nil {
		return 0, err
	}
	var k *kpipe
	defer func() {
		if k != nil {
			r.pipes.put(k, true)
		}
	}()
	r.armIdle(src)
	for {
		var (
			in     int64
			serr   error
			noPipe bool
		)
		rerr := srcRC.Read(func(fd uintptr) bool {
			if k == nil {
				if k = r.pipes.get(); k == nil {
					noPipe = true
					return true
				}
			}
			for {
				in, serr = rawSplice(int(fd), k.w, spliceMax)
				if serr != unix.EINTR {
					break
				}
			}
			if serr == unix.EAGAIN {
				// Nothing to read: wait without a pipe.
				r.pipes.put(k, true)
				k = nil
				return false
			}
			return true
		})
		if rerr != nil {
			if idle, retry := r.timedOut(rerr); retry {
				r.armIdle(src)
				continue
			} else if idle {
				return n, r.idleErr()
			}
			return n, rerr
		}
		if noPipe {
			// No pipe to be had: this burst goes through a buffer.
			m, err := r.buffered(dst, src, true)
			n += m
			if err != nil || m == 0 {
				return n, err
			}
			r.armIdle(src)
			continue
		}
		if serr != nil {
			return n, os.NewSyscallError("splice", serr)
		}
		if in == 0 {
			return n, nil // EOF
		}
		for in > 0 {
			var out int64
			var werr error
			if cerr := dstRC.Write(func(fd uintptr) bool {
				out, werr = rawSplice(k.r, int(fd), int(in))
				return werr != unix.EAGAIN // wait for room in dst
			}); cerr != nil {
				r.pipes.put(k, false)
				k = nil
				return n, cerr
			}
			if werr == unix.EINTR {
				continue
			}
			if werr != nil {
				r.pipes.put(k, false)
				k = nil
				return n, os.NewSyscallError("splice", werr)
			}
			in -= out
			n += out
		}
		r.touch()
	}
}

// rawSplice is a non-blocking splice(2) (the sockets and the pipe are all
// non-blocking) made as a raw system call, outside the runtime's
// system-call accounting, as the sessions' reads and writes are
// (internal/rawconn): it never waits, so there is no P to hand off.
func rawSplice(from, to, n int) (int64, error) {
	r, _, e := unix.RawSyscall6(unix.SYS_SPLICE, uintptr(from), 0, uintptr(to), 0, uintptr(n), unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
	if e != 0 {
		return 0, e
	}
	return int64(r), nil
}
