package ssh

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/interlock/interlock/internal/testkit"
	"github.com/interlock/interlock/model"
)

// closeError waits for the one session's close record and returns its
// error.
func (r *rig) closeError() string {
	r.t.Helper()
	r.waitClosed(1)
	return testkit.Data[model.SessionClose](r.j, model.KindSessionClose)[0].Error
}

// TestIdleSSHSessionEnded: a session with no traffic for the idle limit is
// ended, and its close record says why.
func TestIdleSSHSessionEnded(t *testing.T) {
	// Output every 100 ms against an idle limit 10 times as long: a loaded
	// machine's pauses do not make the talking command idle.
	r := newRig(t, rigOpts{idle: time.Second})
	c := r.mustDial()
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("an idle session was not ended")
	}
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Errorf("ended after %s", took)
	}
	if e := r.closeError(); !strings.Contains(e, "idle longer than limits.timeouts allows") {
		t.Errorf("close record error %q", e)
	}
}

// TestIdleSSHOutputKeepsAlive: a command printing now and then keeps the
// session alive past the idle limit; a command silent for longer than the
// limit is idle (ServerAliveInterval on the client keeps such a one
// alive).
func TestIdleSSHOutputKeepsAlive(t *testing.T) {
	// Output every 100 ms against an idle limit 10 times as long: a loaded
	// machine's pauses do not make the talking command idle.
	r := newRig(t, rigOpts{idle: time.Second})
	c := r.mustDial()
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	out, err := sess.Output("for i in 1 2 3 4 5 6 7 8 9 10 11 12; do echo $i; sleep 0.1; done")
	if err != nil || !strings.HasSuffix(string(out), "12\n") {
		t.Fatalf("a talking command: %q, %v", out, err)
	}
	sess, err = c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if out, err := sess.Output("sleep 4; echo late"); err == nil {
		t.Fatalf("a command silent for longer than idle ran to its end: %q", out)
	}
}

// holdingPolicy holds each exec's decision for hold (a review waiting for
// its approver), then allows it.
type holdingPolicy struct {
	testPolicy
	hold time.Duration
}

func (p holdingPolicy) Decide(ctx context.Context, o model.Origin, op model.Operation) model.Decision {
	if op.Kind == "exec" {
		select {
		case <-time.After(p.hold):
		case <-ctx.Done():
			return model.Decision{Action: model.Deny, Rule: "review", Reason: "no decision before the session ended"}
		}
		return model.Decision{Action: model.Allow, Rule: "review", Reason: "approved"}
	}
	return p.testPolicy.Decide(ctx, o, op)
}

// TestIdleSSHNotWhileHeld: an exec held for approval longer than the idle
// limit is not idle; it runs once approved.
func TestIdleSSHNotWhileHeld(t *testing.T) {
	r := newRig(t, rigOpts{idle: 400 * time.Millisecond, policy: holdingPolicy{hold: 1500 * time.Millisecond}})
	c := r.mustDial()
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	out, err := sess.Output("echo approved")
	if err != nil || string(out) != "approved\n" {
		t.Fatalf("the held exec: %q, %v", out, err)
	}
}
