package ssh

// The handshake as the client sees it: which users and credentials get
// in, the target's host key checked, the host certificate interlock's CA
// signs, and the ciphers offered to each client version.

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	gossh "golang.org/x/crypto/ssh"

	"github.com/interlock/interlock/inspect"
	"github.com/interlock/interlock/internal/testkit"
	"github.com/interlock/interlock/model"
)

func TestWrongUserIsRefused(t *testing.T) {
	r := newRig(t, rigOpts{})
	var banner string
	_, err := gossh.Dial("tcp", r.ln.Addr().String(), &gossh.ClientConfig{
		User: "bob", Auth: []gossh.AuthMethod{gossh.PublicKeys(r.clientKey), gossh.Password("x")},
		HostKeyCallback: r.hostKeyCB, BannerCallback: func(m string) error { banner += m; return nil },
	})
	if err == nil {
		t.Fatal("bob got in")
	}
	if !strings.Contains(banner, `no credential for user "bob"`) {
		t.Errorf("banner %q", banner)
	}
	r.waitClosed(1)
	o := testkit.Data[model.SessionOpen](r.j, model.KindSessionOpen)[0]
	if o.Decision.Action != model.Deny || o.Decision.Rule != "credentials.user" || o.SSH.User != "bob" {
		t.Errorf("open %+v %+v", o.Decision, o.SSH)
	}
}

func TestWrongTargetHostKeyRefusesTheSession(t *testing.T) {
	r := newRig(t, rigOpts{wrongHostKey: true})
	var banner string
	_, err := gossh.Dial("tcp", r.ln.Addr().String(), &gossh.ClientConfig{
		User: "alice", Auth: []gossh.AuthMethod{gossh.PublicKeys(r.clientKey)},
		HostKeyCallback: r.hostKeyCB, BannerCallback: func(m string) error { banner += m; return nil },
	})
	if err == nil {
		t.Fatal("session went through to a target with the wrong host key")
	}
	if !strings.Contains(banner, "does not match") {
		t.Errorf("banner %q", banner)
	}
	r.waitClosed(1)
	o := testkit.Data[model.SessionOpen](r.j, model.KindSessionOpen)[0]
	if o.Decision.Action != model.Deny || o.Decision.Rule != "upstream-host-key" ||
		o.SSH.UpstreamHostKey != gossh.FingerprintSHA256(r.target.hostKey.PublicKey()) {
		t.Errorf("open %+v %+v", o.Decision, o.SSH)
	}
}

func TestPasswordAndKeyboardInteractiveAreAccepted(t *testing.T) {
	r := newRig(t, rigOpts{})
	c, err := r.dial("alice", gossh.Password("anything"))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	c, err = r.dial("alice", gossh.KeyboardInteractive(func(string, string, []string, []bool) ([]string, error) { return nil, nil }))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	r.waitClosed(2)
	methods := map[string]bool{}
	for _, o := range testkit.Data[model.SessionOpen](r.j, model.KindSessionOpen) {
		methods[o.SSH.AuthMethod] = true
		if o.SSH.KeyFingerprint != "" {
			t.Errorf("fingerprint %q for %s", o.SSH.KeyFingerprint, o.SSH.AuthMethod)
		}
	}
	if !methods["password"] || !methods["keyboard-interactive"] {
		t.Errorf("methods %v", methods)
	}
}

func TestCAHostCertificate(t *testing.T) {
	r := newRig(t, rigOpts{useCA: true})
	dir := filepath.Join(r.dir, "state", "ssh")
	for _, f := range []string{caKeyFile, hostKeyFile} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v", f, fi, err)
		}
	}
	line, err := os.ReadFile(filepath.Join(dir, caKnownHostsFile))
	if err != nil {
		t.Fatal(err)
	}
	_, _, caKey, _, _, err := gossh.ParseKnownHosts(line)
	if err != nil || !strings.HasPrefix(string(line), "@cert-authority * ssh-ed25519 ") {
		t.Fatalf("%q: %v", line, err)
	}
	checker := &gossh.CertChecker{IsHostAuthority: func(k gossh.PublicKey, addr string) bool {
		return string(k.Marshal()) == string(caKey.Marshal())
	}}
	// The client connects to the target's host name (127.0.0.1 here).
	hostAddr := r.target.addr().String()
	c, err := gossh.Dial("tcp", r.ln.Addr().String(), &gossh.ClientConfig{
		User: "alice", Auth: []gossh.AuthMethod{gossh.PublicKeys(r.clientKey)},
		HostKeyCallback: func(_ string, remote net.Addr, key gossh.PublicKey) error {
			return checker.CheckHostKey(hostAddr, remote, key)
		},
		HostKeyAlgorithms: []string{gossh.CertAlgoED25519v01},
	})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	// A second handler on the same state dir uses the same CA.
	h2, err := New(Options{Deps: inspect.Deps{Config: r.cfg, Journal: r.j}})
	if err != nil {
		t.Fatal(err)
	}
	_ = h2
	line2, _ := os.ReadFile(filepath.Join(dir, caKnownHostsFile))
	if !bytes.Equal(line, line2) {
		t.Error("the CA changed")
	}
}

func TestEnsureCA(t *testing.T) {
	dir := t.TempDir()
	line, err := EnsureCA(dir)
	if err != nil || !strings.HasPrefix(line, "@cert-authority * ssh-ed25519 ") {
		t.Fatalf("%q %v", line, err)
	}
	again, _ := EnsureCA(dir)
	if again != line {
		t.Error("a second call made another CA")
	}
}

func TestCiphersFor(t *testing.T) {
	for v, want := range map[string][]string{
		"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10": gcmCiphers,
		"SSH-2.0-OpenSSH_6.2":                     gcmCiphers,
		"SSH-2.0-OpenSSH_for_Windows_8.1":         gcmCiphers,
		"SSH-2.0-OpenSSH_6.1p1":                   ciphers,
		"SSH-2.0-OpenSSH_5.3":                     ciphers,
		"SSH-2.0-paramiko_3.4.0":                  ciphers,
		"SSH-2.0-Go":                              ciphers,
		"":                                        ciphers,
	} {
		if got := ciphersFor(v); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%q: %v", v, got)
		}
	}
}
