package e2e

// Issue 13, class 6, continued (see ssh_exec_adversarial_test.go): execs
// that are shells in all but name, and SSH or sftp tunnelled through an
// exec.

import (
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

// TestSSHAdversarialExecShell: with shells denied on the target, an exec
// that is a shell in all but name (on a pty, or starting a shell that
// reads the client's stdin) is refused by the shell rule; a plain exec
// without a pty still runs.
func TestSSHAdversarialExecShell(t *testing.T) {
	requireTools(t, "bash", "zsh")
	st := startSSHD(t)
	d := st.dir
	e := newSSHEnv(t, st, sshTargetOpts{global: `policy:
  rules:
    - {name: no-shell, match: {targets: [box], operation: {kinds: [shell]}}, action: deny, reason: no shells on box}
`})
	tty := func(cmd string) []string {
		argv := st.sshArgv(cmd)
		return append(argv[:1], append([]string{"-tt"}, argv[1:]...)...)
	}

	t.Run("plain exec runs", func(t *testing.T) {
		out, stderr, code := e.runUnder(st.sshArgv("touch " + d + "/ok-plain")...)
		if code != 0 {
			t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, stderr)
		}
		if _, err := os.Stat(filepath.Join(d, "ok-plain")); err != nil {
			t.Errorf("the plain exec did not run: %v", err)
		}
	})

	cases := []struct {
		name string
		argv []string
		cmd  string
		why  string
	}{
		{"ssh -tt exec bash -i", tty("exec bash -i"), "exec bash -i", "pty"},
		{"ssh -tt harmless command", tty("id -u"), "id -u", "pty"},
		{"bash over stdin", st.sshArgv("bash"), "bash", "reads commands from the client"},
		{"sh -s", st.sshArgv("sh -s"), "sh -s", "reads commands"},
		{"env bash", st.sshArgv("env bash"), "env bash", "reads commands"},
		{"exec /bin/sh -i", st.sshArgv("exec /bin/sh -i"), "exec /bin/sh -i", "reads commands"},
		{"quoted shell name", st.sshArgv("b''ash"), "b''ash", "reads commands"},
		{"zsh", st.sshArgv("zsh"), "zsh", "reads commands"},
		{"bash -c exec bash", st.sshArgv("bash -c 'exec bash'"), "bash -c 'exec bash'", "reads commands"},
		{"computed program name", st.sshArgv("$SHELL"), "$SHELL", "computed"},
		{"shell at the end of a pipe", st.sshArgv("cat | sh"), "cat | sh", "reads commands"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			marker := filepath.Join(d, "pwned-"+strconv.Itoa(i))
			before := st.started("command")
			cmd := exec.Command(interlockBin, append([]string{"run", "-c", e.cfgPath, "--"}, c.argv...)...)
			cmd.Stdin = strings.NewReader("touch " + marker + "\nexit\n")
			out, stderr, code := runCmd(t, cmd)
			if code != 126 {
				t.Fatalf("exit %d, want 126\nstdout: %s\nstderr: %s", code, out, stderr)
			}
			// Nothing ran: wait a little for a shell that might still.
			time.Sleep(100 * time.Millisecond)
			absent(t, marker)
			noCommand(t, st, before)
			wantRefused(t, e, c.cmd, "no-shell", "judged as a shell", stderr)
			if strings.HasPrefix(c.name, "ssh -tt") {
				// The terminal's replay shows the refusal the client saw.
				if r := replay(t, e, c.cmd); !strings.Contains(r, "refused by policy (no-shell)") {
					t.Errorf("the replay does not show the refusal: %q", r)
				}
			}
			for _, q := range execRequests(e, c.cmd) {
				if q.Command == c.cmd && !strings.Contains(q.Decision.Reason, c.why) {
					t.Errorf("reason %q does not say %q", q.Decision.Reason, c.why)
				}
			}
		})
	}
}

// TestSSHAdversarialExecTunnel: SSH or sftp carried inside an exec ends
// the channel, journaled with rule tunnel, unless the target allows it.
func TestSSHAdversarialExecTunnel(t *testing.T) {
	requireTools(t, "bash")
	st := startSSHD(t)
	d := st.dir
	e := newSSHEnv(t, st, sshTargetOpts{})
	dial := "exec 3<>/dev/tcp/127.0.0.3/" + strconv.Itoa(st.port)

	// tunnelled checks one new tunnel record holding reason and the
	// recorded bytes holding evidence.
	seen := 0
	tunnelled := func(t *testing.T, reason string) {
		t.Helper()
		recs := tunnelRecords(e)
		if len(recs) != seen+1 {
			t.Fatalf("%d new tunnel records, want 1: %+v", len(recs)-seen, recs)
		}
		r := recs[seen]
		seen = len(recs)
		if r.Decision.Action != model.Deny || r.Decision.Rule != "tunnel" || !strings.Contains(r.Decision.Reason, reason) {
			t.Errorf("tunnel journaled as %+v, want rule tunnel saying %q", r, reason)
		}
	}

	for _, c := range []struct{ name, cmd, reason string }{
		{"server banner on stdout", "bash -c '" + dial + "; timeout 10 cat <&3'", "the target's output"},
		{"server banner on stderr", "bash -c '" + dial + "; timeout 10 cat <&3 >&2'", "the target's error output"},
		{"banner after output, split across reads", "printf 'hello\\nworld\\n'; sleep 0.3; printf 'SSH-2'; sleep 0.3; printf '.0-x\\r\\n'; sleep 1", "SSH identification string"},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, stderr, _ := e.runUnder(st.sshArgv(c.cmd)...)
			if strings.Contains(out+stderr, "SSH-2.0-") {
				t.Errorf("the banner reached the client:\nstdout: %q\nstderr: %q", out, stderr)
			}
			if !strings.Contains(stderr, "channel ended by policy (tunnel)") {
				t.Errorf("the client was not told: %q", stderr)
			}
			tunnelled(t, c.reason)
			if strings.HasPrefix(c.name, "banner after") && !strings.Contains(out, "hello\nworld\n") {
				t.Errorf("the output before the banner did not pass: %q", out)
			}
		})
	}

	t.Run("relay on a terminal: the replay shows the end", func(t *testing.T) {
		cmd := "echo before-relay; " + dial + "; timeout 10 cat <&3"
		argv := st.sshArgv(cmd)
		argv = append(argv[:1], append([]string{"-tt"}, argv[1:]...)...)
		out, stderr, _ := e.runUnder(argv...)
		if strings.Contains(out+stderr, "SSH-2.0-") || !strings.Contains(out, "before-relay") {
			t.Errorf("stdout %q stderr %q", out, stderr)
		}
		tunnelled(t, "SSH identification string")
		r := replay(t, e, cmd)
		if !strings.Contains(r, "before-relay") || !strings.Contains(r, "channel ended by policy (tunnel)") {
			t.Errorf("the replay does not show the relay's end: %q", r)
		}
	})

	t.Run("ssh through a relay (ProxyCommand)", func(t *testing.T) {
		marker := filepath.Join(d, "pwned-relay")
		relay := shellQuote(st.sshArgv("bash -c '" + dial + "; cat <&3 & exec cat >&3'"))
		inner := append([]string{"ssh", "-o", "ProxyCommand=" + relay}, st.clientOpts("")...)
		// The relayed session logs in with a key the target knows (the
		// adversary has one); interlock never sees it.
		inner = append(inner, "-i", st.credKey.Path, "-p", strconv.Itoa(st.port), "root@127.0.0.3", "touch "+marker)
		out, stderr, code := e.runUnder(inner...)
		if code == 0 {
			t.Fatalf("the relayed ssh succeeded\nstdout: %s\nstderr: %s", out, stderr)
		}
		absent(t, marker)
		tunnelled(t, "SSH identification string")
		// The bytes that gave it away are in the journal.
		var recorded string
		for _, en := range e.entries() {
			if en.Kind == model.KindSSHIO {
				recorded += string(payload(e, en.Seq))
			}
		}
		if !strings.Contains(recorded, "SSH-2.0-OpenSSH") {
			t.Errorf("the journal lacks the banner bytes")
		}
	})

	t.Run("sftp handshake into a disguised sftp-server", func(t *testing.T) {
		marker := filepath.Join(d, "pwned-sftp")
		self, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		// Quotes hide the name from interlock's sftp-server recognition:
		// relayed as an exec, it is scanned.
		disguised := "exec " + strings.TrimSuffix(sshtest.SFTPServer, "r") + "''r"
		rc := &rawClient{t: t}
		rc.cmd = exec.Command(interlockBin, "run", "-c", e.cfgPath, "--", self, sftpRawHelper, st.addr(), st.hostKey.Authorized(), st.clientKey.Path, disguised)
		rc.cmd.Stderr = &rc.err
		rc.w, _ = rc.cmd.StdinPipe()
		rc.r, _ = rc.cmd.StdoutPipe()
		if err := rc.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { stopRun(rc.cmd) })
		// INIT and an OPEN that creates the marker, in one write.
		rc.send(sftpPkt(1, 0, uint32(3)), sftpPkt(sshFxpOpen, 1, marker, uint32(0x1a), uint32(0)))
		if typ, _, _, ok := rc.reply(); ok {
			t.Errorf("the disguised sftp-server answered (type %d)", typ)
		}
		rc.end()
		absent(t, marker)
		tunnelled(t, "sftp handshake")
		if qs := execRequests(e, "sftp-serve"); len(qs) != 1 || qs[0].Decision.Action != model.Allow {
			t.Errorf("the exec itself journaled as %+v", qs)
		}
	})

	t.Run("exec.tunnels allow lets it through", func(t *testing.T) {
		open := newSSHEnv(t, st, sshTargetOpts{extra: "exec: {tunnels: allow}"})
		out, stderr, code := open.runUnder(st.sshArgv("bash -c '" + dial + "; head -1 <&3'")...)
		if code != 0 || !strings.HasPrefix(out, "SSH-2.0-") {
			t.Fatalf("exit %d\nstdout: %q\nstderr: %s", code, out, stderr)
		}
		if recs := tunnelRecords(open); len(recs) != 0 {
			t.Errorf("tunnel records under tunnels: allow: %+v", recs)
		}
	})
}
