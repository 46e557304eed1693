package console

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/interlock/interlock/internal/textview"
	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/test/browsertest"
)

func eval[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		t.Fatalf("chromium: %s: %v", js, err)
	}
	return v
}

// TestConsoleInBrowser: in headless Chromium, an approver signs in
// through the test IdP on loopback, sees the held DELETE in the queue,
// whole and escaped, and approves it (the hub gets the SHA-256 of the
// text shown and the approver's IdP identity); an auditor's session page
// and a terminal replay render under the console's CSP; the requester,
// signed in as themselves, has no approve button and their forged POST
// is refused. Screenshots of the queue, a session page and a replay go
// to $INTERLOCK_ARTIFACTS.
func TestConsoleInBrowser(t *testing.T) {
	e := newEnv(t)
	h := e.newHost(t, "runner-1")
	login := uint32(1000)
	ident := model.Identity{Kernel: model.KernelFacts{TGID: 4242, Comm: "psql"}, Proc: &model.ProcFacts{User: "root", Exe: "/usr/lib/postgresql/15/bin/psql"},
		Human: &model.Human{LoginUID: &login, LoginUser: "bob", Provenance: model.ProvProc,
			Chain: []model.UserHop{{Via: "sudo", FromUID: 1000, FromUser: "bob", ToUID: 0, ToUser: "root"}}}}
	at := time.Now().Add(-10 * time.Minute).UTC()
	e.record(t, h,
		model.Record{Kind: model.KindSessionOpen, Session: "pg-7f3a", Time: at, Data: model.SessionOpen{
			Target: model.Target{Name: "billing-db", Protocol: model.ProtoPostgres}, Identity: ident,
			OrigDst: netip.MustParseAddrPort("10.0.0.5:5432"), Decision: model.Decision{Action: model.Allow, Rule: "billing"}}},
		model.Record{Kind: model.KindPGStatement, Session: "pg-7f3a", Time: at.Add(time.Second), Data: model.PGStatement{
			SQL: "SELECT id, name, card FROM customers WHERE region = 'eu'", Protocol: "simple", Kinds: []string{"select"}, Tables: []string{"customers"},
			Decision: model.Decision{Action: model.Mask, Rule: "mask-cards"}}},
		model.Record{Kind: model.KindPGMask, Session: "pg-7f3a", Time: at.Add(time.Second), Data: model.MaskDecision{Rule: "mask-cards", Column: "card", Detector: "pan", Count: 12}},
		model.Record{Kind: model.KindPGResult, Session: "pg-7f3a", Time: at.Add(time.Second), Data: model.PGResult{Statement: 3, Tag: "SELECT 12", Rows: 12}},
		model.Record{Kind: model.KindPGStatement, Session: "pg-7f3a", Time: at.Add(2 * time.Second), Data: model.PGStatement{
			SQL: "DROP TABLE customers; -- \x1b[2Kharmless", Protocol: "simple", Kinds: []string{"drop_table"}, Tables: []string{"customers"},
			Decision: model.Decision{Action: model.Deny, Rule: "no-drops"}}},
		model.Record{Kind: model.KindSessionClose, Session: "pg-7f3a", Time: at.Add(3 * time.Second), Data: model.SessionClose{BytesUp: 120, BytesDown: 900, DurationNS: int64(3 * time.Second)}},
		model.Record{Kind: model.KindSessionOpen, Session: "ssh-91c2", Time: at.Add(time.Minute), Data: model.SessionOpen{
			Target: model.Target{Name: "bastion", Protocol: model.ProtoSSH}, Identity: ident, Decision: model.Decision{Action: model.Allow}}},
		model.Record{Kind: model.KindSSHRequest, Session: "ssh-91c2", Data: model.SSHRequest{Channel: 0, Type: "pty-req", Term: "xterm-256color", Cols: 80, Rows: 12, OffsetNS: 1e6,
			Decision: model.Decision{Action: model.Allow}}},
		model.Record{Kind: model.KindSSHRequest, Session: "ssh-91c2", Data: model.SSHRequest{Channel: 0, Type: "shell", OffsetNS: 2e6, Decision: model.Decision{Action: model.Allow}}},
		model.Record{Kind: model.KindSSHIO, Session: "ssh-91c2", Data: model.SSHIO{Channel: 0, Stream: "o", OffsetNS: 3e6, Bytes: 12}, Payload: []byte("bob@bastion$ ")},
		model.Record{Kind: model.KindSSHIO, Session: "ssh-91c2", Data: model.SSHIO{Channel: 0, Stream: "i", OffsetNS: 5e8, Bytes: 8}, Payload: []byte("uptime\r")},
		model.Record{Kind: model.KindSSHIO, Session: "ssh-91c2", Data: model.SSHIO{Channel: 0, Stream: "o", OffsetNS: 6e8, Bytes: 60},
			Payload: []byte("uptime\r\n 10:02:11 up 3 days,  2 users,  load average: 0.08\r\nbob@bastion$ ")},
		model.Record{Kind: model.KindSessionClose, Session: "ssh-91c2", Data: model.SessionClose{}},
	)
	text := "DELETE FROM accounts\n WHERE closed_at < now() - interval '7 years'\n   AND note <> '<b>keep</b>\x1b[8m';"
	held := heldRequest("req-3c9e", "bob", text)
	held.HostID, held.HostName = h.id, "runner-1"
	held.Held.Request.Session = "pg-7f3a"
	e.appr.hold(held)
	sum := textview.Hash(text)

	ctx := browsertest.Chrome(t, 1366, 768, 2*time.Minute)
	e.idp.QueueUser(person("alice", "dba-approvers", "auditors"))
	if err := chromedp.Do(ctx, chromedp.Navigate(e.base+"/login"), chromedp.WaitVisible(chromedp.CSS("article.held"))); err != nil {
		t.Fatalf("sign in and open the queue: %v", err)
	}
	type queueFacts struct {
		URL, Who, Text, Expect string
		Approve, Deny          bool
		DocWidth, Viewport     int
	}
	q := eval[queueFacts](t, ctx, `(() => {
		const a = document.querySelector('article.held');
		return {URL: location.pathname, Who: document.querySelector('.who span').innerText,
			Text: a.querySelector('pre.optext').innerText, Expect: a.querySelector('input[name=expect_sha256]').value,
			Approve: !!a.querySelector('button[value=approve]'), Deny: !!a.querySelector('button[value=deny]'),
			DocWidth: document.documentElement.scrollWidth, Viewport: window.innerWidth};
	})()`)
	browsertest.Screenshot(t, ctx, "queue", true)
	if q.URL != "/console/approvals" || q.Who != "alice" || !q.Approve || !q.Deny || q.Expect != sum {
		t.Fatalf("the queue: %+v", q)
	}
	if want := "1| DELETE FROM accounts\n2|  WHERE closed_at < now() - interval '7 years'\n3|    AND note <> '<b>keep</b>\\x1b[8m';"; strings.TrimSpace(q.Text) != want {
		t.Errorf("the operation's text reads\n%s\nwant\n%s", q.Text, want)
	}
	if q.DocWidth > q.Viewport {
		t.Errorf("the queue is wider (%d) than the window (%d)", q.DocWidth, q.Viewport)
	}

	if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.CSS("article.held textarea[name=reason]"), "retention job, ticket OPS-2291"),
		chromedp.Click(chromedp.CSS("article.held button[value=approve]")), chromedp.WaitVisible(chromedp.CSS("section.decided"))); err != nil {
		t.Fatalf("approve: %v", err)
	}
	browsertest.Screenshot(t, ctx, "approved", true)
	d := e.appr.decisions()
	if len(d) != 1 || d[0].ID != "req-3c9e" || !d[0].D.Approve || d[0].D.ExpectSHA256 != sum || d[0].Who.Username != "alice" ||
		d[0].Who.Issuer != e.idp.Issuer() || d[0].D.Reason != "retention job, ticket OPS-2291" {
		t.Fatalf("the hub got %+v", d)
	}

	if err := chromedp.Do(ctx, chromedp.Navigate(e.base+"/sessions"), chromedp.WaitVisible(chromedp.CSS("table.sessions"))); err != nil {
		t.Fatalf("sessions page: %v", err)
	}
	type listFacts struct {
		Rows, DocWidth, Viewport int
	}
	l := eval[listFacts](t, ctx, `({Rows: document.querySelectorAll('table.sessions tbody tr').length,
		DocWidth: document.documentElement.scrollWidth, Viewport: window.innerWidth})`)
	browsertest.Screenshot(t, ctx, "sessions", true)
	if l.Rows != 2 || l.DocWidth > l.Viewport {
		t.Errorf("the sessions page: %+v", l)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(e.base+"/sessions?action=deny"), chromedp.WaitVisible(chromedp.CSS("table.ops"))); err != nil {
		t.Fatalf("statements search: %v", err)
	}
	if ops := eval[string](t, ctx, `document.querySelector('table.ops').innerText`); !strings.Contains(ops, "DROP TABLE customers") || strings.Contains(ops, "SELECT id") {
		t.Errorf("action=deny found:\n%s", ops)
	}
	browsertest.Screenshot(t, ctx, "search-deny", true)

	if err := chromedp.Do(ctx, chromedp.Navigate(e.sessionURL(h, "pg-7f3a")), chromedp.WaitVisible(chromedp.CSS("table.events"))); err != nil {
		t.Fatalf("session page: %v", err)
	}
	page := eval[string](t, ctx, `document.querySelector('main').innerText`)
	browsertest.Screenshot(t, ctx, "session", true)
	for _, want := range []string{"SELECT id, name, card FROM customers", "mask (mask-cards)", `masked by rule "mask-cards" in "card" (detector "pan"): 12 values`,
		`DROP TABLE customers; -- \x1b[2Kharmless`, "deny (no-drops)"} {
		if !strings.Contains(page, want) {
			t.Errorf("the session page lacks %q", want)
		}
	}

	if err := chromedp.Do(ctx, chromedp.Navigate(e.sessionURL(h, "ssh-91c2")+"/replay"), chromedp.WaitVisible(chromedp.CSS("#player .ap-player")),
		chromedp.Click(chromedp.CSS("#player .ap-player"))); err != nil {
		t.Fatalf("replay: %v", err)
	}
	// The cast lasts 0.6 s; a loaded machine plays it slower.
	var term string
	for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		if term = eval[string](t, ctx, `document.querySelector('#player').innerText`); strings.Contains(term, "load average: 0.08") {
			break
		}
	}
	browsertest.Screenshot(t, ctx, "replay", true)
	if !strings.Contains(term, "load average: 0.08") {
		t.Errorf("the player shows %q", term)
	}

	if _, err := e.srv.SignFleet(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(e.base+"/hosts/"+h.id+"/evidence"), chromedp.WaitVisible(chromedp.CSS("main table.grid"))); err != nil {
		t.Fatalf("evidence page: %v", err)
	}
	ev := eval[string](t, ctx, `document.querySelector('main').innerText`)
	browsertest.Screenshot(t, ctx, "evidence", true)
	if !strings.Contains(ev, "host signature and hub cosignature verify") {
		t.Errorf("the evidence page:\n%s", ev)
	}

	// The requester, in a browser of their own.
	held2 := heldRequest("req-5d1b", "bob", "DELETE FROM invoices WHERE id = 9")
	e.appr.hold(held2)
	bob := browsertest.Chrome(t, 1366, 768, 2*time.Minute)
	e.idp.QueueUser(person("bob", "dba-approvers"))
	if err := chromedp.Do(bob, chromedp.Navigate(e.base+"/approvals/req-5d1b"), chromedp.WaitVisible(chromedp.CSS("article.held"))); err != nil {
		t.Fatalf("the requester's queue: %v", err)
	}
	type mine struct {
		Buttons int
		WhyNot  string
		CSRF    string
	}
	m := eval[mine](t, bob, `({Buttons: document.querySelectorAll('article.held button').length,
		WhyNot: (document.querySelector('article.held .whynot') || {}).innerText || '',
		CSRF: document.querySelector('input[name=csrf]').value})`)
	browsertest.Screenshot(t, bob, "requester", true)
	if m.Buttons != 0 || !strings.Contains(m.WhyNot, "never approves their own request") {
		t.Errorf("the requester's view: %+v", m)
	}
	forged := fmt.Sprintf(`fetch('/console/approvals/req-5d1b/decision', {method: 'POST', body: new URLSearchParams({csrf: %q, verdict: 'approve', expect_sha256: %q})}).then(r => r.status)`,
		m.CSRF, held2.Held.Request.TextSHA256)
	status, err := chromedp.Run(bob, chromedp.Evaluate[int](forged, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatal(err)
	}
	if status == 200 || len(e.appr.decisions()) != 1 {
		t.Errorf("the requester's forged approval: HTTP %d, decisions %+v", status, e.appr.decisions())
	}
}

func (e *testEnv) sessionURL(h *host, session string) string {
	return e.base + "/hosts/" + h.id + "/sessions/" + session
}
