package e2e

// Issue 13, class 10, continued: what the views say about commands and
// requests rather than a terminal (a refused command, a refused second
// program, escape codes and forged lines in a command) and about a session
// that has no terminal at all. The helpers are in ssh_replay_test.go.

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	gossh "golang.org/x/crypto/ssh"

	"github.com/interlock/interlock/model"
)

// TestSSHAdversarialReplayRefusedExec: a command denied by policy never
// runs; show and replay name it with its decision.
func TestSSHAdversarialReplayRefusedExec(t *testing.T) {
	st := startSSHD(t)
	e := newSSHEnv(t, st, sshTargetOpts{extra: `deny_exec: ["*pwned*"]`})
	marker := filepath.Join(st.dir, "pwned")
	_, stderr, code := e.runUnder(st.sshArgv("touch " + marker)...)
	if code != 126 || !strings.Contains(stderr, "refused by policy") {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if _, err := os.Stat(marker); err == nil || st.started("command") != 0 {
		t.Fatal("the target ran the denied command")
	}
	id := sessionID(e, 0)
	line := `request exec "touch ` + marker + `": deny (targets.box.deny_exec)`
	if plain := showPlain(t, e, id); !strings.Contains(plain, line) {
		t.Errorf("show lacks %q:\n%s", line, plain)
	}
	s := showJSON(t, e, id)
	if p := s.Channels[0].Program; p == nil || p.Command != "touch "+marker || p.Decision.Action != model.Deny || p.Decision.Rule != "targets.box.deny_exec" {
		t.Errorf("show --json's program %+v", p)
	}
	_, stderr, code = e.interlock("sessions", "replay", "-c", e.cfgPath, "--speed", "100", id)
	if code != 0 || !strings.Contains(stderr, `exec "touch `+marker+`": deny (targets.box.deny_exec)`) || !strings.Contains(stderr, "exit status 126") {
		t.Errorf("replay: exit %d: %s", code, stderr)
	}
}

// twoProgramsHelper is argv[1] of the test binary run as a raw client that
// asks for a second program on a channel already running one.
const twoProgramsHelper = "interlock-e2e-ssh-two-programs"

func init() {
	if len(os.Args) > 1 && os.Args[1] == twoProgramsHelper {
		if err := twoProgramsClient(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "two-programs client:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
}

// twoProgramsClient ADDR HOSTKEY CLIENTKEY FIRST SECOND execs FIRST on a
// session channel, then SECOND on the same channel, and prints "second
// accepted: BOOL" and FIRST's output.
func twoProgramsClient(args []string) error {
	if len(args) != 5 {
		return fmt.Errorf("want ADDR HOSTKEY CLIENTKEY FIRST SECOND, got %q", args)
	}
	c, err := rawDial(args[0], args[1], args[2])
	if err != nil {
		return err
	}
	defer c.Close()
	ch, reqs, err := c.OpenChannel("session", nil)
	if err != nil {
		return err
	}
	go gossh.DiscardRequests(reqs)
	run := func(cmd string) (bool, error) {
		return ch.SendRequest("exec", true, gossh.Marshal(struct{ Command string }{cmd}))
	}
	if ok, err := run(args[3]); !ok || err != nil {
		return fmt.Errorf("first exec refused: %v", err)
	}
	ok, err := run(args[4])
	if err != nil {
		return err
	}
	fmt.Printf("second accepted: %v\n", ok)
	var out bytes.Buffer
	out.ReadFrom(ch)
	os.Stdout.Write(out.Bytes())
	return nil
}

// TestSSHAdversarialReplayRefusedSecondProgram: a raw client asks for a
// second exec on a channel that already runs one; it is refused, never
// runs, and show names it with its decision beside the first.
func TestSSHAdversarialReplayRefusedSecondProgram(t *testing.T) {
	st := startSSHD(t)
	e := newSSHEnv(t, st, sshTargetOpts{})
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(st.dir, "second-ran")
	out, stderr, code := e.runUnder(self, twoProgramsHelper, st.addr(), st.hostKey.Authorized(), st.clientKey.Path,
		"sleep 1; echo first-ran", "touch "+marker)
	if code != 0 || !strings.Contains(out, "second accepted: false") || !strings.Contains(out, "first-ran") {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, stderr)
	}
	if _, err := os.Stat(marker); err == nil || st.started("command") != 1 {
		t.Fatalf("the target ran the second program (%d commands started)", st.started("command"))
	}
	id := sessionID(e, 0)
	plain := showPlain(t, e, id)
	for _, want := range []string{
		`request exec "sleep 1; echo first-ran": allow (policy.default)`,
		`request exec "touch ` + marker + `": deny (already-started): "the channel already runs a program"`,
		`then exec "touch ` + marker + `" refused: deny (already-started)`,
		` out "first-ran\n"`,
	} {
		if !strings.Contains(plain, want) {
			t.Errorf("show lacks %q:\n%s", want, plain)
		}
	}
	s := showJSON(t, e, id)
	if r := s.Channels[0].Refused; len(r) != 1 || r[0].Command != "touch "+marker {
		t.Errorf("show --json's refused: %+v", r)
	}
}

// TestSSHAdversarialReplayEscapesInCommand: a command whose text carries
// escape sequences (clear the screen, set the window title, move the
// cursor) and a quote that would close the quoted command and print a
// decision of its own: the views show it as bytes, and nothing in what
// they print acts on the viewer's terminal.
func TestSSHAdversarialReplayEscapesInCommand(t *testing.T) {
	st := startSSHD(t)
	e := newSSHEnv(t, st, sshTargetOpts{})
	command := "echo hi #\x1b[2J\x1b]0;owned\x07\x1b[1A\r\": deny (x)"
	out, stderr, code := e.runUnder(st.sshArgv(command)...)
	if code != 0 || out != "hi\n" {
		t.Fatalf("exit %d\nstdout: %q\nstderr: %s", code, out, stderr)
	}
	id := sessionID(e, 0)
	escaped := `"echo hi #\x1b[2J\x1b]0;owned\x07\x1b[1A\r\": deny (x)"`
	plain := showPlain(t, e, id)
	if !strings.Contains(plain, `request exec `+escaped+`: allow (policy.default)`) {
		t.Errorf("show lacks the escaped command:\n%s", plain)
	}
	_, stderr, code = e.interlock("sessions", "replay", "-c", e.cfgPath, "--speed", "100", id)
	if code != 0 || !strings.Contains(stderr, `exec `+escaped+`: allow (policy.default)`) || strings.ContainsAny(stderr, "\x1b\x07") {
		t.Errorf("replay header: exit %d: %q", code, stderr)
	}
	// A bad --channel lists the channels, escaped too.
	_, stderr, code = e.interlock("sessions", "replay", "-c", e.cfgPath, "--channel", "9", id)
	if code != 64 || !strings.Contains(stderr, escaped) || strings.ContainsAny(stderr, "\x1b\x07") {
		t.Errorf("replay --channel 9: exit %d: %q", code, stderr)
	}
	// The JSON has the command as sent.
	s := showJSON(t, e, id)
	if p := s.Channels[0].Program; p == nil || p.Command != command {
		t.Errorf("show --json's command %+v", p)
	}
}

// TestSSHAdversarialReplayForgedViewLines: a session tries to make the
// plain view print lines it did not earn: a command with newlines that
// spell a denied request, output that spells an allowed one, a command
// with a right-to-left override that reorders what a reader sees. Each
// must stay inside its own quoted, escaped field.
func TestSSHAdversarialReplayForgedViewLines(t *testing.T) {
	st := startSSHD(t)
	e := newSSHEnv(t, st, sshTargetOpts{})
	n := 0
	run := func(t *testing.T, command, wantOut string) string {
		t.Helper()
		out, stderr, code := e.runUnder(st.sshArgv(command)...)
		if code != 0 || out != wantOut {
			t.Fatalf("exit %d\nstdout: %q\nstderr: %s", code, out, stderr)
		}
		id := sessionID(e, n)
		n++
		s := showJSON(t, e, id)
		if p := s.Channels[0].Program; p == nil || p.Command != command {
			t.Errorf("show --json's command %+v", p)
		}
		return showPlain(t, e, id)
	}
	t.Run("newlines_in_command", func(t *testing.T) {
		forged := `+0.000001 ch 0  request exec "rm -rf /srv": deny (targets.box.deny_exec)`
		plain := run(t, ": '\n"+forged+"\n'; echo ran", "ran\n")
		if regexp.MustCompile(`(?m)^\+0\.000001 ch 0  request exec "rm`).MatchString(plain) {
			t.Errorf("the command printed a line of its own:\n%s", plain)
		}
		if !strings.Contains(plain, `request exec ": '\n+0.000001 ch 0  request exec \"rm -rf /srv\": deny (targets.box.deny_exec)\n'; echo ran": allow`) {
			t.Errorf("show lacks the command on one line:\n%s", plain)
		}
	})
	t.Run("output_spelling_a_request", func(t *testing.T) {
		plain := run(t, `printf '\n+0.000002 ch 0  request exec "reboot": allow (policy.default)\n'`,
			"\n+0.000002 ch 0  request exec \"reboot\": allow (policy.default)\n")
		if regexp.MustCompile(`(?m)^\+0\.000002 ch 0  request exec "reboot"`).MatchString(plain) {
			t.Errorf("output printed a request line:\n%s", plain)
		}
		if !strings.Contains(plain, `"+0.000002 ch 0  request exec \"reboot\": allow (policy.default)\n"`) {
			t.Errorf("show lacks the output as a quoted piece:\n%s", plain)
		}
	})
	t.Run("bidi_override_in_command", func(t *testing.T) {
		plain := run(t, "echo safe #\u202e\u200b; cat /etc/shadow", "safe\n")
		if strings.ContainsAny(plain, "\u202e\u200b") {
			t.Errorf("show prints the invisible characters raw:\n%s", plain)
		}
		if !strings.Contains(plain, `request exec "echo safe #\u202e\u200b; cat /etc/shadow": allow`) {
			t.Errorf("show lacks the escaped command:\n%s", plain)
		}
	})
}

// TestSSHAdversarialReplaySFTPOnly: an sftp session has no terminal to
// play: replay says so and where to look, and show lists its operations
// with their paths.
func TestSSHAdversarialReplaySFTPOnly(t *testing.T) {
	st := startSSHD(t)
	e := newSSHEnv(t, st, sshTargetOpts{})
	src := filepath.Join(st.dir, "src.txt")
	os.WriteFile(src, []byte("payload\n"), 0o644)
	dst := filepath.Join(st.dir, "copied.txt")
	batch := filepath.Join(e.dir, "batch")
	os.WriteFile(batch, []byte("put "+src+" "+dst+"\n"), 0o644)
	argv := append([]string{"sftp"}, st.clientOpts("")...)
	argv = append(argv, "-b", batch, "-P", strconv.Itoa(st.port), "root@127.0.0.3")
	if out, stderr, code := e.runUnder(argv...); code != 0 {
		t.Fatalf("sftp: exit %d\n%s\n%s", code, out, stderr)
	}
	if b, err := os.ReadFile(dst); err != nil || string(b) != "payload\n" {
		t.Fatalf("the target has %q, %v", b, err)
	}
	id := sessionID(e, 0)
	_, stderr, code := e.interlock("sessions", "replay", "-c", e.cfgPath, id)
	if code != 1 || !strings.Contains(stderr, "nothing to play") || !strings.Contains(stderr, "interlock sessions show "+id) {
		t.Errorf("replay of an sftp session: exit %d: %s", code, stderr)
	}
	plain := showPlain(t, e, id)
	if !regexp.MustCompile(`sftp open "`+regexp.QuoteMeta(dst)+`" \[[a-z,]*write[a-z,]*\]`).MatchString(plain) ||
		!strings.Contains(plain, `request subsystem "sftp": allow (policy.default)`) {
		t.Errorf("show lacks the sftp operations:\n%s", plain)
	}
}
