package e2e

// Class 7, the target's setup: the old key_file setup as a control,
// doctor's findings, a half-done setup, forwarding, an untrusted CA.

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/interlock/interlock/internal/testkit"
	"github.com/interlock/interlock/model"
)

// TestSSHAdversarialCredentialKeyFileControl is the same target set up the
// old way (interlock's key_file in the held account's authorized_keys): the
// attacks of TestSSHAdversarialCredential succeed there, which shows the
// checks above can fail, and doctor warns about it.
func TestSSHAdversarialCredentialKeyFileControl(t *testing.T) {
	acct := newHeldAccount(t)
	st := startSSHDWith(t, sshdOpts{authorizedKeysFile: ".ssh/authorized_keys"})
	acct.writeAs(t, ".ssh/authorized_keys", st.credKey.Authorized()+"\n", 0o600)
	e := newSSHEnv(t, st, sshTargetOpts{credentials: "user: " + acct.name + "\n      key_file: " + st.credKey.Path})
	ct := &certTarget{st: st, e: e, acct: acct}

	out, _, code := e.interlock("doctor", "-c", e.cfgPath, "--json")
	assertDoctor(t, out, code, []string{"standing credential", "a session can take " + acct.name + " over"}, nil)

	attacker := newSSHKey(t, filepath.Join(t.TempDir(), "attacker"))
	ct.run(t, shellQuote(st.sshAs(acct.name, "echo '"+attacker.Authorized()+"' >> ~/.ssh/authorized_keys; printf 'touch $HOME/rc-ran\\n' > ~/.ssh/rc")))
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
	ct.acct.writeAs(t, ".ssh/authorized_keys", ct.st.clientKey.Authorized()+"\n", 0o600)
	out, _, code = ct.e.interlock("doctor", "-c", ct.e.cfgPath, "--json")
	assertDoctor(t, out, code, nil, []string{"sshd ignores", "offered 1 of its keys"})
	b, _ := os.ReadFile(filepath.Join(ct.acct.home, ".ssh", "authorized_keys"))
	if string(b) != ct.st.clientKey.Authorized()+"\n" {
		t.Errorf("doctor changed the account's keys: %q", b)
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
	local := testkit.FreePort(t, "127.0.0.1")
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
