package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/interlock/interlock/model"
)

// TestSSHKeylessClientIsTold: a client that offers no key and may not
// prompt (BatchMode) fails, but ssh's stderr says why: interlock holds the
// target's credential and any key of the client's own will do. The remedy
// it names works: with a fresh key from ssh-keygen the same client gets in,
// and the journal names that key.
func TestSSHKeylessClientIsTold(t *testing.T) {
	st := startSSHD(t)
	e := newSSHEnv(t, st, sshTargetOpts{})
	base := []string{"ssh", "-F", "/dev/null",
		"-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=" + st.knownHosts,
		"-o", "GlobalKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
		"-o", "IdentityAgent=none", "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=20"}
	target := []string{"-p", strconv.Itoa(st.port), "root@127.0.0.3", "echo reached"}

	// No identity at all: IdentityFile pointing at a key that is not there.
	keyless := append(append(append([]string{}, base...), "-o", "IdentityFile="+filepath.Join(e.dir, "absent_key")), target...)
	out, stderr, code := e.runUnder(keyless...)
	if code != 255 || strings.Contains(out, "reached") {
		t.Fatalf("keyless client: exit %d\nstdout: %s\nstderr: %s", code, out, stderr)
	}
	if !strings.Contains(stderr, "Permission denied") ||
		!strings.Contains(stderr, "interlock: holds the credential for root@box; any key or password of yours is accepted (no key? run ssh-keygen -t ed25519)") {
		t.Errorf("ssh's stderr does not say what to do: %q", stderr)
	}
	// The attempt is journaled as a refused handshake, and interlock did not
	// log in to the target for it.
	opens := sshOpens(e)
	if len(opens) != 1 || opens[0].Decision.Action != model.Deny || opens[0].Decision.Rule != "ssh-handshake" {
		t.Fatalf("journaled %+v", opens)
	}
	if b, _ := os.ReadFile(st.log); strings.Contains(string(b), "Accepted publickey") {
		t.Error("interlock logged in to the target for a client that never authenticated")
	}

	// The remedy the banner names.
	key := filepath.Join(e.dir, "fresh_ed25519")
	if b, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, b)
	}
	keyed := append(append(append([]string{}, base...), "-i", key), target...)
	out, stderr, code = e.runUnder(keyed...)
	if code != 0 || !strings.Contains(out, "reached") {
		t.Fatalf("client with a fresh key: exit %d\nstdout: %s\nstderr: %s", code, out, stderr)
	}
	fp, err := exec.Command("ssh-keygen", "-l", "-E", "sha256", "-f", key+".pub").Output()
	if err != nil {
		t.Fatal(err)
	}
	opens = sshOpens(e)[1:]
	if len(opens) != 1 || opens[0].Decision.Action != model.Allow || opens[0].SSH.AuthMethod != "publickey" ||
		!strings.Contains(string(fp), opens[0].SSH.KeyFingerprint) || opens[0].SSH.KeyFingerprint == "" {
		t.Errorf("journaled %+v; key %s", opens, fp)
	}
}
