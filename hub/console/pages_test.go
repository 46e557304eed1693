package console

import (
	"bytes"
	"compress/gzip"
	"context"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/mod/sumdb/note"

	"github.com/interlock/interlock/hub/hubapi"
	"github.com/interlock/interlock/internal/textview"
	"github.com/interlock/interlock/journal/evidence"
	"github.com/interlock/interlock/model"
)

// heldRequest is a held psql statement of a requester logged in as
// login, through sudo, in a CI job, under an agent.
func heldRequest(id, login, text string) hubapi.PendingApproval {
	uid := uint32(1000)
	req := model.ApprovalRequest{ID: id, Target: "billing-db", Rule: "review-deletes", Reason: "a DELETE on accounts",
		Approvers: []string{"@dba-approvers"}, Needed: 1, Scope: "operation", Session: "s-" + id,
		Operation:  model.Operation{Protocol: model.ProtoPostgres, Kind: "delete", Text: text},
		TextSHA256: textview.Hash(text),
		Requester: model.Identity{
			Kernel: model.KernelFacts{TGID: 4242, UID: 0, Comm: "psql"},
			Proc:   &model.ProcFacts{User: "root", Exe: "/usr/lib/postgresql/15/bin/psql"},
			Human: &model.Human{LoginUID: &uid, LoginUser: login, Provenance: model.ProvProc,
				Chain: []model.UserHop{{Via: "sudo", FromUID: 1000, FromUser: login, ToUID: 0, ToUser: "root"}}},
			Workload: &model.Workload{Provenance: model.ProvVerified, Platform: "github", Claims: map[string]string{"repository": "acme/billing", "ref": "refs/heads/main"}},
			Agent:    &model.Agent{Name: "claude-code", PID: 4000, Exe: "/usr/local/bin/claude", MatchedBy: "exe", Provenance: model.ProvProc},
		}}
	return hubapi.PendingApproval{HostID: "hxyz", HostName: "runner-1",
		Held: hubapi.HeldRequest{Request: req, Deadline: time.Now().Add(5 * time.Minute), RequestSHA256: strings.Repeat("ab", 32), Seq: 7}}
}

// TestQueueAndDecide: the queue shows the held operation whole and
// escaped, with the requester's principals and provenance; an approval
// names the SHA-256 of the text shown; the requester sees no buttons and
// the hub refuses their forged decision; a POST without the session's
// CSRF token, from another origin, or approving without the hash, is
// refused.
func TestQueueAndDecide(t *testing.T) {
	e := newEnv(t)
	text := "DELETE FROM accounts\n WHERE id = 7; -- \x1b[2K\x1b[1Aok\r<script>alert(1)</script>\u202e"
	p := heldRequest("r1", "bob", text)
	// What a host or a client chose, shown as text: the host's name, the
	// target and the rule's reason.
	p.HostName = "runner-1<script>alert(2)</script>"
	p.Held.Request.Reason = "a DELETE on accounts\x1b]8;;https://evil.example\x07"
	e.appr.hold(p)
	sum := textview.Hash(text)

	alice, resp, page := e.signIn(t, person("alice", "dba-approvers"))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("queue: %d", resp.StatusCode)
	}
	for _, want := range []string{
		"1| DELETE FROM accounts", `2|  WHERE id = 7; -- \x1b[2K\x1b[1Aok\r&lt;script&gt;alert(1)&lt;/script&gt;\u202e`,
		"sha256 <code class=\"sha\">" + sum, `review-deletes (a DELETE on accounts\x1b]8;;https://evil.example\x07)`, "billing-db",
		"runner-1&lt;script&gt;alert(2)&lt;/script&gt;",
		"bob (login uid 1000), bob → root via sudo (proc)", "acme/billing@refs/heads/main (verified)",
		"claude-code, matched by exe, pid 4000 /usr/local/bin/claude", "root (uid 0) pid 4242 /usr/lib/postgresql/15/bin/psql",
		`name="expect_sha256" value="` + sum + `"`, `class="deadline"`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the queue lacks %q", want)
		}
	}
	if strings.ContainsAny(page, "\x1b\r\u202e") || strings.Contains(page, "<script>alert") {
		t.Errorf("raw control bytes or markup from the operation reached the page")
	}
	if resp, one := get(t, alice, e.base+"/approvals/r1"); resp.StatusCode != http.StatusOK || !strings.Contains(one, sum) {
		t.Errorf("one request's page: %d", resp.StatusCode)
	}
	if _, none := get(t, alice, e.base+"/approvals/nope"); !strings.Contains(none, "No request <code>nope</code>") {
		t.Errorf("a missing request's page:\n%s", none)
	}

	// The requester, an approver too, sees it without buttons, and a
	// forged POST with their own valid token is refused by the hub.
	bob, _, bobPage := e.signIn(t, person("bob", "dba-approvers"))
	if strings.Contains(bobPage, `value="approve"`) || !strings.Contains(bobPage, "a requester never approves their own request") {
		t.Errorf("the requester's queue offers a decision:\n%s", bobPage)
	}
	resp, body := postForm(t, bob, e.base+"/approvals/r1/decision", url.Values{"csrf": {csrfOf(t, bobPage)}, "verdict": {"approve"}, "expect_sha256": {sum}}, nil)
	if resp.StatusCode == http.StatusOK || !strings.Contains(body, "Decision refused") {
		t.Errorf("the requester's forged approval: %d\n%s", resp.StatusCode, body)
	}

	csrf := csrfOf(t, page)
	for name, c := range map[string]struct {
		form url.Values
		hdr  map[string]string
		want int
	}{
		"no CSRF token":     {url.Values{"verdict": {"approve"}, "expect_sha256": {sum}}, nil, http.StatusForbidden},
		"another's token":   {url.Values{"csrf": {csrfOf(t, bobPage)}, "verdict": {"approve"}, "expect_sha256": {sum}}, nil, http.StatusForbidden},
		"another origin":    {url.Values{"csrf": {csrf}, "verdict": {"approve"}, "expect_sha256": {sum}}, map[string]string{"Origin": "https://evil.example"}, http.StatusForbidden},
		"approve sans hash": {url.Values{"csrf": {csrf}, "verdict": {"approve"}}, nil, http.StatusBadRequest},
		"no verdict":        {url.Values{"csrf": {csrf}, "expect_sha256": {sum}}, nil, http.StatusBadRequest},
		"long reason":       {url.Values{"csrf": {csrf}, "verdict": {"deny"}, "reason": {strings.Repeat("x", 1001)}}, nil, http.StatusBadRequest},
		"huge form":         {url.Values{"verdict": {"deny"}, "pad": {strings.Repeat("x", 70<<10)}, "csrf": {csrf}}, nil, http.StatusForbidden},
		"other text":        {url.Values{"csrf": {csrf}, "verdict": {"approve"}, "expect_sha256": {textview.Hash("DELETE FROM accounts")}}, nil, http.StatusConflict},
	} {
		if resp, body := postForm(t, alice, e.base+"/approvals/r1/decision", c.form, c.hdr); resp.StatusCode != c.want {
			t.Errorf("%s: %d, want %d\n%s", name, resp.StatusCode, c.want, body)
		}
	}
	// Without a session, a POST is refused (and not sent to sign-in).
	if resp, _ := postForm(t, noFollow(e.browser(t)), e.base+"/approvals/r1/decision", url.Values{"csrf": {csrf}, "verdict": {"deny"}}, nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("POST without a session: %d", resp.StatusCode)
	}
	if d := e.appr.decisions(); len(d) != 0 {
		t.Fatalf("refused POSTs decided: %+v", d)
	}

	resp, body = postForm(t, alice, e.base+"/approvals/r1/decision",
		url.Values{"csrf": {csrf}, "verdict": {"approve"}, "expect_sha256": {sum}, "reason": {"ticket OPS-1"}}, map[string]string{"Origin": strings.TrimSuffix(e.url, "/")})
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Approved: r1") {
		t.Fatalf("approve: %d\n%s", resp.StatusCode, body)
	}
	d := e.appr.decisions()
	if len(d) != 1 || d[0].Who.Username != "alice" || d[0].Who.Issuer != e.idp.Issuer() || !d[0].D.Approve ||
		d[0].D.ExpectSHA256 != sum || d[0].D.Reason != "ticket OPS-1" || d[0].ID != "r1" {
		t.Fatalf("decisions %+v", d)
	}
}

// TestPages: an auditor finds sessions by host, target, identity, time,
// kind and decision, reads a session's statements and commands with
// their decisions and masking (never a masked original), replays a
// terminal, reads each host's evidence (its checkpoints verified
// against the host's and the hub's keys, and a tampered one named), and
// downloads the fleet bundle; every page has the security headers.
func TestPages(t *testing.T) {
	e := newEnv(t)
	h := e.newHost(t, "runner-1")
	login := uint32(1000)
	at := time.Now().Add(-time.Hour).UTC()
	ident := model.Identity{Kernel: model.KernelFacts{TGID: 77, Comm: "psql"}, Proc: &model.ProcFacts{User: "root", Exe: "/usr/bin/psql"},
		Human: &model.Human{LoginUID: &login, LoginUser: "alice", Provenance: model.ProvProc}}
	e.record(t, h,
		model.Record{Kind: model.KindSessionOpen, Session: "pg1", Time: at, Data: model.SessionOpen{
			Target: model.Target{Name: "billing-db", Protocol: model.ProtoPostgres}, Identity: ident,
			OrigDst: netip.MustParseAddrPort("10.0.0.5:5432"), Decision: model.Decision{Action: model.Allow, Rule: "billing"}}},
		model.Record{Kind: model.KindPGStatement, Session: "pg1", Time: at.Add(time.Second), Data: model.PGStatement{
			SQL: "SELECT card FROM cards", Protocol: "simple", Kinds: []string{"select"}, Tables: []string{"cards"},
			Decision: model.Decision{Action: model.Mask, Rule: "mask-cards"}}},
		model.Record{Kind: model.KindPGMask, Session: "pg1", Time: at.Add(time.Second), Data: model.MaskDecision{Rule: "mask-cards", Column: "card", Count: 3},
			Payload: bytes.Repeat([]byte{0xee}, 48)},
		model.Record{Kind: model.KindPGStatement, Session: "pg1", Time: at.Add(2 * time.Second), Data: model.PGStatement{
			SQL: "DELETE FROM accounts -- \x1b]0;pwned\x07<img src=x>", Protocol: "simple", Kinds: []string{"delete"}, Tables: []string{"accounts"},
			Decision: model.Decision{Action: model.Deny, Rule: "no-deletes"}}},
		model.Record{Kind: model.KindSessionClose, Session: "pg1", Time: at.Add(3 * time.Second), Data: model.SessionClose{}},
		model.Record{Kind: model.KindSessionOpen, Session: "ssh1", Time: at.Add(time.Minute), Data: model.SessionOpen{
			Target: model.Target{Name: "bastion", Protocol: model.ProtoSSH}, Identity: ident, Decision: model.Decision{Action: model.Allow}}},
		model.Record{Kind: model.KindSSHRequest, Session: "ssh1", Data: model.SSHRequest{Channel: 0, Type: "pty-req", Term: "xterm", Cols: 80, Rows: 24, OffsetNS: 1000,
			Decision: model.Decision{Action: model.Allow}}},
		model.Record{Kind: model.KindSSHRequest, Session: "ssh1", Data: model.SSHRequest{Channel: 0, Type: "shell", OffsetNS: 2000, Decision: model.Decision{Action: model.Allow}}},
		model.Record{Kind: model.KindSSHIO, Session: "ssh1", Data: model.SSHIO{Channel: 0, Stream: "o", OffsetNS: 3000, Bytes: 14}, Payload: []byte("hello, world\r\n")},
		model.Record{Kind: model.KindSessionClose, Session: "ssh1", Data: model.SessionClose{}},
	)
	aud, _, _ := e.signIn(t, person("carol", "auditors"))

	resp, page := get(t, aud, e.base+"/sessions")
	for _, want := range []string{"/console/hosts/" + h.id + "/sessions/pg1", "/console/hosts/" + h.id + "/sessions/ssh1", "billing-db", "bastion", "alice as root"} {
		if !strings.Contains(page, want) {
			t.Errorf("sessions lack %q", want)
		}
	}
	checkHeaders(t, "sessions", resp)
	search := func(q string) string {
		t.Helper()
		resp, body := get(t, aud, e.base+"/sessions?"+q)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("search %s: %d\n%s", q, resp.StatusCode, body)
		}
		return body
	}
	if b := search("target=bastion"); strings.Contains(b, "sessions/pg1") || !strings.Contains(b, "sessions/ssh1") {
		t.Errorf("target=bastion")
	}
	if b := search("user=nobody"); strings.Contains(b, "sessions/pg1") {
		t.Errorf("user=nobody found a session")
	}
	if b := search("host=" + h.id + "&since=" + url.QueryEscape(at.Add(30*time.Second).Format("2006-01-02T15:04:05"))); strings.Contains(b, "sessions/pg1\"") || !strings.Contains(b, "sessions/ssh1") {
		t.Errorf("since")
	}
	if b := search("kind=delete"); !strings.Contains(b, "sessions/pg1#e") || strings.Contains(b, "SELECT card") || !strings.Contains(b, "no-deletes") {
		t.Errorf("kind=delete:\n%s", b)
	}
	if b := search("action=mask"); !strings.Contains(b, "SELECT card FROM cards") || strings.Contains(b, "DELETE FROM") {
		t.Errorf("action=mask")
	}
	if resp, _ := get(t, aud, e.base+"/sessions?action=drop"); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a bad decision filter: %d", resp.StatusCode)
	}

	resp, page = get(t, aud, e.base+"/hosts/"+h.id+"/sessions/pg1")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("session page: %d\n%s", resp.StatusCode, page)
	}
	for _, want := range []string{"SELECT card FROM cards", "mask (mask-cards)", `masked by rule &#34;mask-cards&#34; in &#34;card&#34;: 3 values`,
		`DELETE FROM accounts -- \x1b]0;pwned\x07&lt;img src=x&gt;`, "deny (no-deletes)", "alice (login uid 1000)"} {
		if !strings.Contains(page, want) {
			t.Errorf("the session page lacks %q", want)
		}
	}
	if strings.ContainsAny(page, "\x1b\x07") || strings.Contains(page, "<img") || strings.Contains(page, "7u7u") {
		t.Errorf("raw bytes or markup on the session page")
	}
	checkHeaders(t, "session", resp)
	if resp, _ := get(t, aud, e.base+"/hosts/"+h.id+"/sessions/nope"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown session: %d", resp.StatusCode)
	}
	if resp, _ := get(t, aud, e.base+"/hosts/"+h.id+"/sessions/pg1/replay"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("replay of a session with no terminal: %d", resp.StatusCode)
	}

	_, page = get(t, aud, e.base+"/hosts/"+h.id+"/sessions/ssh1")
	if !strings.Contains(page, "/sessions/ssh1/replay?channel=0") || !strings.Contains(page, `hello, world\r\n`) {
		t.Errorf("the ssh session page:\n%s", page)
	}
	resp, page = get(t, aud, e.base+"/hosts/"+h.id+"/sessions/ssh1/replay")
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, `data-cast="/console/hosts/`+h.id+`/sessions/ssh1/cast?channel=0"`) ||
		!strings.Contains(page, "asciinema-player.min.js") {
		t.Errorf("replay page: %d\n%s", resp.StatusCode, page)
	}
	resp, cast := get(t, aud, e.base+"/hosts/"+h.id+"/sessions/ssh1/cast?channel=0")
	lines := strings.Split(strings.TrimSpace(cast), "\n")
	if resp.StatusCode != http.StatusOK || len(lines) < 2 || !strings.Contains(lines[0], `"version":2`) || !strings.Contains(cast, `"hello, world\r\n"`) {
		t.Errorf("cast: %d\n%s", resp.StatusCode, cast)
	}
	if resp, _ := get(t, aud, e.base+"/hosts/"+h.id+"/sessions/ssh1/cast?channel=9"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("cast of no channel: %d", resp.StatusCode)
	}

	// Evidence: checkpoints verified here; a cosignature changed in the
	// database is named.
	_, page = get(t, aud, e.base+"/evidence")
	if !strings.Contains(page, "runner-1") || !strings.Contains(page, "/console/hosts/"+h.id+"/evidence") {
		t.Errorf("evidence:\n%s", page)
	}
	_, page = get(t, aud, e.base+"/hosts/"+h.id+"/evidence")
	if !strings.Contains(page, "host signature and hub cosignature verify") || strings.Contains(page, "does not verify") {
		t.Errorf("host evidence:\n%s", page)
	}
	conn, err := pgx.Connect(context.Background(), e.conn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), `UPDATE checkpoints SET cosigned = replace(convert_from(cosigned, 'UTF8'), 'interlock', 'interlocK')::bytea`); err != nil {
		t.Fatal(err)
	}
	_, page = get(t, aud, e.base+"/hosts/"+h.id+"/evidence")
	if !strings.Contains(page, "does not verify") {
		t.Errorf("a tampered cosigned checkpoint is not named:\n%s", page)
	}

	// The fleet bundle, after the hub signed a fleet checkpoint.
	if resp, _ := get(t, aud, e.base+"/export"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("export before a fleet checkpoint: %d", resp.StatusCode)
	}
	if _, err := conn.Exec(context.Background(), `UPDATE checkpoints SET cosigned = replace(convert_from(cosigned, 'UTF8'), 'interlocK', 'interlock')::bytea`); err != nil {
		t.Fatal(err)
	}
	if _, err := e.srv.SignFleet(context.Background()); err != nil {
		t.Fatal(err)
	}
	resp, bundle := get(t, aud, e.base+"/export")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/gzip" {
		t.Fatalf("export: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	zr, err := gzip.NewReader(strings.NewReader(bundle))
	if err != nil {
		t.Fatal(err)
	}
	fb, err := evidence.ReadFleetBundle(zr)
	if err != nil {
		t.Fatal(err)
	}
	fk, err := note.NewVerifier(e.keys.FleetKey)
	if err != nil {
		t.Fatal(err)
	}
	if rep := evidence.VerifyFleetBundle(fb, evidence.FleetOptions{FleetKey: fk}); !rep.OK {
		t.Errorf("the exported bundle does not verify: %+v", rep)
	}
	appr, _, _ := e.signIn(t, person("alice", "dba-approvers"))
	if resp, _ := get(t, appr, e.base+"/export"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("an approver's export: %d", resp.StatusCode)
	}

	// Assets: served, cached, no listing.
	resp, js := get(t, aud, e.base+"/assets/asciinema-player.min.js")
	if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Header.Get("Content-Type"), "javascript") || !strings.Contains(js, "AsciinemaPlayer") {
		t.Errorf("player asset: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if resp, _ := get(t, aud, e.base+"/assets/"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("asset listing: %d", resp.StatusCode)
	}
}

// checkHeaders: no inline script or style, no framing, no caching of
// pages with the fleet's data, no referrer.
func checkHeaders(t *testing.T, name string, resp *http.Response) {
	t.Helper()
	csp := resp.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'self' 'wasm-unsafe-eval';", "frame-ancestors 'none'", "form-action 'self'", "base-uri 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("%s: CSP %q lacks %q", name, csp, want)
		}
	}
	if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "'unsafe-eval'") {
		t.Errorf("%s: CSP allows inline code: %q", name, csp)
	}
	for k, v := range map[string]string{"Cache-Control": "no-store", "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"} {
		if resp.Header.Get(k) != v {
			t.Errorf("%s: %s is %q, want %q", name, k, resp.Header.Get(k), v)
		}
	}
}
