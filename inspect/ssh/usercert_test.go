package ssh

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/model"
)

// checker is what sshd does with TrustedUserCAKeys: a certificate signed
// by ca, for the user, within its validity, at now.
func checker(ca gossh.PublicKey, now time.Time) *gossh.CertChecker {
	return &gossh.CertChecker{
		IsUserAuthority: func(auth gossh.PublicKey) bool { return bytes.Equal(auth.Marshal(), ca.Marshal()) },
		Clock:           func() time.Time { return now },
	}
}

func TestSignLoginCert(t *testing.T) {
	ca, _ := newSigner(t)
	now := time.Now()
	lc, err := signLoginCert(ca, "deploy", "interlock session=s1", CertExtensions(nil), now)
	if err != nil {
		t.Fatal(err)
	}
	c := lc.cert
	if c.CertType != gossh.UserCert || !slices.Equal(c.ValidPrincipals, []string{"deploy"}) || c.KeyId != "interlock session=s1" {
		t.Errorf("certificate %+v", c)
	}
	if len(c.CriticalOptions) != 0 {
		t.Errorf("critical options %v", c.CriticalOptions)
	}
	if got := []string{"permit-pty"}; !slices.Equal(keys(c.Extensions), got) {
		t.Errorf("extensions %v, want %v", keys(c.Extensions), got)
	}
	// Valid for the user now, for minutes at most.
	life := time.Duration(c.ValidBefore-c.ValidAfter) * time.Second
	if life <= 0 || life > 5*time.Minute {
		t.Errorf("validity %v", life)
	}
	if err := checker(ca.PublicKey(), now).CheckCert("deploy", c); err != nil {
		t.Errorf("sshd would refuse it now: %v", err)
	}
	if err := checker(ca.PublicKey(), now.Add(certLifetime+time.Second)).CheckCert("deploy", c); err == nil {
		t.Error("still valid after its lifetime")
	}
	if err := checker(ca.PublicKey(), now).CheckCert("root", c); err == nil {
		t.Error("valid for another user")
	}
	other, _ := newSigner(t)
	if _, err := checker(other.PublicKey(), now).Authenticate(connMeta("deploy"), c); err == nil {
		t.Error("accepted under another CA")
	}
	// The signer offers the certificate; each login gets a fresh key.
	if _, ok := lc.signer.PublicKey().(*gossh.Certificate); !ok {
		t.Errorf("signer offers %T", lc.signer.PublicKey())
	}
	lc2, _ := signLoginCert(ca, "deploy", "x", nil, now)
	if bytes.Equal(lc2.cert.Key.Marshal(), c.Key.Marshal()) || lc2.cert.Serial == c.Serial {
		t.Error("two logins share a key or a serial")
	}
	r := lc.record()
	if r.KeyID != c.KeyId || r.ValidBeforeNS-r.ValidAfterNS != int64(life) || r.Fingerprint != gossh.FingerprintSHA256(c.Key) || !slices.Equal(r.Extensions, []string{"permit-pty"}) {
		t.Errorf("record %+v", r)
	}
}

type connMeta string

func (m connMeta) User() string        { return string(m) }
func (connMeta) SessionID() []byte     { return nil }
func (connMeta) ClientVersion() []byte { return nil }
func (connMeta) ServerVersion() []byte { return nil }
func (connMeta) RemoteAddr() net.Addr  { return nil }
func (connMeta) LocalAddr() net.Addr   { return nil }

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func TestCertExtensionsFollowAllow(t *testing.T) {
	for _, tc := range []struct {
		allow *config.SSHAllow
		want  []string
	}{
		{nil, []string{"permit-pty"}},
		{&config.SSHAllow{}, []string{"permit-pty"}},
		{&config.SSHAllow{PortForwarding: true}, []string{"permit-port-forwarding", "permit-pty"}},
		{&config.SSHAllow{AgentForwarding: true}, []string{"permit-agent-forwarding", "permit-pty"}},
		{&config.SSHAllow{X11: true}, []string{"permit-X11-forwarding", "permit-pty"}},
		{&config.SSHAllow{PortForwarding: true, AgentForwarding: true, X11: true},
			[]string{"permit-X11-forwarding", "permit-agent-forwarding", "permit-port-forwarding", "permit-pty"}},
	} {
		got := keys(CertExtensions(tc.allow))
		if !slices.Equal(got, tc.want) {
			t.Errorf("allow %+v: %v, want %v", tc.allow, got, tc.want)
		}
		if slices.Contains(got, "permit-user-rc") {
			t.Errorf("allow %+v grants permit-user-rc", tc.allow)
		}
	}
}

func TestSessionKeyID(t *testing.T) {
	id := model.Identity{Kernel: model.KernelFacts{UID: 1000}, Proc: &model.ProcFacts{Exe: "/tmp/evil\" (serial 1)\nAccepted key"}}
	got := sessionKeyID("abc123", "box", id)
	if !strings.HasPrefix(got, "interlock session=abc123 target=box uid=1000 exe=/tmp/evil?") {
		t.Errorf("key id %q", got)
	}
	if strings.ContainsAny(got, "\"\n") || strings.Count(got, " ") != 4 {
		t.Errorf("the executable's name forges words: %q", got)
	}
	if got := sessionKeyID("s", "t", model.Identity{}); !strings.HasSuffix(got, "uid=0 exe=unknown") {
		t.Errorf("no proc facts: %q", got)
	}
	if got := keyIDField(strings.Repeat("a", 1000)); len(got) > 210 {
		t.Errorf("long field kept: %d", len(got))
	}
}

func TestEnsureUserCA(t *testing.T) {
	dir := t.TempDir()
	line, err := EnsureUserCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(line, "ssh-ed25519 ") || !strings.HasSuffix(line, " "+userCAComment+"\n") {
		t.Errorf("line %q", line)
	}
	again, _ := EnsureUserCA(dir)
	if again != line {
		t.Error("a second call made another CA")
	}
	fi, err := os.Stat(filepath.Join(dir, "ssh", userCAKeyFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("private key: %v %v", fi, err)
	}
	pub, _ := os.ReadFile(UserCAPublicKeyPath(dir))
	k1, _, _, _, err := gossh.ParseAuthorizedKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	// Not the host CA: trusting one must not imply the other.
	host, _ := EnsureCA(dir)
	if strings.Contains(host, strings.Fields(string(pub))[1]) {
		t.Error("the user CA is the host CA")
	}
	if string(gossh.MarshalAuthorizedKey(k1)) != strings.Join(strings.Fields(line)[:2], " ")+"\n" {
		t.Errorf("file %q, line %q", pub, line)
	}
}

func TestTestableKeys(t *testing.T) {
	a, _ := newSigner(t)
	b, _ := newSigner(t)
	c, _ := newSigner(t)
	line := func(opts string, s gossh.Signer) string {
		l := strings.TrimSpace(string(gossh.MarshalAuthorizedKey(s.PublicKey())))
		if opts != "" {
			l = opts + " " + l
		}
		return l + " comment\n"
	}
	file := "# a comment\n" + line("", a) + line(`cert-authority,principals="x"`, b) + line(`from="10.0.0.1"`, c) + line(`restrict,command="true"`, c)
	got := testableKeys([]byte(file))
	if len(got) != 2 || !bytes.Equal(got[0].Marshal(), a.PublicKey().Marshal()) || !bytes.Equal(got[1].Marshal(), c.PublicKey().Marshal()) {
		t.Errorf("testable keys: %d", len(got))
	}
	if got := testableKeys([]byte("not a key\n")); len(got) != 0 {
		t.Errorf("garbage gave %d keys", len(got))
	}
}

// BenchmarkSignLoginCert is what a certificate target adds to each login:
// a key, a signature and a certificate.
func BenchmarkSignLoginCert(b *testing.B) {
	ca, _ := newSigner(b)
	ext := CertExtensions(nil)
	for b.Loop() {
		if _, err := signLoginCert(ca, "deploy", "interlock session=s target=t uid=0 exe=/usr/bin/ssh", ext, time.Now()); err != nil {
			b.Fatal(err)
		}
	}
}
