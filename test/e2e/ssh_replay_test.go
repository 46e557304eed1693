package e2e

// Issue 13, class 10: replay that shows what was done. Real ssh clients
// (and a raw x/crypto/ssh client) run under `interlock run` against a real
// sshd; each case does something a terminal picture would hide or lose (a
// second shell over one connection, a password typed with echo off, a
// command line erased before Enter, a line wiped by escape codes, bytes
// that are not UTF-8, a refused command, escape codes in a command) and
// checks what happened on the target against what `sessions replay`,
// `sessions export` and `sessions show` say.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/interlock/interlock/internal/testkit"
	"github.com/interlock/interlock/model"
)

// tmuxTerm is a tmux server whose windows are the terminals a person
// would type in.
type tmuxTerm struct {
	t    *testing.T
	sock string
}

func newTmux(t *testing.T, dir string) *tmuxTerm {
	t.Helper()
	requireTools(t, "tmux")
	tm := &tmuxTerm{t: t, sock: filepath.Join(dir, "tmux.sock")}
	t.Cleanup(func() { exec.Command("tmux", "-S", tm.sock, "kill-server").Run() })
	return tm
}

func (tm *tmuxTerm) run(args ...string) string {
	tm.t.Helper()
	out, err := exec.Command("tmux", append([]string{"-S", tm.sock}, args...)...).CombinedOutput()
	if err != nil {
		tm.t.Fatalf("tmux %v: %v: %s", args, err, out)
	}
	return string(out)
}

// open runs cmdline in a new 100x30 window named name; the file done is
// created when it ends.
func (tm *tmuxTerm) open(name, cmdline, done string) {
	tm.t.Helper()
	cmdline += "; touch " + done + "; sleep 60"
	if _, err := os.Stat(tm.sock); err != nil {
		tm.run("new-session", "-d", "-s", "s", "-n", name, "-x", "100", "-y", "30", cmdline)
		return
	}
	tm.run("new-window", "-d", "-t", "s", "-n", name, cmdline)
}

func (tm *tmuxTerm) screen(name string) string {
	tm.t.Helper()
	return tm.run("capture-pane", "-p", "-t", "s:"+name)
}

// waitFor waits until the window shows s.
func (tm *tmuxTerm) waitFor(name, s string) {
	tm.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if strings.Contains(tm.screen(name), s) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	tm.t.Fatalf("window %s never showed %q:\n%s", name, s, tm.screen(name))
}

// keys types into the window (tmux key names: Enter, C-u ...); -l types
// literally.
func (tm *tmuxTerm) keys(name string, keys ...string) {
	tm.t.Helper()
	tm.run(append([]string{"send-keys", "-t", "s:" + name}, keys...)...)
}

// shownSession is `interlock sessions show --json`.
type shownSession struct {
	Session string `json:"session"`
	Events  []struct {
		Seq            uint64          `json:"seq"`
		Kind           string          `json:"kind"`
		Channel        *uint32         `json:"channel"`
		Stream         string          `json:"stream"`
		Data           json.RawMessage `json:"data"`
		Payload        []byte          `json:"payload_b64"`
		PayloadDeleted bool            `json:"payload_deleted"`
		Text           *string         `json:"text"`
	} `json:"events"`
	Channels []struct {
		Channel uint32             `json:"channel"`
		PTY     *model.SSHRequest  `json:"pty"`
		Program *model.SSHRequest  `json:"program"`
		Refused []model.SSHRequest `json:"refused"`
		Exit    *model.SSHExit     `json:"exit"`
		Bytes   map[string]int64   `json:"bytes"`
	} `json:"channels"`
}

func showJSON(t *testing.T, e *env, id string) shownSession {
	t.Helper()
	out, stderr, code := e.interlock("sessions", "show", "-c", e.cfgPath, "--json", id)
	if code != 0 {
		t.Fatalf("sessions show --json: exit %d: %s", code, stderr)
	}
	var s shownSession
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("sessions show --json: %v\n%s", err, out)
	}
	if s.Session != id {
		t.Errorf("show --json is about %q, want %q", s.Session, id)
	}
	return s
}

// stream is the exact bytes of one stream of one channel, from show --json.
func (s shownSession) stream(ch uint32, stream string) []byte {
	var b []byte
	for _, ev := range s.Events {
		if ev.Kind == model.KindSSHIO && ev.Channel != nil && *ev.Channel == ch && ev.Stream == stream {
			b = append(b, ev.Payload...)
		}
	}
	return b
}

func showPlain(t *testing.T, e *env, id string, args ...string) string {
	t.Helper()
	out, stderr, code := e.interlock(append([]string{"sessions", "show", "-c", e.cfgPath, id}, args...)...)
	if code != 0 {
		t.Fatalf("sessions show: exit %d: %s", code, stderr)
	}
	// The plain view is for a terminal: nothing in it may act on one.
	if i := strings.IndexFunc(out, func(r rune) bool { return r < 0x20 && r != '\n' || r == 0x7f || r == 0xfffd }); i >= 0 {
		t.Errorf("sessions show prints a raw control byte at %d: %q", i, out[max(0, i-40):min(len(out), i+40)])
	}
	return out
}

// castStreams reads an asciicast file: its header's size and the text of
// its output and input events.
func castStreams(t *testing.T, b []byte) (width int, out, in string) {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	var hdr struct{ Version, Width int }
	if err := json.Unmarshal([]byte(lines[0]), &hdr); err != nil || hdr.Version != 2 {
		t.Fatalf("cast header %s: %v", lines[0], err)
	}
	var o, i strings.Builder
	for _, l := range lines[1:] {
		var ev []any
		if err := json.Unmarshal([]byte(l), &ev); err != nil || len(ev) != 3 {
			t.Fatalf("cast event %s: %v", l, err)
		}
		switch ev[1] {
		case "o":
			o.WriteString(ev[2].(string))
		case "i":
			i.WriteString(ev[2].(string))
		}
	}
	return hdr.Width, o.String(), i.String()
}

// TestSSHAdversarialReplayTwoShellsOneConnection: a second pty shell over
// the connection of an ssh ControlMaster is a second channel of one
// session, not a second session; replay, export and show cover both.
func TestSSHAdversarialReplayTwoShellsOneConnection(t *testing.T) {
	st := startSSHD(t)
	e := newSSHEnv(t, st, sshTargetOpts{})
	tm := newTmux(t, e.dir)
	ctl := filepath.Join(e.dir, "ctl")
	master := append([]string{interlockBin, "run", "-c", e.cfgPath, "--"},
		st.sshArgv("-o", "ControlMaster=yes", "-o", "ControlPath="+ctl)...)
	done1, done2 := filepath.Join(e.dir, "done1"), filepath.Join(e.dir, "done2")
	tm.open("one", shellQuote(master), done1)
	tm.waitFor("one", "~#")
	// The second shell rides the master's connection (a unix socket):
	// it opens no connection of its own, so it needs no `interlock run`.
	tm.open("two", shellQuote(st.sshArgv("-o", "ControlMaster=no", "-o", "ControlPath="+ctl)), done2)
	tm.waitFor("two", "~#")
	tm.keys("one", "echo first-$((10+1))", "Enter")
	tm.waitFor("one", "first-11")
	tm.keys("two", "echo second-$((20+2))", "Enter")
	tm.waitFor("two", "second-22")
	tm.keys("two", "exit", "Enter")
	waitFile(t, done2)
	tm.keys("one", "exit", "Enter")
	waitFile(t, done1)

	// The target: one login, two shells in a pty.
	log, _ := os.ReadFile(st.log)
	if n := strings.Count(string(log), "Accepted publickey"); n != 1 {
		t.Errorf("sshd accepted %d logins, want 1", n)
	}
	if n := st.started("shell on pts"); n != 2 {
		t.Errorf("sshd started %d shells in a pty, want 2", n)
	}
	// The journal: one session, two pty channels.
	if n := len(sshOpens(e)); n != 1 {
		t.Fatalf("%d ssh sessions journaled, want 1", n)
	}
	id := sessionID(e, 0)
	var ptys []uint32
	for _, q := range entriesOf[model.SSHRequest](e, model.KindSSHRequest) {
		if q.Type == "pty-req" {
			ptys = append(ptys, q.Channel)
		}
	}
	if len(ptys) != 2 || ptys[0] == ptys[1] {
		t.Fatalf("pty-req journaled on channels %v, want two", ptys)
	}
	first, second := strconv.Itoa(int(ptys[0])), strconv.Itoa(int(ptys[1]))

	// replay plays both, one after the other, each with a header.
	replay, stderr, code := e.interlock("sessions", "replay", "-c", e.cfgPath, "--speed", "100", id)
	if code != 0 {
		t.Fatalf("replay: exit %d: %s", code, stderr)
	}
	i1, i2 := strings.Index(replay, "first-11\r\n"), strings.Index(replay, "second-22\r\n")
	if i1 < 0 || i2 < 0 || i2 < i1 {
		t.Errorf("replay lacks a shell's output, or plays them out of order (%d, %d):\n%q", i1, i2, replay)
	}
	for _, h := range []string{"channel " + first + " (1 of 2): pty", "channel " + second + " (2 of 2): pty"} {
		if !strings.Contains(stderr, h) {
			t.Errorf("replay's headers lack %q: %q", h, stderr)
		}
	}
	// --channel plays one.
	replay, stderr, code = e.interlock("sessions", "replay", "-c", e.cfgPath, "--speed", "100", "--channel", second, id)
	if code != 0 || !strings.Contains(replay, "second-22\r\n") || strings.Contains(replay, "first-11") {
		t.Errorf("replay --channel %s: exit %d: %s\n%q", second, code, stderr, replay)
	}
	// export: one cast per channel; without --channel or --out-dir it
	// says how to choose rather than silently writing one.
	_, stderr, code = e.interlock("sessions", "export", "-c", e.cfgPath, id)
	if code != 64 || !strings.Contains(stderr, "2 terminal channels") || !strings.Contains(stderr, "--out-dir") {
		t.Errorf("export of a two-shell session: exit %d: %s", code, stderr)
	}
	dir := filepath.Join(e.dir, "casts")
	os.Mkdir(dir, 0o700)
	_, stderr, code = e.interlock("sessions", "export", "-c", e.cfgPath, "--out-dir", dir, id)
	if code != 0 {
		t.Fatalf("export --out-dir: exit %d: %s", code, stderr)
	}
	for ch, want := range map[string][2]string{first: {"first-11", "second-22"}, second: {"second-22", "first-11"}} {
		b, err := os.ReadFile(filepath.Join(dir, id+"-ch"+ch+".cast"))
		if err != nil {
			t.Fatalf("channel %s's cast: %v", ch, err)
		}
		w, out, in := castStreams(t, b)
		if w != 100 || !strings.Contains(out, want[0]+"\r\n") || strings.Contains(out, want[1]) || !strings.Contains(in, "exit\r") {
			t.Errorf("channel %s's cast (width %d) output %q input %q", ch, w, out, in)
		}
	}
	// The evidence bundle has a cast of each: the first channel's as
	// sessions/ID.cast, the second's beside it, and it verifies.
	bundle := filepath.Join(t.TempDir(), "bundle.tar.gz")
	if _, stderr, code := e.interlock("journal", "export", "-c", e.cfgPath, "-q", "--out", bundle); code != 0 {
		t.Fatalf("journal export: exit %d: %s", code, stderr)
	}
	files := testkit.ReadTarGz(t, bundle)
	for name, want := range map[string]string{"sessions/" + id + ".cast": "first-11", "sessions/" + id + "-ch" + second + ".cast": "second-22"} {
		b, ok := files[name]
		if !ok {
			t.Errorf("the bundle has no %s: %v", name, keys(files))
			continue
		}
		if _, out, _ := castStreams(t, b); !strings.Contains(out, want) {
			t.Errorf("%s does not play %s: %q", name, want, out)
		}
	}
	if out, stderr, code := e.interlock("journal", "verify", "--bundle", bundle, "--pubkey", filepath.Join(e.dir, "state", "journal.pub")); code != 0 {
		t.Errorf("journal verify --bundle: exit %d: %s %s", code, out, stderr)
	}
	// show lists both pty channels with their shells.
	plain := showPlain(t, e, id)
	for _, ch := range []string{first, second} {
		if !regexp.MustCompile(`(?m)^  ch ` + ch + ` session: pty "[^"]*" 100x\d+, shell: allow \(policy\.default\)`).MatchString(plain) {
			t.Errorf("show's channel list lacks the pty shell on channel %s:\n%s", ch, plain)
		}
	}
}

// TestSSHAdversarialReplayExecChannel: a session that never asked for a
// pty (`ssh host cmd`) still replays and exports: its exec channel's
// output and stderr are there, under a header naming the command.
func TestSSHAdversarialReplayExecChannel(t *testing.T) {
	st := startSSHD(t)
	e := newSSHEnv(t, st, sshTargetOpts{})
	out, stderr, code := e.runUnder(st.sshArgv("echo exec-out-$((6*7)); echo exec-err-$((7*8)) >&2; exit 5")...)
	if code != 5 || out != "exec-out-42\n" || !strings.Contains(stderr, "exec-err-56") {
		t.Fatalf("exit %d\nstdout: %q\nstderr: %s", code, out, stderr)
	}
	if st.started("command") != 1 {
		t.Errorf("sshd started %d commands", st.started("command"))
	}
	id := sessionID(e, 0)
	replay, stderr, code := e.interlock("sessions", "replay", "-c", e.cfgPath, "--speed", "100", id)
	if code != 0 {
		t.Fatalf("replay: exit %d: %s", code, stderr)
	}
	// Without a pty the program wrote "\n"; replayed on a terminal it gets
	// the "\r" a pty would have added.
	if !strings.Contains(replay, "exec-out-42\r\n") || !strings.Contains(replay, "exec-err-56\r\n") {
		t.Errorf("replay %q", replay)
	}
	if !strings.Contains(stderr, `(1 of 1): exec "echo exec-out-$((6*7)); echo exec-err-$((7*8)) >&2; exit 5": allow (policy.default), exit status 5`) {
		t.Errorf("replay header %q", stderr)
	}
	b, stderr, code := e.interlock("sessions", "export", "-c", e.cfgPath, id)
	if code != 0 {
		t.Fatalf("export: exit %d: %s", code, stderr)
	}
	if _, castOut, _ := castStreams(t, []byte(b)); !strings.Contains(castOut, "exec-out-42\r\n") {
		t.Errorf("cast output %q", castOut)
	}
	s := showJSON(t, e, id)
	if len(s.Channels) != 1 {
		t.Fatalf("show: %d channels", len(s.Channels))
	}
	c := s.Channels[0]
	if c.PTY != nil || c.Program == nil || c.Program.Type != "exec" || c.Exit == nil || c.Exit.ExitStatus == nil || *c.Exit.ExitStatus != 5 {
		t.Errorf("show's channel %+v", c)
	}
	if got := string(s.stream(c.Channel, "o")); got != "exec-out-42\n" {
		t.Errorf("stdout bytes %q", got)
	}
	if got := string(s.stream(c.Channel, "e")); got != "exec-err-56\n" {
		t.Errorf("stderr bytes %q", got)
	}
	plain := showPlain(t, e, id)
	for _, want := range []string{` out "exec-out-42\n"`, ` err "exec-err-56\n"`, ` exit status 5`} {
		if !strings.Contains(plain, want) {
			t.Errorf("show lacks %q:\n%s", want, plain)
		}
	}
}

// TestSSHAdversarialReplayInteractive: in one pty shell, things a screen
// hides: a password typed with echo off, a command line typed and erased
// before Enter (it never ran), a line printed and wiped by escape codes,
// and output that is not UTF-8. Each subtest checks that the target and
// the screen behaved as a terminal does, and that the views show it.
func TestSSHAdversarialReplayInteractive(t *testing.T) {
	st := startSSHD(t)
	e := newSSHEnv(t, st, sshTargetOpts{})
	tm := newTmux(t, e.dir)
	done := filepath.Join(e.dir, "done")
	tm.open("w", shellQuote(append([]string{interlockBin, "run", "-c", e.cfgPath, "--"}, st.sshArgv()...)), done)
	tm.waitFor("w", "~#")

	const password = "s3cr3t-Pass"
	tm.keys("w", "read -s -p pw: PW; echo; echo got-${#PW}", "Enter")
	tm.waitFor("w", "pw:")
	tm.keys("w", "-l", password)
	tm.keys("w", "Enter")
	tm.waitFor("w", fmt.Sprintf("got-%d", len(password)))
	passwordScreen := tm.screen("w")

	marker := filepath.Join(st.dir, "erased-marker")
	tm.keys("w", "-l", "touch "+marker)
	tm.waitFor("w", "erased-marker")
	tm.keys("w", "C-u")
	tm.keys("w", "echo shown-$((2+2))", "Enter")
	tm.waitFor("w", "shown-4")

	tm.keys("w", `printf '%s-%s\r\033[2K' HIDDEN LINE; echo after-$((3+3))`, "Enter")
	tm.waitFor("w", "after-6")
	wipedScreen := tm.screen("w")

	tm.keys("w", `printf 'bin:\377\376:end\n'`, "Enter")
	tm.waitFor("w", ":end")
	tm.keys("w", "exit", "Enter")
	waitFile(t, done)

	id := sessionID(e, 0)
	s := showJSON(t, e, id)
	if len(s.Channels) != 1 || s.Channels[0].PTY == nil {
		t.Fatalf("show's channels: %+v", s.Channels)
	}
	ch := s.Channels[0].Channel
	typed, printed := string(s.stream(ch, "i")), string(s.stream(ch, "o"))
	plain := showPlain(t, e, id)
	replay, stderr, code := e.interlock("sessions", "replay", "-c", e.cfgPath, "--speed", "100", id)
	if code != 0 {
		t.Fatalf("replay: exit %d: %s", code, stderr)
	}
	replayInput, stderr, code := e.interlock("sessions", "replay", "-c", e.cfgPath, "--speed", "100", "--input", id)
	if code != 0 {
		t.Fatalf("replay --input: exit %d: %s", code, stderr)
	}
	// What --input marked as typed, joined up.
	var marked strings.Builder
	for _, m := range regexp.MustCompile(`\[input: ((?:[^\]\\]|\\.)*)\]`).FindAllStringSubmatch(replayInput, -1) {
		marked.WriteString(m[1])
	}

	t.Run("echo_off_input", func(t *testing.T) {
		// The terminal never echoed it, so neither screen nor replay shows
		// it; the typed bytes are recorded and shown marked as input.
		if strings.Contains(passwordScreen, password) || strings.Contains(printed, password) || strings.Contains(replay, password) {
			t.Errorf("the password was echoed: the test typed it with echo on")
		}
		if !strings.Contains(typed, password+"\r") {
			t.Errorf("typed bytes lack the password: %q", typed)
		}
		if !strings.Contains(marked.String(), password+`\r`) {
			t.Errorf("replay --input does not show the password marked as input: %q", marked.String())
		}
		if !strings.Contains(plainStream(plain, "in"), password+`\r`) {
			t.Errorf("show lacks the typed password:\n%s", plain)
		}
		cast, stderr, code := e.interlock("sessions", "export", "-c", e.cfgPath, id)
		if code != 0 {
			t.Fatalf("export: exit %d: %s", code, stderr)
		}
		if _, _, in := castStreams(t, []byte(cast)); !strings.Contains(in, password+"\r") {
			t.Errorf("the cast's input events lack the password: %q", in)
		}
	})

	t.Run("erased_command_line", func(t *testing.T) {
		// Typed, then erased with ^U: the shell never ran it.
		if _, err := os.Stat(marker); err == nil {
			t.Fatal("the target ran the erased command")
		}
		if !strings.Contains(typed, "touch "+marker) || !strings.Contains(typed, "\x15") {
			t.Fatalf("typed bytes lack the erased line: %q", typed)
		}
		joined := plainStream(plain, "in")
		if !strings.Contains(joined, "touch "+marker) || !strings.Contains(joined, `\x15`) {
			t.Errorf("show does not show the erased line and the ^U that erased it:\n%s", plain)
		}
		if !strings.Contains(marked.String(), `\x15`) {
			t.Errorf("replay --input does not show the ^U: %q", marked.String())
		}
	})

	t.Run("line_wiped_by_escape_codes", func(t *testing.T) {
		// The terminal wiped the line: the screen never kept it.
		if strings.Contains(wipedScreen, "HIDDEN-LINE") {
			t.Errorf("the screen shows the wiped line:\n%s", wipedScreen)
		}
		if !strings.Contains(printed, "HIDDEN-LINE\r\x1b[2K") {
			t.Fatalf("recorded output lacks the wiped line: %q", printed)
		}
		if !strings.Contains(plainStream(plain, "out"), `HIDDEN-LINE\r\x1b[2K`) {
			t.Errorf("show does not show the wiped line with its escape codes:\n%s", plain)
		}
	})

	t.Run("invalid_utf8_output", func(t *testing.T) {
		if !strings.Contains(printed, "bin:\xff\xfe:end\r\n") {
			t.Fatalf("recorded output lacks the bytes: %q", printed)
		}
		if !strings.Contains(plainStream(plain, "out"), `bin:\xff\xfe:end\r\n`) {
			t.Errorf("show does not keep the invalid bytes as \\xNN:\n%s", plain)
		}
		// The replay is a picture: the terminal shows U+FFFD.
		if !strings.Contains(replay, "bin:\ufffd:end") {
			t.Errorf("replay %q", replay)
		}
	})
}

// plainStream joins the quoted data of the plain view's lines of one
// stream ("in", "out", "err"), continuation lines included, so a test
// does not depend on how the pty cut the bytes into chunks.
func plainStream(plain, stream string) string {
	var b strings.Builder
	in := false
	for _, l := range strings.Split(plain, "\n") {
		t := strings.TrimLeft(l, " ")
		switch {
		case strings.HasPrefix(l, "+"):
			f := strings.Fields(l)
			in = len(f) >= 4 && f[1] == "ch" && f[3] == stream
			if !in {
				continue
			}
			t = strings.TrimLeft(l[strings.Index(l, " "+stream+" ")+len(stream)+2:], " ")
		case !in || !strings.HasPrefix(t, `"`):
			in = false
			continue
		}
		b.WriteString(strings.TrimSuffix(strings.TrimPrefix(t, `"`), `"`))
	}
	return b.String()
}

// TestSSHAdversarialReplayInvalidUTF8Exact: output that is not UTF-8 comes
// back byte for byte from show --json and export --format raw/jsonl, and
// as \xNN in the plain view; asciicast, which must be UTF-8, says U+FFFD.
func TestSSHAdversarialReplayInvalidUTF8Exact(t *testing.T) {
	st := startSSHD(t)
	e := newSSHEnv(t, st, sshTargetOpts{})
	want := "\xff\xfe-\xc3(-\xe2\x82-ok\x00\n"
	out, stderr, code := e.runUnder(st.sshArgv(`printf '\377\376-\303(-\342\202-ok\000\n'`)...)
	if code != 0 || out != want {
		t.Fatalf("exit %d\nstdout: %q\nstderr: %s", code, out, stderr)
	}
	id := sessionID(e, 0)
	s := showJSON(t, e, id)
	ch := s.Channels[0].Channel
	if got := string(s.stream(ch, "o")); got != want {
		t.Errorf("show --json bytes %q, want %q", got, want)
	}
	raw, stderr, code := e.interlock("sessions", "export", "-c", e.cfgPath, "--format", "raw", "--channel", strconv.Itoa(int(ch)), id)
	if code != 0 || raw != want {
		t.Errorf("export --format raw: exit %d: %s\n%q", code, stderr, raw)
	}
	jsonl, stderr, code := e.interlock("sessions", "export", "-c", e.cfgPath, "--format", "jsonl", id)
	if code != 0 {
		t.Fatalf("export --format jsonl: exit %d: %s", code, stderr)
	}
	var got []byte
	for _, l := range strings.Split(strings.TrimSpace(jsonl), "\n") {
		var ev struct {
			Kind    string `json:"kind"`
			Stream  string `json:"stream"`
			Payload []byte `json:"payload_b64"`
		}
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("jsonl line %s: %v", l, err)
		}
		if ev.Kind == model.KindSSHIO && ev.Stream == "o" {
			got = append(got, ev.Payload...)
		}
	}
	if !bytes.Equal(got, []byte(want)) {
		t.Errorf("jsonl bytes %q", got)
	}
	if plain := showPlain(t, e, id); !strings.Contains(plain, ` out "\xff\xfe-\xc3(-\xe2\x82-ok\x00\n"`) {
		t.Errorf("show:\n%s", plain)
	}
	cast, _, _ := e.interlock("sessions", "export", "-c", e.cfgPath, id)
	if _, o, _ := castStreams(t, []byte(cast)); !strings.Contains(o, "\ufffd-\ufffd(-\ufffd-ok\x00\r\n") {
		t.Errorf("cast output %q", o)
	}
	// raw without a channel says how to pick one.
	_, stderr, code = e.interlock("sessions", "export", "-c", e.cfgPath, "--format", "raw", id)
	if code != 64 || !strings.Contains(stderr, "--channel N") {
		t.Errorf("raw without --channel: exit %d: %s", code, stderr)
	}
}
