package e2e

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/interlock/interlock/hub/hubapi"
	"github.com/interlock/interlock/internal/testkit"
	"github.com/interlock/interlock/test/e2e/pgtest"
	"github.com/interlock/interlock/test/testenv"
)

// TestHubCLI: interlock hub serve, token create and hosts through the
// binary, against a real PostgreSQL: a token printed by the CLI enrols a
// host over TLS pinned to the printed CA fingerprint, hosts lists it, a
// second use of the token is refused, and a missing database is a config
// error.
func TestHubCLI(t *testing.T) {
	testenv.Require(t, "PostgreSQL 15 for the hub", pgtest.Available())
	pg, err := pgtest.Start(pgtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Stop()
	conn, err := pg.CreateDB("hubcli")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	connFile := filepath.Join(dir, "db.conn")
	if err := os.WriteFile(connFile, []byte(conn+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	port := testkit.FreePort(t, "127.0.0.1")
	cfg := filepath.Join(dir, "hub.yaml")
	writeCfg := func(db string) {
		y := fmt.Sprintf("hub:\n  listen: 127.0.0.1:%d\n  database: %s\n  state_dir: %s\n  tls:\n    names: [127.0.0.1]\n  fleet_interval: 1s\n",
			port, db, filepath.Join(dir, "state"))
		if err := os.WriteFile(cfg, []byte(y), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeCfg(filepath.Join(dir, "missing.conn"))
	if _, stderr, code := runCmd(t, exec.Command(interlockBin, "hub", "hosts", "-c", cfg)); code != 66 || !strings.Contains(stderr, "hub.database") {
		t.Errorf("hosts with a missing database file: exit %d, %s", code, stderr)
	}
	if out, _, code := runCmd(t, exec.Command(interlockBin, "hub", "token", "create", "--help")); code != 0 || !strings.Contains(out, "--ttl") {
		t.Errorf("token create --help: exit %d\n%s", code, out)
	}
	writeCfg(connFile)

	serve := exec.Command(interlockBin, "hub", "serve", "-c", cfg)
	var serveErr testkit.SyncBuffer
	serve.Stderr = &serveErr
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	defer serve.Process.Kill()
	served := make(chan error, 1)
	go func() { served <- serve.Wait() }()

	out, stderr, code := runCmd(t, exec.Command(interlockBin, "hub", "token", "create", "--json", "--ttl", "10m", "-c", cfg))
	if code != 0 {
		t.Fatalf("token create: exit %d: %s", code, stderr)
	}
	var tok struct {
		Token     string    `json:"token"`
		ExpiresAt time.Time `json:"expires_at"`
		CASHA256  string    `json:"ca_sha256"`
	}
	if err := json.Unmarshal([]byte(out), &tok); err != nil || tok.Token == "" || len(tok.CASHA256) != 64 {
		t.Fatalf("token create printed %q: %v", out, err)
	}
	if d := time.Until(tok.ExpiresAt); d < 9*time.Minute || d > 11*time.Minute {
		t.Errorf("token expires in %v, want 10m", d)
	}

	// The host pins the CA by the printed fingerprint.
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		InsecureSkipVerify: true, // verified below, against the pinned CA
		VerifyConnection: func(cs tls.ConnectionState) error {
			chain := cs.PeerCertificates
			ca := chain[len(chain)-1]
			sum := sha256.Sum256(ca.Raw)
			if hex.EncodeToString(sum[:]) != tok.CASHA256 {
				return fmt.Errorf("hub CA %x is not the pinned one", sum)
			}
			pool := x509.NewCertPool()
			pool.AddCert(ca)
			_, err := chain[0].Verify(x509.VerifyOptions{Roots: pool, DNSName: "127.0.0.1"})
			return err
		},
	}}}
	_, vkey, err := note.GenerateKey(rand.Reader, "host")
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	join := hubapi.JoinRequest{Token: tok.Token, HostName: "runner-7", JournalID: strings.Repeat("ab", 16), JournalKey: vkey,
		CSR: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}))}
	body, _ := json.Marshal(join)
	var resp *http.Response
	testkit.WaitFor(t, 20*time.Second, 100*time.Millisecond, func() bool {
		resp, err = client.Post(fmt.Sprintf("https://127.0.0.1:%d%s", port, hubapi.PathJoin), "application/json", bytes.NewReader(body))
		return err == nil
	})
	var jr hubapi.JoinResponse
	json.NewDecoder(resp.Body).Decode(&jr)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || jr.HostID == "" || jr.HubKey == "" {
		t.Fatalf("join: %d %+v\n%s", resp.StatusCode, jr, serveErr.String())
	}
	resp, err = client.Post(fmt.Sprintf("https://127.0.0.1:%d%s", port, hubapi.PathJoin), "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("second join with the token: %d", resp.StatusCode)
	}

	out, stderr, code = runCmd(t, exec.Command(interlockBin, "hub", "hosts", "--json", "-c", cfg))
	var hosts []struct {
		ID        string `json:"id"`
		JournalID string `json:"journal_id"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &hosts) != nil || len(hosts) != 1 || hosts[0].ID != jr.HostID || hosts[0].JournalID != join.JournalID {
		t.Fatalf("hosts --json: exit %d %q %s", code, out, stderr)
	}
	out, _, _ = runCmd(t, exec.Command(interlockBin, "hub", "hosts", "-c", cfg))
	if !strings.Contains(out, jr.HostID) || !strings.Contains(out, "runner-7") {
		t.Errorf("hosts:\n%s", out)
	}

	// Nothing shipped: no fleet checkpoint to export against.
	if _, stderr, code := runCmd(t, exec.Command(interlockBin, "hub", "export", "-o", filepath.Join(dir, "fleet.bundle"), "-c", cfg)); code != 1 || !strings.Contains(stderr, "no fleet checkpoint") {
		t.Errorf("export before any fleet checkpoint: exit %d, %s", code, stderr)
	}

	serve.Process.Signal(os.Interrupt)
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("hub serve after SIGINT: %v\n%s", err, serveErr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("hub serve did not stop on SIGINT")
	}
}
