package server

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/interlock/interlock/hub/decision"
	"github.com/interlock/interlock/hub/hubapi"
	"github.com/interlock/interlock/internal/testkit/idptest"
	"github.com/interlock/interlock/internal/textview"
	"github.com/interlock/interlock/journal/evidence"
	"github.com/interlock/interlock/model"
)

// approvalsHub is a hub whose approver API trusts a test IdP.
func approvalsHub(t *testing.T) (*testHub, *idptest.IdP) {
	t.Helper()
	idp := idptest.Start(t)
	bearer, err := NewOIDCBearer(context.Background(), OIDCConfig{Issuer: idp.Issuer(), ClientID: idp.ClientID,
		Roles: map[string][]string{hubapi.RoleApprover: {"dba", "sre"}, hubapi.RoleAuditor: {"audit"}}})
	if err != nil {
		t.Fatal(err)
	}
	h, _ := startHub(t, pg.NewDB(t, "hub"), filepath.Join(t.TempDir(), "hub"), func(o *Options) {
		o.Authenticators = []Authenticator{bearer}
	})
	return h, idp
}

func heldRequest(t *testing.T, id string, needed int) hubapi.HeldRequest {
	t.Helper()
	login := uint32(1000)
	text := "DELETE FROM accounts WHERE id = 7"
	req := model.ApprovalRequest{ID: id, Target: "pg", Rule: "review-deletes", Needed: needed, Scope: "once",
		Approvers: []string{"@dba", "carol"}, TimeoutNS: int64(10 * time.Minute),
		Operation: model.Operation{Kind: "pg.statement", Text: text}, TextSHA256: textview.Hash(text),
		Requester: model.Identity{Proc: &model.ProcFacts{User: "app"},
			Human: &model.Human{LoginUID: &login, LoginUser: "alice", Provenance: model.ProvProc,
				Chain: []model.UserHop{{FromUID: 1000, FromUser: "alice", ToUID: 0, ToUser: "root"}}}}}
	sum, err := decision.RequestSHA256(req)
	if err != nil {
		t.Fatal(err)
	}
	return hubapi.HeldRequest{Request: req, Deadline: time.Now().Add(10 * time.Minute), RequestSHA256: sum, Seq: 5}
}

// call sends method path with body v as the bearer of tok ("" for none).
func call(t *testing.T, hc *http.Client, method, url, tok string, v any) (int, []byte) {
	t.Helper()
	var body io.Reader
	if v != nil {
		b, _ := json.Marshal(v)
		body = strings.NewReader(string(b))
	}
	req, _ := http.NewRequest(method, url, body)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func enrolled(t *testing.T, hub *testHub) *testHost {
	t.Helper()
	h := newHost(t, t.TempDir())
	if st, ref := h.enrol(t, hub, hub.token(t, time.Hour)); st != http.StatusOK {
		t.Fatalf("enrol: %d %+v", st, ref)
	}
	return h
}

func TestApprovalsThroughHub(t *testing.T) {
	hub, idp := approvalsHub(t)
	host := enrolled(t, hub)
	other := enrolled(t, hub)
	anon := hub.client(nil)
	held := heldRequest(t, "0190d0a0-0000-7000-8000-000000000001", 2)

	// The host posts its held request; a retry is the same request.
	for range 2 {
		if st, b := call(t, host.http, "POST", hub.url+hubapi.PathHostApprovals, "", held); st != http.StatusOK {
			t.Fatalf("post held: %d %s", st, b)
		}
	}
	changed := held
	changed.Request.Operation.Text = "DELETE FROM accounts"
	changed.RequestSHA256, _ = decision.RequestSHA256(changed.Request)
	if st, b := call(t, host.http, "POST", hub.url+hubapi.PathHostApprovals, "", changed); st != http.StatusConflict {
		t.Errorf("the same id with another text: %d %s, want 409", st, b)
	}
	if st, b := call(t, other.http, "POST", hub.url+hubapi.PathHostApprovals, "", held); st != http.StatusConflict {
		t.Errorf("another host posting the id: %d %s, want 409", st, b)
	}
	lying := held
	lying.RequestSHA256 = strings.Repeat("0", 64)
	if st, b := call(t, host.http, "POST", hub.url+hubapi.PathHostApprovals, "", lying); st != http.StatusBadRequest {
		t.Errorf("a hash that is not the request's: %d %s, want 400", st, b)
	}
	if st, _ := call(t, anon, "POST", hub.url+hubapi.PathHostApprovals, "", held); st != http.StatusUnauthorized {
		t.Errorf("a held request without a host certificate: %d, want 401", st)
	}

	alice := idp.IDToken(t, idptest.User{Subject: "u-alice", Username: "alice", Groups: []string{"dba"}})
	bob := idp.IDToken(t, idptest.User{Subject: "u-bob", Username: "bob", Groups: []string{"dba"}})
	carol := idp.IDToken(t, idptest.User{Subject: "u-carol", Username: "carol", Groups: []string{"sre"}})
	rooty := idp.IDToken(t, idptest.User{Subject: "u-root", Username: "root", Groups: []string{"dba"}})
	dave := idp.IDToken(t, idptest.User{Subject: "u-dave", Username: "dave", Groups: []string{"dba-interns"}})
	auditor := idp.IDToken(t, idptest.User{Subject: "u-erin", Username: "erin", Groups: []string{"audit"}})
	other2 := idptest.Start(t)
	forged := other2.IDToken(t, idptest.User{Subject: "u-bob", Username: "bob", Groups: []string{"dba"}})

	decide := func(tok string, d hubapi.DecideRequest) (int, hubapi.SignedDecision, string) {
		st, b := call(t, anon, "POST", hub.url+hubapi.PathApprovals+"/"+held.Request.ID+"/decision", tok, d)
		var sd hubapi.SignedDecision
		json.Unmarshal(b, &sd)
		return st, sd, string(b)
	}
	for name, c := range map[string]struct {
		tok  string
		want int
	}{
		"no token": {"", http.StatusUnauthorized}, "another issuer's token": {forged, http.StatusUnauthorized},
		"a token that is not one":     {"x.y.z", http.StatusUnauthorized},
		"the requester by login user": {alice, http.StatusForbidden}, "a user of the sudo chain": {rooty, http.StatusForbidden},
		"no approver role": {dave, http.StatusForbidden}, "an auditor": {auditor, http.StatusForbidden},
	} {
		if st, _, b := decide(c.tok, hubapi.DecideRequest{Approve: true}); st != c.want {
			t.Errorf("%s: %d %s, want %d", name, st, b, c.want)
		}
	}

	// The queue: the requester sees it and may not decide; bob may.
	var list []hubapi.PendingApproval
	st, b := call(t, anon, "GET", hub.url+hubapi.PathApprovals, alice, nil)
	if json.Unmarshal(b, &list); st != http.StatusOK || len(list) != 1 || list[0].MayDecide || !strings.Contains(list[0].WhyNot, "requester") {
		t.Errorf("alice's queue: %d %s", st, b)
	}
	st, b = call(t, anon, "GET", hub.url+hubapi.PathApprovals, bob, nil)
	if json.Unmarshal(b, &list); st != http.StatusOK || len(list) != 1 || !list[0].MayDecide || list[0].HostID != host.join.HostID {
		t.Errorf("bob's queue: %d %s", st, b)
	}
	st, b = call(t, anon, "GET", hub.url+hubapi.PathApprovals, dave, nil)
	if json.Unmarshal(b, &list); st != http.StatusOK || len(list) != 0 {
		t.Errorf("dave (no role) sees the queue: %d %s", st, b)
	}

	// Two distinct approvers are needed; the first is told so.
	if st, sd, b := decide(bob, hubapi.DecideRequest{Approve: true}); st != http.StatusOK || sd.StillNeeded != 1 || sd.Signed != "" {
		t.Fatalf("bob approves: %d %s", st, b)
	}
	if st, _, b := decide(bob, hubapi.DecideRequest{Approve: true}); st != http.StatusConflict {
		t.Errorf("bob approves twice: %d %s, want 409", st, b)
	}
	if st, _, b := decide(carol, hubapi.DecideRequest{Approve: true, ExpectSHA256: strings.Repeat("a", 64)}); st != http.StatusConflict {
		t.Errorf("carol approves another text: %d %s, want 409", st, b)
	}
	// Nothing is signed until the count is reached: the host has nothing.
	st, b = call(t, host.http, "GET", hub.url+hubapi.PathHostDecisions, "", nil)
	if st != http.StatusOK || strings.TrimSpace(string(b)) != "[]" {
		t.Fatalf("decisions before the count is reached: %d %s", st, b)
	}

	// The host's long poll wakes at the decision.
	type polled struct {
		ds  []hubapi.SignedDecision
		err string
		in  time.Duration
	}
	got := make(chan polled, 1)
	go func() {
		start := time.Now()
		req, _ := http.NewRequest("GET", hub.url+hubapi.PathHostDecisions+"?wait=20s", nil)
		resp, err := host.http.Do(req)
		if err != nil {
			got <- polled{err: err.Error()}
			return
		}
		defer resp.Body.Close()
		var p polled
		if err := json.NewDecoder(resp.Body).Decode(&p.ds); err != nil {
			p.err = err.Error()
		}
		p.in = time.Since(start)
		got <- p
	}()
	time.Sleep(300 * time.Millisecond)
	st, sd, body := decide(carol, hubapi.DecideRequest{Approve: true, ExpectSHA256: held.Request.TextSHA256, Reason: "ticket 42"})
	if st != http.StatusOK || sd.Signed == "" || sd.StillNeeded != 0 {
		t.Fatalf("carol approves: %d %s", st, body)
	}
	p := <-got
	if p.err != "" || len(p.ds) != 1 || p.in > 10*time.Second {
		t.Fatalf("long poll: %+v", p)
	}
	v, err := decision.NewVerifier(host.join.HubKey)
	if err != nil {
		t.Fatal(err)
	}
	d, err := decision.Open(p.ds[0], v)
	if err != nil {
		t.Fatalf("the host cannot verify the decision: %v", err)
	}
	if d.RequestID != held.Request.ID || d.RequestSHA256 != held.RequestSHA256 || d.HostID != host.join.HostID ||
		d.Verdict != model.VerdictApprove || d.Approver.Username != "carol" || d.Approver.Issuer != idp.Issuer() ||
		len(d.Approvers) != 2 || d.Approvers[0].Username != "bob" || d.Reason != "ticket 42" ||
		d.ExpiresAt.After(held.Deadline) || !d.ExpiresAt.After(time.Now()) {
		t.Errorf("decision: %+v", d)
	}
	// The hub keeps who decided.
	kept, err := hub.st.GetHeld(context.Background(), held.Request.ID)
	if err != nil || len(kept.Votes) != 2 || kept.Votes[1].Approver.Subject != "u-carol" || kept.State != "decided" {
		t.Errorf("kept: %+v %v", kept, err)
	}
	if sd, err := hub.st.Decision(context.Background(), held.Request.ID); err != nil || sd.Signed != d.Signed {
		t.Errorf("kept decision: %v", err)
	}

	// The host takes it (DELETE): it is no longer delivered nor decidable.
	if st, b := call(t, host.http, "DELETE", hub.url+hubapi.PathHostApprovals+"/"+held.Request.ID, "", nil); st != http.StatusOK || !strings.Contains(string(b), "closed") {
		t.Errorf("close: %d %s", st, b)
	}
	st, b = call(t, host.http, "GET", hub.url+hubapi.PathHostDecisions, "", nil)
	if st != http.StatusOK || strings.TrimSpace(string(b)) != "[]" {
		t.Errorf("decisions after close: %d %s", st, b)
	}
	if st, _, b := decide(bob, hubapi.DecideRequest{Approve: false}); st != http.StatusConflict {
		t.Errorf("a decision after the host took one: %d %s", st, b)
	}
	if st, _ := call(t, other.http, "DELETE", hub.url+hubapi.PathHostApprovals+"/"+held.Request.ID, "", nil); st != http.StatusNotFound {
		t.Errorf("another host withdraws the request: %d, want 404", st)
	}

	// A withdrawn request cannot be decided; a deny decides at once.
	w := heldRequest(t, "0190d0a0-0000-7000-8000-000000000002", 1)
	call(t, host.http, "POST", hub.url+hubapi.PathHostApprovals, "", w)
	call(t, host.http, "DELETE", hub.url+hubapi.PathHostApprovals+"/"+w.Request.ID, "", nil)
	if st, _ := call(t, anon, "POST", hub.url+hubapi.PathApprovals+"/"+w.Request.ID+"/decision", bob, hubapi.DecideRequest{Approve: true}); st != http.StatusConflict {
		t.Errorf("decide a withdrawn request: %d", st)
	}
	dn := heldRequest(t, "0190d0a0-0000-7000-8000-000000000003", 2)
	call(t, host.http, "POST", hub.url+hubapi.PathHostApprovals, "", dn)
	st, b = call(t, anon, "POST", hub.url+hubapi.PathApprovals+"/"+dn.Request.ID+"/decision", bob, hubapi.DecideRequest{Reason: "no"})
	if json.Unmarshal(b, &sd); st != http.StatusOK || sd.Verdict != model.VerdictDeny || sd.Signed == "" {
		t.Errorf("deny: %d %s", st, b)
	}
	if st, _ := call(t, anon, "GET", hub.url+hubapi.PathApprovals+"/nope", bob, nil); st != http.StatusNotFound {
		t.Errorf("an unknown request: %d", st)
	}
}

// TestRequesterUnknown: a request whose requester nothing names cannot be
// approved through the hub: the hub cannot tell the approver from them.
func TestRequesterUnknown(t *testing.T) {
	hub, idp := approvalsHub(t)
	host := enrolled(t, hub)
	held := heldRequest(t, "0190d0a0-0000-7000-8000-00000000000a", 1)
	held.Request.Requester = model.Identity{Kernel: model.KernelFacts{UID: 1000}}
	held.RequestSHA256, _ = decision.RequestSHA256(held.Request)
	if st, b := call(t, host.http, "POST", hub.url+hubapi.PathHostApprovals, "", held); st != http.StatusOK {
		t.Fatalf("post: %d %s", st, b)
	}
	bob := idp.IDToken(t, idptest.User{Subject: "u-bob", Username: "bob", Groups: []string{"dba"}})
	st, b := call(t, hub.client(nil), "POST", hub.url+hubapi.PathApprovals+"/"+held.Request.ID+"/decision", bob, hubapi.DecideRequest{Approve: true})
	if st != http.StatusForbidden || !strings.Contains(string(b), "nothing names the requester") {
		t.Errorf("approve a request of nobody known: %d %s", st, b)
	}
}

// TestDecisionDomainSeparated: a decision signature is no checkpoint
// signature nor cosignature of the same key, and neither is a decision.
func TestDecisionDomainSeparated(t *testing.T) {
	keys, err := LoadOrCreateKeys(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	sd := hubapi.SignedDecision{RequestID: "r", RequestSHA256: strings.Repeat("1", 64), HostID: "h", Verdict: model.VerdictApprove,
		Approver: hubapi.Approver{Username: "carol"}, DecidedAt: time.Now(), ExpiresAt: time.Now().Add(time.Minute)}
	if err := decision.Sign(&sd, keys.Decisions); err != nil {
		t.Fatal(err)
	}
	cv, err := evidence.NewCosignatureVerifier(keys.CosignerKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := note.Open([]byte(sd.Signed), note.VerifierList(cv)); err == nil {
		t.Error("a decision opens as a cosignature")
	}
	if cv.KeyHash() == keys.Decisions.KeyHash() {
		t.Error("decisions and cosignatures share a key hash")
	}
	dv, err := decision.NewVerifier(keys.CosignerKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := decision.Open(sd, dv); err != nil {
		t.Fatalf("the decision does not verify: %v", err)
	}
	// A cosignature by the same key, over a text crafted to read as a
	// decision, is not a decision.
	cp := []byte(string(decision.Text(sd)))
	plain, err := note.Sign(&note.Note{Text: string(cp)}, keys.Fleet)
	if err != nil {
		t.Fatal(err)
	}
	cosigned, err := evidence.Cosign(plain, keys.Cosigner, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := decision.Open(hubapi.SignedDecision{Signed: string(cosigned)}, dv); err == nil {
		t.Error("a cosignature of a decision's text opens as a decision")
	}
	// The checks of the text: another header, a bad verdict.
	bad := sd
	bad.Verdict = "maybe"
	if err := decision.Sign(&bad, keys.Decisions); err != nil {
		t.Fatal(err)
	}
	if _, err := decision.Open(bad, dv); err == nil {
		t.Error("a verdict other than approve or deny opens")
	}
	other, err := note.Sign(&note.Note{Text: "interlock approval decision v2\n"}, keys.Decisions)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := decision.Open(hubapi.SignedDecision{Signed: string(other)}, dv); err == nil {
		t.Error("a note with another first line opens as a decision")
	}
}
