package e2e

// Helpers of class 7 of the SSH adversarial suite (ssh_usercert_test.go,
// ssh_usercert_setup_test.go). Class 7: a credential the session cannot
// take over. The target's sshd trusts interlock's user CA
// (TrustedUserCAKeys) and honours no authorized_keys for the held account
// (AuthorizedKeysFile none in a Match block); interlock logs in with a
// certificate signed for each login. The held account is a user of its own
// whose home is in a temporary directory, so a session's ~/.ssh is the
// test's and never root's.

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/interlock/interlock/internal/testkit/sshtest"
	"github.com/interlock/interlock/model"
)

// heldAccount is a user on the target that interlock logs in as.
type heldAccount struct {
	name, home string
	uid, gid   int
}

// newHeldAccount creates a user with a POSIX shell and its home in a fresh
// directory others may traverse (sshd changes into it as the user), and
// deletes it when the test ends.
func newHeldAccount(t *testing.T) heldAccount {
	t.Helper()
	requireTools(t, "useradd", "userdel")
	var rnd [3]byte
	rand.Read(rnd[:])
	name := "ilheld" + hex.EncodeToString(rnd[:])
	base, err := os.MkdirTemp("", "interlock-e2e-held-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(base, 0o755)
	home := filepath.Join(base, name)
	// "*" is no password, not a locked account: sshd without PAM refuses
	// a locked one ("!") even with a key.
	if out, err := exec.Command("useradd", "-M", "-d", home, "-s", "/bin/sh", "-p", "*", name).CombinedOutput(); err != nil {
		os.RemoveAll(base)
		t.Fatalf("useradd: %v: %s", err, out)
	}
	t.Cleanup(func() {
		// sshd's session processes may take a moment to go.
		for i := 0; ; i++ {
			out, err := exec.Command("userdel", name).CombinedOutput()
			if err == nil {
				break
			}
			if i == 50 {
				t.Errorf("userdel %s: %v: %s", name, err, out)
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		os.RemoveAll(base)
	})
	a := heldAccount{name: name, home: home}
	for _, f := range []struct {
		flag string
		dst  *int
	}{{"-u", &a.uid}, {"-g", &a.gid}} {
		out, err := exec.Command("id", f.flag, name).Output()
		if err != nil {
			t.Fatal(err)
		}
		*f.dst, _ = strconv.Atoi(strings.TrimSpace(string(out)))
	}
	if err := os.Mkdir(home, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(home, a.uid, a.gid); err != nil {
		t.Fatal(err)
	}
	return a
}

// writeAs writes a file in the account's home, owned by it.
func (a heldAccount) writeAs(t *testing.T, rel, content string, mode os.FileMode) {
	t.Helper()
	p := filepath.Join(a.home, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	for d := p; d != a.home; d = filepath.Dir(d) {
		os.Chown(d, a.uid, a.gid)
	}
}

// certTarget is an sshd that logs the held account in by interlock's user
// certificates only, and an interlock config whose target box holds
// credentials {user, certificate: true}.
type certTarget struct {
	st   *sshTarget
	e    *env
	acct heldAccount
	// caFingerprint is the user CA's, as `interlock ssh-ca user` says;
	// caFile is where the target's TrustedUserCAKeys reads it.
	caFingerprint, caFile string
}

// startCertTarget sets the recommended target up: TrustedUserCAKeys with
// the key `interlock ssh-ca user` prints, and AuthorizedKeysFile none for
// the held account while every other account keeps ~/.ssh/authorized_keys.
func startCertTarget(t *testing.T, targetExtra string) *certTarget {
	t.Helper()
	return startCertTargetWith(t, targetExtra, false)
}

// startCertTargetWith is startCertTarget; honourAuthorizedKeys leaves the
// Match block out, so sshd still honours the held account's
// ~/.ssh/authorized_keys beside the CA (a half-done setup).
func startCertTargetWith(t *testing.T, targetExtra string, honourAuthorizedKeys bool) *certTarget {
	t.Helper()
	acct := newHeldAccount(t)
	// sshd reads TrustedUserCAKeys at each login, so the file can be
	// filled in once interlock's config (which needs the port) exists.
	caFile := filepath.Join(t.TempDir(), "interlock_user_ca.pub")
	if err := os.WriteFile(caFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	sshdExtra := fmt.Sprintf("TrustedUserCAKeys %s\nMatch User %s\n    AuthorizedKeysFile none\n", caFile, acct.name)
	if honourAuthorizedKeys {
		sshdExtra = fmt.Sprintf("TrustedUserCAKeys %s\n", caFile)
	}
	st := startSSHDWith(t, sshdOpts{authorizedKeysFile: ".ssh/authorized_keys", extra: sshdExtra})
	e := newSSHEnv(t, st, sshTargetOpts{credentials: "user: " + acct.name + "\n      certificate: true", extra: targetExtra})
	out, stderr, code := e.interlock("ssh-ca", "user", "-c", e.cfgPath, "--json")
	var ca struct {
		Path, Line, Fingerprint string
	}
	if code != 0 || json.Unmarshal([]byte(out), &ca) != nil || !strings.HasPrefix(ca.Line, "ssh-ed25519 ") {
		t.Fatalf("ssh-ca user: exit %d: %s %s", code, out, stderr)
	}
	if want := filepath.Join(e.dir, "state", "ssh", "user_ca_ed25519.pub"); ca.Path != want {
		t.Errorf("ssh-ca user names %s, want %s", ca.Path, want)
	}
	if err := os.WriteFile(caFile, []byte(ca.Line+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return &certTarget{st: st, e: e, acct: acct, caFingerprint: ca.Fingerprint, caFile: caFile}
}

// sshAs is an ssh command line to the target as user, with the client's
// options (its own key, which the target does not know).
func (st *sshTarget) sshAs(user string, args ...string) []string {
	argv := append([]string{"ssh"}, st.clientOpts("")...)
	argv = append(argv, "-p", strconv.Itoa(st.port), user+"@127.0.0.3")
	return append(argv, args...)
}

// run runs script under `interlock run` and returns its output.
func (ct *certTarget) run(t *testing.T, script string) string {
	t.Helper()
	out, stderr, code := ct.e.runUnder("sh", "-c", script)
	if code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, stderr)
	}
	return out
}

// lastOpen is the newest ssh session.open and its session id.
func lastOpen(t *testing.T, e *env) (string, model.SessionOpen) {
	t.Helper()
	var id string
	var so model.SessionOpen
	for _, en := range e.entries() {
		if en.Kind == model.KindSessionOpen && strings.Contains(string(en.Data), `"protocol":"ssh"`) {
			// A fresh value each time: decoding into the last one would
			// keep the fields this entry omits.
			var x model.SessionOpen
			json.Unmarshal(en.Data, &x)
			id, so = en.Session, x
		}
	}
	if id == "" {
		t.Fatal("no ssh session journaled")
	}
	return id, so
}

// execs lists each exec command journaled in session id, with its exit
// status ("cmd -> 0").
func execs(e *env, id string) []string {
	var out []string
	for _, en := range e.entries() {
		if en.Session != id {
			continue
		}
		switch en.Kind {
		case model.KindSSHRequest:
			var q model.SSHRequest
			json.Unmarshal(en.Data, &q)
			if q.Type == "exec" && q.Decision.Action == model.Allow {
				out = append(out, q.Command)
			}
		case model.KindSSHExit:
			var x model.SSHExit
			json.Unmarshal(en.Data, &x)
			if x.ExitStatus != nil && len(out) > 0 {
				out[len(out)-1] += " -> " + strconv.Itoa(*x.ExitStatus)
			}
		}
	}
	return out
}

// assertCertLogin checks the session's journaled certificate and that the
// target's sshd accepted exactly that certificate.
func (ct *certTarget) assertCertLogin(t *testing.T, id string, so model.SessionOpen) *model.SSHLoginCert {
	t.Helper()
	if so.Decision.Action != model.Allow || so.SSH == nil || so.SSH.UpstreamCert == nil {
		t.Fatalf("session.open without a login certificate: %+v", so.SSH)
	}
	c := so.SSH.UpstreamCert
	if want := fmt.Sprintf("interlock session=%s target=box uid=0 exe=/usr/bin/ssh", id); c.KeyID != want {
		t.Errorf("key id %q, want %q", c.KeyID, want)
	}
	if len(c.Principals) != 1 || c.Principals[0] != ct.acct.name {
		t.Errorf("principals %v, want [%s]", c.Principals, ct.acct.name)
	}
	log, _ := os.ReadFile(ct.st.log)
	accepted := fmt.Sprintf("Accepted certificate ID %q (serial %s) signed by ED25519 CA %s", c.KeyID, c.Serial, ct.caFingerprint)
	if !strings.Contains(string(log), accepted) {
		t.Errorf("sshd's log lacks %q", accepted)
	}
	return c
}

// directLogin tries key straight to the target, outside interception.
func (ct *certTarget) directLogin(t *testing.T, key sshtest.Key, cmd string) (string, int) {
	t.Helper()
	argv := append(sshtest.ClientArgs(ct.st.knownHosts, key.Path), "-p", strconv.Itoa(ct.st.port), ct.acct.name+"@127.0.0.3", cmd)
	out, err := exec.Command("ssh", argv...).CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

// assertDoctor checks doctor's JSON for target box: each of warns is in a
// warning, each of oks in an ok line, and with no warns there is no
// warning or failure for the target at all.
func assertDoctor(t *testing.T, out string, code int, warns, oks []string) {
	t.Helper()
	var checks []struct{ Name, Status, Detail, Fix string }
	if err := json.Unmarshal([]byte(out), &checks); err != nil {
		t.Fatalf("doctor --json (exit %d): %v\n%s", code, err, out)
	}
	var box []string
	for _, c := range checks {
		if c.Name != "target box" {
			continue
		}
		box = append(box, c.Status+": "+c.Detail+" → "+c.Fix)
		if c.Status == "fail" || (len(warns) == 0 && c.Status != "ok") {
			t.Errorf("doctor: %s: %s (%s)", c.Status, c.Detail, c.Fix)
		}
		if c.Status == "warn" && c.Fix == "" {
			t.Errorf("a warning says nothing to do: %s", c.Detail)
		}
	}
	all := strings.Join(box, "\n")
	for _, w := range warns {
		found := false
		for _, l := range box {
			found = found || (strings.HasPrefix(l, "warn: ") && strings.Contains(l, w))
		}
		if !found {
			t.Errorf("doctor does not warn %q:\n%s", w, all)
		}
	}
	for _, o := range oks {
		found := false
		for _, l := range box {
			found = found || (strings.HasPrefix(l, "ok: ") && strings.Contains(l, o))
		}
		if !found {
			t.Errorf("doctor does not say %q:\n%s", o, all)
		}
	}
}

// ownCACert is a key with a certificate for user (id-cert.pub beside it,
// where ssh finds it) from a CA of the session's own, and the
// authorized_keys line that trusts that CA.
func ownCACert(t *testing.T, user string) (sshtest.Key, string) {
	t.Helper()
	requireTools(t, "ssh-keygen")
	dir := t.TempDir()
	ownCA := newSSHKey(t, filepath.Join(dir, "own_ca"))
	key := newSSHKey(t, filepath.Join(dir, "id"))
	if err := os.WriteFile(key.Path+".pub", []byte(key.Authorized()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("ssh-keygen", "-q", "-s", ownCA.Path, "-I", "own", "-n", user, "-V", "-5m:+1h", key.Path+".pub").CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen -s: %v: %s", err, out)
	}
	return key, "cert-authority " + ownCA.Authorized()
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// lastOpenCert is the newest ssh session.open that logged in with a
// certificate.
func lastOpenCert(t *testing.T, e *env) (string, model.SessionOpen) {
	t.Helper()
	var id string
	var so model.SessionOpen
	for _, en := range e.entries() {
		var x model.SessionOpen
		if en.Kind == model.KindSessionOpen && json.Unmarshal(en.Data, &x) == nil && x.SSH != nil && x.SSH.UpstreamCert != nil {
			id, so = en.Session, x
		}
	}
	if id == "" {
		t.Fatal("no certificate login journaled")
	}
	return id, so
}
