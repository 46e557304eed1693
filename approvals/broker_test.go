package approvals

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/internal/testkit"
	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/policy"
)

// Users on every Debian system: root (0) is the requester, daemon (1) and
// bin (2) approve.
const (
	uidRoot   = 0
	uidDaemon = 1
	uidBin    = 2
)

func request(scope string, needed int, approvers ...string) policy.ReviewRequest {
	return policy.ReviewRequest{
		Origin: model.Origin{Session: "s1", Target: model.Target{Name: "db"},
			Identity: model.Identity{Kernel: model.KernelFacts{UID: uidRoot, TGID: 10}, Proc: &model.ProcFacts{ExeSHA256: "abc"}}},
		Operation: model.Operation{Protocol: model.ProtoPostgres, Kind: "delete", Text: "DELETE FROM t"},
		Rule:      "hold-deletes",
		Review:    config.ReviewConfig{Approvers: approvers, Needed: needed, Scope: scope, TTL: config.Duration(200 * time.Millisecond)},
		Timeout:   5 * time.Second,
	}
}

// held starts a Review and returns the request id and the decision channel.
func held(t *testing.T, b *Broker, rr policy.ReviewRequest) (string, chan model.Decision) {
	t.Helper()
	ch := make(chan model.Decision, 1)
	watch := b.Changed()
	go func() { ch <- b.Review(context.Background(), rr) }()
	select {
	case <-watch:
	case d := <-ch:
		t.Fatalf("Review returned at once: %+v", d)
	case <-time.After(5 * time.Second):
		t.Fatal("no request appeared")
	}
	l := b.List(Approver{UID: uidDaemon})
	if len(l) == 0 {
		t.Fatal("request not listed")
	}
	return l[len(l)-1].Request.ID, ch
}

func TestApproveReleases(t *testing.T) {
	j := &testkit.Journal{}
	b := New(Options{Journal: j})
	id, ch := held(t, b, request("once", 1, "daemon"))
	if _, err := b.Decide(context.Background(), id, Approver{UID: uidRoot}, true, ""); !errors.Is(err, ErrSelfApproval) {
		t.Errorf("requester's uid approved its own request: %v", err)
	}
	if _, err := b.Decide(context.Background(), id, Approver{UID: uidBin}, true, ""); !errors.Is(err, ErrNotApprover) {
		t.Errorf("a non-approver decided: %v", err)
	}
	select {
	case d := <-ch:
		t.Fatalf("released before an approver decided: %+v", d)
	default:
	}
	if _, err := b.Decide(context.Background(), id, Approver{UID: uidDaemon}, true, "looks fine"); err != nil {
		t.Fatal(err)
	}
	d := <-ch
	if d.Action != model.Allow || d.Request != id {
		t.Errorf("decision %+v", d)
	}
	if k := j.Kinds(); len(k) != 2 || k[0] != model.KindApprovalRequest || k[1] != model.KindApprovalDecision {
		t.Errorf("journal %v", k)
	}
	// A second operation needs a new request (scope once).
	_, ch2 := held(t, b, request("once", 1, "daemon"))
	b.Close()
	if d := <-ch2; d.Action != model.Deny {
		t.Errorf("pending request survived Close: %+v", d)
	}
}

func TestTwoApprovalsAndDeny(t *testing.T) {
	j := &testkit.Journal{}
	b := New(Options{Journal: j})
	id, ch := held(t, b, request("once", 2, "daemon", "bin"))
	if _, err := b.Decide(context.Background(), id, Approver{UID: uidDaemon}, true, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Decide(context.Background(), id, Approver{UID: uidDaemon}, true, ""); !errors.Is(err, ErrAlreadyVoted) {
		t.Errorf("one approver counted twice: %v", err)
	}
	select {
	case d := <-ch:
		t.Fatalf("released with one of two approvals: %+v", d)
	case <-time.After(50 * time.Millisecond):
	}
	if _, err := b.Decide(context.Background(), id, Approver{UID: uidBin}, true, ""); err != nil {
		t.Fatal(err)
	}
	if d := <-ch; d.Action != model.Allow {
		t.Errorf("two approvals did not release: %+v", d)
	}

	id, ch = held(t, b, request("once", 1, "@daemon"))
	if _, err := b.Decide(context.Background(), id, Approver{UID: uidDaemon}, false, "not now"); err != nil {
		t.Fatal(err)
	}
	if d := <-ch; d.Action != model.Deny || d.Reason != "not now" {
		t.Errorf("deny: %+v", d)
	}
}

func TestTimeoutDenies(t *testing.T) {
	j := &testkit.Journal{}
	b := New(Options{Journal: j})
	rr := request("once", 1, "daemon")
	rr.Timeout = 100 * time.Millisecond
	d := b.Review(context.Background(), rr)
	if d.Action != model.Deny {
		t.Fatalf("timeout: %+v", d)
	}
	recs := j.Records()
	last := recs[len(recs)-1]
	if dec, ok := last.Data.(model.ApprovalDecision); !ok || dec.Verdict != model.VerdictTimeout {
		t.Errorf("timeout not journaled as such: %+v", last)
	}
	if b.PendingCount() != 0 {
		t.Errorf("timed-out request still pending")
	}
}

func TestSessionGrant(t *testing.T) {
	j := &testkit.Journal{}
	b := New(Options{Journal: j})
	id, ch := held(t, b, request("session", 1, "daemon"))
	if _, err := b.Decide(context.Background(), id, Approver{UID: uidDaemon}, true, ""); err != nil {
		t.Fatal(err)
	}
	<-ch
	// The next operation of the session passes without a request.
	d := b.Review(context.Background(), request("session", 1, "daemon"))
	if d.Action != model.Allow || d.Grant != id {
		t.Fatalf("session grant not used: %+v", d)
	}
	other := request("session", 1, "daemon")
	other.Origin.Session = "s2"
	other.Timeout = 50 * time.Millisecond
	if d := b.Review(context.Background(), other); d.Action != model.Deny {
		t.Errorf("a session grant covered another session: %+v", d)
	}
	b.SessionEnded("s1")
	if k := j.Kinds(); k[len(k)-1] != model.KindGrantExpired {
		t.Errorf("session end did not expire the grant: %v", k)
	}
}

func TestTTLGrantExpires(t *testing.T) {
	j := &testkit.Journal{}
	b := New(Options{Journal: j})
	id, ch := held(t, b, request("ttl", 1, "daemon"))
	dec, err := b.Decide(context.Background(), id, Approver{UID: uidDaemon}, true, "")
	if err != nil || dec.ExpiresNS == 0 {
		t.Fatalf("ttl decision %+v %v", dec, err)
	}
	<-ch
	rr := request("ttl", 1, "daemon")
	rr.Origin.Session = "another-session"
	if d := b.Review(context.Background(), rr); d.Grant != id {
		t.Fatalf("ttl grant did not cover the same identity in another session: %+v", d)
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		k := j.Kinds()
		if k[len(k)-1] == model.KindGrantExpired {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ttl grant never expired: %v", k)
		}
		time.Sleep(20 * time.Millisecond)
	}
	rr.Timeout = 50 * time.Millisecond
	if d := b.Review(context.Background(), rr); d.Action != model.Deny {
		t.Errorf("expired grant still used: %+v", d)
	}
}

func TestJournalFailureRefuses(t *testing.T) {
	j := &testkit.Journal{}
	j.Fail(errors.New("disk full"))
	b := New(Options{Journal: j})
	if d := b.Review(context.Background(), request("once", 1, "daemon")); d.Action != model.Deny {
		t.Errorf("a request the journal could not record was held: %+v", d)
	}
}

// TestListShowsOnlyWhoMaySee: a local user who is neither an approver nor
// the requester does not see the request (it holds the SQL text).
func TestListShowsOnlyWhoMaySee(t *testing.T) {
	b := New(Options{Journal: &testkit.Journal{}})
	_, ch := held(t, b, request("once", 1, "daemon"))
	if l := b.List(Approver{UID: uidBin}); len(l) != 0 {
		t.Errorf("a bystander sees %d requests", len(l))
	}
	if l := b.List(Approver{UID: uidRoot}); len(l) != 1 || l[0].MayDecide {
		t.Errorf("the requester (root) sees %+v", l)
	}
	b.Close()
	<-ch
}
