package e2e

// Class 7 of the SSH adversarial suite: a credential the session cannot
// take over (see ssh_usercert_harness_test.go for the setup).

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/interlock/interlock/model"
)

// TestSSHAdversarialCredential: on a target set up as docs/ssh.md
// recommends, each attack of a session on the held account's credential
// happens on the target (the file is written, the directory removed) and
// none of them gives the session a login of its own or locks interlock
// out; each login is journaled with the certificate sshd logged.
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
		// The replay shows what the target's shell printed.
		replay, stderr, code := e.interlock("sessions", "replay", "-c", e.cfgPath, "--speed", "50", id)
		if code != 0 || !strings.Contains(replay, "shell-42") {
			t.Errorf("replay: exit %d: %q %s", code, replay, stderr)
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
		plant := "mkdir -p ~/.ssh && echo '" + attacker.Authorized() + "' >> ~/.ssh/authorized_keys && chmod 600 ~/.ssh/authorized_keys"
		ct.run(t, shellQuote(st.sshAs(acct.name, plant)))
		b, err := os.ReadFile(filepath.Join(acct.home, ".ssh", "authorized_keys"))
		if err != nil || !strings.Contains(string(b), attacker.Authorized()) {
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
			if strings.Contains(line, "Accepted publickey") && strings.Contains(line, attacker.Fingerprint()) {
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
		plant := "mkdir -p ~/.ssh && echo '" + attacker.Authorized() + "' > ~/.ssh/authorized_keys2"
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
