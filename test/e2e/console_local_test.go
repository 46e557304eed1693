package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/interlock/interlock/internal/testkit"
	"github.com/interlock/interlock/internal/testkit/idptest"
	"github.com/interlock/interlock/test/testenv"
)

// selfSignedCert writes a certificate for 127.0.0.1 and its key, as an
// operator gives the host's console one browsers trust.
func selfSignedCert(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "interlock host console"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "console.crt"), filepath.Join(dir, "console.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// TestConsoleOnOneHost is issue 18's one-host console: the daemon serves
// the console from its own journal. A real ssh exec under the daemon is
// recorded; an auditor signs in through the test IdP on loopback, finds
// the session on the sessions page and replays its terminal (the cast is
// rendered from the journal); an approver's decision, with a valid CSRF
// token and origin, is refused with 403: the console is read-only. A
// screenshot of the replay goes to $INTERLOCK_ARTIFACTS.
func TestConsoleOnOneHost(t *testing.T) {
	st := startSSHD(t)
	idp := idptest.Start(t)
	cgPath, cgDir := makeCgroup(t, "console-local-"+strconv.Itoa(os.Getpid()))
	dir := t.TempDir()
	certFile, keyFile, pool := selfSignedCert(t, dir)
	secret := filepath.Join(dir, "console.secret")
	if err := os.WriteFile(secret, []byte(idp.ClientSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	port := testkit.FreePort(t, "127.0.0.1")
	base := fmt.Sprintf("https://127.0.0.1:%d/console", port)
	e := newSSHEnv(t, st, sshTargetOpts{global: fmt.Sprintf(`intercept:
  cgroups: [%s]
console:
  listen: 127.0.0.1:%d
  base_url: %s
  client_secret_file: %s
  tls:
    cert: %s
    key: %s
  oidc:
    issuer: %s
    client_id: %s
    roles:
      approver: [dba]
      auditor: [audit]
`, cgPath, port, base, secret, certFile, keyFile, idp.Issuer(), idp.ClientID)})
	d := e.startDaemon()
	if !strings.Contains(d.stderr.String(), "serving the host's console (read-only)") {
		t.Fatalf("the daemon does not say it serves the console:\n%s", d.stderr.String())
	}

	ssh := inCgroup(t, cgDir, st.sshArgv("echo console-out-$((6*7)); exit 3")...)
	out, err := ssh.Output()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 || string(out) != "console-out-42\n" {
		t.Fatalf("ssh: %v, %q", err, out)
	}
	var id string
	testkit.WaitFor(t, 10*time.Second, 100*time.Millisecond, func() bool { id = sessionID(e, 0); return id != "" })

	browser := func(name string, groups ...string) *http.Client {
		jar, _ := cookiejar.New(nil)
		c := &http.Client{Jar: jar, Timeout: 30 * time.Second,
			Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
		idp.QueueUser(consolePerson(name, groups...))
		resp, body := httpGet(t, c, base+"/login")
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, name) {
			t.Fatalf("sign-in of %s: %d\n%s", name, resp.StatusCode, body)
		}
		return c
	}
	aud := browser("carol", "audit")
	link := "/console/hosts/local/sessions/" + id
	_, page := httpGet(t, aud, base+"/sessions")
	if !strings.Contains(page, link) || !strings.Contains(page, "box") {
		t.Fatalf("the sessions page lacks %s:\n%s", link, page)
	}
	resp, page := httpGet(t, aud, base+"/hosts/local/sessions/"+id)
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, "echo console-out-$((6*7)); exit 3") {
		t.Errorf("session page %d lacks the command:\n%s", resp.StatusCode, page)
	}
	resp, page = httpGet(t, aud, base+"/hosts/local/sessions/"+id+"/replay")
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, "/cast?channel=") {
		t.Errorf("replay page %d:\n%s", resp.StatusCode, page)
	}
	resp, cast := httpGet(t, aud, base+"/hosts/local/sessions/"+id+"/cast?channel=0")
	if resp.StatusCode != http.StatusOK || !strings.Contains(cast, `console-out-42`) {
		t.Errorf("cast %d:\n%s", resp.StatusCode, cast)
	}

	// Read-only: an approver's decision is refused, token and origin
	// notwithstanding.
	dba := browser("dave", "dba")
	_, page = httpGet(t, dba, base+"/approvals")
	csrf := page[strings.Index(page, `name="csrf" value="`)+len(`name="csrf" value="`):]
	csrf = csrf[:strings.IndexByte(csrf, '"')]
	req, _ := http.NewRequest(http.MethodPost, base+"/approvals/any/decision", strings.NewReader(url.Values{
		"csrf": {csrf}, "verdict": {"deny"}, "reason": {"no"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", fmt.Sprintf("https://127.0.0.1:%d", port))
	resp, err = dba.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(b), "read-only") {
		t.Errorf("a decision on the host's console: %d\n%s", resp.StatusCode, b)
	}

	// The replay in a browser.
	_, err = exec.LookPath("chromium")
	testenv.Require(t, "chromium (make test installs it)", err)
	ctx := consoleChrome(t)
	idp.QueueUser(consolePerson("carol", "audit"))
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/login?next="+link+"/replay"), chromedp.WaitVisible(chromedp.CSS("#player .ap-player")),
		chromedp.Click(chromedp.CSS("#player .ap-player"))); err != nil {
		t.Fatalf("replay in the browser: %v", err)
	}
	var term string
	for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		if term, err = chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('#player').innerText`)); err == nil && strings.Contains(term, "console-out-42") {
			break
		}
	}
	if !strings.Contains(term, "console-out-42") {
		t.Errorf("the player shows %q", term)
	}
	consoleShot(t, ctx, "host-console-replay")
}

func httpGet(t *testing.T, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}
