package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/interlock/interlock/internal/testkit"
	"github.com/interlock/interlock/model"
)

// TestSSHAdversarialViews (issue 13, class 1): everything a person reads
// about a session is text the session controls, here an executable whose
// name carries terminal escapes, a carriage return and a newline (so that
// it would print as /usr/bin/ssh over its own row and start a fake one),
// and an exec command with a title-setting OSC, a BEL and concealed text.
// No view prints those bytes raw, each shows them visibly, and the
// machine-readable ones keep them exact.
func TestSSHAdversarialViews(t *testing.T) {
	requireTools(t, "ssh")
	st := startSSHD(t)
	e := newSSHEnv(t, st, sshTargetOpts{})

	// The forged name: on a terminal it would clear the line, return, and
	// print "/usr/bin/ssh", then a second, invented row.
	dir := t.TempDir()
	name := "ssh\x1b[2K\r∕usr∕bin∕ssh\nroot 0 fake-row" // U+2215, a slash look-alike
	exe := filepath.Join(dir, name)
	b, err := os.ReadFile("/usr/bin/ssh")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(exe, b, 0o755); err != nil {
		t.Fatal(err)
	}
	command := "echo views-ok # \x1b]0;pwned\x07 \x1b[8mhidden\x1b[0m"
	argv := st.sshArgv(command)
	argv[0] = exe
	out, stderr, code := e.runUnder(argv...)
	if code != 0 || !strings.Contains(out, "views-ok") {
		t.Fatalf("exit %d\nstdout: %q\nstderr: %q", code, out, stderr)
	}
	opens := sshOpens(e)
	if len(opens) != 1 || opens[0].Identity.Proc == nil || opens[0].Identity.Proc.Exe != exe {
		t.Fatalf("journaled session: %+v", opens)
	}

	raw := func(view, s string) {
		t.Helper()
		for _, c := range []string{"\x1b", "\x07", "\r"} {
			if strings.Contains(s, c) {
				t.Errorf("%s prints a raw %q:\n%q", view, c, s)
			}
		}
	}

	t.Run("sessions-list", func(t *testing.T) {
		o, serr, code := e.interlock("sessions", "list", "-c", e.cfgPath)
		if code != 0 {
			t.Fatalf("sessions list: exit %d %s", code, serr)
		}
		raw("sessions list", o)
		for _, line := range strings.Split(o, "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "root 0 fake-row") {
				t.Errorf("the executable's newline started a row of its own:\n%s", o)
			}
		}
		// One header and one row: the newline is shown, not obeyed.
		if n := strings.Count(strings.TrimRight(o, "\n"), "\n") + 1; n != 2 {
			t.Errorf("sessions list has %d lines, want a header and one row:\n%s", n, o)
		}
		if !strings.Contains(o, `\x1b`) && !strings.Contains(o, `\e`) && !strings.Contains(o, "␛") {
			t.Errorf("sessions list does not show the escape visibly:\n%q", o)
		}
	})

	t.Run("sessions-list-json", func(t *testing.T) {
		o, serr, code := e.interlock("sessions", "list", "-c", e.cfgPath, "--json")
		if code != 0 {
			t.Fatalf("sessions list --json: exit %d %s", code, serr)
		}
		raw("sessions list --json", o)
		if !strings.Contains(o, "root 0 fake-row") {
			t.Fatalf("the JSON lost the executable's name:\n%s", o)
		}
		var rows []map[string]any
		if err := json.Unmarshal([]byte(o), &rows); err != nil || len(rows) != 1 {
			t.Fatalf("sessions list --json: %v %s", err, o)
		}
		// The exact bytes survive somewhere in the row, JSON-escaped.
		flat, _ := json.Marshal(rows[0])
		if !bytes.Contains(flat, []byte(`ssh\u001b[2K\r∕usr∕bin∕ssh\nroot 0 fake-row`)) {
			t.Errorf("the JSON does not carry the exact executable path:\n%s", flat)
		}
	})

	t.Run("bundle-views", func(t *testing.T) {
		bundle := filepath.Join(t.TempDir(), "bundle.tar.gz")
		// --session takes a unique prefix of the id (issue 14).
		sid := sessionID(e, 0)
		if _, serr, code := e.interlock("journal", "export", "-c", e.cfgPath, "-q", "--session", sid[:8], "--out", bundle); code != 0 {
			t.Fatalf("journal export: exit %d %s", code, serr)
		}
		files := testkit.ReadTarGz(t, bundle)
		var summary string
		for name, body := range files {
			switch {
			case strings.HasSuffix(name, "summary.html"):
				summary = string(body)
				raw(name, summary)
			case strings.HasSuffix(name, ".csv"):
				raw(name, string(body))
			}
		}
		var hasEntries bool
		for name, body := range files {
			if strings.HasSuffix(name, "entries.jsonl") {
				hasEntries = bytes.Contains(body, []byte(sid))
			}
		}
		if !hasEntries {
			t.Errorf("the bundle exported with --session %s has no entry of session %s: %v", sid[:8], sid, keys(files))
		}
		if summary == "" {
			t.Fatalf("no summary.html in the bundle: %v", keys(files))
		}
		if strings.Contains(summary, "\nroot 0 fake-row") {
			t.Errorf("summary.html lets the executable's newline start a line")
		}
		if !strings.Contains(summary, "fake-row") {
			t.Errorf("summary.html does not name the executable at all")
		}
	})

	t.Run("ocsf", func(t *testing.T) {
		ocsf := filepath.Join(t.TempDir(), "events.jsonl")
		if _, serr, code := e.interlock("journal", "export", "-c", e.cfgPath, "-q", "--format", "ocsf", "--out", ocsf); code != 0 {
			t.Fatalf("journal export --format ocsf: exit %d %s", code, serr)
		}
		b, err := os.ReadFile(ocsf)
		if err != nil {
			t.Fatal(err)
		}
		raw("ocsf", string(b))
		var sawCommand bool
		for _, line := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
			var ev map[string]any
			if err := json.Unmarshal(line, &ev); err != nil {
				t.Fatalf("an OCSF line is not JSON (a raw newline split it?): %v\n%s", err, line)
			}
			if bytes.Contains(line, []byte(`\u001b]0;pwned\u0007`)) {
				sawCommand = true
			}
		}
		if !sawCommand {
			t.Errorf("the OCSF events do not carry the exact command")
		}
	})
}

// TestSSHAdversarialInvalidUTF8Command (classes 1 and 10): a command whose
// bytes are not UTF-8 is journaled whole (command_b64 beside the JSON
// text, which cannot carry them), and sessions show prints those bytes
// as \xNN, never as U+FFFD, so the record names what actually ran.
func TestSSHAdversarialInvalidUTF8Command(t *testing.T) {
	requireTools(t, "ssh")
	st := startSSHD(t)
	e := newSSHEnv(t, st, sshTargetOpts{})
	command := "echo utf8-ok # \xff\xfe\xc3"
	out, stderr, code := e.runUnder(st.sshArgv(command)...)
	if code != 0 || !strings.Contains(out, "utf8-ok") {
		t.Fatalf("exit %d\nstdout: %q\nstderr: %q", code, out, stderr)
	}
	var found bool
	for _, q := range entriesOf[model.SSHRequest](e, model.KindSSHRequest) {
		if q.Type != "exec" {
			continue
		}
		found = true
		if got := model.ExactText(q.Command, q.CommandBase64); got != command {
			t.Errorf("journaled command %q (b64 %q), want %q", q.Command, q.CommandBase64, command)
		}
	}
	if !found {
		t.Fatal("no exec journaled")
	}
	o, serr, code := e.interlock("sessions", "show", "-c", e.cfgPath, sessionID(e, 0))
	if code != 0 {
		t.Fatalf("sessions show: exit %d %s", code, serr)
	}
	if !strings.Contains(o, `\xff\xfe\xc3`) || strings.Contains(o, "\uFFFD") {
		t.Errorf("sessions show does not print the command's bytes exactly:\n%s", o)
	}
}
