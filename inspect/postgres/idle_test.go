package postgres

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/interlock/interlock/inspect"
	"github.com/interlock/interlock/model"
)

// outcome waits for the next session's outcome.
func (p *proxy) outcome(t *testing.T, within time.Duration) inspect.Outcome {
	t.Helper()
	select {
	case o := <-p.outs:
		return o
	case <-time.After(within):
		t.Fatalf("no session ended within %s", within)
		return inspect.Outcome{}
	}
}

// TestIdleSessionEnded: a session left idle past limits.timeouts.postgres.
// idle gets PostgreSQL's idle-session FATAL (57P05) and ends with
// inspect.ErrIdle.
func TestIdleSessionEnded(t *testing.T) {
	p := startProxy(t, proxyOpts{idle: 400 * time.Millisecond})
	c := connect(t, p.dsn(""))
	ctx := context.Background()
	if _, err := c.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	o := p.outcome(t, 5*time.Second)
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Errorf("ended after %s", took)
	}
	if !errors.Is(o.Err, inspect.ErrIdle) {
		t.Fatalf("outcome error %v, want ErrIdle", o.Err)
	}
	// The client reads the FATAL the session ended with.
	_, err := c.Exec(ctx, "SELECT 2")
	if pgCode(err) != "57P05" {
		t.Fatalf("a query after the idle end: %v, want the idle-session FATAL 57P05", err)
	}
}

// TestIdleNotWhileStatementRuns: a statement the server runs longer than
// the idle limit is in flight, not idle.
func TestIdleNotWhileStatementRuns(t *testing.T) {
	p := startProxy(t, proxyOpts{idle: 400 * time.Millisecond})
	c := connect(t, p.dsn(""))
	ctx := context.Background()
	if _, err := c.Exec(ctx, "SELECT pg_sleep(1.5)"); err != nil {
		t.Fatalf("a long statement was cut: %v", err)
	}
	if _, err := c.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatalf("the session did not survive its long statement: %v", err)
	}
}

// holdPolicy holds every statement's decision (as a review does, in the
// broker) for hold, then allows it.
type holdPolicy struct {
	denyPolicy
	hold time.Duration
	held atomic.Int32
}

func (p *holdPolicy) Decide(ctx context.Context, o model.Origin, op model.Operation) model.Decision {
	p.held.Add(1)
	select {
	case <-time.After(p.hold):
	case <-ctx.Done():
		return model.Decision{Action: model.Deny, Rule: "review", Reason: "the session ended while the operation was held"}
	}
	return model.Decision{Action: model.Allow, Rule: "review", Reason: "approved"}
}

// TestIdleNotWhileHeld: a statement held for approval longer than the idle
// limit is not idle: the approval's own timeout decides, not the idle
// timer, and the session goes on.
func TestIdleNotWhileHeld(t *testing.T) {
	pol := &holdPolicy{hold: 1500 * time.Millisecond}
	p := startProxy(t, proxyOpts{idle: 400 * time.Millisecond, policy: pol})
	c := connect(t, p.dsn(""))
	ctx := context.Background()
	var v int
	if err := c.QueryRow(ctx, "SELECT 41 + 1").Scan(&v); err != nil || v != 42 {
		t.Fatalf("the held statement: %d, %v", v, err)
	}
	if pol.held.Load() == 0 {
		t.Fatal("the policy held nothing")
	}
	if err := c.QueryRow(ctx, "SELECT 7").Scan(&v); err != nil || v != 7 {
		t.Fatalf("after the hold: %d, %v", v, err)
	}
	// Idle after that: ended.
	if o := p.outcome(t, 5*time.Second); !errors.Is(o.Err, inspect.ErrIdle) {
		t.Fatalf("outcome error %v, want ErrIdle", o.Err)
	}
}
