package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/interlock/interlock/model"
)

// TestSSHWrongTargetHostKey: when the target presents a host key that
// interlock's known_hosts does not hold, the session is refused before
// interlock logs in, and the refusal is journaled. A user interlock holds
// no credential for is refused too.
func TestSSHWrongTargetHostKey(t *testing.T) {
	st := startSSHD(t)
	other := newSSHKey(t, filepath.Join(st.dir, "other_host_key"))
	wrong := filepath.Join(st.dir, "wrong_known_hosts")
	os.WriteFile(wrong, []byte(fmt.Sprintf("[127.0.0.3]:%d %s\n", st.port, other.Authorized())), 0o644)
	e := newSSHEnv(t, st, sshTargetOpts{knownHosts: wrong})
	out, stderr, code := e.runUnder(st.sshArgv("echo reached")...)
	if code != 255 || strings.Contains(out, "reached") {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, stderr)
	}
	if !strings.Contains(stderr, "interlock: the host key of target box does not match") {
		t.Errorf("ssh's stderr lacks the reason: %q", stderr)
	}
	opens := sshOpens(e)
	if len(opens) != 1 {
		t.Fatalf("%d sessions journaled", len(opens))
	}
	d := opens[0].Decision
	if d.Action != model.Deny || d.Rule != "upstream-host-key" || !strings.Contains(d.Reason, st.hostKey.Fingerprint()) ||
		opens[0].SSH.UpstreamHostKey != st.hostKey.Fingerprint() {
		t.Errorf("journaled %+v %+v", d, opens[0].SSH)
	}
	if b, _ := os.ReadFile(st.log); strings.Contains(string(b), "Accepted publickey") {
		t.Error("interlock logged in to a target whose host key it could not verify")
	}

	// Asking for a user interlock has no credential for.
	e2 := newSSHEnv(t, st, sshTargetOpts{})
	argv := st.sshArgv("true")
	argv[len(argv)-2] = "bob@127.0.0.3"
	_, stderr, code = e2.runUnder(argv...)
	if code != 255 || !strings.Contains(stderr, `interlock: no credential for user "bob" on target box`) {
		t.Errorf("user bob: exit %d: %q", code, stderr)
	}
	opens = sshOpens(e2)
	if len(opens) != 1 || opens[0].Decision.Rule != "credentials.user" || opens[0].SSH.User != "bob" {
		t.Errorf("journaled %+v", opens)
	}
}

// TestSSHHostCertificate: without host_key_file, interlock presents a host
// certificate from its own CA, created in state_dir at first start; a
// client that trusts the CA (the documented @cert-authority line) connects
// with StrictHostKeyChecking=yes.
func TestSSHHostCertificate(t *testing.T) {
	st := startSSHD(t)
	e := newSSHEnv(t, st, sshTargetOpts{useCA: true})
	// The first start creates the CA.
	if _, stderr, code := e.runUnder("true"); code != 0 {
		t.Fatalf("first run: %s", stderr)
	}
	sshDir := filepath.Join(e.dir, "state", "ssh")
	for _, f := range []string{"ca_ed25519", "host_ed25519"} {
		fi, err := os.Stat(filepath.Join(sshDir, f))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v (mode %v)", f, err, fi)
		}
	}
	line, err := os.ReadFile(filepath.Join(sshDir, "ca.known_hosts"))
	if err != nil || !regexp.MustCompile(`^@cert-authority \* ssh-ed25519 \S+ interlock-ssh-ca\n$`).Match(line) {
		t.Fatalf("ca.known_hosts %q: %v", line, err)
	}
	kh := filepath.Join(e.dir, "client_known_hosts")
	os.WriteFile(kh, line, 0o644)
	argv := append([]string{"ssh"}, st.clientOpts(kh)...)
	argv = append(argv, "-p", strconv.Itoa(st.port), "root@127.0.0.3", "echo via-cert")
	out, stderr, code := e.runUnder(argv...)
	if code != 0 || !strings.Contains(out, "via-cert") {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, stderr)
	}
	// The target's own known_hosts line is not enough any more: the client
	// is shown interlock's certificate, not the target's key.
	_, _, code = e.runUnder(st.sshArgv("true")...)
	if code != 255 {
		t.Errorf("a client pinning the target's own key got through (exit %d)", code)
	}
}

// TestSSHMalformedInput: garbage after the banner, an oversized packet and
// a client that stops in the middle of the key exchange are dropped (the
// staller by the handshake deadline) while other sessions keep working.
func TestSSHMalformedInput(t *testing.T) {
	requireTools(t, "bash", "timeout")
	st := startSSHD(t)
	e := newSSHEnv(t, st, sshTargetOpts{})
	dst := "/dev/tcp/127.0.0.3/" + strconv.Itoa(st.port)
	script := `
now() { date +%s%N; }
# Stalls after its version line, in the middle of the key exchange.
( exec 3<>` + dst + `; printf 'SSH-2.0-Stall_1.0\r\n' >&3; s=$(now); timeout 60 cat <&3 >/dev/null; echo "stall closed after $(( ($(now)-s)/1000000 )) ms" ) &
stall=$!
# Garbage after the banner.
( exec 3<>` + dst + `; printf 'SSH-2.0-Garbage_1.0\r\n' >&3; head -c 200000 /dev/urandom >&3 2>/dev/null; timeout 30 cat <&3 >/dev/null; echo garbage closed ) &
# An oversized packet: length 0x7fffff00.
( exec 3<>` + dst + `; printf 'SSH-2.0-Big_1.0\r\n\x7f\xff\xff\x00\x14' >&3; head -c 5000 /dev/zero >&3 2>/dev/null; timeout 30 cat <&3 >/dev/null; echo oversized closed ) &
# No SSH at all.
( exec 3<>` + dst + `; head -c 300000 /dev/urandom >&3 2>/dev/null; timeout 30 cat <&3 >/dev/null; echo junk closed ) &
sleep 1
# Meanwhile a real session works.
` + shellQuote(st.sshArgv("echo good")) + `
wait
`
	out, stderr, code := e.runUnder("bash", "-c", script)
	if code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, stderr)
	}
	for _, s := range []string{"good", "garbage closed", "oversized closed", "junk closed", "stall closed after"} {
		if !strings.Contains(out, s) {
			t.Errorf("stdout lacks %q:\n%s", s, out)
		}
	}
	if m := regexp.MustCompile(`stall closed after (\d+) ms`).FindStringSubmatch(out); m != nil {
		if ms, _ := strconv.Atoi(m[1]); ms < 15000 || ms > 30000 {
			t.Errorf("the stalled client was closed after %d ms, want the 20 s handshake deadline", ms)
		}
	}
	var refused, good int
	for _, so := range sshOpens(e) {
		switch {
		case so.Decision.Action == model.Deny && so.Decision.Rule == "ssh-handshake":
			refused++
		case so.Decision.Action == model.Allow:
			good++
		}
	}
	if refused != 4 || good != 1 {
		t.Errorf("journaled %d refused handshakes and %d good sessions, want 4 and 1", refused, good)
	}
}
