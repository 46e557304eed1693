package server

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
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/interlock/interlock/hub/hubapi"
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

// testHub is a hub serving on loopback over real mutual TLS, on a fresh
// database.
type testHub struct {
	conn string
	st   *store.Store
	keys *Keys
	srv  *Server
	url  string
	pub  *recordingPublisher
}

type recordingPublisher struct {
	fail      atomic.Bool
	published atomic.Int64 // size of the last published checkpoint
}

func (p *recordingPublisher) Publish(_ context.Context, size int64, note []byte) error {
	if p.fail.Load() {
		return errors.New("bucket down")
	}
	p.published.Store(size)
	return nil
}

func newHub(t *testing.T) *testHub {
	t.Helper()
	conn := pg.NewDB(t, "hub")
	h, _ := startHub(t, conn, filepath.Join(t.TempDir(), "hub"), nil)
	return h
}

// startHub starts a hub on database conn with its state in stateDir;
// mod, when set, changes its options. stop stops it (cleanup does too).
func startHub(t *testing.T, conn, stateDir string, mod func(*Options)) (h *testHub, stop func()) {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := LoadOrCreateKeys(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	pub := &recordingPublisher{}
	opts := Options{
		Store: st, Keys: keys, Names: []string{"127.0.0.1"},
		MaxBatchEntries: 500, MaxBatchBytes: 24 << 20, FleetInterval: time.Hour, Publisher: pub,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if mod != nil {
		mod(&opts)
	}
	srv, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(sctx, ln) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
			st.Close()
		})
	}
	t.Cleanup(stop)
	return &testHub{conn: conn, st: st, keys: keys, srv: srv, url: "https://" + ln.Addr().String(), pub: pub}, stop
}

func (h *testHub) token(t *testing.T, ttl time.Duration) string {
	t.Helper()
	tok := NewToken()
	if err := h.st.AddToken(context.Background(), HashToken(tok), time.Now().Add(ttl)); err != nil {
		t.Fatal(err)
	}
	return tok
}

// client is an HTTPS client that trusts the hub's CA and presents cert
// (none when nil).
func (h *testHub) client(cert *tls.Certificate) *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(h.keys.CAPEM)
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 30 * time.Second}
}

// testHost is a host: a real journal on a temp file, signing checkpoints
// with its own key, and its enrolment at the hub.
type testHost struct {
	dir    string
	j      *journal.Journal
	signer *journal.Signer
	id     string
	cert   *tls.Certificate
	join   hubapi.JoinResponse
	http   *http.Client
}

func newHost(t *testing.T, dir string) *testHost {
	t.Helper()
	j, err := journal.Open(context.Background(), journal.Options{Path: filepath.Join(dir, "journal.db"), Sync: journal.SyncAlways,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	s, err := journal.LoadSigner(filepath.Join(dir, journal.KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	return &testHost{dir: dir, j: j, signer: s, id: j.ID()}
}

func (h *testHost) append(t *testing.T, recs ...model.Record) {
	t.Helper()
	for _, r := range recs {
		if _, err := h.j.Append(context.Background(), r, model.Synced); err != nil {
			t.Fatal(err)
		}
	}
}

func events(n int, tag string) []model.Record {
	out := make([]model.Record, n)
	for i := range out {
		out[i] = model.Record{Kind: "test.event", Data: map[string]any{"i": i, "tag": tag}}
	}
	return out
}

// entries reads entries from..to of the host's journal as it ships them.
func (h *testHost) entries(t *testing.T, from, to int64) []hubapi.Entry {
	t.Helper()
	var out []hubapi.Entry
	stop := errors.New("stop")
	err := journal.Entries(context.Background(), h.j.Path(), uint64(from), func(e journal.Entry) error {
		if int64(e.Seq) > to {
			return stop
		}
		out = append(out, hubapi.Entry{Seq: int64(e.Seq), Body: e.Body, Salt: e.Salt, Payload: e.Payload})
		return nil
	})
	if err != nil && !errors.Is(err, stop) {
		t.Fatal(err)
	}
	if int64(len(out)) != to-from+1 {
		t.Fatalf("journal has %d entries in %d..%d", len(out), from, to)
	}
	return out
}

// checkpoint signs, with the host's key, the tree of its first size
// entries.
func (h *testHost) checkpoint(t *testing.T, size int64) []byte {
	t.Helper()
	var cr evidence.CompactRange
	for _, e := range h.entries(t, 1, size) {
		cr.Add(evidence.LeafHash(e.Body))
	}
	cp, err := evidence.SignCheckpoint(h.signer, evidence.Origin(h.id), size, cr.Root(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return cp.Note
}

// enrol joins the host to the hub with token.
func (h *testHost) enrol(t *testing.T, hub *testHub, token string) (int, hubapi.Refusal) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "whatever-i-say"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	req := hubapi.JoinRequest{Token: token, HostName: "runner-" + h.id[:6], JournalID: h.id, JournalKey: h.signer.VerifierKey,
		CSR: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}))}
	status, body := post(t, hub.client(nil), hub.url+hubapi.PathJoin, req)
	if status != http.StatusOK {
		var ref hubapi.Refusal
		json.Unmarshal(body, &ref)
		return status, ref
	}
	if err := json.Unmarshal(body, &h.join); err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalECPrivateKey(key)
	cert, err := tls.X509KeyPair([]byte(h.join.Certificate), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}))
	if err != nil {
		t.Fatal(err)
	}
	h.cert = &cert
	h.http = hub.client(&cert)
	return status, hubapi.Refusal{}
}

func post(t *testing.T, c *http.Client, url string, v any) (int, []byte) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Post(url, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body
}

// ship sends a batch and returns the hub's answer.
func (h *testHost) ship(t *testing.T, hub *testHub, b hubapi.Batch) (int, hubapi.BatchResponse, hubapi.Refusal) {
	t.Helper()
	status, body := post(t, h.http, hub.url+hubapi.PathBatches, b)
	var ok hubapi.BatchResponse
	var ref hubapi.Refusal
	if status == http.StatusOK {
		if err := json.Unmarshal(body, &ok); err != nil {
			t.Fatalf("batch answer %s: %v", body, err)
		}
	} else if err := json.Unmarshal(body, &ref); err != nil {
		t.Fatalf("refusal %d %s: %v", status, body, err)
	}
	return status, ok, ref
}

// batch is entries from..to of the host's journal with its checkpoint of
// the tree they end.
func (h *testHost) batch(t *testing.T, from, to int64) hubapi.Batch {
	return hubapi.Batch{From: from, Entries: h.entries(t, from, to), Checkpoint: h.checkpoint(t, to)}
}
