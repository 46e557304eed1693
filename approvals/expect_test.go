package approvals

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/interlock/interlock/internal/testkit"
	"github.com/interlock/interlock/internal/textview"
	"github.com/interlock/interlock/model"
)

// An approval with --expect holds only for the exact text the approver
// read: a wrong hash approves nothing and journals nothing, the right one
// releases the operation.
func TestApproveExpectsTheTextHash(t *testing.T) {
	j := &testkit.Journal{}
	b := New(Options{Journal: j})
	rr := request("once", 1, "daemon")
	rr.Operation.Text = "sudo -n true\nrm -rf /srv/data"
	id, ch := held(t, b, rr)
	l := b.List(Approver{UID: uidDaemon})
	if got, want := l[0].Request.TextSHA256, textview.Hash(rr.Operation.Text); got != want {
		t.Fatalf("request carries text_sha256 %q, want %q", got, want)
	}
	// The hash of the first line only (what a cut view showed) is refused.
	if _, err := b.DecideExpect(context.Background(), id, Approver{UID: uidDaemon}, true, "", textview.Hash("sudo -n true")); !errors.Is(err, ErrTextMismatch) {
		t.Fatalf("approve with the first line's hash: %v, want ErrTextMismatch", err)
	}
	select {
	case d := <-ch:
		t.Fatalf("released on a wrong hash: %+v", d)
	case <-time.After(50 * time.Millisecond):
	}
	if k := j.Kinds(); len(k) != 1 {
		t.Fatalf("a refused approval was journaled: %v", k)
	}
	if _, err := b.DecideExpect(context.Background(), id, Approver{UID: uidDaemon}, true, "", "sha256:"+textview.Hash(rr.Operation.Text)); err != nil {
		t.Fatal(err)
	}
	if d := <-ch; d.Action != model.Allow {
		t.Fatalf("decision %+v", d)
	}
}

// Bytes that are not UTF-8 would reach an approver through JSON as U+FFFD;
// the request carries them exactly.
func TestRequestCarriesInvalidUTF8Bytes(t *testing.T) {
	b := New(Options{Journal: &testkit.Journal{}})
	rr := request("once", 1, "daemon")
	rr.Operation.Text = "echo \xff\xfe"
	_, _ = held(t, b, rr)
	l := b.List(Approver{UID: uidDaemon})
	if string(l[0].Request.TextBytes) != rr.Operation.Text {
		t.Fatalf("text_bytes %q, want %q", l[0].Request.TextBytes, rr.Operation.Text)
	}
	b.Close()
}

// Under review.require_expect an approval without the hash approves
// nothing and journals nothing; a deny needs no hash; with the hash it
// releases the operation.
func TestRequireExpectRefusesABlindApproval(t *testing.T) {
	j := &testkit.Journal{}
	b := New(Options{Journal: j})
	rr := request("once", 1, "daemon")
	rr.Review.RequireExpect = true
	rr.Operation.Text = "systemctl restart api"
	id, ch := held(t, b, rr)
	if l := b.List(Approver{UID: uidDaemon}); !l[0].Request.RequireExpect {
		t.Fatalf("the request does not say it requires --expect: %+v", l[0].Request)
	}
	if _, err := b.DecideExpect(context.Background(), id, Approver{UID: uidDaemon}, true, "looks fine", ""); !errors.Is(err, ErrExpectRequired) {
		t.Fatalf("approve without --expect: %v, want ErrExpectRequired", err)
	}
	select {
	case d := <-ch:
		t.Fatalf("released without the hash: %+v", d)
	case <-time.After(50 * time.Millisecond):
	}
	if k := j.Kinds(); len(k) != 1 {
		t.Fatalf("a refused approval was journaled: %v", k)
	}
	if _, err := b.DecideExpect(context.Background(), id, Approver{UID: uidDaemon}, true, "", textview.Hash(rr.Operation.Text)); err != nil {
		t.Fatal(err)
	}
	if d := <-ch; d.Action != model.Allow {
		t.Fatalf("decision %+v", d)
	}

	// A deny is never blind in that sense: it needs no hash.
	id2, ch2 := held(t, b, rr)
	if _, err := b.DecideExpect(context.Background(), id2, Approver{UID: uidDaemon}, false, "no", ""); err != nil {
		t.Fatalf("deny without --expect: %v", err)
	}
	if d := <-ch2; d.Action != model.Deny {
		t.Fatalf("decision %+v", d)
	}
}
