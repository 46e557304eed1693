package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/interlock/interlock/control"
	"github.com/interlock/interlock/internal/testkit"
	"github.com/interlock/interlock/model"
)

// TestDaemonInterceptsItsCgroups: the daemon intercepts the configured
// cgroup and its descendants, and leaves every other process alone.
func TestDaemonInterceptsItsCgroups(t *testing.T) {
	srv := startEcho(t, "tcp4", "127.0.0.2:0")
	cgPath, cgDir := makeCgroup(t, "daemon")
	e := newEnv(t, []target{{name: "echo", address: srv.addr()}}, fmt.Sprintf("intercept:\n  cgroups: [%s]\n", cgPath))
	e.startDaemon()

	out, _, code := runCmd(t, inCgroup(t, cgDir, clientBin, "-addr", srv.addr()))
	if code != 0 {
		t.Fatalf("client in the intercepted cgroup failed: %s", out)
	}
	inside := parseClient(t, []byte(out))

	// A descendant cgroup is covered too.
	child := cgDir + "/job"
	if err := os.Mkdir(child, 0o755); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(child)
	out, _, code = runCmd(t, inCgroup(t, child, clientBin, "-addr", srv.addr()))
	if code != 0 {
		t.Fatalf("client in a descendant cgroup failed: %s", out)
	}
	descendant := parseClient(t, []byte(out))

	out, _, code = runCmd(t, inCgroup(t, cgroupRoot, clientBin, "-addr", srv.addr()))
	if code != 0 {
		t.Fatalf("client outside failed: %s", out)
	}
	outside := parseClient(t, []byte(out))

	waitSessions(t, e, 2)
	sessions := e.sessions()
	if so, ok := sessions[inside.Local]; !ok || int(so.Identity.Kernel.TGID) != inside.PID {
		t.Errorf("inside client not recorded with its pid")
	}
	if so, ok := sessions[descendant.Local]; !ok || so.Identity.Proc == nil || so.Identity.Proc.CgroupPath != cgPath+"/job" {
		t.Errorf("descendant client not recorded with its cgroup: %+v", so.Identity.Proc)
	}
	if _, ok := sessions[outside.Local]; ok {
		t.Errorf("client outside the cgroup was intercepted")
	}
	direct := false
	for _, p := range srv.peers() {
		direct = direct || p == outside.Local
	}
	if !direct {
		t.Errorf("outside client did not reach the server directly")
	}
}

// TestRunUsesDaemon: with a daemon running, interlock run hands its cgroup
// to the daemon instead of loading its own programs.
func TestRunUsesDaemon(t *testing.T) {
	srv := startEcho(t, "tcp4", "127.0.0.2:0")
	e := newEnv(t, []target{{name: "echo", address: srv.addr()}}, "")
	d := e.startDaemon()
	out, stderr, code := e.runUnder(clientBin, "-addr", srv.addr())
	if code != 0 {
		t.Fatalf("run exited %d: %s %s", code, out, stderr)
	}
	res := parseClient(t, []byte(out))
	if !strings.Contains(stderr, "interlock: 1 session (echo×1)") {
		t.Errorf("summary: %q", stderr)
	}
	if so, ok := e.sessions()[res.Local]; !ok || int(so.Identity.Kernel.TGID) != res.PID {
		t.Fatalf("session not recorded by the daemon")
	}
	var engine string
	for _, en := range e.entries() {
		if en.Kind == model.KindRunStart {
			engine = string(en.Data)
		}
	}
	if !strings.Contains(engine, `"engine":"daemon"`) {
		t.Errorf("run.start does not say the daemon served it: %s", engine)
	}
	if !strings.Contains(d.stderr.String(), "intercepting cgroup for interlock run") {
		t.Errorf("the daemon did not log the run")
	}
	// The run's cgroup is gone and detached afterwards.
	c, err := control.Dial(context.Background(), e.socket, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Runs) != 0 || len(st.Cgroups) != 0 {
		t.Errorf("daemon still tracks the finished run: runs=%v cgroups=%v", st.Runs, st.Cgroups)
	}
}

// TestFailClosed: with the daemon stopped or killed, a connect to a target
// from an intercepted cgroup is refused, never passed through, even when
// another process has taken the listener's port.
func TestFailClosed(t *testing.T) {
	srv := startEcho(t, "tcp4", "127.0.0.2:0")
	cgPath, cgDir := makeCgroup(t, "failclosed")
	e := newEnv(t, []target{{name: "echo", address: srv.addr()}}, fmt.Sprintf("intercept:\n  cgroups: [%s]\n", cgPath))

	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) {
			d := e.startDaemon()
			c, err := control.Dial(context.Background(), e.socket, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			st, err := c.Status(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			out, _, code := runCmd(t, inCgroup(t, cgDir, clientBin, "-addr", srv.addr()))
			if code != 0 {
				t.Fatalf("client failed while the daemon runs: %s", out)
			}
			d.stop(t, sig)
			before := len(srv.peers())

			out, _, code = runCmd(t, inCgroup(t, cgDir, clientBin, "-addr", srv.addr()))
			res := parseClient(t, []byte(out))
			if code == 0 || !strings.Contains(res.Error, "operation not permitted") {
				t.Errorf("with the daemon gone, connect gave %q (exit %d), want operation not permitted", res.Error, code)
			}

			// An impostor on the old listener port gets nothing either.
			var impostor net.Listener
			for _, a := range st.Listener {
				if strings.HasPrefix(a, "127.0.0.1:") {
					impostor, err = net.Listen("tcp4", a)
				}
			}
			if impostor == nil || err != nil {
				t.Fatalf("could not take the listener port %v: %v", st.Listener, err)
			}
			accepted := make(chan struct{}, 1)
			go func() {
				if c, err := impostor.Accept(); err == nil {
					c.Close()
					accepted <- struct{}{}
				}
			}()
			out, _, code = runCmd(t, inCgroup(t, cgDir, clientBin, "-addr", srv.addr()))
			impostor.Close()
			res = parseClient(t, []byte(out))
			if code == 0 || !strings.Contains(res.Error, "operation not permitted") {
				t.Errorf("with an impostor on the port, connect gave %q (exit %d)", res.Error, code)
			}
			select {
			case <-accepted:
				t.Errorf("the impostor received an intercepted connection")
			default:
			}
			if after := len(srv.peers()); after != before {
				t.Errorf("the target saw %d connections while interlock was down", after-before)
			}
		})
	}

	// Back up again: the pinned programs are adopted and serve.
	e.startDaemon()
	out, _, code := runCmd(t, inCgroup(t, cgDir, clientBin, "-addr", srv.addr()))
	if code != 0 {
		t.Fatalf("client failed after the daemon restarted: %s", out)
	}
}

// TestFailOpen: with fail: open, connects go direct while the daemon is
// down (the operator's explicit choice).
func TestFailOpen(t *testing.T) {
	srv := startEcho(t, "tcp4", "127.0.0.2:0")
	cgPath, cgDir := makeCgroup(t, "failopen")
	e := newEnv(t, []target{{name: "echo", address: srv.addr()}}, fmt.Sprintf("intercept:\n  cgroups: [%s]\n  fail: open\n", cgPath))
	d := e.startDaemon()
	d.stop(t, syscall.SIGTERM)
	out, _, code := runCmd(t, inCgroup(t, cgDir, clientBin, "-addr", srv.addr()))
	if code != 0 {
		t.Fatalf("fail-open connect failed: %s", out)
	}
	res := parseClient(t, []byte(out))
	direct := false
	for _, p := range srv.peers() {
		direct = direct || p == res.Local
	}
	if !direct {
		t.Errorf("fail-open connection did not go direct")
	}
}

// TestUnattributedConnectionRefused: a connection that reaches the listener
// without going through the hooks is closed and journaled as an anomaly.
func TestUnattributedConnectionRefused(t *testing.T) {
	srv := startEcho(t, "tcp4", "127.0.0.2:0")
	e := newEnv(t, []target{{name: "echo", address: srv.addr()}}, "")
	e.startDaemon()
	c, err := control.Dial(context.Background(), e.socket, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", st.Listener[0])
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "hello pid=1 bulk=0\n")
	buf := make([]byte, 64)
	if n, err := conn.Read(buf); err == nil {
		t.Errorf("unattributed connection was served: %q", buf[:n])
	}
	conn.Close()
	waitFor(t, func() bool {
		for _, en := range e.entries() {
			if en.Kind == model.KindAnomaly && strings.Contains(string(en.Data), "no connect record") {
				return true
			}
		}
		return false
	})
	if len(srv.peers()) != 0 {
		t.Errorf("the target saw the unattributed connection")
	}

	// A flood is counted in full but written in bounded detail, so a local
	// connect loop cannot make the journal fsync at will.
	const flood = 300
	for i := 0; i < flood; i++ {
		c, err := net.Dial("tcp", st.Listener[0])
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	var individual, summarised int
	waitFor(t, func() bool {
		individual, summarised = 0, 0
		for _, en := range e.entries() {
			if en.Kind != model.KindAnomaly {
				continue
			}
			var a struct {
				Detail struct {
					Suppressed int `json:"suppressed"`
				} `json:"detail"`
			}
			json.Unmarshal(en.Data, &a)
			if a.Detail.Suppressed > 0 {
				summarised += a.Detail.Suppressed
			} else {
				individual++
			}
		}
		return individual+summarised == flood+1
	})
	if individual > 3*20 {
		t.Errorf("%d anomalies written one by one; the budget is 20 a second", individual)
	}
}

// TestDaemonReload: SIGHUP applies new targets; a broken config is refused
// and the running one kept.
func TestDaemonReload(t *testing.T) {
	a := startEcho(t, "tcp4", "127.0.0.2:0")
	b := startEcho(t, "tcp4", "127.0.0.3:0")
	cgPath, cgDir := makeCgroup(t, "reload")
	extra := fmt.Sprintf("intercept:\n  cgroups: [%s]\n", cgPath)
	e := newEnv(t, []target{{name: "a", address: a.addr()}}, extra)
	d := e.startDaemon()
	connect := func(addr string) clientResult {
		out, _, _ := runCmd(t, inCgroup(t, cgDir, clientBin, "-addr", addr))
		return parseClient(t, []byte(out))
	}
	// A session that stays open across the reloads.
	release := filepath.Join(e.dir, "release")
	held := inCgroup(t, cgDir, clientBin, "-addr", a.addr(), "-hold", release)
	var heldOut bytes.Buffer
	heldErr := &testkit.SyncBuffer{}
	held.Stdout, held.Stderr = &heldOut, heldErr
	if err := held.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return strings.Contains(heldErr.String(), "holding") })

	rb := connect(b.addr())
	waitFor(t, func() bool { return len(e.sessions()) == 1 && len(b.peers()) == 1 })
	if _, ok := e.sessions()[rb.Local]; ok {
		t.Fatalf("b was intercepted before it was a target")
	}

	good := strings.Replace(mustRead(t, e.cfgPath), "targets:\n", fmt.Sprintf("targets:\n  - name: b\n    protocol: tcp\n    address: %q\n", b.addr()), 1)
	os.WriteFile(e.cfgPath, []byte(good), 0o644)
	d.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, func() bool { return strings.Contains(d.stderr.String(), "config reloaded") })
	rb = connect(b.addr())
	waitSessions(t, e, 2)
	if _, ok := e.sessions()[rb.Local]; !ok {
		t.Errorf("b not intercepted after reload")
	}

	os.WriteFile(e.cfgPath, []byte(good+"bogus_key: 1\n"), 0o644)
	d.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, func() bool { return strings.Contains(d.stderr.String(), "reload refused") })
	ra := connect(a.addr())
	waitSessions(t, e, 3)
	if _, ok := e.sessions()[ra.Local]; !ok {
		t.Errorf("a broken reload dropped the running config")
	}

	// The session opened before both reloads still works.
	os.WriteFile(release, nil, 0o644)
	if err := held.Wait(); err != nil {
		t.Fatalf("held session broke across reloads: %v %s", err, heldOut.String())
	}
	if res := parseClient(t, heldOut.Bytes()); !strings.Contains(res.Reply, "still here: again") {
		t.Errorf("held session reply %q", res.Reply)
	}
}

func waitSessions(t *testing.T, e *env, n int) {
	t.Helper()
	// Counted as entries, not as e.sessions' client addresses: two of a
	// test's many clients may get the same ephemeral port.
	waitFor(t, func() bool { return len(entriesOf[model.SessionOpen](e, model.KindSessionOpen)) >= n })
}

// waitFor polls at a pace a daemon under test can bear: its conditions
// often run a command.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	testkit.WaitFor(t, 10*time.Second, 20*time.Millisecond, cond)
}

func mustRead(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestDaemonWaitsForCgroup: a configured cgroup that does not exist yet
// (a runner service before its first start) is attached when it appears.
func TestDaemonWaitsForCgroup(t *testing.T) {
	srv := startEcho(t, "tcp4", "127.0.0.2:0")
	cgPath := "/interlock-e2e-later"
	cgDir := filepath.Join(cgroupRoot, cgPath)
	os.Remove(cgDir)
	e := newEnv(t, []target{{name: "echo", address: srv.addr()}}, fmt.Sprintf("intercept:\n  cgroups: [%s]\n", cgPath))
	d := e.startDaemon()
	if !strings.Contains(d.stderr.String(), "does not exist yet") {
		t.Errorf("no warning about the missing cgroup: %s", d.stderr.String())
	}
	if err := os.Mkdir(cgDir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(cgDir) })
	waitFor(t, func() bool { return strings.Contains(d.stderr.String(), "cgroup appeared") })
	out, _, code := runCmd(t, inCgroup(t, cgDir, clientBin, "-addr", srv.addr()))
	if code != 0 {
		t.Fatalf("client: %s", out)
	}
	res := parseClient(t, []byte(out))
	waitSessions(t, e, 1)
	if _, ok := e.sessions()[res.Local]; !ok {
		t.Errorf("a process in the cgroup that appeared later was not intercepted")
	}
}

// TestDaemonReattachesRecreatedCgroup: a service restart removes its cgroup
// and makes a new one, which the kernel does not carry the programs over
// to; the daemon attaches the new one.
func TestDaemonReattachesRecreatedCgroup(t *testing.T) {
	srv := startEcho(t, "tcp4", "127.0.0.2:0")
	cgPath, cgDir := makeCgroup(t, "recreated")
	e := newEnv(t, []target{{name: "echo", address: srv.addr()}}, fmt.Sprintf("intercept:\n  cgroups: [%s]\n", cgPath))
	d := e.startDaemon()
	// The daemon may say "cgroup appeared" while it starts, for the
	// cgroup as first made: the wait is for a message after the new one.
	reattached := func() int {
		s := d.stderr.String()
		return strings.Count(s, "made anew") + strings.Count(s, "cgroup appeared")
	}
	before := reattached()
	if err := os.Remove(cgDir); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(cgDir, 0o755); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return reattached() > before })
	out, _, code := runCmd(t, inCgroup(t, cgDir, clientBin, "-addr", srv.addr()))
	if code != 0 {
		t.Fatalf("client: %s", out)
	}
	res := parseClient(t, []byte(out))
	waitSessions(t, e, 1)
	if _, ok := e.sessions()[res.Local]; !ok {
		t.Errorf("a process in the re-created cgroup was not intercepted")
	}
}
