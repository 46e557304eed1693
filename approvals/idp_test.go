package approvals

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/interlock/interlock/internal/testkit"
	"github.com/interlock/interlock/model"
)

func idpPerson(name string, groups ...string) IdPApprover {
	return IdPApprover{Issuer: "https://idp.example", Subject: "sub-" + name, Username: name, Groups: groups}
}

func TestDecideIdP(t *testing.T) {
	ctx := context.Background()
	j := &testkit.Journal{}
	b := New(Options{Journal: j})
	rr := request("once", 2, "dave", "@dba", "alice", "root", "daemon")
	rr.Origin.Identity.Proc.User = "root"
	rr.Origin.Identity.Human = &model.Human{LoginUser: "alice"}
	id, ch := held(t, b, rr)
	sha := b.List(Approver{UID: uidRoot})[0].Request.TextSHA256
	for _, c := range []struct {
		who  IdPApprover
		want error
	}{
		{idpPerson("alice"), ErrIdPSelfApproval},        // the login user, named by the rule
		{idpPerson("root"), ErrIdPSelfApproval},         // the process user
		{idpPerson("mallory", "ops"), ErrNotApprover},   // not named
		{IdPApprover{Username: "dave"}, ErrNotApprover}, // no IdP identity
		{idpPerson("erin", "dba"), ErrTextMismatch},     // named by group, but the wrong text
	} {
		if _, err := b.DecideIdP(ctx, id, c.who, true, "", "00"); !errors.Is(err, c.want) {
			t.Errorf("%+v: %v, want %v", c.who, err, c.want)
		}
	}
	if err := b.MayDecideIdP(id, idpPerson("alice")); !errors.Is(err, ErrIdPSelfApproval) {
		t.Errorf("MayDecideIdP(alice) = %v", err)
	}
	if _, err := b.DecideIdP(ctx, id, idpPerson("dave"), true, "ok", sha); err != nil {
		t.Fatal(err)
	}
	// One person counts once, whichever way they vote.
	if _, err := b.DecideIdP(ctx, id, idpPerson("dave"), true, "", sha); !errors.Is(err, ErrAlreadyVoted) {
		t.Errorf("dave approved twice: %v", err)
	}
	select {
	case d := <-ch:
		t.Fatalf("released with one of two approvals: %+v", d)
	case <-time.After(50 * time.Millisecond):
	}
	if _, err := b.DecideIdP(ctx, id, idpPerson("erin", "dba"), true, "", "sha256:"+sha); err != nil {
		t.Fatal(err)
	}
	if d := <-ch; d.Action != model.Allow || d.Request != id {
		t.Errorf("decision %+v", d)
	}
	decs := j.OfKind(model.KindApprovalDecision)
	if len(decs) != 2 {
		t.Fatalf("%d decisions journaled", len(decs))
	}
	last := decs[1].Data.(model.ApprovalDecision)
	if last.IdP == nil || last.IdP.Username != "erin" || last.IdP.Subject != "sub-erin" || last.IdP.Issuer != "https://idp.example" ||
		last.Approver.Kernel.UID != 0 || last.Approver.Proc != nil || last.Verdict != model.VerdictApprove {
		t.Errorf("journaled decision %+v", last)
	}

	// A requester nothing names: nobody decides from the console.
	id, ch = held(t, b, request("once", 1, "dave", "daemon"))
	if _, err := b.DecideIdP(ctx, id, idpPerson("dave"), false, "no", ""); !errors.Is(err, ErrRequesterUnnamed) {
		t.Errorf("an unnamed requester's request was decided: %v", err)
	}
	b.Close()
	<-ch
}

// TestOnePersonCountsOnce: an approval with `interlock approvals` under a
// user name and one in the console under the same IdP username are one
// approver's, not two.
func TestOnePersonCountsOnce(t *testing.T) {
	ctx := context.Background()
	b := New(Options{Journal: &testkit.Journal{}})
	rr := request("once", 2, "daemon", "bin")
	rr.Origin.Identity.Proc.User = "root"
	id, ch := held(t, b, rr)
	sha := b.List(Approver{UID: uidRoot})[0].Request.TextSHA256
	if _, err := b.Decide(ctx, id, Approver{UID: uidDaemon}, true, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := b.DecideIdP(ctx, id, idpPerson("daemon"), true, "", sha); !errors.Is(err, ErrAlreadyVoted) {
		t.Errorf("daemon approved twice, by uid and in the console: %v", err)
	}
	if _, err := b.DecideIdP(ctx, id, idpPerson("bin"), true, "", sha); err != nil {
		t.Fatal(err)
	}
	if d := <-ch; d.Action != model.Allow {
		t.Errorf("two approvers did not release: %+v", d)
	}
	// And the other way round.
	id, ch = held(t, b, rr)
	if _, err := b.DecideIdP(ctx, id, idpPerson("daemon"), true, "", sha); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Decide(ctx, id, Approver{UID: uidDaemon}, true, ""); !errors.Is(err, ErrAlreadyVoted) {
		t.Errorf("daemon approved twice, in the console and by uid: %v", err)
	}
	b.Close()
	<-ch
}
