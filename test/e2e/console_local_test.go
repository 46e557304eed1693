package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
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
	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/test/browsertest"
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
	hc := newHostConsole(t, idp, "")
	e := newSSHEnv(t, st, sshTargetOpts{global: fmt.Sprintf("intercept:\n  cgroups: [%s]\n", cgPath) + hc.yaml})
	base := hc.base
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

	browser := func(name string, groups ...string) *http.Client { return hc.signIn(t, name, groups...) }
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
	code, b := hc.post(t, dba, "/approvals/any/decision", url.Values{"csrf": {formValue(t, page, "csrf")}, "verdict": {"deny"}, "reason": {"no"}})
	if code != http.StatusForbidden || !strings.Contains(b, "read-only") {
		t.Errorf("a decision on the host's console: %d\n%s", code, b)
	}

	// The replay in a browser.
	_, err = exec.LookPath("chromium")
	testenv.Require(t, "chromium (make test installs it)", err)
	ctx := browsertest.Chrome(t, 1366, 768, 3*time.Minute)
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
	browsertest.Screenshot(t, ctx, "host-console-replay", true)
}

// TestConsoleDecidesOnOneHost: with console.decide, a connect a review
// rule holds (approvers: @dba) is approved in the host's console by an
// approver the IdP puts in dba: the requester's process user, signed in
// as root with dba, is refused; the held client completes after the
// approval, and the journal holds the decision with the approver's IdP
// identity and no local approver.
func TestConsoleDecidesOnOneHost(t *testing.T) {
	srv := startEcho(t, "tcp4", "127.0.0.2:0")
	cgPath, cgDir := makeCgroup(t, "console-decide-"+strconv.Itoa(os.Getpid()))
	idp := idptest.Start(t)
	hc := newHostConsole(t, idp, "  decide: true\n")
	e := newEnv(t, []target{{name: "echo", address: srv.addr()}}, fmt.Sprintf(`intercept:
  cgroups: [%s]
policy:
  rules:
    - name: hold-connects
      match: {protocols: [tcp]}
      action: review
      review:
        approvers: ["@dba"]
        timeout: 60s
`, cgPath)+hc.yaml)
	d := e.startDaemon()
	if !strings.Contains(d.stderr.String(), "serving the host's console (approvers decide)") {
		t.Fatalf("the daemon does not say approvers decide:\n%s", d.stderr.String())
	}
	client := inCgroup(t, cgDir, clientBin, "-addr", srv.addr())
	var out strings.Builder
	client.Stdout = &out
	if err := client.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Process.Kill(); client.Wait() })

	// root is the requester's process user.
	root := hc.signIn(t, "root", "dba")
	var page string
	testkit.WaitFor(t, 15*time.Second, 200*time.Millisecond, func() bool {
		_, page = httpGet(t, root, hc.base+"/approvals")
		return strings.Contains(page, "hold-connects")
	})
	if strings.Contains(page, `value="approve"`) || !strings.Contains(page, "you are the requester") {
		t.Errorf("the requester's queue offers a decision:\n%s", page)
	}
	id := page[strings.Index(page, `id="req-`)+len(`id="req-`):]
	id = id[:strings.IndexByte(id, '"')]
	if code, b := hc.post(t, root, "/approvals/"+id+"/decision", url.Values{"csrf": {formValue(t, page, "csrf")}, "verdict": {"deny"}}); code != http.StatusForbidden {
		t.Errorf("the requester's deny: %d\n%s", code, b)
	}
	if len(srv.peers()) != 0 {
		t.Fatal("the target was reached before approval")
	}

	dave := hc.signIn(t, "dave", "dba")
	_, page = httpGet(t, dave, hc.base+"/approvals/"+id)
	if code, b := hc.post(t, dave, "/approvals/"+id+"/decision", url.Values{"csrf": {formValue(t, page, "csrf")}, "verdict": {"approve"},
		"expect_sha256": {formValue(t, page, "expect_sha256")}, "reason": {"change 18"}}); code != http.StatusOK {
		t.Fatalf("dave's approval: %d\n%s", code, b)
	}
	done := make(chan error, 1)
	go func() { done <- client.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the held client failed after the approval: %v %s", err, out.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the held client did not complete after the approval")
	}
	var decs []model.ApprovalDecision
	for _, en := range e.entries() {
		if en.Kind == model.KindApprovalDecision {
			var dec model.ApprovalDecision
			if err := json.Unmarshal(en.Data, &dec); err != nil {
				t.Fatal(err)
			}
			decs = append(decs, dec)
		}
	}
	if len(decs) != 1 || decs[0].ID != id || decs[0].Verdict != model.VerdictApprove || decs[0].Reason != "change 18" || decs[0].IdP == nil ||
		decs[0].IdP.Username != "dave" || decs[0].IdP.Issuer != idp.Issuer() || decs[0].Approver.Proc != nil || decs[0].Hub != nil {
		t.Errorf("journaled decisions %+v", decs)
	}
}

// hostConsole is a daemon's console section: a certificate, the IdP's
// client, and the address it serves on.
type hostConsole struct {
	yaml, base string
	port       int
	pool       *x509.CertPool
	idp        *idptest.IdP
}

func newHostConsole(t *testing.T, idp *idptest.IdP, extra string) *hostConsole {
	t.Helper()
	dir := t.TempDir()
	certFile, keyFile, pool := selfSignedCert(t, dir)
	secret := filepath.Join(dir, "console.secret")
	if err := os.WriteFile(secret, []byte(idp.ClientSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	port := testkit.FreePort(t, "127.0.0.1")
	base := fmt.Sprintf("https://127.0.0.1:%d/console", port)
	y := fmt.Sprintf(`console:
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
`, port, base, secret, certFile, keyFile, idp.Issuer(), idp.ClientID) + extra
	return &hostConsole{yaml: y, base: base, port: port, pool: pool, idp: idp}
}

// signIn signs someone in through the IdP in a browser of their own
// that trusts the console's certificate.
func (hc *hostConsole) signIn(t *testing.T, name string, groups ...string) *http.Client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: hc.pool, MinVersion: tls.VersionTLS12}}}
	hc.idp.QueueUser(consolePerson(name, groups...))
	resp, body := httpGet(t, c, hc.base+"/login")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, name) {
		t.Fatalf("sign-in of %s: %d\n%s", name, resp.StatusCode, body)
	}
	return c
}

// post sends a console form as the browser would: same origin.
func (hc *hostConsole) post(t *testing.T, c *http.Client, path string, form url.Values) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, hc.base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", fmt.Sprintf("https://127.0.0.1:%d", hc.port))
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// formValue is the value of the page's first input named name.
func formValue(t *testing.T, page, name string) string {
	t.Helper()
	mark := `name="` + name + `" value="`
	i := strings.Index(page, mark)
	if i < 0 {
		t.Fatalf("no %s in the page:\n%s", name, page)
	}
	v := page[i+len(mark):]
	return v[:strings.IndexByte(v, '"')]
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
