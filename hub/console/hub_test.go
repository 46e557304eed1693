package console

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/interlock/interlock/hub/decision"
	"github.com/interlock/interlock/hub/hubapi"
	"github.com/interlock/interlock/internal/textview"
)

// TestHubApprovals: the console on the hub's real approvals. A host
// holds a request at the hub; the requester, signed in, sees it with no
// buttons and the hub refuses their forged approval (403); an approver
// approves it from the console, and the host's long poll gets the
// decision signed with the hub's key, naming the approver as the IdP
// did. The approver API takes the console's cookie only with the
// session's CSRF token in its header.
func TestHubApprovals(t *testing.T) {
	e := newEnv(t)
	e.con.UseApprovals(hubApprovals{e.srv})
	h := e.newHost(t, "runner-1")
	p := heldRequest("req-hub1", "bob", "DELETE FROM accounts WHERE id = 7")
	held := p.Held
	sum, err := decision.RequestSHA256(held.Request)
	if err != nil {
		t.Fatal(err)
	}
	held.RequestSHA256 = sum
	var ok struct{}
	e.call(t, h.http, hubapi.PathHostApprovals, held, &ok)
	text := textview.Hash(held.Request.Operation.Text)

	bob, _, page := e.signIn(t, person("bob", "dba-approvers"))
	if !strings.Contains(page, "req-hub1") || strings.Contains(page, `value="approve"`) || !strings.Contains(page, "cannot decide their own request") {
		t.Errorf("the requester's queue:\n%s", page)
	}
	resp, body := postForm(t, bob, e.base+"/approvals/req-hub1/decision", url.Values{"csrf": {csrfOf(t, page)}, "verdict": {"approve"}, "expect_sha256": {text}}, nil)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "cannot decide their own request") {
		t.Errorf("the requester's forged approval: %d\n%s", resp.StatusCode, body)
	}

	alice, _, page := e.signIn(t, person("alice", "dba-approvers"))
	// The approver API with the console's cookie: not without the CSRF
	// header.
	api := func(hdr string) int {
		req, _ := http.NewRequest(http.MethodPost, e.url+hubapi.PathApprovals+"/req-hub1/decision", strings.NewReader(`{"approve":false,"reason":"x"}`))
		req.Header.Set("Content-Type", "application/json")
		if hdr != "" {
			req.Header.Set(CSRFHeader, hdr)
		}
		resp, err := alice.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := api(""); st != http.StatusUnauthorized && st != http.StatusForbidden {
		t.Errorf("the approver API with the cookie and no CSRF header: %d", st)
	}
	if resp, body := get(t, alice, e.url+hubapi.PathApprovals); resp.StatusCode != http.StatusOK || !strings.Contains(body, "req-hub1") {
		t.Errorf("the approver API lists with the cookie: %d %s", resp.StatusCode, body)
	}

	resp, body = postForm(t, alice, e.base+"/approvals/req-hub1/decision",
		url.Values{"csrf": {csrfOf(t, page)}, "verdict": {"approve"}, "expect_sha256": {text}, "reason": {"OPS-7"}}, nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Approved: req-hub1") {
		t.Fatalf("approve: %d\n%s", resp.StatusCode, body)
	}

	// The host's long poll.
	resp, err = h.http.Get(e.url + hubapi.PathHostDecisions + "?wait=5s")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var ds []hubapi.SignedDecision
	if err := json.Unmarshal(raw, &ds); err != nil || len(ds) != 1 {
		t.Fatalf("decisions: %s %v", raw, err)
	}
	v, err := decision.NewVerifier(e.keys.CosignerKey)
	if err != nil {
		t.Fatal(err)
	}
	d, err := decision.Open(ds[0], v)
	if err != nil {
		t.Fatalf("the decision does not verify with the hub key: %v", err)
	}
	if d.Verdict != "approve" || d.RequestID != "req-hub1" || d.RequestSHA256 != sum || d.HostID != h.id || d.Approver.Username != "alice" ||
		d.Approver.Issuer != e.idp.Issuer() || d.Approver.Subject != "sub-alice" || d.Reason != "OPS-7" || !d.ExpiresAt.After(time.Now()) {
		t.Errorf("decision %+v", d)
	}
	if _, page := get(t, alice, e.base+"/approvals"); strings.Contains(page, "req-hub1") {
		t.Errorf("the decided request is still in the queue")
	}

	// Two approvals needed: the first is counted, the second decides.
	two := heldRequest("req-hub2", "bob", "DELETE FROM accounts WHERE id = 8").Held
	two.Request.Needed = 2
	if two.RequestSHA256, err = decision.RequestSHA256(two.Request); err != nil {
		t.Fatal(err)
	}
	e.call(t, h.http, hubapi.PathHostApprovals, two, &ok)
	approve := func(b *http.Client) string {
		t.Helper()
		_, page := get(t, b, e.base+"/approvals/req-hub2")
		resp, body := postForm(t, b, e.base+"/approvals/req-hub2/decision",
			url.Values{"csrf": {csrfOf(t, page)}, "verdict": {"approve"}, "expect_sha256": {textview.Hash(two.Request.Operation.Text)}}, nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("approve req-hub2: %d\n%s", resp.StatusCode, body)
		}
		return body
	}
	if body := approve(alice); !strings.Contains(body, "Approval counted: req-hub2") || !strings.Contains(body, "needs 1 more approval from") {
		t.Errorf("the first of two approvals:\n%s", body)
	}
	if _, page := get(t, alice, e.base+"/approvals/req-hub2"); strings.Contains(page, `value="approve"`) || !strings.Contains(page, "1 of 2") {
		t.Errorf("after her approval, alice may approve again:\n%s", page)
	}
	carol, _, _ := e.signIn(t, person("carol", "dba-approvers"))
	if body := approve(carol); !strings.Contains(body, "Approved: req-hub2") || !strings.Contains(body, "alice, carol") {
		t.Errorf("the second approval:\n%s", body)
	}
}
