package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestDaemonReloadRefusesEmptyHeldPassword: a reload whose new postgres
// target holds an empty password file is refused as a whole, saying why;
// the tcp target it also adds is not intercepted, and the running config
// still intercepts the old one.
func TestDaemonReloadRefusesEmptyHeldPassword(t *testing.T) {
	a := startEcho(t, "tcp4", "127.0.0.2:0")
	b := startEcho(t, "tcp4", "127.0.0.3:0")
	cgPath, cgDir := makeCgroup(t, "reloadpw")
	e := newEnv(t, []target{{name: "a", address: a.addr()}}, fmt.Sprintf("intercept:\n  cgroups: [%s]\n", cgPath))
	d := e.startDaemon()
	connect := func(addr string) clientResult {
		out, _, _ := runCmd(t, inCgroup(t, cgDir, clientBin, "-addr", addr))
		return parseClient(t, []byte(out))
	}

	empty := filepath.Join(e.dir, "db.password")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	added := fmt.Sprintf("targets:\n  - name: b\n    protocol: tcp\n    address: %q\n"+
		"  - name: db\n    protocol: postgres\n    address: \"127.0.0.3:5439\"\n    credentials:\n      user: app\n      password_file: %s\n", b.addr(), empty)
	if err := os.WriteFile(e.cfgPath, []byte(strings.Replace(mustRead(t, e.cfgPath), "targets:\n", added, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	d.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, func() bool { return strings.Contains(d.stderr.String(), "reload refused") })
	if s := d.stderr.String(); !strings.Contains(s, "password_file") || !strings.Contains(s, "is empty") {
		t.Errorf("the refusal does not say the password file is empty:\n%s", s)
	}

	rb := connect(b.addr())
	ra := connect(a.addr())
	waitSessions(t, e, 1)
	sessions := e.sessions()
	if _, ok := sessions[ra.Local]; !ok {
		t.Errorf("the refused reload dropped the running config: a not intercepted")
	}
	if _, ok := sessions[rb.Local]; ok {
		t.Errorf("the refused reload's tcp target b was intercepted: a part of it was applied")
	}
	if len(sessions) != 1 {
		t.Errorf("journal holds %d sessions, want 1 (a's)", len(sessions))
	}
}
