package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/interlock/interlock/model"
)

// TestRunDemoBesideDaemon: the README demo with a daemon running (as the
// package's is) whose config names no targets. Without --engine the run
// defers to the daemon, and the warning names the daemon's config file,
// what that means and the flag that changes it; with --engine embedded (what
// the README uses) the demo config's target is intercepted and recorded in
// the demo journal, whether or not a daemon runs.
func TestRunDemoBesideDaemon(t *testing.T) {
	srv := startEcho(t, "tcp4", "127.0.0.2:0")
	daemonEnv := newEnv(t, nil, "")
	daemonEnv.startDaemon()

	// The demo config names only a journal and a target; it shares the
	// daemon's control socket and pin path, as the defaults do on a host.
	demoJournal := filepath.Join(daemonEnv.dir, "demo-journal.db")
	demo := filepath.Join(daemonEnv.dir, "demo.yaml")
	cfg := fmt.Sprintf("journal:\n  path: %s\ncontrol:\n  socket: %s\nbpf:\n  pin_path: %s\nstate_dir: %s\n"+
		"targets:\n  - name: web\n    protocol: tcp\n    address: %q\n",
		demoJournal, daemonEnv.socket, daemonEnv.pin, filepath.Join(daemonEnv.dir, "demo-state"), srv.addr())
	if err := os.WriteFile(demo, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}

	out, stderr, code := daemonEnv.interlock("run", "-c", demo, "--", clientBin, "-addr", srv.addr())
	if code != 0 {
		t.Fatalf("run beside the daemon: exit %d\n%s\n%s", code, out, stderr)
	}
	res := parseClient(t, []byte(out))
	for _, want := range []string{"a daemon is running and intercepts this run with its own config",
		`"daemon_config":"` + daemonEnv.cfgPath + `"`, `"daemon_targets":0`, "--engine embedded -c " + demo,
		"interlock: 0 sessions"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if _, err := os.Stat(demoJournal); err == nil {
		t.Errorf("the demo journal exists although the daemon served the run")
	}
	direct := false
	for _, p := range srv.peers() {
		direct = direct || p == res.Local
	}
	if !direct {
		t.Errorf("the run's connection did not go direct (the warning would be wrong)")
	}

	// With the daemon's own config file nothing is ignored: no warning.
	if _, stderr, code := daemonEnv.runUnder("true"); code != 0 || strings.Contains(stderr, "a daemon is running") {
		t.Errorf("run -c with the daemon's config: exit %d: %s", code, stderr)
	}

	out, stderr, code = daemonEnv.interlock("run", "--engine", "embedded", "-c", demo, "--", clientBin, "-addr", srv.addr())
	if code != 0 {
		t.Fatalf("embedded run beside the daemon: exit %d\n%s\n%s", code, out, stderr)
	}
	res = parseClient(t, []byte(out))
	if !strings.Contains(stderr, "interlock: 1 session (web×1)") || !strings.Contains(stderr, "journal "+demoJournal) ||
		strings.Contains(stderr, "a daemon is running") {
		t.Errorf("embedded run's stderr: %q", stderr)
	}
	demoEnv := &env{t: t, dir: daemonEnv.dir, journal: demoJournal}
	so, ok := demoEnv.sessions()[res.Local]
	if !ok || int(so.Identity.Kernel.TGID) != res.PID || so.Target.Name != "web" {
		t.Fatalf("the demo journal lacks the session: %+v", demoEnv.sessions())
	}
	var engine string
	for _, en := range demoEnv.entries() {
		if en.Kind == model.KindRunStart {
			engine = string(en.Data)
		}
	}
	if !strings.Contains(engine, `"engine":"embedded"`) {
		t.Errorf("run.start: %s", engine)
	}
	if n := len(daemonEnv.sessions()); n != 0 {
		t.Errorf("the daemon's journal has %d sessions", n)
	}
	out, stderr, code = daemonEnv.interlock("sessions", "list", "-j", demoJournal)
	if code != 0 || !strings.Contains(out, "web") {
		t.Errorf("sessions list of the demo journal: exit %d\n%s\n%s", code, out, stderr)
	}
}
