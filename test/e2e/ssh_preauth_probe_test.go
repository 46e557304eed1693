package e2e

import (
	"strconv"
	"strings"
	"testing"

	"github.com/interlock/interlock/model"
)

// TestSSHAdversarialPreauthProbes (issue 13, class 9): connections that
// never authenticate with interlock cost the target nothing, whatever
// they get as far as: a key exchange and a disconnect (ssh-keyscan), a
// login as another user than the held one, and a client that has no
// method interlock accepts. Each is refused by interlock; the target's
// sshd logs no connection for any of them; the refusals are journaled;
// and a proper session afterwards still works (and is the only
// connection the target saw).
func TestSSHAdversarialPreauthProbes(t *testing.T) {
	requireTools(t, "ssh", "ssh-keyscan")
	st := startSSHD(t)
	e := newSSHEnv(t, st, sshTargetOpts{})
	before := st.connectionsSeen()
	port := strconv.Itoa(st.port)

	t.Run("keyscan", func(t *testing.T) {
		// Twenty key exchanges with interlock, each ending before any
		// authentication.
		script := "for i in $(seq 20); do ssh-keyscan -T 5 -p " + port + " 127.0.0.3; done"
		out, stderr, code := e.runUnder("sh", "-c", script)
		if code != 0 || strings.Count(out, "127.0.0.3") < 20 {
			t.Fatalf("ssh-keyscan through interlock: exit %d\nstdout: %s\nstderr: %s", code, out, stderr)
		}
		if got := st.connectionsSeen() - before; got != 0 {
			t.Errorf("the target saw %d connections for 20 key scans that never authenticated", got)
		}
	})

	t.Run("other-user", func(t *testing.T) {
		argv := st.sshArgv("touch /tmp/other-user-ran")
		for i, a := range argv {
			if a == "root@127.0.0.3" {
				argv[i] = "nobody@127.0.0.3"
			}
		}
		_, stderr, code := e.runUnder(argv...)
		if code == 0 {
			t.Fatalf("ssh as nobody through interlock (held account root) succeeded: %s", stderr)
		}
		if got := st.connectionsSeen() - before; got != 0 {
			t.Errorf("the target saw %d connections for a login as another user", got)
		}
		var refused bool
		for _, so := range sshOpens(e) {
			if so.SSH != nil && so.SSH.User == "nobody" {
				refused = so.Decision.Action == model.Deny
				if !refused {
					t.Errorf("the login as nobody was journaled as %+v", so.Decision)
				}
			}
		}
		if !refused {
			t.Errorf("the refused login as nobody is not in the journal")
		}
	})

	t.Run("no-acceptable-method", func(t *testing.T) {
		// Only keyboard-interactive and password offered, and no way to
		// answer them (BatchMode).
		argv := st.sshArgv("true")
		argv = append(argv[:1], append([]string{"-o", "PreferredAuthentications=keyboard-interactive,password", "-o", "PubkeyAuthentication=no"}, argv[1:]...)...)
		_, stderr, code := e.runUnder(argv...)
		if code == 0 {
			t.Fatalf("ssh without a key succeeded: %s", stderr)
		}
		if got := st.connectionsSeen() - before; got != 0 {
			t.Errorf("the target saw %d connections for a client that never authenticated", got)
		}
	})

	t.Run("then-a-session", func(t *testing.T) {
		out, stderr, code := e.runUnder(st.sshArgv("echo preauth-ok")...)
		if code != 0 || !strings.Contains(out, "preauth-ok") {
			t.Fatalf("a proper session after the probes: exit %d\nstdout: %s\nstderr: %s", code, out, stderr)
		}
		if got := st.connectionsSeen() - before; got != 1 {
			t.Errorf("the target saw %d connections, want exactly the one session's", got)
		}
	})
}
