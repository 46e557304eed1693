package inspect

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/interlock/interlock/model"
)

// Lifecycle is the one owner of a session's lifecycle records and of the
// panics of the handlers that serve it. Every handler follows the same
// rule through it:
//
//   - session.open is written by the handler, through Session.Open, once it
//     knows its decision and what the client asked for. It is synced before
//     the session reaches the target: it grants access.
//   - session.close is written by Lifecycle.Serve when the handler returns
//     (or panics), if and only if session.open was written. It is committed
//     before Serve returns, and shutdown does not cancel it: it ends the
//     session in the evidence.
//   - A panic in a session, on Serve's goroutine or one the handler started
//     (Session.Recovered), ends that session only, and is counted once.
type Lifecycle struct {
	Journal model.Recorder
	// Panicked, when set, hears of every panic recovered in a session: a
	// bug, which the daemon counts for operators.
	Panicked func(proto model.Protocol)
	Logger   *slog.Logger

	panics atomic.Int64
}

// Panics is how many session panics l has recovered.
func (l *Lifecycle) Panics() int64 { return l.panics.Load() }

func (l *Lifecycle) log() *slog.Logger {
	if l.Logger == nil {
		return slog.Default()
	}
	return l.Logger
}

// ErrNotServed is returned by Session.Open for a session that no Lifecycle
// serves: without one there is nowhere its records would go.
var ErrNotServed = errors.New("inspect: session is not served through a Lifecycle")

// Serve runs h on one session and writes its close record. client is
// closed when Serve returns.
func (l *Lifecycle) Serve(ctx context.Context, h Handler, client net.Conn, s *Session) (out Outcome) {
	s.life = l
	start := time.Now()
	defer func() {
		if p := recover(); p != nil {
			client.Close()
			out = Outcome{Err: s.panicked(p)}
		}
		l.closeRecord(s, start, out)
	}()
	return h.Serve(ctx, client, s)
}

func (l *Lifecycle) closeRecord(s *Session, start time.Time, o Outcome) {
	if !s.opened.Load() {
		return
	}
	c := model.SessionClose{BytesUp: o.BytesUp, BytesDown: o.BytesDown, DurationNS: time.Since(start).Nanoseconds()}
	if o.Err != nil {
		c.Error = o.Err.Error()
	}
	if _, err := l.Journal.Append(context.Background(), model.Record{Kind: model.KindSessionClose, Session: s.ID, Data: c}, model.Committed); err != nil {
		l.log().Error("journal session close", "session", s.ID, "err", err)
	}
}

// Open writes the session's session.open entry with decision d. open
// carries what the protocol knows (its startup); Open fills in the
// origin (target, addresses, identity) and the decision. The entry is
// synced before Open returns; an error means the session must not reach
// the target. A session is opened once: a second call is an error.
//
// The record is written even when ctx is done (shutdown): a refusal
// must still reach the evidence.
func (s *Session) Open(ctx context.Context, d model.Decision, open model.SessionOpen) error {
	if s.life == nil || s.life.Journal == nil {
		return ErrNotServed
	}
	if s.opened.Load() {
		return fmt.Errorf("inspect: session %s opened twice", s.ID)
	}
	o := s.Origin
	open.Target, open.OrigDst, open.Client, open.Identity, open.Decision = o.Target, o.OrigDst, o.Client, o.Identity, d
	rec := model.Record{Kind: model.KindSessionOpen, Session: s.ID, Time: o.Accepted, Data: open}
	if _, err := s.life.Journal.Append(context.WithoutCancel(ctx), rec, model.Synced); err != nil {
		if d.Action != model.Allow {
			s.life.log().Error("journal a refused session", "session", s.ID, "err", err)
		}
		return err
	}
	s.opened.Store(true)
	return nil
}

// Recovered counts and logs a panic recovered on a goroutine a handler
// started for the session, and returns the error the session ends with.
// The handler must then end the session: a panic on any goroutine it does
// not recover stops the daemon, one it recovers ends that session only.
func (s *Session) Recovered(p any) error { return s.panicked(p) }

func (s *Session) panicked(p any) error {
	log := slog.Default()
	if l := s.life; l != nil {
		l.panics.Add(1)
		if l.Panicked != nil {
			l.Panicked(s.Origin.Target.Protocol)
		}
		log = l.log()
	}
	log.Error("session panicked; it is closed, the daemon keeps serving", "session", s.ID,
		"target", s.Origin.Target.Name, "panic", p, "stack", string(debug.Stack()))
	return fmt.Errorf("internal error: %v", p)
}
