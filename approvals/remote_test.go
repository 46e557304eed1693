package approvals

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/hub/decision"
	"github.com/interlock/interlock/hub/hubapi"
	"github.com/interlock/interlock/internal/testkit"
	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/policy"
)

// hubKey makes a hub key: its decision signer, and its verifier key as a
// host holds it.
func hubKey(t *testing.T, name string) (note.Signer, string) {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := decision.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	return s, vkey
}

type linked struct {
	b         *Broker
	j         *testkit.Journal
	held      chan hubapi.HeldRequest
	withdrawn chan string
	signer    note.Signer
}

func newLinked(t *testing.T) *linked {
	t.Helper()
	signer, vkey := hubKey(t, "interlock-hub-test")
	v, err := decision.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	l := &linked{j: &testkit.Journal{}, held: make(chan hubapi.HeldRequest, 10), withdrawn: make(chan string, 10), signer: signer}
	l.b = New(Options{Journal: l.j})
	l.b.AttachHub(&HubLink{HostID: "h1", Verifier: v,
		Held: func(h hubapi.HeldRequest) { l.held <- h }, Withdrawn: func(id string) { l.withdrawn <- id }})
	return l
}

// alicesRequest is a request of alice's, who logged in and ran sudo to
// become postgres.
func alicesRequest(needed int) policy.ReviewRequest {
	login := uint32(1000)
	return policy.ReviewRequest{
		Origin: model.Origin{Session: "s1", Target: model.Target{Name: "db"},
			Identity: model.Identity{Kernel: model.KernelFacts{UID: 106, TGID: 10}, Proc: &model.ProcFacts{User: "postgres"},
				Human: &model.Human{LoginUID: &login, LoginUser: "alice", Provenance: model.ProvProc,
					Chain: []model.UserHop{{FromUID: 1000, FromUser: "alice", ToUID: 106, ToUser: "postgres"}}}}},
		Operation: model.Operation{Protocol: model.ProtoPostgres, Kind: "delete", Text: "DELETE FROM t"},
		Rule:      "hold-deletes",
		Review:    config.ReviewConfig{Approvers: []string{"@dba"}, Needed: needed, Scope: "once"},
		Timeout:   5 * time.Second,
	}
}

func (l *linked) hold(t *testing.T, rr policy.ReviewRequest) (hubapi.HeldRequest, chan model.Decision) {
	t.Helper()
	ch := make(chan model.Decision, 1)
	go func() { ch <- l.b.Review(context.Background(), rr) }()
	select {
	case h := <-l.held:
		return h, ch
	case <-time.After(5 * time.Second):
		t.Fatal("the request was not sent to the hub")
	}
	return hubapi.HeldRequest{}, nil
}

var bob = hubapi.Approver{Issuer: "https://idp", Subject: "u-bob", Username: "bob", Groups: []string{"dba"}}

func (l *linked) decision(t *testing.T, h hubapi.HeldRequest, mod func(*hubapi.SignedDecision)) hubapi.SignedDecision {
	t.Helper()
	d := hubapi.SignedDecision{RequestID: h.Request.ID, RequestSHA256: h.RequestSHA256, HostID: "h1", Verdict: model.VerdictApprove,
		Scope: h.Request.Scope, Approver: bob, Approvers: []hubapi.Approver{bob}, DecidedAt: time.Now(), ExpiresAt: time.Now().Add(time.Minute)}
	s := l.signer
	if mod != nil {
		mod(&d)
	}
	if d.Signed == "forge" {
		s, _ = hubKey(t, "interlock-hub-test") // the same name, another key
	}
	if err := decision.Sign(&d, s); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestHubDecisionRefused(t *testing.T) {
	l := newLinked(t)
	h, ch := l.hold(t, alicesRequest(1))
	other, och := l.hold(t, alicesRequest(1))
	// The hash sent is the journaled request's data.
	for _, e := range l.j.Entries() {
		if e.Kind == model.KindApprovalRequest && e.Data.(model.ApprovalRequest).ID == h.Request.ID {
			b, _ := json.Marshal(e.Data)
			if sum, _ := decision.RequestSHA256(e.Data.(model.ApprovalRequest)); sum != h.RequestSHA256 || h.Seq != int64(e.Seq) || len(b) == 0 {
				t.Errorf("held %s seq %d; journaled seq %d hash %s", h.RequestSHA256, h.Seq, e.Seq, sum)
			}
		}
	}
	alice := hubapi.Approver{Issuer: "https://idp", Subject: "u-alice", Username: "alice", Groups: []string{"dba"}}
	pg := hubapi.Approver{Issuer: "https://idp", Subject: "u-pg", Username: "postgres", Groups: []string{"dba"}}
	cases := map[string]struct {
		mod  func(*hubapi.SignedDecision)
		want string
	}{
		"wrong signature":        {func(d *hubapi.SignedDecision) { d.Signed = "forge" }, "not signed by the hub"},
		"another host":           {func(d *hubapi.SignedDecision) { d.HostID = "h2" }, `for host "h2"`},
		"another request's hash": {func(d *hubapi.SignedDecision) { d.RequestSHA256 = other.RequestSHA256 }, "names request hash"},
		"expired":                {func(d *hubapi.SignedDecision) { d.ExpiresAt = time.Now().Add(-time.Second) }, "expired"},
		"another scope":          {func(d *hubapi.SignedDecision) { d.Scope = "session" }, "scope"},
		"the requester by login user": {func(d *hubapi.SignedDecision) { d.Approver, d.Approvers = alice, []hubapi.Approver{alice} },
			"alice is the requester"},
		"the requester by the sudo chain": {func(d *hubapi.SignedDecision) { d.Approver, d.Approvers = pg, []hubapi.Approver{pg} },
			"postgres is the requester"},
		"a requester among the approvals": {func(d *hubapi.SignedDecision) { d.Approvers = []hubapi.Approver{alice, bob} },
			"alice is the requester"},
		"no request of this host's": {func(d *hubapi.SignedDecision) { d.RequestID = "nope" }, "not pending"},
	}
	for name, c := range cases {
		before := len(l.j.Entries())
		err := l.b.ApplyHubDecision(context.Background(), l.decision(t, h, c.mod))
		if !IsRefused(err) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want refused with %q", name, err, c.want)
		}
		es := l.j.Entries()
		if len(es) != before+1 || es[before].Kind != model.KindApprovalRefused || es[before].Data.(model.ApprovalRefused).Signed == "" {
			t.Errorf("%s: not journaled as refused: %+v", name, es[before:])
		}
	}
	// The fields beside the note are not what counts: a deny whose outer
	// verdict says approve denies.
	deny := l.decision(t, other, func(d *hubapi.SignedDecision) { d.Verdict = model.VerdictDeny; d.Reason = "no" })
	deny.Verdict = model.VerdictApprove
	if err := l.b.ApplyHubDecision(context.Background(), deny); err != nil {
		t.Fatal(err)
	}
	if d := <-och; d.Action != model.Deny || d.Reason != "no" {
		t.Errorf("the signed deny: %+v", d)
	}
	select {
	case d := <-ch:
		t.Fatalf("a refused decision released the operation: %+v", d)
	default:
	}
	if n := l.b.PendingCount(); n != 1 {
		t.Errorf("%d pending after the refusals, want 1", n)
	}

	// The right decision releases it, journaled whole first.
	good := l.decision(t, h, func(d *hubapi.SignedDecision) { d.Reason = "ok" })
	if err := l.b.ApplyHubDecision(context.Background(), good); err != nil {
		t.Fatal(err)
	}
	if d := <-ch; d.Action != model.Allow || d.Request != h.Request.ID {
		t.Errorf("approved: %+v", d)
	}
	es := l.j.Entries()
	last := es[len(es)-1]
	dec, ok := last.Data.(model.ApprovalDecision)
	if !ok || last.Kind != model.KindApprovalDecision || dec.Hub == nil || dec.Hub.Signed != good.Signed ||
		dec.Hub.Approver.Username != "bob" || dec.Hub.Approver.Issuer != "https://idp" || dec.Verdict != model.VerdictApprove {
		t.Errorf("journaled: %+v", last)
	}
	// A replay of it, now that the request was decided, is refused.
	if err := l.b.ApplyHubDecision(context.Background(), good); !IsRefused(err) || !strings.Contains(err.Error(), "not pending") {
		t.Errorf("replay: %v", err)
	}
	select {
	case id := <-l.withdrawn:
		if id != other.Request.ID && id != h.Request.ID {
			t.Errorf("withdrawn %s", id)
		}
		t.Errorf("a hub decision withdrew request %s: the hub already knows", id)
	default:
	}
}

// TestHubNeededCount: an approval counts distinct approvers against the
// rule's count, whatever the hub says.
func TestHubNeededCount(t *testing.T) {
	l := newLinked(t)
	h, ch := l.hold(t, alicesRequest(2))
	carol := hubapi.Approver{Issuer: "https://idp", Subject: "u-carol", Username: "carol"}
	for name, as := range map[string][]hubapi.Approver{"one": {bob}, "one twice": {bob, bob}} {
		err := l.b.ApplyHubDecision(context.Background(), l.decision(t, h, func(d *hubapi.SignedDecision) { d.Approvers = as }))
		if !IsRefused(err) || !strings.Contains(err.Error(), "needs 2") {
			t.Errorf("%s: %v", name, err)
		}
	}
	if err := l.b.ApplyHubDecision(context.Background(), l.decision(t, h, func(d *hubapi.SignedDecision) { d.Approvers = []hubapi.Approver{carol} })); !IsRefused(err) {
		t.Errorf("the deciding approver not counted: %v", err)
	}
	if err := l.b.ApplyHubDecision(context.Background(), l.decision(t, h, func(d *hubapi.SignedDecision) { d.Approvers = []hubapi.Approver{carol, bob} })); err != nil {
		t.Fatal(err)
	}
	if d := <-ch; d.Action != model.Allow {
		t.Errorf("two approvers: %+v", d)
	}
}

// TestLocalDecisionWithHub: with the hub attached, local approval still
// decides, the timeout still denies, and the hub is told both times.
func TestLocalDecisionWithHub(t *testing.T) {
	l := newLinked(t)
	rr := alicesRequest(1)
	rr.Review.Approvers = []string{"daemon"}
	h, ch := l.hold(t, rr)
	if _, err := l.b.Decide(context.Background(), h.Request.ID, Approver{UID: uidDaemon}, true, ""); err != nil {
		t.Fatal(err)
	}
	if d := <-ch; d.Action != model.Allow {
		t.Errorf("local approval: %+v", d)
	}
	if id := <-l.withdrawn; id != h.Request.ID {
		t.Errorf("withdrawn %s, want %s", id, h.Request.ID)
	}
	rr.Timeout = 100 * time.Millisecond
	h, ch = l.hold(t, rr)
	if d := <-ch; d.Action != model.Deny || !strings.Contains(d.Reason, "no decision within") {
		t.Errorf("timeout: %+v", d)
	}
	if id := <-l.withdrawn; id != h.Request.ID {
		t.Errorf("withdrawn %s, want %s", id, h.Request.ID)
	}
	// A decision that comes after the timeout is refused.
	if err := l.b.ApplyHubDecision(context.Background(), l.decision(t, h, nil)); !IsRefused(err) {
		t.Errorf("a decision after the timeout: %v", err)
	}
}
