// Package tcp is the opaque passthrough for `protocol: tcp` targets: it
// cannot see operations inside the stream, so it records who connected,
// where, for how long, and how many bytes went each way.
package tcp

import (
	"context"
	"errors"
	"fmt"
	"io"
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
	Journal model.Recorder
	Policy  inspect.ConnectPolicy
	// DialTimeout bounds the upstream connect; 10s when zero.
	DialTimeout time.Duration
	Logger      *slog.Logger
}

// Serve implements inspect.Handler.
func (h *Handler) Serve(ctx context.Context, client net.Conn, s *inspect.Session) (out inspect.Outcome) {
	log := h.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("session", s.ID, "target", s.Origin.Target.Name)
	start := time.Now()
	defer client.Close()

	decision := model.Decision{Action: model.Allow, Reason: "default"}
	if h.Policy != nil {
		decision = h.Policy.DecideConnect(ctx, s.Origin)
	}
	open := model.SessionOpen{
		Target:   s.Origin.Target,
		OrigDst:  s.Origin.OrigDst,
		Client:   s.Origin.Client,
		Identity: s.Origin.Identity,
		Decision: decision,
	}
	// The open record grants access to the target, so it is synced before
	// a single byte (or even the TCP handshake) reaches it.
	if _, err := h.Journal.Append(ctx, model.Record{Kind: model.KindSessionOpen, Session: s.ID, Time: s.Origin.Accepted, Data: open}, model.Synced); err != nil {
		log.Error("refusing session: the journal cannot record it", "err", err)
		return inspect.Outcome{Refused: true, Err: fmt.Errorf("journal session open: %w", err)}
	}
	closeRec := func(o inspect.Outcome) inspect.Outcome {
		c := model.SessionClose{BytesUp: o.BytesUp, BytesDown: o.BytesDown, DurationNS: time.Since(start).Nanoseconds()}
		if o.Err != nil {
			c.Error = o.Err.Error()
		}
		// A context that is already cancelled (shutdown) must not stop the
		// close record: it is what ends the session in the evidence.
		if _, err := h.Journal.Append(context.WithoutCancel(ctx), model.Record{Kind: model.KindSessionClose, Session: s.ID, Data: c}, model.Committed); err != nil {
			log.Error("journal session close", "err", err)
		}
		return o
	}
	if decision.Action != model.Allow {
		return closeRec(inspect.Outcome{Refused: true, Err: fmt.Errorf("denied by policy rule %q", decision.Rule)})
	}

	timeout := h.DialTimeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	d := net.Dialer{Timeout: timeout}
	upstream, err := d.DialContext(ctx, "tcp", s.Origin.OrigDst.String())
	if err != nil {
		log.Info("target unreachable", "addr", s.Origin.OrigDst, "err", err)
		return closeRec(inspect.Outcome{Refused: true, Err: fmt.Errorf("dial %s: %w", s.Origin.OrigDst, err)})
	}
	defer upstream.Close()

	up, down, err := Pipe(ctx, client, upstream)
	o := inspect.Outcome{BytesUp: up, BytesDown: down, Err: err}
	log.Debug("session closed", "bytes_up", up, "bytes_down", down, "err", err)
	return closeRec(o)
}

// Pipe copies both directions until both are done. A clean EOF on one side
// is passed on as a half-close, so protocols that shut down their write
// side and keep reading keep working; an error on either side aborts both.
// Between two *net.TCPConn, io.Copy uses splice(2): the bytes do not pass
// through userspace buffers.
func Pipe(ctx context.Context, client, upstream net.Conn) (up, down int64, err error) {
	var (
		wg        sync.WaitGroup
		abort     sync.Once
		errUp     error
		errDown   error
		cancelled atomic.Bool
		finished  = make(chan struct{})
	)
	kill := func() {
		abort.Do(func() {
			client.Close()
			upstream.Close()
		})
	}
	// Shutdown of interlock ends sessions that would otherwise idle on.
	go func() {
		select {
		case <-ctx.Done():
			cancelled.Store(true)
			kill()
		case <-finished:
		}
	}()
	copyDir := func(dst, src net.Conn, n *int64, e *error) {
		defer wg.Done()
		*n, *e = io.Copy(dst, src)
		if *e != nil {
			kill()
			return
		}
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			if err := cw.CloseWrite(); err != nil {
				kill()
			}
		}
	}
	wg.Add(2)
	go copyDir(upstream, client, &up, &errUp)
	copyDir(client, upstream, &down, &errDown)
	wg.Wait()
	close(finished)
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
