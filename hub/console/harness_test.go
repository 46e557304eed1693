package console

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oauth2-proxy/mockoidc"

	"github.com/interlock/interlock/hub/hubapi"
	"github.com/interlock/interlock/hub/server"
	"github.com/interlock/interlock/hub/store"
	"github.com/interlock/interlock/journal"
	"github.com/interlock/interlock/journal/evidence"
	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/test/e2e/pgtest"
)

// One PostgreSQL serves the package's tests; each test gets a database.
var pg pgtest.Shared

func TestMain(m *testing.M) {
	code := m.Run()
	pg.Stop()
	os.Exit(code)
}

// Groups of the test IdP's people, and the role mapping under test.
var testRoles = map[string][]string{
	hubapi.RoleApprover: {"dba-approvers"},
	hubapi.RoleAuditor:  {"auditors"},
	hubapi.RoleAdmin:    {"security"},
}

// testEnv is a real hub (its store on a real PostgreSQL, its API over
// TLS on loopback) serving the console, signed in through mockoidc.
type testEnv struct {
	st    *store.Store
	keys  *server.Keys
	con   *Console
	url   string // the hub's https://127.0.0.1:PORT
	base  string // the console's base URL
	idp   *mockoidc.MockOIDC
	appr  *fakeApprovals
	clock *clock
	srv   *server.Server
	conn  string
}

// clock is a settable time for session and sign-in expiry.
type clock struct {
	mu sync.Mutex
	d  time.Duration
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.d)
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.d += d
	c.mu.Unlock()
}

func newEnv(t *testing.T) *testEnv {
	t.Helper()
	ctx := context.Background()
	conn := pg.NewDB(t, "console")
	st, err := store.Open(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := server.LoadOrCreateKeys(filepath.Join(t.TempDir(), "hub"))
	if err != nil {
		t.Fatal(err)
	}
	idp, err := mockoidc.Run()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { idp.Shutdown() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &testEnv{st: st, keys: keys, idp: idp, url: "https://" + ln.Addr().String(), appr: &fakeApprovals{}, clock: &clock{}, conn: conn}
	e.base = e.url + "/console"
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	cfg := idp.Config()
	e.con, err = New(Options{Store: st, Approvals: e.appr, HubKey: keys.CosignerKey, BaseURL: e.base, Logger: log, Now: e.clock.now,
		SessionTTL: time.Hour,
		OIDC:       OIDC{Issuer: cfg.Issuer, ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret, Roles: testRoles},
		Export: func(ctx context.Context, w io.Writer, flush func() error) error {
			plan, err := server.PlanExport(ctx, st, keys, server.ExportOptions{})
			if err != nil {
				return err
			}
			return plan.WriteTo(ctx, w, flush)
		}})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Options{Store: st, Keys: keys, Names: []string{"127.0.0.1"},
		MaxBatchEntries: 500, MaxBatchBytes: 24 << 20, FleetInterval: time.Hour, Logger: log, Console: e.con.Handler(),
		Authenticators: []server.Authenticator{cookieAuth{e.con}}})
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(sctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		st.Close()
	})
	return e
}

// browser is an HTTPS client with a cookie jar that trusts the hub's
// CA, as a person's browser would; it follows redirects (through the
// IdP and back).
func (e *testEnv) browser(t *testing.T) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(e.keys.CAPEM)
	return &http.Client{Jar: jar, Timeout: 30 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}}}
}

// person is someone the test IdP signs in.
func person(name string, groups ...string) *mockoidc.MockUser {
	return &mockoidc.MockUser{Subject: "sub-" + name, Email: name + "@example.com", EmailVerified: true, PreferredUsername: name, Groups: groups}
}

// signIn signs u in through the IdP and returns their browser, on the
// page the sign-in ended on.
func (e *testEnv) signIn(t *testing.T, u *mockoidc.MockUser) (*http.Client, *http.Response, string) {
	t.Helper()
	b := e.browser(t)
	e.idp.QueueUser(u)
	resp, body := get(t, b, e.base+"/login")
	return b, resp, body
}

func get(t *testing.T, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func postForm(t *testing.T, c *http.Client, u string, form url.Values, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// csrfOf reads the CSRF token a page's forms carry.
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

// fakeApprovals stands in for the hub's approvals in the console's unit
// tests: it enforces what the hub does that the console relies on (only
// approvers decide, never the requester) and records the decisions.
type fakeApprovals struct {
	mu      sync.Mutex
	pending []hubapi.PendingApproval
	decided []fakeDecision
}

type fakeDecision struct {
	Who hubapi.Principal
	ID  string
	D   hubapi.DecideRequest
}

// requester is the login user of a held request's requester.
func requester(p hubapi.PendingApproval) string {
	if h := p.Held.Request.Requester.Human; h != nil {
		return h.LoginUser
	}
	return ""
}

func (f *fakeApprovals) PendingApprovals(_ context.Context, who hubapi.Principal) ([]hubapi.PendingApproval, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := slices.Clone(f.pending)
	for i := range out {
		switch {
		case !who.Has(hubapi.RoleApprover):
			out[i].WhyNot = "you are not an approver"
		case requester(out[i]) == who.Username:
			out[i].WhyNot = "you asked for it: a requester never approves their own request"
		default:
			out[i].MayDecide = true
		}
	}
	return out, nil
}

func (f *fakeApprovals) DecideApproval(_ context.Context, who hubapi.Principal, id string, d hubapi.DecideRequest) (hubapi.SignedDecision, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	i := slices.IndexFunc(f.pending, func(p hubapi.PendingApproval) bool { return p.Held.Request.ID == id })
	switch {
	case i < 0:
		return hubapi.SignedDecision{}, errors.New("no such pending request")
	case !who.Has(hubapi.RoleApprover):
		return hubapi.SignedDecision{}, errors.New("not an approver")
	case requester(f.pending[i]) == who.Username:
		return hubapi.SignedDecision{}, errors.New("a requester never approves their own request")
	case d.Approve && d.ExpectSHA256 != f.pending[i].Held.Request.TextSHA256:
		return hubapi.SignedDecision{}, errors.New("the text approved is not the text held")
	}
	p := f.pending[i]
	f.pending = slices.Delete(f.pending, i, i+1)
	f.decided = append(f.decided, fakeDecision{who, id, d})
	verdict := model.VerdictDeny
	if d.Approve {
		verdict = model.VerdictApprove
	}
	return hubapi.SignedDecision{RequestID: id, HostID: p.HostID, RequestSHA256: p.Held.RequestSHA256, Verdict: verdict,
		Reason: d.Reason, Approver: who.Approver, DecidedAt: time.Now(), ExpiresAt: p.Held.Deadline}, nil
}

func (f *fakeApprovals) hold(p hubapi.PendingApproval) {
	f.mu.Lock()
	f.pending = append(f.pending, p)
	f.mu.Unlock()
}

func (f *fakeApprovals) decisions() []fakeDecision {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.decided)
}

// host is a real journal that enrols with the hub and ships to it, as a
// host's shipper does.
type host struct {
	j      *journal.Journal
	signer *journal.Signer
	id     string
	http   *http.Client
}

func (e *testEnv) newHost(t *testing.T, name string) *host {
	t.Helper()
	dir := t.TempDir()
	j, err := journal.Open(context.Background(), journal.Options{Path: filepath.Join(dir, "journal.db"), Sync: journal.SyncAlways,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	signer, err := journal.LoadSigner(filepath.Join(dir, journal.KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	tok := server.NewToken()
	if err := e.st.AddToken(context.Background(), server.HashToken(tok), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: name}}, key)
	req := hubapi.JoinRequest{Token: tok, HostName: name, JournalID: j.ID(), JournalKey: signer.VerifierKey,
		CSR: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}))}
	var join hubapi.JoinResponse
	e.call(t, e.browser(t), hubapi.PathJoin, req, &join)
	kd, _ := x509.MarshalECPrivateKey(key)
	cert, err := tls.X509KeyPair([]byte(join.Certificate), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}))
	if err != nil {
		t.Fatal(err)
	}
	c := e.browser(t)
	c.Jar = nil
	c.Transport.(*http.Transport).TLSClientConfig.Certificates = []tls.Certificate{cert}
	return &host{j: j, signer: signer, id: join.HostID, http: c}
}

func (e *testEnv) call(t *testing.T, c *http.Client, path string, in, out any) {
	t.Helper()
	b, _ := json.Marshal(in)
	resp, err := c.Post(e.url+path, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: %d %s", path, resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, out); err != nil {
		t.Fatal(err)
	}
}

// record journals recs and ships everything the hub lacks, with a
// checkpoint the host signs, and has the hub sign a fleet checkpoint.
func (e *testEnv) record(t *testing.T, h *host, recs ...model.Record) {
	t.Helper()
	ctx := context.Background()
	for _, r := range recs {
		if _, err := h.j.Append(ctx, r, model.Synced); err != nil {
			t.Fatal(err)
		}
	}
	hh, err := e.st.Host(ctx, h.id)
	if err != nil {
		t.Fatal(err)
	}
	var all []hubapi.Entry
	if err := journal.Entries(ctx, h.j.Path(), 1, func(en journal.Entry) error {
		all = append(all, hubapi.Entry{Seq: int64(en.Seq), Body: en.Body, Salt: en.Salt, Payload: en.Payload})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var cr evidence.CompactRange
	for _, en := range all {
		cr.Add(evidence.LeafHash(en.Body))
	}
	size := int64(len(all))
	cp, err := evidence.SignCheckpoint(h.signer, evidence.Origin(h.j.ID()), size, cr.Root(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var resp hubapi.BatchResponse
	e.call(t, h.http, hubapi.PathBatches, hubapi.Batch{From: hh.Size + 1, Entries: all[hh.Size:], Checkpoint: cp.Note}, &resp)
	if resp.Head.Size != size {
		t.Fatalf("the hub holds %d entries, want %d", resp.Head.Size, size)
	}
}

func (h *host) String() string { return fmt.Sprintf("host %s", h.id) }

// cookieAuth is the console's session as the hub's approver API takes
// it (as `interlock hub serve` wires it): no cookie is no credential.
type cookieAuth struct{ c *Console }

func (a cookieAuth) Authenticate(r *http.Request) (hubapi.Principal, error) {
	p, err := a.c.Authenticate(r)
	if errors.Is(err, ErrNoSession) {
		return p, server.ErrNoCredentials
	}
	return p, err
}

// hubApprovals is the hub's approvals as `interlock hub serve` hands
// them to the console: errors carry the API's HTTP status.
type hubApprovals struct{ s *server.Server }

func (a hubApprovals) PendingApprovals(ctx context.Context, who hubapi.Principal) ([]hubapi.PendingApproval, error) {
	p, err := a.s.PendingApprovals(ctx, who)
	if err != nil {
		return nil, StatusError{err, server.ApprovalStatus(err)}
	}
	return p, nil
}

func (a hubApprovals) DecideApproval(ctx context.Context, who hubapi.Principal, id string, d hubapi.DecideRequest) (hubapi.SignedDecision, error) {
	sd, err := a.s.DecideApproval(ctx, who, id, d)
	if err != nil {
		return sd, StatusError{err, server.ApprovalStatus(err)}
	}
	return sd, nil
}
