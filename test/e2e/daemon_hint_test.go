package e2e

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDaemonSaysWhatToConfigure: a daemon with no targets says, once, that
// it intercepts nothing and what to name in which file; one with targets
// but no cgroups says only `interlock run` is intercepted; a configured one
// says neither.
func TestDaemonSaysWhatToConfigure(t *testing.T) {
	srv := startEcho(t, "tcp4", "127.0.0.2:0")
	cgPath, _ := makeCgroup(t, "hint")
	cases := []struct {
		name    string
		targets []target
		extra   string
		want    string // "" for no hint
	}{
		{"no targets", nil, "", "nothing to intercept: no targets are configured"},
		{"no cgroups", []target{{name: "echo", address: srv.addr()}}, "", "no cgroups to intercept: only `interlock run` commands are intercepted"},
		{"configured", []target{{name: "echo", address: srv.addr()}}, fmt.Sprintf("intercept:\n  cgroups: [%s]\n", cgPath), ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, c.targets, c.extra)
			d := e.startDaemon()
			if c.want == "" {
				time.Sleep(300 * time.Millisecond)
				if s := d.stderr.String(); strings.Contains(s, "nothing to intercept") || strings.Contains(s, "no cgroups to intercept") {
					t.Errorf("a configured daemon asks for configuration:\n%s", s)
				}
				return
			}
			waitFor(t, func() bool { return strings.Contains(d.stderr.String(), c.want) })
			// Reloads do not repeat it.
			d.cmd.Process.Signal(syscall.SIGHUP)
			waitFor(t, func() bool { return strings.Contains(d.stderr.String(), "config reloaded") })
			time.Sleep(200 * time.Millisecond)
			s := d.stderr.String()
			if n := strings.Count(s, c.want); n != 1 {
				t.Errorf("the hint appears %d times:\n%s", n, s)
			}
			for _, want := range []string{`"config":"` + e.cfgPath + `"`, "/usr/share/doc/interlock/config.md", "interlock doctor", "intercept.cgroups"} {
				if !strings.Contains(s, want) {
					t.Errorf("the hint lacks %q:\n%s", want, s)
				}
			}
		})
	}
}
