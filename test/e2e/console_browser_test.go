package e2e

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/oauth2-proxy/mockoidc"

	"github.com/interlock/interlock/internal/testkit"
	"github.com/interlock/interlock/internal/testkit/idptest"
	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/test/browsertest"
	"github.com/interlock/interlock/test/e2e/pgtest"
	"github.com/interlock/interlock/test/testenv"
)

// consolePerson is someone the test IdP signs in.
func consolePerson(name string, groups ...string) *mockoidc.MockUser {
	return &mockoidc.MockUser{Subject: "sub-" + name, Email: name + "@example.com", EmailVerified: true, PreferredUsername: name, Groups: groups}
}

// consoleWaitFor reloads url in the browser until js is true there.
func consoleWaitFor(t *testing.T, ctx context.Context, url, js string) {
	t.Helper()
	testkit.WaitFor(t, fleetWait, 500*time.Millisecond, func() bool {
		if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
			t.Fatalf("open %s: %v", url, err)
		}
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](js))
		return err == nil && ok
	})
}

// TestConsoleApprovalInBrowser is issue 18's approval end to end from
// the browser: a real psql under `interlock run` on a host enrolled with
// a real hub runs a DELETE that a review rule holds; in headless
// Chromium an approver signs in to the hub's console through the test
// IdP on loopback, sees the held DELETE whole, and approves it; the
// DELETE completes, and the host's journal and the hub both hold the
// signed decision with the approver's IdP identity. The requester,
// signed in as the login user they are, sees no approve button and the
// hub refuses their forged POST. Screenshots of the queue and the
// session page go to $INTERLOCK_ARTIFACTS.
func TestConsoleApprovalInBrowser(t *testing.T) {
	_, err := exec.LookPath("chromium")
	testenv.Require(t, "chromium (make test installs it)", err)
	pg := requirePG(t)
	if out, err := pg.PSQL(pgtest.AppDB, "CREATE TABLE console_rows(id int)", "INSERT INTO console_rows SELECT generate_series(1, 3)",
		"GRANT ALL ON console_rows TO "+pgtest.AppUser); err != nil {
		t.Fatalf("target setup: %v %s", err, out)
	}
	idp := idptest.Start(t)
	hub := startFleetHubWith(t, pg, nil, "consolehub", fmt.Sprintf(`  oidc:
    issuer: %s
    client_id: %s
    roles:
      approver: [dba]
      auditor: [audit]
`, idp.Issuer(), idp.ClientID))
	// The console's base URL is the hub's address, known once it
	// listens: add the console and start the hub again on its state.
	secret := filepath.Join(hub.dir, "console.secret")
	if err := os.WriteFile(secret, []byte(idp.ClientSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	y, err := os.ReadFile(hub.cfg)
	if err != nil {
		t.Fatal(err)
	}
	withConsole := strings.Replace(string(y), "  oidc:\n", fmt.Sprintf("  console:\n    base_url: %s/console\n    client_secret_file: %s\n  oidc:\n", hub.url, secret), 1)
	if err := os.WriteFile(hub.cfg, []byte(withConsole), 0o644); err != nil {
		t.Fatal(err)
	}
	hub.kill()
	hub.start()

	fh := newFleetHost(t, hub, "host-a", []target{pgTarget(t, "db", pg.Addr(), pgtest.AppPassword, "")}, `policy:
  rules:
    - name: review-console-deletes
      match: {targets: [db], operation: {kinds: [delete], tables: [console_rows]}}
      action: review
      review: {approvers: ["@dba"], timeout: 120s}
`)
	base := hub.url + "/console"

	// The approver.
	alice := browsertest.Chrome(t, 1366, 768, 3*time.Minute)
	idp.QueueUser(consolePerson("alice", "dba", "audit"))
	if err := chromedp.Do(alice, chromedp.Navigate(base+"/login"), chromedp.WaitVisible(chromedp.CSS("header .who"))); err != nil {
		t.Fatalf("sign in: %v", err)
	}
	// The empty queue says when a request arrives (it asks the hub's
	// approver API with the session's cookie every 10 s).
	if err := chromedp.Do(alice, chromedp.Navigate(base+"/approvals"), chromedp.WaitVisible(chromedp.CSS("main[data-queue]"))); err != nil {
		t.Fatalf("the empty queue: %v", err)
	}
	p := heldPsql(t, fh, pg, "DELETE FROM console_rows WHERE id = 1;\nSELECT 'done';\n")
	if err := chromedp.Do(alice, chromedp.WaitVisible(chromedp.ID("queue-changed"))); err != nil {
		t.Fatalf("the queue did not say a request arrived: %v", err)
	}
	consoleWaitFor(t, alice, base+"/approvals", `[...document.querySelectorAll('article.held pre.optext')].some(p => p.innerText.includes('console_rows WHERE id = 1'))`)
	type heldFacts struct {
		ID, Text, Expect, Human string
		Approve                 bool
	}
	h, err := chromedp.Run(alice, chromedp.Evaluate[heldFacts](`(() => {
		const a = [...document.querySelectorAll('article.held')].find(a => a.innerText.includes('console_rows WHERE id = 1'));
		const row = l => [...a.querySelectorAll('table.kv tr')].find(r => r.querySelector('th').innerText === l);
		return {ID: a.id.replace('req-', ''), Text: a.querySelector('pre.optext').innerText,
			Expect: a.querySelector('input[name=expect_sha256]').value, Human: row('human') ? row('human').querySelector('td').innerText : '',
			Approve: !!a.querySelector('button[value=approve]')};
	})()`))
	if err != nil {
		t.Fatal(err)
	}
	browsertest.Screenshot(t, alice, "queue", true)
	if !h.Approve || !strings.HasPrefix(h.Human, requesterLogin) || strings.TrimSpace(h.Text) != "1| DELETE FROM console_rows WHERE id = 1" {
		t.Fatalf("the held DELETE in the queue: %+v", h)
	}

	// The requester, signed in as the login user they are.
	bin := browsertest.Chrome(t, 1366, 768, 3*time.Minute)
	idp.QueueUser(consolePerson(requesterLogin, "dba"))
	if err := chromedp.Do(bin, chromedp.Navigate(base+"/login?next="+"/console/approvals/"+h.ID), chromedp.WaitVisible(chromedp.CSS("article.held"))); err != nil {
		t.Fatalf("the requester's view: %v", err)
	}
	type mine struct {
		Buttons int
		WhyNot  string
		CSRF    string
	}
	m, err := chromedp.Run(bin, chromedp.Evaluate[mine](`({Buttons: document.querySelectorAll('article.held button').length,
		WhyNot: (document.querySelector('article.held .whynot') || {}).innerText || '',
		CSRF: document.querySelector('input[name=csrf]').value})`))
	if err != nil {
		t.Fatal(err)
	}
	browsertest.Screenshot(t, bin, "requester", true)
	if m.Buttons != 0 || !strings.Contains(m.WhyNot, "requester") {
		t.Errorf("the requester's view: %+v", m)
	}
	forged := fmt.Sprintf(`fetch('/console/approvals/%s/decision', {method: 'POST', body: new URLSearchParams({csrf: %q, verdict: 'approve', expect_sha256: %q})}).then(r => r.status)`,
		h.ID, m.CSRF, h.Expect)
	if status, err := chromedp.Run(bin, chromedp.Evaluate[int](forged, chromedp.EvalAwaitPromise)); err != nil || status != 403 {
		t.Errorf("the requester's forged approval: HTTP %d %v", status, err)
	}
	if n := rowCount(t, pg, "console_rows WHERE id = 1"); n != "1" {
		t.Fatalf("the requester's forged approval released the DELETE")
	}

	// The approver approves.
	sel := fmt.Sprintf("article#req-%s", h.ID)
	if err := chromedp.Do(alice, chromedp.SendKeys(chromedp.CSS(sel+" textarea[name=reason]"), "cleanup, ticket 18"),
		chromedp.Click(chromedp.CSS(sel+" button[value=approve]")), chromedp.WaitVisible(chromedp.CSS("section.decided"))); err != nil {
		t.Fatalf("approve: %v", err)
	}
	browsertest.Screenshot(t, alice, "approved", true)
	out, stderr := p.wait(t)
	if n := rowCount(t, pg, "console_rows WHERE id = 1"); n != "0" || !strings.Contains(out, "done") {
		t.Fatalf("the approved DELETE did not run: %q %q", out, stderr)
	}

	// The host's journal: the decision whole, signed by the hub, with
	// alice's IdP identity, before the statement ran.
	dec := waitEntry(t, fh, model.KindApprovalDecision, h.ID)
	var d model.ApprovalDecision
	if err := json.Unmarshal(dec.Data, &d); err != nil {
		t.Fatal(err)
	}
	if d.Hub == nil || d.Hub.Signed == "" || d.Hub.Approver.Username != "alice" || d.Hub.Approver.Issuer != idp.Issuer() ||
		d.Verdict != model.VerdictApprove || d.Reason != "cleanup, ticket 18" {
		t.Errorf("the host journaled %s", dec.Data)
	}
	if got := hub.sql("SELECT username || ' ' || approve FROM approval_votes WHERE request_id = '" + h.ID + "'"); got != "alice true" {
		t.Errorf("the hub's votes: %q", got)
	}
	if d.Hub != nil {
		if got := strings.TrimSpace(hub.sql("SELECT encode(signed, 'hex') FROM approval_decisions WHERE request_id = '" + h.ID + "'")); got != hex.EncodeToString([]byte(d.Hub.Signed)) {
			t.Errorf("the hub's signed decision %q, the host's %q", got, d.Hub.Signed)
		}
	}

	// The session page, once the host shipped it.
	var session string
	for _, en := range fh.entries() {
		if en.Kind == model.KindApprovalRequest && strings.Contains(string(en.Data), h.ID) {
			session = en.Session
		}
	}
	consoleWaitFor(t, alice, base+"/hosts/"+fh.hostID+"/sessions/"+session,
		`!!document.querySelector('table.events') && document.querySelector('table.events').innerText.includes('approval.decision')`)
	page, err := chromedp.Run(alice, chromedp.Evaluate[string](`document.querySelector('main').innerText`))
	if err != nil {
		t.Fatal(err)
	}
	browsertest.Screenshot(t, alice, "session", true)
	for _, want := range []string{"DELETE FROM console_rows WHERE id = 1", "review-console-deletes", "alice"} {
		if !strings.Contains(page, want) {
			t.Errorf("the session page lacks %q", want)
		}
	}
}
