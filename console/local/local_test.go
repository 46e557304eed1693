package local

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/oauth2-proxy/mockoidc"
	"golang.org/x/mod/sumdb/note"

	"github.com/interlock/interlock/approvals"
	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/hub/console"
	"github.com/interlock/interlock/hub/hubapi"
	"github.com/interlock/interlock/hub/store"
	"github.com/interlock/interlock/internal/testkit"
	"github.com/interlock/interlock/journal"
	"github.com/interlock/interlock/journal/evidence"
	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/policy"
)

// host is a real journal with two sessions (a PostgreSQL one with a
// denied DELETE, an ssh shell), a checkpoint a hub cosigned and one a
// forged hub key "cosigned".
type host struct {
	j      *journal.Journal
	src    *Source
	hubKey string
}

var at = time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)

func newHost(t *testing.T) *host {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	j, err := journal.Open(ctx, journal.Options{Path: filepath.Join(dir, "journal.db"), Sync: journal.SyncAlways,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	signer, err := journal.LoadSigner(filepath.Join(dir, journal.KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	login := uint32(1000)
	ident := model.Identity{Kernel: model.KernelFacts{TGID: 42, UID: 0, Comm: "psql"}, Proc: &model.ProcFacts{User: "root", Exe: "/usr/bin/psql"},
		Human: &model.Human{LoginUID: &login, LoginUser: "alice", Provenance: model.ProvProc}}
	recs := []model.Record{
		{Kind: model.KindSessionOpen, Session: "pg1", Time: at, Data: model.SessionOpen{
			Target: model.Target{Name: "billing-db", Protocol: model.ProtoPostgres}, Identity: ident,
			OrigDst: netip.MustParseAddrPort("10.0.0.5:5432"), Decision: model.Decision{Action: model.Allow, Rule: "billing"}}},
		{Kind: model.KindPGStatement, Session: "pg1", Time: at.Add(time.Second), Data: model.PGStatement{
			SQL: "SELECT card FROM cards", Protocol: "simple", Kinds: []string{"select"}, Tables: []string{"cards"},
			Decision: model.Decision{Action: model.Mask, Rule: "mask-cards"}}},
		{Kind: model.KindPGStatement, Session: "pg1", Time: at.Add(2 * time.Second), Data: model.PGStatement{
			SQL: "DELETE FROM accounts -- \x1b]0;pwned\x07<img src=x>", Protocol: "simple", Kinds: []string{"delete"}, Tables: []string{"accounts"},
			Decision: model.Decision{Action: model.Deny, Rule: "no-deletes"}}},
		{Kind: model.KindSessionClose, Session: "pg1", Time: at.Add(3 * time.Second), Data: model.SessionClose{}},
		{Kind: model.KindSessionOpen, Session: "ssh1", Time: at.Add(time.Minute), Data: model.SessionOpen{
			Target: model.Target{Name: "bastion", Protocol: model.ProtoSSH}, Identity: model.Identity{Proc: &model.ProcFacts{User: "bob"}},
			Decision: model.Decision{Action: model.Allow}}},
		{Kind: model.KindSSHRequest, Session: "ssh1", Time: at.Add(time.Minute), Data: model.SSHRequest{Channel: 0, Type: "pty-req", Term: "xterm", Cols: 80, Rows: 24, OffsetNS: 1000,
			Decision: model.Decision{Action: model.Allow}}},
		{Kind: model.KindSSHRequest, Session: "ssh1", Time: at.Add(time.Minute), Data: model.SSHRequest{Channel: 0, Type: "shell", OffsetNS: 2000, Decision: model.Decision{Action: model.Allow}}},
		{Kind: model.KindSSHIO, Session: "ssh1", Time: at.Add(time.Minute), Data: model.SSHIO{Channel: 0, Stream: "o", OffsetNS: 3000, Bytes: 14}, Payload: []byte("hello, world\r\n")},
		{Kind: model.KindSessionClose, Session: "ssh1", Time: at.Add(2 * time.Minute), Data: model.SessionClose{}},
	}
	for _, r := range recs {
		if _, err := j.Append(ctx, r, model.Synced); err != nil {
			t.Fatal(err)
		}
	}
	hub := cosigner(t, "hub.example")
	forged := cosigner(t, "hub.example")
	h := &host{j: j, hubKey: hub.vkey, src: &Source{Path: j.Path(), HostID: "h1", HostName: "db-runner", VerifierKey: signer.VerifierKey}}
	// The shipper's hub.cosignature entries: the hub's, then one of a
	// key that is not the hub's, for a later checkpoint.
	for _, cs := range []testCosigner{hub, forged} {
		cp, err := j.CheckpointAt(ctx, 1<<40)
		if err != nil {
			t.Fatal(err)
		}
		co, err := evidence.Cosign(cp.Note, cs.Signer, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := j.Append(ctx, model.Record{Kind: model.KindHubCosignature, Time: time.Now(), Data: model.HubCosignature{
			Size: cp.Size, Root: cp.Root[:], HostID: "h1", HubKey: cs.Signer.Name(), CosignedNS: time.Now().UnixNano(), Note: string(co)}}, model.Synced); err != nil {
			t.Fatal(err)
		}
	}
	// A last checkpoint no hub cosigned.
	if _, err := j.CheckpointAt(ctx, 1<<40); err != nil {
		t.Fatal(err)
	}
	return h
}

type testCosigner struct {
	note.Signer
	vkey string
}

func cosigner(t *testing.T, name string) testCosigner {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := evidence.NewCosigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	ckey, err := evidence.CosignatureKey(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return testCosigner{s, ckey}
}

func TestSourceSearches(t *testing.T) {
	h := newHost(t)
	ctx := context.Background()
	all, err := h.src.Sessions(ctx, store.SessionFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || all[0].Session != "ssh1" || all[1].Session != "pg1" || all[1].HostID != "h1" || all[1].HostName != "db-runner" {
		t.Fatalf("sessions = %+v, want ssh1 then pg1 of h1", all)
	}
	for _, c := range []struct {
		f    store.SessionFilter
		want string
	}{
		{store.SessionFilter{User: "alice"}, "pg1"},
		{store.SessionFilter{User: "root"}, "pg1"},
		{store.SessionFilter{User: "bob"}, "ssh1"},
		{store.SessionFilter{User: "mallory"}, ""},
		{store.SessionFilter{Target: "bastion"}, "ssh1"},
		{store.SessionFilter{Until: at.Add(time.Minute)}, "pg1"},
		{store.SessionFilter{Since: at.Add(time.Second)}, "ssh1"},
		{store.SessionFilter{HostID: "h2"}, ""},
		{store.SessionFilter{Limit: 1}, "ssh1"},
	} {
		got, err := h.src.Sessions(ctx, c.f)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, s := range got {
			ids = append(ids, s.Session)
		}
		if strings.Join(ids, " ") != c.want {
			t.Errorf("Sessions(%+v) = %v, want %q", c.f, ids, c.want)
		}
	}
	for _, c := range []struct {
		f    store.OperationFilter
		want int
	}{
		{store.OperationFilter{}, 3}, // two statements and the shell: a pty-req is no operation
		{store.OperationFilter{Kind: "delete"}, 1},
		{store.OperationFilter{Action: "deny"}, 1},
		{store.OperationFilter{Text: "from ACCOUNTS"}, 1},
		{store.OperationFilter{Table: "cards"}, 1},
		{store.OperationFilter{User: "alice"}, 2},
		{store.OperationFilter{Target: "bastion"}, 1},
		{store.OperationFilter{Session: "ssh1"}, 1},
		{store.OperationFilter{HostID: "h2"}, 0},
		{store.OperationFilter{Limit: 1}, 1},
	} {
		got, err := h.src.Operations(ctx, c.f)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != c.want {
			t.Errorf("Operations(%+v) = %d rows, want %d", c.f, len(got), c.want)
		}
	}
	if _, err := h.src.Operations(ctx, store.OperationFilter{Text: strings.Repeat("x", store.MaxSearchText+1)}); err == nil {
		t.Error("an over-long text filter was taken")
	}
}

func TestSourceSession(t *testing.T) {
	h := newHost(t)
	ctx := context.Background()
	open, err := h.src.SessionOf(ctx, "h1", "ssh1")
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for e, err := range h.src.SessionEntries(ctx, "h1", open) {
		if err != nil {
			t.Fatal(err)
		}
		kinds = append(kinds, e.Kind)
		if e.Kind == model.KindSSHIO && string(e.Payload) != "hello, world\r\n" {
			t.Errorf("ssh.io payload = %q", e.Payload)
		}
	}
	if got := strings.Join(kinds, " "); got != "session.open ssh.request ssh.request ssh.io session.close" {
		t.Errorf("entries = %s", got)
	}
	// Another host's id, or no such session, is absent, never this host's.
	if _, err := h.src.SessionOf(ctx, "h2", "ssh1"); !errors.Is(err, store.ErrNoSession) {
		t.Errorf("SessionOf(h2) = %v, want ErrNoSession", err)
	}
	if _, err := h.src.SessionOf(ctx, "h1", "nope"); !errors.Is(err, store.ErrNoSession) {
		t.Errorf("SessionOf(nope) = %v, want ErrNoSession", err)
	}
	if _, err := h.src.Host(ctx, "h2"); !errors.Is(err, store.ErrNoHost) {
		t.Errorf("Host(h2) = %v, want ErrNoHost", err)
	}
	hh, err := h.src.Host(ctx, "h1")
	if err != nil {
		t.Fatal(err)
	}
	if hh.JournalID != h.j.ID() || hh.Size < 11 || hh.CosignedSize == 0 || hh.CosignedSize >= hh.Size {
		t.Errorf("host = %+v", hh)
	}
	cps, err := h.src.Checkpoints(ctx, "h1")
	if err != nil {
		t.Fatal(err)
	}
	cosigned := 0
	for _, c := range cps {
		if len(c.Cosigned) > 0 {
			cosigned++
		}
		if len(c.Root) != 32 {
			t.Errorf("checkpoint %d: root %x", c.Size, c.Root)
		}
	}
	if len(cps) < 3 || cosigned != 2 {
		t.Errorf("%d checkpoints, %d cosigned; want at least 3, 2 cosigned", len(cps), cosigned)
	}
}

// env serves the host's console over TLS on loopback, signed in
// through a test IdP, as the daemon does.
type env struct {
	base  string
	idp   *mockoidc.MockOIDC
	srv   *httptest.Server
	queue *fakeQueue
}

type fakeQueue struct {
	pending []approvals.Pending
}

func newEnv(t *testing.T, h *host) *env {
	t.Helper()
	return newEnvWith(t, h, nil, false)
}

// newEnvWith serves the console with q as its queue (the fake queue's
// when nil) and decide.
func newEnvWith(t *testing.T, h *host, q console.Approvals, decide bool) *env {
	t.Helper()
	idp, err := mockoidc.Run()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { idp.Shutdown() })
	var handler http.Handler
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handler.ServeHTTP(w, r) }))
	srv.StartTLS()
	t.Cleanup(srv.Close)
	e := &env{base: srv.URL + "/console", idp: idp, srv: srv, queue: &fakeQueue{}}
	cfg := idp.Config()
	if q == nil {
		q = Queue{List: func() []approvals.Pending { return e.queue.pending }, HostID: "h1", HostName: "db-runner"}
	}
	con, err := New(Config{Source: h.src, HubKey: h.hubKey, BaseURL: e.base, Queue: q, Decide: decide,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		OIDC: console.OIDC{Issuer: cfg.Issuer, ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret,
			Roles: map[string][]string{hubapi.RoleApprover: {"dba", "dba-other"}, hubapi.RoleAuditor: {"audit"}}}})
	if err != nil {
		t.Fatal(err)
	}
	handler = con.Handler()
	return e
}

func (e *env) signIn(t *testing.T, name string, groups ...string) *http.Client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := e.srv.Client()
	c.Jar = jar
	e.idp.QueueUser(&mockoidc.MockUser{Subject: "sub-" + name, Email: name + "@example.com", EmailVerified: true, PreferredUsername: name, Groups: groups})
	resp, body := get(t, c, e.base+"/login")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, name) {
		t.Fatalf("sign-in of %s ended with %d:\n%s", name, resp.StatusCode, body)
	}
	return c
}

func get(t *testing.T, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestConsoleServesTheJournal(t *testing.T) {
	h := newHost(t)
	e := newEnv(t, h)
	aud := e.signIn(t, "carol", "audit")
	_, page := get(t, aud, e.base+"/sessions")
	for _, want := range []string{"/console/hosts/h1/sessions/pg1", "/console/hosts/h1/sessions/ssh1", "billing-db", "bastion", "alice as root"} {
		if !strings.Contains(page, want) {
			t.Errorf("sessions lack %q", want)
		}
	}
	_, page = get(t, aud, e.base+"/sessions?kind=delete")
	if !strings.Contains(page, `DELETE FROM accounts -- \x1b]0;pwned\x07&lt;img src=x&gt;`) || strings.Contains(page, "<img src=x>") {
		t.Errorf("the statement search does not show the DELETE escaped:\n%s", page)
	}
	resp, page := get(t, aud, e.base+"/hosts/h1/sessions/ssh1")
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, "/console/hosts/h1/sessions/ssh1/replay?channel=0") {
		t.Errorf("session page %d lacks the replay link:\n%s", resp.StatusCode, page)
	}
	resp, page = get(t, aud, e.base+"/hosts/h1/sessions/ssh1/replay?channel=0")
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, "asciinema-player") {
		t.Errorf("replay page %d:\n%s", resp.StatusCode, page)
	}
	resp, cast := get(t, aud, e.base+"/hosts/h1/sessions/ssh1/cast?channel=0")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/x-asciicast" || !strings.Contains(cast, `hello, world\r\n`) {
		t.Errorf("cast %d %s:\n%s", resp.StatusCode, resp.Header.Get("Content-Type"), cast)
	}
	if resp, _ := get(t, aud, e.base+"/hosts/h2/sessions/ssh1"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("another host's session: %d, want 404", resp.StatusCode)
	}
	// Evidence: the hub's cosignature verifies, the forged one does
	// not, and the last checkpoint is the host's alone.
	_, page = get(t, aud, e.base+"/hosts/h1/evidence")
	for _, want := range []string{"host signature and hub cosignature verify", "does not verify", "host signature verifies"} {
		if !strings.Contains(page, want) {
			t.Errorf("evidence lacks %q:\n%s", want, page)
		}
	}
	if _, page = get(t, aud, e.base+"/evidence"); strings.Contains(page, "/console/export") {
		t.Error("the host's console offers a fleet export")
	}
}

func TestConsoleIsReadOnly(t *testing.T) {
	h := newHost(t)
	e := newEnv(t, h)
	e.queue.pending = []approvals.Pending{{Request: model.ApprovalRequest{ID: "r1", Rule: "deletes", Approvers: []string{"@dba"}, Needed: 1,
		Operation: model.Operation{Protocol: model.ProtoPostgres, Kind: "statement", Text: "DELETE FROM accounts"}},
		Created: time.Now(), Deadline: time.Now().Add(time.Minute)}}
	dba := e.signIn(t, "dave", "dba")
	_, page := get(t, dba, e.base+"/approvals")
	if !strings.Contains(page, "DELETE FROM accounts") || !strings.Contains(page, "read-only") || strings.Contains(page, `action="/console/approvals/r1/decision"`) {
		t.Errorf("the queue does not show the request read-only:\n%s", page)
	}
	csrf := csrfOf(t, page)
	req, _ := http.NewRequest(http.MethodPost, e.base+"/approvals/r1/decision", strings.NewReader(url.Values{
		"csrf": {csrf}, "verdict": {"approve"}, "expect_sha256": {strings.Repeat("a", 64)}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", e.srv.URL)
	resp, err := dba.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(b), "read-only") {
		t.Errorf("a decision on the read-only console: %d\n%s", resp.StatusCode, b)
	}
	// An approver the rule does not name sees nothing of it; an
	// auditor reads it.
	other := e.signIn(t, "erin", "dba-other")
	if _, page := get(t, other, e.base+"/approvals"); strings.Contains(page, "DELETE FROM accounts") {
		t.Error("an approver the rule does not name sees the request")
	}
	aud := e.signIn(t, "frank", "audit")
	if _, page := get(t, aud, e.base+"/approvals"); !strings.Contains(page, "DELETE FROM accounts") {
		t.Error("an auditor does not see the queue")
	}
}

func csrfOf(t *testing.T, page string) string {
	t.Helper()
	const mark = `name="csrf" value="`
	i := strings.Index(page, mark)
	if i < 0 {
		t.Fatalf("no CSRF token in the page:\n%s", page)
	}
	rest := page[i+len(mark):]
	return rest[:strings.IndexByte(rest, '"')]
}

// TestEvidenceTrustsTheKeyFileOnly: the evidence view checks the
// journal's checkpoints with the key the console was given (the host's
// journal.pub), not with the key the journal file names: with another
// key, no checkpoint verifies.
func TestEvidenceTrustsTheKeyFileOnly(t *testing.T) {
	h := newHost(t)
	_, other, err := note.GenerateKey(rand.Reader, "other")
	if err != nil {
		t.Fatal(err)
	}
	src := *h.src
	src.VerifierKey = other
	h.src = &src
	e := newEnv(t, h)
	aud := e.signIn(t, "carol", "audit")
	_, page := get(t, aud, e.base+"/hosts/h1/evidence")
	if strings.Contains(page, `class="ok"`) || !strings.Contains(page, "does not verify") {
		t.Errorf("checkpoints verify with a key that is not the journal's:\n%s", page)
	}
}

// TestConsoleDecides: with decide on, approvers decide through the real
// broker with the hub's rules: the requester (by login user) and an
// approver with another text are refused and nothing is decided; a
// named approver's approval releases the operation, and the journal
// holds the decision with their IdP identity.
func TestConsoleDecides(t *testing.T) {
	h := newHost(t)
	b := approvals.New(approvals.Options{Journal: h.j})
	t.Cleanup(b.Close)
	e := newEnvWith(t, h, Broker(b, "h1", "db-runner", true), true)
	login := uint32(1000)
	if _, err := h.j.Append(context.Background(), model.Record{Kind: model.KindSessionOpen, Session: "pg2", Time: time.Now(), Data: model.SessionOpen{
		Target: model.Target{Name: "billing-db", Protocol: model.ProtoPostgres}}}, model.Synced); err != nil {
		t.Fatal(err)
	}
	result := make(chan model.Decision, 1)
	go func() {
		result <- b.Review(context.Background(), policy.ReviewRequest{
			Origin: model.Origin{Session: "pg2", Target: model.Target{Name: "billing-db"},
				Identity: model.Identity{Kernel: model.KernelFacts{UID: 0, TGID: 42}, Proc: &model.ProcFacts{User: "root"},
					Human: &model.Human{LoginUID: &login, LoginUser: "alice", Provenance: model.ProvProc}}},
			Operation: model.Operation{Protocol: model.ProtoPostgres, Kind: "delete", Text: "DELETE FROM accounts"},
			Rule:      "deletes", Review: config.ReviewConfig{Approvers: []string{"@dba"}, Needed: 1, Scope: "once"}, Timeout: time.Minute})
	}()
	var p approvals.Pending
	testkit.WaitFor(t, 5*time.Second, 10*time.Millisecond, func() bool {
		l := b.List(approvals.Approver{UID: 0})
		if len(l) == 1 {
			p = l[0]
		}
		return len(l) == 1
	})
	decide := func(c *http.Client, page, verdict, sha string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, e.base+"/approvals/"+p.Request.ID+"/decision", strings.NewReader(url.Values{
			"csrf": {csrfOf(t, page)}, "verdict": {verdict}, "expect_sha256": {sha}, "reason": {"ticket 18"}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", e.srv.URL)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}

	// alice asked for it: named by the rule's group, still refused.
	alice := e.signIn(t, "alice", "dba")
	_, page := get(t, alice, e.base+"/approvals")
	if !strings.Contains(page, "DELETE FROM accounts") || strings.Contains(page, `value="approve"`) || !strings.Contains(page, "you are the requester") {
		t.Errorf("the requester's queue:\n%s", page)
	}
	if code, body := decide(alice, page, "approve", p.Request.TextSHA256); code != http.StatusForbidden {
		t.Errorf("the requester's approval: %d\n%s", code, body)
	}
	dave := e.signIn(t, "dave", "dba")
	_, page = get(t, dave, e.base+"/approvals")
	if !strings.Contains(page, `value="approve"`) {
		t.Fatalf("dave may not decide:\n%s", page)
	}
	if code, body := decide(dave, page, "approve", strings.Repeat("0", 64)); code != http.StatusConflict {
		t.Errorf("an approval of another text: %d\n%s", code, body)
	}
	select {
	case d := <-result:
		t.Fatalf("decided by a refused approval: %+v", d)
	default:
	}
	if code, body := decide(dave, page, "approve", p.Request.TextSHA256); code != http.StatusOK {
		t.Fatalf("dave's approval: %d\n%s", code, body)
	}
	if d := <-result; d.Action != model.Allow || d.Request != p.Request.ID {
		t.Errorf("the operation got %+v", d)
	}
	var decs []model.ApprovalDecision
	if err := journal.Entries(context.Background(), h.j.Path(), 1, func(en journal.Entry) error {
		if en.Kind == model.KindApprovalDecision {
			var d model.ApprovalDecision
			if err := decode(en.Body, &d); err != nil {
				return err
			}
			decs = append(decs, d)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(decs) != 1 || decs[0].IdP == nil || decs[0].IdP.Username != "dave" || decs[0].IdP.Subject != "sub-dave" ||
		decs[0].Verdict != model.VerdictApprove || decs[0].Reason != "ticket 18" || decs[0].Approver.Kernel.UID != 0 {
		t.Errorf("journaled decisions %+v", decs)
	}
	// The session page names who decided, as the IdP did.
	aud := e.signIn(t, "carol", "audit")
	if _, page := get(t, aud, e.base+"/hosts/h1/sessions/pg2"); !strings.Contains(page, `by &#34;dave&#34;`) && !strings.Contains(page, `by "dave"`) {
		t.Errorf("the session page does not name dave:\n%s", page)
	}
}
