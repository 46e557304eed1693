package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/test/testenv"
)

func TestGenerateDocs(t *testing.T) {
	files, err := generateDocs(rootCommand(), "1.2.3", time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"completions/interlock.bash", "completions/_interlock", "completions/interlock.fish", "man/interlock.8"} {
		if files[name] == "" {
			t.Errorf("%s not generated", name)
		}
	}
	man := files["man/interlock.8"]
	for _, want := range []string{`.TH INTERLOCK 8 "2026-01-02" "interlock 1.2.3"`, ".SH SYNOPSIS", ".SH EXIT STATUS", `\fBinterlock run\fR`,
		`\fB\-\-config\fR \fIFILE\fR`, "INTERLOCK_CONFIG", ".B 78"} {
		if !strings.Contains(man, want) {
			t.Errorf("man page lacks %q", want)
		}
	}
	for name, body := range files {
		if strings.Contains(body, "package-helper") || strings.Contains(body, "should-start") {
			t.Errorf("%s mentions the hidden package-helper command", name)
		}
	}
	// Every visible command, in the order the CLI lists them.
	var visible []string
	for _, c := range rootCommand().Commands {
		if !c.Hidden {
			visible = append(visible, c.Name)
		}
	}
	if len(visible) < 6 {
		t.Fatalf("only %d visible commands", len(visible))
	}
	if !strings.Contains(files["completions/interlock.bash"], `__interlock_subcmds["interlock"]="`+strings.Join(visible, " ")+`"`) {
		t.Errorf("bash completion does not list the commands %v:\n%s", visible, files["completions/interlock.bash"])
	}
}

// TestGenerateDocsShells checks the generated files with the shells and
// groff, where they are installed (make test installs them; in CI a missing
// one fails).
func TestGenerateDocsShells(t *testing.T) {
	files, err := generateDocs(rootCommand(), "dev", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, body := range files {
		p := filepath.Join(dir, filepath.Base(name))
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range [][]string{
		{"bash", "-n", "interlock.bash"},
		{"zsh", "-n", "_interlock"},
		{"fish", "-n", "interlock.fish"},
		{"groff", "-man", "-ww", "-z", "interlock.8"},
	} {
		if _, err := exec.LookPath(c[0]); err != nil {
			if testenv.CI() {
				t.Errorf("%s not installed: CI must check the generated files with it", c[0])
			} else {
				t.Logf("%s not installed: not checked", c[0])
			}
			continue
		}
		cmd := exec.Command(c[0], c[1:]...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
			t.Errorf("%s: %v\n%s", strings.Join(c, " "), err, out)
		}
	}
}

func TestLogJSON(t *testing.T) {
	for _, c := range []struct {
		format   config.LogFormat
		terminal bool
		want     bool
	}{
		{config.FormatAuto, true, false},
		{config.FormatAuto, false, true},
		{config.FormatJSON, true, true},
		{config.FormatJSON, false, true},
		{config.FormatText, true, false},
		{config.FormatText, false, false},
	} {
		if got := logJSON(c.format, c.terminal); got != c.want {
			t.Errorf("logJSON(%q, terminal=%v) = %v, want %v", c.format, c.terminal, got, c.want)
		}
	}
	if config.Default().Log.Format != config.FormatAuto {
		t.Errorf("the default log.format is %q, want auto", config.Default().Log.Format)
	}
}

func TestDocDate(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "1767312000") // 2026-01-02
	if d, err := docDate(""); err != nil || d.Format("2006-01-02") != "2026-01-02" {
		t.Errorf("docDate from SOURCE_DATE_EPOCH = %v, %v", d, err)
	}
	if d, err := docDate("2025-12-31"); err != nil || d.Format("2006-01-02") != "2025-12-31" {
		t.Errorf("docDate(flag) = %v, %v", d, err)
	}
	if _, err := docDate("31.12.2025"); err == nil {
		t.Errorf("docDate accepted a bad date")
	}
}
