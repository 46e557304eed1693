package e2e

// Class 7 of the SSH adversarial suite: a credential the session cannot
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

	gossh "golang.org/x/crypto/ssh"

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
func (ct *certTarget) directLogin(t *testing.T, key sshKey, cmd string) (string, int) {
	t.Helper()
	argv := []string{"-F", "/dev/null", "-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=" + ct.st.knownHosts,
		"-o", "GlobalKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-i", key.path,
		"-o", "ConnectTimeout=20", "-p", strconv.Itoa(ct.st.port), ct.acct.name + "@127.0.0.3", cmd}
	out, err := exec.Command("ssh", argv...).CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

func TestSSHAdversarialCredential(t *testing.T) {
	ct := startCertTarget(t, "")
	st, e, acct := ct.st, ct.e, ct.acct

	// (a) a session logs in with a certificate: exec and a shell in a pty
	// work, as the held account.
	t.Run("certificate_login_exec_and_shell", func(t *testing.T) {
		out := ct.run(t, shellQuote(st.sshAs(acct.name, "id -un; echo home=$HOME")))
		if !strings.Contains(out, acct.name+"\n") || !strings.Contains(out, "home="+acct.home) {
			t.Fatalf("exec as the held account: %q", out)
		}
		id, so := lastOpen(t, e)
		ct.assertCertLogin(t, id, so)
		if got := execs(e, id); len(got) != 1 || got[0] != "id -un; echo home=$HOME -> 0" {
			t.Errorf("journaled execs %q", got)
		}
		shells := st.started("shell on pts")
		out = ct.run(t, "printf 'echo shell-$((6*7))\\nexit\\n' | "+shellQuote(st.sshAs(acct.name, "-tt")))
		if !strings.Contains(out, "shell-42") {
			t.Fatalf("shell: %q", out)
		}
		if st.started("shell on pts") != shells+1 {
			t.Errorf("sshd started %d shells in a pty, want 1", st.started("shell on pts")-shells)
		}
		id, so = lastOpen(t, e)
		ct.assertCertLogin(t, id, so)
		var pty, shell bool
		for _, en := range e.entries() {
			if en.Session == id && en.Kind == model.KindSSHRequest {
				var q model.SSHRequest
				json.Unmarshal(en.Data, &q)
				pty = pty || q.Type == "pty-req"
				shell = shell || (q.Type == "shell" && q.Decision.Action == model.Allow)
			}
		}
		if !pty || !shell {
			t.Errorf("journal: pty-req %v, shell %v", pty, shell)
		}
	})

	// (d) the certificate lives minutes at most, names the session and the
	// connecting program, and is the one sshd accepted (its log).
	t.Run("certificate_short_and_names_session", func(t *testing.T) {
		ct.run(t, shellQuote(st.sshAs(acct.name, "true")))
		id, so := lastOpen(t, e)
		c := ct.assertCertLogin(t, id, so)
		life := time.Duration(c.ValidBeforeNS - c.ValidAfterNS)
		if life <= 0 || life > 5*time.Minute {
			t.Errorf("certificate valid for %v", life)
		}
		if now := time.Now().UnixNano(); c.ValidAfterNS > now || c.ValidBeforeNS < now-int64(time.Minute) {
			t.Errorf("validity [%d, %d] does not cover the login (now %d)", c.ValidAfterNS, c.ValidBeforeNS, now)
		}
		for _, x := range c.Extensions {
			if x != "permit-pty" {
				t.Errorf("extension %s granted; the target's allow section opens nothing", x)
			}
		}
		// Each login has a certificate of its own.
		ct.run(t, shellQuote(st.sshAs(acct.name, "true")))
		id2, so2 := lastOpen(t, e)
		c2 := ct.assertCertLogin(t, id2, so2)
		if id2 == id || c2.Serial == c.Serial || c2.Fingerprint == c.Fingerprint {
			t.Errorf("two logins share a certificate or key: %+v %+v", c, c2)
		}
	})

	// (b) TAKEOVER: the session appends its own key to the held account's
	// authorized_keys through interlock (it works: the file has the key),
	// and that key then logs in directly, outside interception: refused.
	t.Run("takeover_own_authorized_key", func(t *testing.T) {
		attacker := newSSHKey(t, filepath.Join(t.TempDir(), "attacker"))
		plant := "mkdir -p ~/.ssh && echo '" + attacker.authorized() + "' >> ~/.ssh/authorized_keys && chmod 600 ~/.ssh/authorized_keys"
		ct.run(t, shellQuote(st.sshAs(acct.name, plant)))
		b, err := os.ReadFile(filepath.Join(acct.home, ".ssh", "authorized_keys"))
		if err != nil || !strings.Contains(string(b), attacker.authorized()) {
			t.Fatalf("the session could not plant its key (the attack did not happen): %v %q", err, b)
		}
		id, so := lastOpen(t, e)
		ct.assertCertLogin(t, id, so)
		if got := execs(e, id); len(got) != 1 || got[0] != plant+" -> 0" {
			t.Errorf("journaled execs %q", got)
		}
		out, code := ct.directLogin(t, attacker, "echo took-over")
		if code == 0 || strings.Contains(out, "took-over") {
			t.Fatalf("the planted key logged in directly: exit %d: %s", code, out)
		}
		log, _ := os.ReadFile(st.log)
		for _, line := range strings.Split(string(log), "\n") {
			if strings.Contains(line, "Accepted publickey") && strings.Contains(line, attacker.fingerprint()) {
				t.Errorf("sshd accepted the planted key: %s", line)
			}
		}
		// Through interlock the account still works.
		if out := ct.run(t, shellQuote(st.sshAs(acct.name, "echo still-mine"))); !strings.Contains(out, "still-mine") {
			t.Errorf("interlock's login after the plant: %q", out)
		}
	})

	// The same with a CA of the session's own: a cert-authority line in
	// authorized_keys, and a certificate it signed for the held user.
	t.Run("takeover_own_cert_authority", func(t *testing.T) {
		key, caLine := ownCACert(t, acct.name)
		plant := "mkdir -p ~/.ssh && echo '" + caLine + "' >> ~/.ssh/authorized_keys"
		ct.run(t, shellQuote(st.sshAs(acct.name, plant)))
		if b, _ := os.ReadFile(filepath.Join(acct.home, ".ssh", "authorized_keys")); !strings.Contains(string(b), caLine) {
			t.Fatalf("the session could not plant its CA: %q", b)
		}
		id, _ := lastOpen(t, e)
		if got := execs(e, id); len(got) != 1 || got[0] != plant+" -> 0" {
			t.Errorf("journaled execs %q", got)
		}
		// ssh picks up id-cert.pub beside the key.
		if out, code := ct.directLogin(t, key, "echo took-over"); code == 0 || strings.Contains(out, "took-over") {
			t.Fatalf("a certificate from the session's own CA logged in: exit %d: %s", code, out)
		}
		if log, _ := os.ReadFile(st.log); strings.Contains(string(log), `Accepted certificate ID "own"`) {
			t.Error("sshd accepted the session's own certificate")
		}
	})

	// ~/.ssh/authorized_keys2, which older sshd configs also read.
	t.Run("takeover_authorized_keys2", func(t *testing.T) {
		attacker := newSSHKey(t, filepath.Join(t.TempDir(), "attacker2"))
		plant := "mkdir -p ~/.ssh && echo '" + attacker.authorized() + "' > ~/.ssh/authorized_keys2"
		ct.run(t, shellQuote(st.sshAs(acct.name, plant)))
		if _, err := os.Stat(filepath.Join(acct.home, ".ssh", "authorized_keys2")); err != nil {
			t.Fatalf("not planted: %v", err)
		}
		if out, code := ct.directLogin(t, attacker, "echo took-over"); code == 0 || strings.Contains(out, "took-over") {
			t.Fatalf("authorized_keys2 logged in: exit %d: %s", code, out)
		}
	})

	// A session asking interlock for another account gets no certificate
	// for it: refused before interlock logs in, and journaled.
	t.Run("certificate_for_another_user", func(t *testing.T) {
		before := strings.Count(readFile(t, st.log), "Accepted certificate ID")
		out, stderr, code := e.runUnder(st.sshAs("root", "echo as-root")...)
		if code == 0 || strings.Contains(out, "as-root") || !strings.Contains(stderr, "interlock logs in as \""+acct.name+"\"") {
			t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, stderr)
		}
		_, so := lastOpen(t, e)
		if so.Decision.Action != model.Deny || so.Decision.Rule != "credentials.user" || so.SSH == nil || so.SSH.User != "root" || so.SSH.UpstreamCert != nil {
			t.Errorf("session.open %+v %+v", so.Decision, so.SSH)
		}
		if after := strings.Count(readFile(t, st.log), "Accepted certificate ID"); after != before {
			t.Errorf("the target accepted %d certificates for the refused session", after-before)
		}
	})

	// Nothing on disk holds a login key: interlock's state has its CAs and
	// host key only, and no file there or on the target holds the key a
	// journaled certificate certifies.
	t.Run("no_login_key_on_disk", func(t *testing.T) {
		ents, err := os.ReadDir(filepath.Join(e.dir, "state", "ssh"))
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, en := range ents {
			names = append(names, en.Name())
		}
		// The target has its host_key_file, so no host CA either.
		want := "user_ca_ed25519 user_ca_ed25519.pub"
		if strings.Join(names, " ") != want {
			t.Errorf("state_dir/ssh holds %v, want %s", names, want)
		}
		_, so := lastOpenCert(t, e)
		fp := so.SSH.UpstreamCert.Fingerprint
		for _, root := range []string{filepath.Join(e.dir, "state"), acct.home} {
			filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return nil
				}
				b, _ := os.ReadFile(p)
				for rest := b; len(rest) > 0; {
					k, _, _, r, err := gossh.ParseAuthorizedKey(rest)
					if err != nil {
						break
					}
					if gossh.FingerprintSHA256(k) == fp {
						t.Errorf("%s holds the login key %s", p, fp)
					}
					rest = r
				}
				return nil
			})
		}
	})

	// (c) REVOCATION: the session deletes ~/.ssh (with interlock's supposed
	// key in it, were there one) and truncates what it can; the next
	// session still logs in.
	t.Run("revocation_remove_ssh_dir", func(t *testing.T) {
		wipe := "rm -rf ~/.ssh && touch ~/.ssh-gone"
		ct.run(t, shellQuote(st.sshAs(acct.name, wipe)))
		if _, err := os.Stat(filepath.Join(acct.home, ".ssh")); !os.IsNotExist(err) {
			t.Fatalf("~/.ssh still there (the attack did not happen): %v", err)
		}
		id, _ := lastOpen(t, e)
		if got := execs(e, id); len(got) != 1 || got[0] != wipe+" -> 0" {
			t.Errorf("journaled execs %q", got)
		}
		out := ct.run(t, shellQuote(st.sshAs(acct.name, "ls -a ~; echo after-wipe")))
		if !strings.Contains(out, "after-wipe") || !strings.Contains(out, ".ssh-gone") {
			t.Fatalf("a later session: %q", out)
		}
		id2, so2 := lastOpen(t, e)
		if id2 == id {
			t.Fatal("no new session journaled")
		}
		ct.assertCertLogin(t, id2, so2)
		// A locked-down file that the account may not even read, too.
		lock := "mkdir -p ~/.ssh && : > ~/.ssh/authorized_keys && chmod 000 ~/.ssh/authorized_keys ~/.ssh"
		ct.run(t, shellQuote(st.sshAs(acct.name, lock)))
		if out := ct.run(t, shellQuote(st.sshAs(acct.name, "chmod 700 ~/.ssh; echo after-lock"))); !strings.Contains(out, "after-lock") {
			t.Fatalf("after the lock: %q", out)
		}
	})

	// (e) a ~/.ssh/rc planted by the session does not run at the next
	// login: the certificate never grants permit-user-rc.
	t.Run("planted_user_rc_does_not_run", func(t *testing.T) {
		plant := "mkdir -p ~/.ssh && printf 'touch $HOME/rc-ran\\n' > ~/.ssh/rc && chmod 755 ~/.ssh/rc"
		ct.run(t, shellQuote(st.sshAs(acct.name, plant)))
		if _, err := os.Stat(filepath.Join(acct.home, ".ssh", "rc")); err != nil {
			t.Fatalf("rc not planted (the attack did not happen): %v", err)
		}
		ct.run(t, shellQuote(st.sshAs(acct.name, "echo next-login")))
		ct.run(t, "printf 'exit\\n' | "+shellQuote(st.sshAs(acct.name, "-tt")))
		if _, err := os.Stat(filepath.Join(acct.home, "rc-ran")); err == nil {
			t.Fatal("the planted ~/.ssh/rc ran at a later login")
		}
		id, so := lastOpen(t, e)
		c := ct.assertCertLogin(t, id, so)
		for _, x := range c.Extensions {
			if x == "permit-user-rc" {
				t.Errorf("the certificate permits user rc: %v", c.Extensions)
			}
		}
	})
}

// TestSSHAdversarialCredentialKeyFileControl is the same target set up the
// old way (interlock's key_file in the held account's authorized_keys): the
// attacks of TestSSHAdversarialCredential succeed there, which shows the
// checks above can fail, and doctor warns about it.
func TestSSHAdversarialCredentialKeyFileControl(t *testing.T) {
	acct := newHeldAccount(t)
	st := startSSHDWith(t, sshdOpts{authorizedKeysFile: ".ssh/authorized_keys"})
	acct.writeAs(t, ".ssh/authorized_keys", st.credKey.authorized()+"\n", 0o600)
	e := newSSHEnv(t, st, sshTargetOpts{credentials: "user: " + acct.name + "\n      key_file: " + st.credKey.path})
	ct := &certTarget{st: st, e: e, acct: acct}

	out, _, code := e.interlock("doctor", "-c", e.cfgPath, "--json")
	assertDoctor(t, out, code, []string{"standing credential", "a session can take " + acct.name + " over"}, nil)

	attacker := newSSHKey(t, filepath.Join(t.TempDir(), "attacker"))
	ct.run(t, shellQuote(st.sshAs(acct.name, "echo '"+attacker.authorized()+"' >> ~/.ssh/authorized_keys; printf 'touch $HOME/rc-ran\\n' > ~/.ssh/rc")))
	id, so := lastOpen(t, e)
	if so.SSH == nil || so.SSH.UpstreamCert != nil {
		t.Errorf("a key_file login journaled a certificate: %+v", so.SSH)
	}
	if len(execs(e, id)) != 1 {
		t.Errorf("journaled execs %q", execs(e, id))
	}
	if out, code := ct.directLogin(t, attacker, "echo took-over"); code != 0 || !strings.Contains(out, "took-over") {
		t.Fatalf("control: the planted key did not log in directly (exit %d: %s); the takeover check proves nothing", code, out)
	}
	if _, err := os.Stat(filepath.Join(acct.home, "rc-ran")); err != nil {
		t.Fatalf("control: the planted ~/.ssh/rc did not run with a plain key: %v", err)
	}
	key, caLine := ownCACert(t, acct.name)
	ct.run(t, shellQuote(st.sshAs(acct.name, "echo '"+caLine+"' >> ~/.ssh/authorized_keys")))
	if out, code := ct.directLogin(t, key, "echo took-over"); code != 0 || !strings.Contains(out, "took-over") {
		t.Fatalf("control: a certificate from the session's own CA did not log in (exit %d: %s)", code, out)
	}
	// Revocation: one exec that removes interlock's key locks it out.
	ct.run(t, shellQuote(st.sshAs(acct.name, "rm ~/.ssh/authorized_keys")))
	if out, stderr, code := e.runUnder(st.sshAs(acct.name, "echo after-wipe")...); code == 0 || strings.Contains(out, "after-wipe") {
		t.Fatalf("control: interlock still logged in after its key was removed: %s %s", out, stderr)
	}
	opens := sshOpens(e)
	if last := opens[len(opens)-1]; last.Decision.Action != model.Deny || last.Decision.Rule != "upstream-auth" {
		t.Errorf("the locked-out session journaled %+v", last.Decision)
	}
}

// TestSSHAdversarialCredentialDoctor: doctor finds the recommended setup
// sound (no warning for the target) and leaves the account as it was, and
// warns once the account's authorized_keys is honoured.
func TestSSHAdversarialCredentialDoctor(t *testing.T) {
	ct := startCertTarget(t, "")
	out, _, code := ct.e.interlock("doctor", "-c", ct.e.cfgPath, "--json")
	assertDoctor(t, out, code, nil, []string{"sshd ignores", "logs in as " + ct.acct.name + " with a certificate"})
	if _, err := os.Stat(filepath.Join(ct.acct.home, ".ssh")); !os.IsNotExist(err) {
		t.Errorf("doctor's probe left ~/.ssh behind: %v", err)
	}
	// sshd's log has doctor's certificate login too.
	if log, _ := os.ReadFile(ct.st.log); !strings.Contains(string(log), `Accepted certificate ID "interlock doctor target=box"`) {
		t.Errorf("sshd did not log doctor's certificate")
	}
	// The account already has keys the same sshd honours for another
	// account: doctor offers them and they are refused, so still sound.
	ct.acct.writeAs(t, ".ssh/authorized_keys", ct.st.clientKey.authorized()+"\n", 0o600)
	out, _, code = ct.e.interlock("doctor", "-c", ct.e.cfgPath, "--json")
	assertDoctor(t, out, code, nil, []string{"sshd ignores", "offered 1 of its keys"})
	b, _ := os.ReadFile(filepath.Join(ct.acct.home, ".ssh", "authorized_keys"))
	if string(b) != ct.st.clientKey.authorized()+"\n" {
		t.Errorf("doctor changed the account's keys: %q", b)
	}
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

// TestSSHAdversarialCredentialHalfDoneSetup: a certificate target whose
// sshd still honours the held account's authorized_keys (no
// AuthorizedKeysFile none): doctor warns that a session can take the
// account over, and says to add the Match block.
func TestSSHAdversarialCredentialHalfDoneSetup(t *testing.T) {
	ct := startCertTargetWith(t, "", true)
	// Logins work with the certificate...
	if out := ct.run(t, shellQuote(ct.st.sshAs(ct.acct.name, "echo cert-ok"))); !strings.Contains(out, "cert-ok") {
		t.Fatalf("login: %q", out)
	}
	id, so := lastOpen(t, ct.e)
	ct.assertCertLogin(t, id, so)
	// ...but the account's own file is honoured, so doctor warns.
	out, _, code := ct.e.interlock("doctor", "-c", ct.e.cfgPath, "--json")
	assertDoctor(t, out, code, []string{"a session can take " + ct.acct.name + " over"}, []string{"with a certificate"})
	if !strings.Contains(out, "AuthorizedKeysFile none") {
		t.Errorf("doctor does not say what to set:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(ct.acct.home, ".ssh")); !os.IsNotExist(err) {
		t.Errorf("doctor's probe left ~/.ssh behind: %v", err)
	}
}

// TestSSHAdversarialCredentialForwardingFollowsAllow: the certificate
// grants permit-port-forwarding only where the target's allow section
// opens forwarding, and there ssh -L works through interlock and the
// target's sshd (which refuses forwarding a certificate does not permit).
func TestSSHAdversarialCredentialForwardingFollowsAllow(t *testing.T) {
	requireTools(t, "bash")
	ct := startCertTarget(t, "allow: {port_forwarding: true}")
	st := ct.st
	local := freePort(t, "127.0.0.1")
	fwd := st.sshAs(ct.acct.name, "-N", "-o", "ExitOnForwardFailure=yes", "-L", "127.0.0.1:"+strconv.Itoa(local)+":127.0.0.3:"+strconv.Itoa(st.port))
	// Through the forward, the target's own sshd answers with its banner.
	script := shellQuote(fwd) + ` & pid=$!
for i in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/` + strconv.Itoa(local) + `) 2>/dev/null && break; sleep 0.1; done
exec 3<>/dev/tcp/127.0.0.1/` + strconv.Itoa(local) + `
timeout 10 head -n 1 <&3
exec 3<&-
kill $pid; wait $pid; true
`
	out, stderr, code := ct.e.runUnder("bash", "-c", script)
	if code != 0 || !strings.Contains(out, "SSH-2.0-OpenSSH") {
		t.Fatalf("forward: exit %d\nstdout: %s\nstderr: %s", code, out, stderr)
	}
	id, so := lastOpen(t, ct.e)
	c := ct.assertCertLogin(t, id, so)
	if strings.Join(c.Extensions, ",") != "permit-port-forwarding,permit-pty" {
		t.Errorf("extensions %v, want permit-port-forwarding and permit-pty", c.Extensions)
	}
	var direct *model.SSHChannel
	for _, ch := range entriesOf[model.SSHChannel](ct.e, model.KindSSHChannel) {
		if ch.Type == "direct-tcpip" {
			direct = &ch
		}
	}
	if direct == nil || direct.Decision.Action != model.Allow {
		t.Errorf("direct-tcpip journaled as %+v", direct)
	}
}

// ownCACert is a key with a certificate for user (id-cert.pub beside it,
// where ssh finds it) from a CA of the session's own, and the
// authorized_keys line that trusts that CA.
func ownCACert(t *testing.T, user string) (sshKey, string) {
	t.Helper()
	requireTools(t, "ssh-keygen")
	dir := t.TempDir()
	ownCA := newSSHKey(t, filepath.Join(dir, "own_ca"))
	key := newSSHKey(t, filepath.Join(dir, "id"))
	if err := os.WriteFile(key.path+".pub", []byte(key.authorized()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("ssh-keygen", "-q", "-s", ownCA.path, "-I", "own", "-n", user, "-V", "-5m:+1h", key.path+".pub").CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen -s: %v: %s", err, out)
	}
	return key, "cert-authority " + ownCA.authorized()
}

// TestSSHAdversarialCredentialUntrustedCA: a target that does not (or no
// longer) trust interlock's user CA refuses the certificate, and nothing
// else is tried: the session is refused, journaled with the certificate
// offered, and doctor fails the target with what to install.
func TestSSHAdversarialCredentialUntrustedCA(t *testing.T) {
	ct := startCertTarget(t, "")
	if err := os.WriteFile(ct.caFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	out, stderr, code := ct.e.runUnder(ct.st.sshAs(ct.acct.name, "echo in")...)
	if code == 0 || strings.Contains(out, "in\n") || !strings.Contains(stderr, "refused interlock's credential") {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, stderr)
	}
	_, so := lastOpen(t, ct.e)
	if so.Decision.Action != model.Deny || so.Decision.Rule != "upstream-auth" || !strings.Contains(so.Decision.Reason, "TrustedUserCAKeys") {
		t.Errorf("session.open decision %+v", so.Decision)
	}
	if so.SSH == nil || so.SSH.UpstreamCert == nil || !strings.Contains(so.Decision.Reason, "serial "+so.SSH.UpstreamCert.Serial) {
		t.Errorf("the refused login's certificate is not journaled: %+v", so.SSH)
	}
	if log := readFile(t, ct.st.log); strings.Contains(log, "Accepted ") {
		t.Errorf("sshd accepted something:\n%s", log)
	}
	if ct.st.started("command") != 0 {
		t.Errorf("sshd ran a command")
	}
	dout, _, dcode := ct.e.interlock("doctor", "-c", ct.e.cfgPath, "--json")
	if dcode == 0 || !strings.Contains(dout, "cannot log in as "+ct.acct.name+" with a certificate") || !strings.Contains(dout, "interlock ssh-ca user") {
		t.Errorf("doctor (exit %d) does not fail the target with the fix:\n%s", dcode, dout)
	}
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
