package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/interlock/interlock/hub/hubapi"
	"github.com/interlock/interlock/model"
)

// dropVersion4 takes a database back from schema 4 to 3.
const dropVersion4 = `DROP TABLE approval_decisions, approval_votes, held_requests;`

func held(id string) hubapi.HeldRequest {
	return hubapi.HeldRequest{Request: model.ApprovalRequest{ID: id, Rule: "r", Needed: 1}, RequestSHA256: "sha-" + id,
		Deadline: time.Now().Add(time.Hour), Seq: 3}
}

// TestHeldRequests: a host's retry is idempotent; the same id with other
// contents or from another host is refused; a vote and the decision it
// makes are kept together, and the host gets the decision until it
// closes the request.
func TestHeldRequests(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, newDB(t))
	a, b := enrol(t, s, "host-01"), enrol(t, s, "host-02")
	now := time.Now()
	if err := s.PutHeld(ctx, a.ID, held("r1"), now); err != nil {
		t.Fatal(err)
	}
	if err := s.PutHeld(ctx, a.ID, held("r1"), now); err != nil {
		t.Errorf("retry: %v", err)
	}
	if err := s.PutHeld(ctx, b.ID, held("r1"), now); !errors.Is(err, ErrHeldConflict) {
		t.Errorf("another host's id: %v", err)
	}
	other := held("r1")
	other.RequestSHA256 = "x"
	if err := s.PutHeld(ctx, a.ID, other, now); !errors.Is(err, ErrHeldConflict) {
		t.Errorf("other contents: %v", err)
	}
	if err := s.PutHeld(ctx, a.ID, held("r2"), now); err != nil {
		t.Fatal(err)
	}
	ps, err := s.PendingHeld(ctx, now)
	if err != nil || len(ps) != 2 || ps[0].HostName != "host-01" {
		t.Fatalf("pending: %+v %v", ps, err)
	}
	if ps, _ := s.PendingHeld(ctx, now.Add(2*time.Hour)); len(ps) != 0 {
		t.Errorf("past their deadline, %d still pending", len(ps))
	}

	// A decide function's error keeps nothing.
	boom := errors.New("boom")
	if err := s.Decide(ctx, "r1", func(Held) (Vote, *hubapi.SignedDecision, error) { return Vote{}, nil, boom }); !errors.Is(err, boom) {
		t.Fatal(err)
	}
	bob := hubapi.Approver{Issuer: "i", Subject: "bob", Username: "bob"}
	err = s.Decide(ctx, "r1", func(h Held) (Vote, *hubapi.SignedDecision, error) {
		if len(h.Votes) != 0 || h.State != HeldPending {
			t.Errorf("held before the vote: %+v", h)
		}
		return Vote{Approver: bob, Approve: true, At: now}, &hubapi.SignedDecision{RequestID: "r1", Signed: "note", DecidedAt: now}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Decide(ctx, "nope", nil); !errors.Is(err, ErrNoHeld) {
		t.Errorf("decide an unknown request: %v", err)
	}
	ds, err := s.DecisionsFor(ctx, a.ID)
	if err != nil || len(ds) != 1 || ds[0].Signed != "note" {
		t.Fatalf("decisions: %+v %v", ds, err)
	}
	if ds, _ := s.DecisionsFor(ctx, b.ID); len(ds) != 0 {
		t.Errorf("another host gets %d decisions", len(ds))
	}
	if _, err := s.WithdrawHeld(ctx, b.ID, "r1", now); !errors.Is(err, ErrNoHeld) {
		t.Errorf("another host withdraws: %v", err)
	}
	if st, err := s.WithdrawHeld(ctx, a.ID, "r1", now); err != nil || st != HeldClosed {
		t.Errorf("close: %s %v", st, err)
	}
	if st, err := s.WithdrawHeld(ctx, a.ID, "r2", now); err != nil || st != HeldWithdrawn {
		t.Errorf("withdraw: %s %v", st, err)
	}
	if ds, _ := s.DecisionsFor(ctx, a.ID); len(ds) != 0 {
		t.Errorf("%d decisions after close", len(ds))
	}
	h, err := s.GetHeld(ctx, "r1")
	if err != nil || len(h.Votes) != 1 || h.Votes[0].Approver.Subject != "bob" || h.State != HeldClosed {
		t.Errorf("kept: %+v %v", h, err)
	}
}

// TestMigrateFromVersion3: the upgrade to 4 adds the approvals tables to
// a database of schema 3.
func TestMigrateFromVersion3(t *testing.T) {
	conn := newDB(t)
	s := openStore(t, conn)
	if _, err := s.pool.Exec(context.Background(), dropVersion4+` UPDATE hub_schema SET version = 3`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openStore(t, conn)
	h := enrol(t, s, "host-01")
	if err := s.PutHeld(context.Background(), h.ID, held("r1"), time.Now()); err != nil {
		t.Fatalf("after the upgrade: %v", err)
	}
}
