package postgres

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/interlock/interlock/inspect"
)

// idleWatch ends a session that has waited for the client's next message
// longer than its idle limit (limits.timeouts.postgres.idle) with nothing
// in flight, as PostgreSQL's idle_session_timeout does. A statement the
// server is still running, a statement held for approval (the client
// goroutine waits in policy, not for the client) and a COMMIT held by the
// effects gate are in flight: the session is not idle while they last,
// however long the approver takes.
type idleWatch struct {
	limit time.Duration
	// since is when the client goroutine began waiting for a message with
	// nothing of it buffered (Unix nanoseconds); 0 while it is not.
	since atomic.Int64
	fired atomic.Bool
}

// waiting marks the client goroutine as waiting for the client from now.
func (w *idleWatch) waiting(buffered int) {
	if w.limit > 0 && buffered == 0 {
		w.since.Store(time.Now().UnixNano())
	}
}

// busy marks it as working on what the client sent.
func (w *idleWatch) busy() {
	if w.limit > 0 {
		w.since.Store(0)
	}
}

// watchIdle runs until ctx ends, and ends the session (shut) when it has
// been idle for the limit.
func (s *session) watchIdle(ctx context.Context, shut func()) {
	limit := s.idle.limit
	t := time.NewTicker(min(max(limit/8, 50*time.Millisecond), 30*time.Second))
	defer t.Stop()
	// lastBusy is when this watch last saw something in flight: the idle
	// time runs from the later of that and the client goroutine's wait,
	// so a statement that ran longer than the limit does not leave the
	// session "idle" the moment its answer is out.
	var lastBusy int64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		if s.q.first() != nil {
			lastBusy = now.UnixNano()
			continue
		}
		since := s.idle.since.Load()
		if since == 0 || now.Sub(time.Unix(0, max(since, lastBusy))) < limit {
			continue
		}
		if !s.cwMu.TryLock() {
			// The server goroutine is writing to the client: not idle.
			lastBusy = now.UnixNano()
			continue
		}
		if s.hold {
			s.cwMu.Unlock()
			lastBusy = now.UnixNano()
			continue
		}
		s.idle.fired.Store(true)
		// What PostgreSQL's idle_session_timeout says, then the end.
		s.cw.Flush()
		s.client.SetWriteDeadline(time.Now().Add(time.Second))
		sendFatal(s.client, s.idleErr())
		s.cwMu.Unlock()
		s.log.Info("ending an idle postgres session", "idle_for", limit)
		shut()
		return
	}
}

func (s *session) idleErr() error {
	return &idleError{limit: s.idle.limit}
}

// idleError is the FATAL the client gets and the session's error.
type idleError struct{ limit time.Duration }

func (e *idleError) Error() string {
	return fmt.Sprintf("terminating connection due to idle-session timeout: no message from the client for %s "+
		"with nothing in flight (interlock limits.timeouts.postgres.idle)", e.limit)
}

func (e *idleError) Unwrap() error { return inspect.ErrIdle }
