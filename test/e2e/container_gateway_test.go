package e2e

import (
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/test/e2e/pgtest"
)

// Issue 19, gateway mode (intercept.container_redirect: gateway):
// containers' connects go to interlock's listener on their network's
// gateway address in the host's namespace, attributed to the container's
// process, and are refused, never sent elsewhere, when that listener is
// not interlock's.

// gatewayNetns is a namespace on the bridge whose default route is the
// bridge's address.
func gatewayNetns(t *testing.T, br *testBridge, host int) string {
	t.Helper()
	ns := br.netnsOn(t, host, false)
	mustRun(t, "ip", "-n", ns, "route", "add", "default", "via", br.gw)
	return ns
}

// gatewayListener is the address interlock (pid) listens on at the
// bridge's gateway, "" when none.
func gatewayListener(t *testing.T, br *testBridge, pid int) string {
	t.Helper()
	out := mustRun(t, "ss", "-Hltnp", "src", br.gw)
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) >= 6 && strings.Contains(l, "pid="+strconv.Itoa(pid)+",") {
			return f[3]
		}
	}
	return ""
}

// listenInNetns opens a listener on addr inside the named namespace.
func listenInNetns(t *testing.T, ns, addr string) net.Listener {
	t.Helper()
	type res struct {
		ln  net.Listener
		err error
	}
	ch := make(chan res, 1)
	go func() {
		// The thread is left locked (and ended with the goroutine) if
		// it cannot return: it would be in the wrong namespace.
		runtime.LockOSThread()
		self, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			ch <- res{nil, err}
			return
		}
		defer unix.Close(self)
		target, err := unix.Open("/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			ch <- res{nil, err}
			return
		}
		defer unix.Close(target)
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			ch <- res{nil, err}
			return
		}
		ln, lerr := net.Listen("tcp4", addr)
		if err := unix.Setns(self, unix.CLONE_NEWNET); err != nil {
			ch <- res{nil, fmt.Errorf("return to the test's namespace: %w", err)}
			return
		}
		runtime.UnlockOSThread()
		ch <- res{ln, lerr}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatalf("listen on %s in %s: %v", addr, ns, r.err)
	}
	t.Cleanup(func() { r.ln.Close() })
	return r.ln
}

// acceptedAny reports whether ln accepts a connection within d.
func acceptedAny(ln net.Listener, d time.Duration) bool {
	got := make(chan bool, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Close()
		}
		got <- err == nil
	}()
	select {
	case ok := <-got:
		return ok
	case <-time.After(d):
		return false
	}
}

func TestContainerGateway(t *testing.T) {
	requireRunc(t)
	br := newBridge(t)
	srv := startEcho(t, "tcp4", br.gw+":0")
	pg := startPGOn(t, br)
	parent, _ := makeCgroup(t, "ctrgw")
	e := newEnv(t, []target{{name: "echo", address: srv.addr()}, pgTarget(t, "db", pg.Addr(), pgtest.AppPassword, "")},
		fmt.Sprintf("intercept:\n  cgroups: [%s]\n  container_redirect: gateway\n", parent))
	d := e.startDaemon()

	ns := gatewayNetns(t, br, 10)
	a := runContainer(t, ctrSpec{netns: ns, parent: parent, args: []string{"sleep", "600"}})
	// served are the containers served through the gateway.
	served := []*ctr{a}

	t.Run("tcp", func(t *testing.T) {
		r, refused := dialFromCtr(t, a, "-addr", srv.addr())
		t.Logf("the namespace's first %d connects were refused", refused)
		if !strings.Contains(r.Reply, br.gw+":") {
			t.Errorf("the target saw %q, not interlock's connection from %s", r.Reply, br.gw)
		}
		if r.Peer != srv.addr() {
			t.Errorf("getpeername in the container says %s, want %s", r.Peer, srv.addr())
		}
		if !strings.HasPrefix(r.Local, br.prefix+"10:") {
			t.Errorf("the client's local address is %s, want the container's %s10 (a connection to the gateway)", r.Local, br.prefix)
		}
		if gl := gatewayListener(t, br, d.cmd.Process.Pid); gl == "" {
			t.Errorf("interlock does not listen on the gateway %s: %s", br.gw, mustRun(t, "ss", "-Hltnp"))
		}
		// Nothing of interlock's inside the container's namespace.
		if out := mustRun(t, "ip", "netns", "exec", ns, "ss", "-Hltn"); strings.TrimSpace(out) != "" {
			t.Errorf("listeners in the container's namespace in gateway mode: %s", out)
		}
		waitSessions(t, e, 1)
		so, ok := e.sessions()[r.Local]
		if !ok {
			t.Fatalf("no session for %s: %v", r.Local, e.sessions())
		}
		id := so.Identity
		if id.Container == nil || id.Container.ID != a.id || id.Container.Runtime != "runc" || id.Container.Provenance != model.ProvProc {
			t.Errorf("session's container: %+v (%s)", id.Container, id.ContainerError)
		}
		if id.Kernel.TGID == 0 || int(id.Kernel.TGID) == r.PID || id.Proc == nil || id.Proc.CgroupPath != a.cgroup {
			t.Errorf("session's process: kernel %+v, proc %+v (the container saw pid %d)", id.Kernel, id.Proc, r.PID)
		}
		noDirect(t, srv, br)
	})

	t.Run("psql", func(t *testing.T) {
		psql := filepath.Join(pg.BinDir, "psql")
		sql := "SELECT 'gateway " + a.id + "' AS here"
		out, err := a.exec(t, psql, "-X", "-At", "-c", sql,
			fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable", pg.Host, pg.Port, pgtest.AppUser, pgtest.AppDB))
		if err != nil || strings.TrimSpace(out) != "gateway "+a.id {
			t.Fatalf("psql in the container: %q, %v", out, err)
		}
		_, so, ok := e.findStatement(sql)
		if !ok {
			t.Fatalf("no journal entry for %q", sql)
		}
		if so.Identity.Container == nil || so.Identity.Container.ID != a.id || so.Identity.Proc == nil || so.Identity.Proc.Exe != psql {
			t.Errorf("psql's session: container %+v, proc %+v", so.Identity.Container, so.Identity.Proc)
		}
	})

	t.Run("two containers one gateway", func(t *testing.T) {
		b := runContainer(t, ctrSpec{netns: gatewayNetns(t, br, 11), parent: parent, args: []string{"sleep", "600"}})
		served = append(served, b)
		rb, _ := dialFromCtr(t, b, "-addr", srv.addr())
		ra, _ := dialFromCtr(t, a, "-addr", srv.addr())
		waitFor(t, func() bool {
			s := e.sessions()
			_, okA := s[ra.Local]
			_, okB := s[rb.Local]
			return okA && okB
		})
		s := e.sessions()
		for _, x := range []struct {
			c *ctr
			r clientResult
		}{{a, ra}, {b, rb}} {
			if c := s[x.r.Local].Identity.Container; c == nil || c.ID != x.c.id {
				t.Errorf("the session from %s: container %+v, want %s", x.r.Local, c, x.c.id)
			}
		}
		noDirect(t, srv, br)
	})

	t.Run("straight to the gateway listener", func(t *testing.T) {
		// The listener is reachable from the bridge and the host: a
		// connection the hook did not send there has no record and is
		// closed unserved, from a container or from the host.
		gl := gatewayListener(t, br, d.cmd.Process.Pid)
		if gl == "" {
			t.Fatal("no gateway listener")
		}
		n := len(e.sessions())
		out, _ := a.exec(t, "/bin/tcpclient", "-addr", gl)
		fromCtr := parseClient(t, []byte(out))
		out, _, _ = runCmd(t, exec.Command(clientBin, "-addr", gl))
		fromHost := parseClient(t, []byte(out))
		t.Logf("from the container: %s; from the host: %s", fromCtr.Error, fromHost.Error)
		for who, r := range map[string]clientResult{"a container": fromCtr, "the host": fromHost} {
			if r.Error == "" || r.Reply != "" {
				t.Errorf("a connection from %s straight to the gateway listener was served: %+v", who, r)
			}
		}
		time.Sleep(200 * time.Millisecond)
		if got := len(e.sessions()); got != n {
			t.Errorf("%d sessions opened for connections without a record", got-n)
		}
	})

	t.Run("gateway address taken inside the container", func(t *testing.T) {
		// The container's root puts the gateway's address on its own
		// loopback and listens on interlock's port there: the connect
		// would stay in the container, so the hook refuses it.
		gl := gatewayListener(t, br, d.cmd.Process.Pid)
		if gl == "" {
			t.Fatal("no gateway listener")
		}
		ns := gatewayNetns(t, br, 12)
		x := runContainer(t, ctrSpec{netns: ns, parent: parent, args: []string{"sleep", "600"}})
		served = append(served, x)
		dialFromCtr(t, x, "-addr", srv.addr())
		mustRun(t, "ip", "-n", ns, "addr", "add", br.gw+"/32", "dev", "lo")
		inside := listenInNetns(t, ns, gl)
		out, _ := x.exec(t, "/bin/tcpclient", "-addr", srv.addr())
		if !strings.Contains(out, "operation not permitted") {
			t.Errorf("with the gateway's address taken in the container, connect gave %s", out)
		}
		if acceptedAny(inside, 200*time.Millisecond) {
			t.Errorf("the container's own listener on %s received the intercepted connection", gl)
		}
	})

	t.Run("gateway not the host's", func(t *testing.T) {
		// No default route, or one through an address that is not the
		// host's: interlock does not listen where a container's routes
		// say; its connects stay refused.
		noRoute := runContainer(t, ctrSpec{netns: br.netnsOn(t, 13, false), parent: parent, args: []string{"sleep", "600"}})
		ns := br.netnsOn(t, 14, false)
		mustRun(t, "ip", "-n", ns, "route", "add", "default", "via", br.prefix+"99")
		foreign := runContainer(t, ctrSpec{netns: ns, parent: parent, args: []string{"sleep", "600"}})
		for _, x := range []*ctr{noRoute, foreign} {
			for i := 0; i < 5; i++ {
				out, _ := x.exec(t, "/bin/tcpclient", "-addr", srv.addr())
				if !strings.Contains(out, "operation not permitted") {
					t.Fatalf("a connect from %s, which interlock cannot serve through a gateway: %s", x.id, out)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
		for _, why := range []string{"no IPv4 default route", "is not an address of this host"} {
			if !strings.Contains(d.stderr.String(), why) {
				t.Errorf("the daemon did not say %q", why)
			}
		}
		noRoute.remove()
		foreign.remove()
		noDirect(t, srv, br)
	})

	t.Run("listener closes with the last namespace", func(t *testing.T) {
		if gatewayListener(t, br, d.cmd.Process.Pid) == "" {
			t.Fatal("no gateway listener")
		}
		for _, x := range served {
			x.remove()
		}
		waitFor(t, func() bool { return gatewayListener(t, br, d.cmd.Process.Pid) == "" })
	})

	t.Run("fail closed", func(t *testing.T) {
		a := runContainer(t, ctrSpec{netns: gatewayNetns(t, br, 15), parent: parent, args: []string{"sleep", "600"}})
		dialFromCtr(t, a, "-addr", srv.addr())
		gl := gatewayListener(t, br, d.cmd.Process.Pid)
		if gl == "" {
			t.Fatal("no gateway listener")
		}
		before := len(srv.peers())
		// SIGKILL: the pinned programs stay, and so does the
		// namespace's map entry naming the gateway listener, which is
		// gone.
		d.stop(t, syscall.SIGKILL)
		out, _ := a.exec(t, "/bin/tcpclient", "-addr", srv.addr())
		if !strings.Contains(out, "operation not permitted") {
			t.Errorf("with interlock's gateway listener gone, connect gave %s", out)
		}
		// Any process on the host may bind the gateway's port now; it
		// gets no intercepted connection (no interlock mark).
		impostor, err := net.Listen("tcp4", gl)
		if err != nil {
			t.Fatalf("take the gateway listener's address %s: %v", gl, err)
		}
		defer impostor.Close()
		out, _ = a.exec(t, "/bin/tcpclient", "-addr", srv.addr())
		if !strings.Contains(out, "operation not permitted") {
			t.Errorf("with an impostor on the gateway's port, connect gave %s", out)
		}
		if acceptedAny(impostor, 200*time.Millisecond) {
			t.Errorf("the impostor on %s received an intercepted connection", gl)
		}
		if after := len(srv.peers()); after != before {
			t.Errorf("the target saw %d connections while interlock was down", after-before)
		}
	})
}
