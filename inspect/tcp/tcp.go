// Package tcp is the opaque passthrough for `protocol: tcp` targets: it
// cannot see operations inside the stream, so it records who connected,
// where, for how long, and how many bytes went each way.
package tcp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/interlock/interlock/inspect"
	"github.com/interlock/interlock/model"
)

// Handler proxies a TCP session to the client's original destination.
type Handler struct {
	Policy inspect.ConnectPolicy
	// DialTimeout bounds the upstream connect; 10s when zero.
	DialTimeout time.Duration
	Logger      *slog.Logger
	// Pipes are the pipes sessions splice through; a pool of
	// DefaultMaxPipes when nil.
	Pipes *Pipes

	pipesOnce sync.Once
	pipesDef  *Pipes
}

func (h *Handler) pipes() *Pipes {
	if h.Pipes != nil {
		return h.Pipes
	}
	h.pipesOnce.Do(func() { h.pipesDef = NewPipes(DefaultMaxPipes, DefaultKeepPipes) })
	return h.pipesDef
}

// PipesOpen is how many splice pipes the handler's sessions hold open, in
// use or idle.
func (h *Handler) PipesOpen() int { return h.pipes().Open() }

// Serve implements inspect.Handler.
func (h *Handler) Serve(ctx context.Context, client net.Conn, s *inspect.Session) (out inspect.Outcome) {
	log := h.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("session", s.ID, "target", s.Origin.Target.Name)
	defer client.Close()

	decision := model.Decision{Action: model.Allow, Reason: "default"}
	if h.Policy != nil {
		decision = h.Policy.DecideConnect(ctx, s.Origin)
	}
	if decision.Action != model.Allow {
		s.Open(ctx, decision, model.SessionOpen{})
		return inspect.Outcome{Refused: true, Err: fmt.Errorf("denied by policy rule %q", decision.Rule)}
	}

	// The open record grants access to the target, so it is synced before
	// a single byte of the client's reaches it. The TCP handshake with the
	// target carries none of them, so it runs while the record is synced;
	// if the journal fails, that connection is closed unused.
	timeout := h.DialTimeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	type dialed struct {
		conn net.Conn
		err  error
	}
	dialCtx, cancelDial := context.WithCancel(ctx)
	defer cancelDial()
	dialCh := make(chan dialed, 1)
	go func() {
		d := net.Dialer{Timeout: timeout}
		c, err := d.DialContext(dialCtx, "tcp", s.Origin.OrigDst.String())
		dialCh <- dialed{c, err}
	}()
	if err := s.Open(ctx, decision, model.SessionOpen{}); err != nil {
		cancelDial()
		if r := <-dialCh; r.conn != nil {
			r.conn.Close()
		}
		log.Error("refusing session: the journal cannot record it", "err", err)
		return inspect.Outcome{Refused: true, Err: fmt.Errorf("journal session open: %w", err)}
	}
	r := <-dialCh
	if r.err != nil {
		log.Info("target unreachable", "addr", s.Origin.OrigDst, "err", r.err)
		return inspect.Outcome{Refused: true, Err: fmt.Errorf("dial %s: %w", s.Origin.OrigDst, r.err)}
	}
	upstream := r.conn
	defer upstream.Close()

	up, down, err := h.pipes().Relay(ctx, client, upstream, s.Idle)
	log.Debug("session closed", "bytes_up", up, "bytes_down", down, "err", err)
	return inspect.Outcome{BytesUp: up, BytesDown: down, Err: err}
}

// Pipe copies both directions until both are done. A clean EOF on one side
// is passed on as a half-close, so protocols that shut down their write
// side and keep reading keep working; an error on either side aborts both.
// Between two TCP connections the bytes are spliced (splice(2)): they do
// not pass through userspace buffers.
func Pipe(ctx context.Context, client, upstream net.Conn) (up, down int64, err error) {
	p := NewPipes(4, 4)
	defer p.Close()
	return p.Relay(ctx, client, upstream, 0)
}

// Relay is Pipe with this pool's pipes, ending the session with
// inspect.ErrIdle when no byte moved either way for idle (0: never).
func (p *Pipes) Relay(ctx context.Context, client, upstream net.Conn, idle time.Duration) (up, down int64, err error) {
	var (
		wg        sync.WaitGroup
		abort     sync.Once
		errUp     error
		errDown   error
		cancelled atomic.Bool
		last      atomic.Int64
	)
	last.Store(time.Now().UnixNano())
	kill := func() {
		abort.Do(func() {
			client.Close()
			upstream.Close()
		})
	}
	// Shutdown of interlock ends sessions that would otherwise idle on.
	// A callback, not a goroutine waiting on ctx: one goroutine fewer to
	// start and schedule per session, on the connect path.
	stop := context.AfterFunc(ctx, func() {
		cancelled.Store(true)
		kill()
	})
	copyDir := func(dst, src net.Conn, n *int64, e *error) {
		defer wg.Done()
		r := relay{pipes: p, idle: idle, last: &last}
		*n, *e = r.copy(dst, src)
		if *e != nil {
			kill()
			return
		}
		raw, _ := rawTCP(dst)
		if raw == nil {
			if cw, ok := dst.(interface{ CloseWrite() error }); ok {
				if err := cw.CloseWrite(); err != nil {
					kill()
				}
			}
			return
		}
		if err := raw.CloseWrite(); err != nil {
			kill()
		}
	}
	wg.Add(2)
	go copyDir(upstream, client, &up, &errUp)
	copyDir(client, upstream, &down, &errDown)
	wg.Wait()
	stop()
	// An idle session ends with the idle error, not with the closed
	// connection the other direction then saw.
	if errors.Is(errUp, inspect.ErrIdle) {
		errDown = nil
	} else if errors.Is(errDown, inspect.ErrIdle) {
		errUp = nil
	}
	err = errors.Join(quiet(errUp), quiet(errDown))
	if cancelled.Load() {
		err = fmt.Errorf("session ended by interlock: %w", context.Cause(ctx))
	}
	return up, down, err
}

// quiet drops the errors that only say the other direction closed both
// sockets first.
func quiet(err error) error {
	if err == nil || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
