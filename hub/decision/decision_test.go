package decision

import (
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/interlock/interlock/hub/hubapi"
	"github.com/interlock/interlock/model"
)

func keys(t *testing.T) (note.Signer, note.Verifier) {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, "interlock-hub-test")
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return s, v
}

// TestRoundTripAndTamper: what Open returns is the note's text, field by
// field; a changed byte of the text, a value that tries to start a line
// of its own, or fields changed beside the note do not get through.
func TestRoundTripAndTamper(t *testing.T) {
	s, v := keys(t)
	d := hubapi.SignedDecision{RequestID: "r1", RequestSHA256: strings.Repeat("ab", 32), HostID: "h1", Verdict: model.VerdictDeny,
		Reason: "no\nverdict \"approve\"", Scope: "once", Approver: hubapi.Approver{Issuer: "https://idp", Subject: "s", Username: "bob", Groups: []string{"dba"}},
		Approvers: []hubapi.Approver{{Issuer: "https://idp", Subject: "s", Username: "bob"}},
		DecidedAt: time.Unix(1700000000, 5), ExpiresAt: time.Unix(1700000300, 0)}
	if err := Sign(&d, s); err != nil {
		t.Fatal(err)
	}
	if strings.Count(d.Signed, "\nverdict ") != 1 {
		t.Fatalf("the reason started a line of its own:\n%s", d.Signed)
	}
	outer := d
	outer.Verdict, outer.HostID, outer.Reason = model.VerdictApprove, "h2", ""
	got, err := Open(outer, v)
	if err != nil {
		t.Fatal(err)
	}
	if got.Verdict != model.VerdictDeny || got.HostID != "h1" || got.Reason != d.Reason || !got.DecidedAt.Equal(d.DecidedAt) ||
		!got.ExpiresAt.Equal(d.ExpiresAt) || got.Approver.Groups[0] != "dba" || len(got.Approvers) != 1 {
		t.Errorf("opened %+v", got)
	}
	bad := d
	bad.Signed = strings.Replace(d.Signed, `"deny"`, `"approve"`, 1)
	if _, err := Open(bad, v); err == nil {
		t.Error("a changed text opens")
	}
	if _, err := Open(hubapi.SignedDecision{Signed: "interlock approval decision v1\n"}, v); err == nil {
		t.Error("an unsigned note opens")
	}
	_, other := keys(t)
	if _, err := Open(d, other); err == nil {
		t.Error("a decision opens with another hub's key")
	}
}

func TestRequesterNames(t *testing.T) {
	id := model.Identity{Proc: &model.ProcFacts{User: "postgres"},
		Human:    &model.Human{LoginUser: "alice", Chain: []model.UserHop{{FromUser: "alice", ToUser: "root"}}},
		Workload: &model.Workload{Provenance: model.ProvClaimed, Claims: map[string]string{model.ClaimActor: "octocat"}}}
	if got := strings.Join(RequesterNames(id), ","); got != "alice,root,postgres,octocat" {
		t.Errorf("names %s", got)
	}
	if got := RequesterNames(model.Identity{}); len(got) != 0 {
		t.Errorf("names of nobody: %v", got)
	}
}

// TestIsRequesterSpellings: the requester signed in to the IdP under
// another spelling of their login name is still the requester.
func TestIsRequesterSpellings(t *testing.T) {
	names := []string{"alice", "root"}
	for _, u := range []string{"alice", "Alice", "ALICE", "alice@corp.example", "Alice@Corp.Example", "root"} {
		if !IsRequester(names, u) {
			t.Errorf("%q is not taken for the requester %v", u, names)
		}
	}
	if !IsRequester([]string{"bob@corp.example"}, "BOB") {
		t.Error("a CI actor spelled with a domain is not matched by the bare name")
	}
	for _, u := range []string{"bob", "alicia", "bob@alice", ""} {
		if IsRequester(names, u) {
			t.Errorf("%q is taken for the requester %v", u, names)
		}
	}
}
