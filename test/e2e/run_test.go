package e2e

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/interlock/interlock/model"
)

// TestRunAttributesTheSession: a process started by `interlock run` reaches
// a TCP target on 127.0.0.2 through interlock, and the journal names the
// original destination and that process's pid, uid, exe, hash and cgroup.
func TestRunAttributesTheSession(t *testing.T) {
	srv := startEcho(t, "tcp4", "127.0.0.2:0")
	e := newEnv(t, []target{{name: "echo", address: srv.addr()}}, "")

	out, stderr, code := e.runUnder(clientBin, "-addr", srv.addr())
	if code != 0 {
		t.Fatalf("interlock run exited %d: %s%s", code, out, stderr)
	}
	res := parseClient(t, []byte(out))
	if res.Error != "" {
		t.Fatalf("client failed: %s", res.Error)
	}
	// The server must have seen interlock, not the client's own socket.
	peers := srv.peers()
	if len(peers) != 1 || peers[0] == res.Local {
		t.Fatalf("server saw %v, client was %s: the connection was not proxied", peers, res.Local)
	}
	if !strings.Contains(stderr, "interlock: 1 session (echo×1)") {
		t.Errorf("summary line missing or wrong: %q", stderr)
	}

	sessions := e.sessions()
	so, ok := sessions[res.Local]
	if !ok {
		t.Fatalf("no session for client %s in the journal; have %v", res.Local, keys(sessions))
	}
	if so.OrigDst.String() != srv.addr() {
		t.Errorf("orig_dst = %s, want %s", so.OrigDst, srv.addr())
	}
	// getpeername() tells the client where it meant to go, not where
	// interlock's listener is.
	if res.Peer != srv.addr() {
		t.Errorf("client's getpeername says %s, want %s", res.Peer, srv.addr())
	}
	k := so.Identity.Kernel
	if int(k.TGID) != res.PID || int(k.UID) != res.UID {
		t.Errorf("kernel facts pid=%d uid=%d, client says pid=%d uid=%d", k.TGID, k.UID, res.PID, res.UID)
	}
	if k.Comm != "tcpclient" {
		t.Errorf("comm = %q", k.Comm)
	}
	p := so.Identity.Proc
	if p == nil {
		t.Fatalf("no proc facts: %s", so.Identity.ProcError)
	}
	if p.Exe != clientBin {
		t.Errorf("exe = %q, want %q", p.Exe, clientBin)
	}
	if p.ExeSHA256 != clientSHA256 {
		t.Errorf("exe_sha256 = %s, want %s", p.ExeSHA256, clientSHA256)
	}
	if !regexp.MustCompile(`/interlock-run-\d+(-\d+)?$`).MatchString(p.CgroupPath) {
		t.Errorf("cgroup_path = %q, want the run's own cgroup", p.CgroupPath)
	}
	if len(p.Parents) == 0 || p.Parents[0].Exe != interlockBin {
		t.Errorf("parent chain %+v does not start with interlock", p.Parents)
	}

	// Session close and the run records are there too.
	var runStart, runEnd bool
	for _, en := range e.entries() {
		switch en.Kind {
		case model.KindRunStart:
			runStart = strings.Contains(string(en.Data), clientBin)
		case model.KindRunEnd:
			runEnd = strings.Contains(string(en.Data), `"exit_code":0`) && strings.Contains(string(en.Data), `"sessions":1`)
		}
	}
	if !runStart || !runEnd {
		t.Errorf("run.start (%v) / run.end (%v) missing or wrong", runStart, runEnd)
	}
	if len(e.closes()) != 1 {
		t.Errorf("want 1 session.close, got %d", len(e.closes()))
	}

	// sessions list shows it.
	lst, _, code := e.interlock("sessions", "list", "-c", e.cfgPath, "--json")
	if code != 0 || !strings.Contains(lst, fmt.Sprintf(`"pid": %d`, res.PID)) {
		t.Errorf("sessions list (exit %d) does not show pid %d: %s", code, res.PID, lst)
	}
}

// TestRunPassesExitCode: interlock run exits with the command's code.
func TestRunPassesExitCode(t *testing.T) {
	e := newEnv(t, nil, "")
	_, _, code := e.runUnder("sh", "-c", "exit 7")
	if code != 7 {
		t.Errorf("exit code %d, want 7", code)
	}
	_, stderr, code := e.runUnder("/nonexistent/cmd")
	if code != 127 || !strings.Contains(stderr, "not found") {
		t.Errorf("missing command: exit %d, %q", code, stderr)
	}
	_, _, code = e.runUnder("sh", "-c", "kill -TERM $$")
	if code != 128+15 {
		t.Errorf("killed by SIGTERM: exit %d, want 143", code)
	}
}

// TestOutsideCgroupGoesDirect: while a run intercepts its cgroup, the same
// connection from a process outside it goes straight to the target and is
// not recorded.
func TestOutsideCgroupGoesDirect(t *testing.T) {
	srv := startEcho(t, "tcp4", "127.0.0.2:0")
	e := newEnv(t, []target{{name: "echo", address: srv.addr()}}, "")
	ready := filepath.Join(e.dir, "ready")
	release := filepath.Join(e.dir, "release")
	cmd := exec.Command(interlockBin, "run", "-c", e.cfgPath, "--", "sh", "-c",
		fmt.Sprintf("%s -addr %s >%s/inside.json && touch %s && while [ ! -e %s ]; do sleep 0.05; done", clientBin, srv.addr(), e.dir, ready, release))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	waitFile(t, ready)
	out, _, code := runCmd(t, exec.Command(clientBin, "-addr", srv.addr()))
	os.WriteFile(release, nil, 0o644)
	if code != 0 {
		t.Fatalf("outside client failed: %s", out)
	}
	outside := parseClient(t, []byte(out))
	if err := cmd.Wait(); err != nil {
		t.Fatalf("interlock run: %v", err)
	}
	found := false
	for _, p := range srv.peers() {
		if p == outside.Local {
			found = true
		}
	}
	if !found {
		t.Errorf("server did not see the outside client %s directly (saw %v)", outside.Local, srv.peers())
	}
	sessions := e.sessions()
	if _, ok := sessions[outside.Local]; ok {
		t.Errorf("the outside client was recorded")
	}
	if len(sessions) != 1 {
		t.Errorf("want exactly the inside session, got %d", len(sessions))
	}
}

// TestAddressForms: an IPv6 target is intercepted; an IPv4 target reached
// through its v4-mapped IPv6 address is intercepted; 0.0.0.0 and :: reach
// the loopback targets they mean; a TCP Fast Open sendto, which never
// calls connect(), is intercepted too.
func TestAddressForms(t *testing.T) {
	v4 := startEcho(t, "tcp4", "127.0.0.2:0")
	v6 := startEcho(t, "tcp6", "[::1]:0")
	lo := startEcho(t, "tcp4", "127.0.0.1:0")
	e := newEnv(t, []target{{name: "v4", address: v4.addr()}, {name: "v6", address: v6.addr()}, {name: "lo", address: lo.addr()}}, "")
	cases := []struct {
		name, net, dial, wantDst string
	}{
		{"ipv4", "tcp4", v4.addr(), v4.addr()},
		{"ipv6", "tcp6", v6.addr(), v6.addr()},
		{"v4-mapped", "raw6", fmt.Sprintf("[::ffff:127.0.0.2]:%d", v4.port()), v4.addr()},
		{"any-v4", "tcp4", fmt.Sprintf("0.0.0.0:%d", lo.port()), lo.addr()},
		{"any-v6", "tcp6", fmt.Sprintf("[::]:%d", v6.port()), v6.addr()},
		{"v4-mapped-any", "raw6", fmt.Sprintf("[::ffff:0.0.0.0]:%d", lo.port()), lo.addr()},
		{"tcp-fast-open", "tfo", v4.addr(), v4.addr()},
	}
	var script strings.Builder
	for _, c := range cases {
		fmt.Fprintf(&script, "%s -net %s -addr '%s' > %s/%s.json; ", clientBin, c.net, c.dial, e.dir, c.name)
	}
	_, stderr, code := e.runUnder("sh", "-c", script.String())
	if code != 0 {
		t.Fatalf("run exited %d: %s", code, stderr)
	}
	sessions := e.sessions()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join(e.dir, c.name+".json"))
			if err != nil {
				t.Fatal(err)
			}
			res := parseClient(t, b)
			if res.Error != "" {
				t.Fatalf("client: %s", res.Error)
			}
			local, err := netip.ParseAddrPort(res.Local)
			if err != nil {
				t.Fatal(err)
			}
			key := netip.AddrPortFrom(local.Addr().Unmap(), local.Port()).String()
			so, ok := sessions[key]
			if !ok {
				t.Fatalf("not intercepted: no session for %s (have %v)", key, keys(sessions))
			}
			if so.OrigDst.String() != c.wantDst {
				t.Errorf("orig_dst %s, want %s", so.OrigDst, c.wantDst)
			}
			if peer, err := netip.ParseAddrPort(res.Peer); err != nil || peer.Port() != so.OrigDst.Port() ||
				(peer.Addr().Unmap() != so.OrigDst.Addr() && !peer.Addr().Unmap().IsUnspecified()) {
				t.Errorf("getpeername says %s, connected to %s", res.Peer, c.dial)
			}
			if int(so.Identity.Kernel.TGID) != res.PID {
				t.Errorf("pid %d, want %d", so.Identity.Kernel.TGID, res.PID)
			}
		})
	}
}

// TestConcurrentProcesses: 50 processes connect at once; each session names
// the pid of the process that made it.
func TestConcurrentProcesses(t *testing.T) {
	srv := startEcho(t, "tcp4", "127.0.0.2:0")
	e := newEnv(t, []target{{name: "echo", address: srv.addr()}}, "")
	const n = 50
	script := fmt.Sprintf("for i in $(seq %d); do %s -addr %s > %s/c.$i.json & done; wait", n, clientBin, srv.addr(), e.dir)
	_, stderr, code := e.runUnder("sh", "-c", script)
	if code != 0 {
		t.Fatalf("run exited %d: %s", code, stderr)
	}
	sessions := e.sessions()
	if len(sessions) != n {
		t.Errorf("%d sessions recorded, want %d", len(sessions), n)
	}
	pids := map[int]bool{}
	for i := 1; i <= n; i++ {
		b, err := os.ReadFile(filepath.Join(e.dir, "c."+strconv.Itoa(i)+".json"))
		if err != nil {
			t.Fatal(err)
		}
		res := parseClient(t, b)
		if res.Error != "" {
			t.Errorf("client %d: %s", i, res.Error)
			continue
		}
		pids[res.PID] = true
		so, ok := sessions[res.Local]
		if !ok {
			t.Errorf("client %d (%s) has no session", i, res.Local)
			continue
		}
		if int(so.Identity.Kernel.TGID) != res.PID {
			t.Errorf("session of %s names pid %d, the client was %d", res.Local, so.Identity.Kernel.TGID, res.PID)
		}
		if want := fmt.Sprintf("pid=%d", res.PID); !strings.HasSuffix(res.Reply, want) {
			t.Errorf("reply %q does not end in %s", res.Reply, want)
		}
	}
	if len(pids) != n {
		t.Errorf("%d distinct client pids, want %d", len(pids), n)
	}
}

// TestUIDAttribution: a process that dropped to another user is recorded
// with that uid and user name.
func TestUIDAttribution(t *testing.T) {
	srv := startEcho(t, "tcp4", "127.0.0.2:0")
	e := newEnv(t, []target{{name: "echo", address: srv.addr()}}, "")
	out, stderr, code := e.runUnder("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", clientBin, "-addr", srv.addr())
	if code != 0 {
		t.Fatalf("run exited %d: %s %s", code, out, stderr)
	}
	res := parseClient(t, []byte(out))
	so, ok := e.sessions()[res.Local]
	if !ok {
		t.Fatalf("no session for %s", res.Local)
	}
	if so.Identity.Kernel.UID != 65534 || res.UID != 65534 {
		t.Errorf("uid recorded %d, client uid %d, want 65534", so.Identity.Kernel.UID, res.UID)
	}
	if so.Identity.Proc == nil || so.Identity.Proc.User != "nobody" {
		t.Errorf("user name not resolved: %+v", so.Identity.Proc)
	}
}

// TestHalfCloseAndByteCounts: a client that sends a payload and shuts down
// its write side still gets the answer, and the journal counts the bytes.
func TestHalfCloseAndByteCounts(t *testing.T) {
	srv := startEcho(t, "tcp4", "127.0.0.2:0")
	e := newEnv(t, []target{{name: "echo", address: srv.addr()}}, "")
	const bulk = 8 << 20
	out, stderr, code := e.runUnder(clientBin, "-addr", srv.addr(), "-bulk", strconv.Itoa(bulk))
	if code != 0 {
		t.Fatalf("run exited %d: %s %s", code, out, stderr)
	}
	res := parseClient(t, []byte(out))
	if !strings.HasSuffix(res.Reply, fmt.Sprintf("got=%d", bulk)) {
		t.Fatalf("server reply %q: payload did not arrive whole", res.Reply)
	}
	var closeRec model.SessionClose
	for _, c := range e.closes() {
		closeRec = c
	}
	hello := len(fmt.Sprintf("hello pid=%d bulk=%d\n", res.PID, bulk))
	if closeRec.BytesUp != int64(hello+bulk) {
		t.Errorf("bytes_up %d, want %d", closeRec.BytesUp, hello+bulk)
	}
	if closeRec.BytesDown != int64(len(res.Reply)+1) {
		t.Errorf("bytes_down %d, want %d", closeRec.BytesDown, len(res.Reply)+1)
	}
	if closeRec.Error != "" {
		t.Errorf("session error: %s", closeRec.Error)
	}
}

// TestNestedRun: interlock run inside interlock run works and does not
// loop: the inner run proxies the client, the outer proxies the inner.
func TestNestedRun(t *testing.T) {
	srv := startEcho(t, "tcp4", "127.0.0.2:0")
	e := newEnv(t, []target{{name: "echo", address: srv.addr()}}, "")
	out, stderr, code := e.runUnder(interlockBin, "run", "-c", e.cfgPath, "--", clientBin, "-addr", srv.addr())
	if code != 0 {
		t.Fatalf("nested run exited %d: %s %s", code, out, stderr)
	}
	res := parseClient(t, []byte(out))
	if res.Error != "" || !strings.HasSuffix(res.Reply, fmt.Sprintf("pid=%d", res.PID)) {
		t.Fatalf("client through two interlocks: %+v", res)
	}
	sessions := e.sessions()
	if len(sessions) != 2 {
		t.Fatalf("want 2 sessions (client→inner, inner→outer), got %d: %v", len(sessions), keys(sessions))
	}
	inner, ok := sessions[res.Local]
	if !ok || int(inner.Identity.Kernel.TGID) != res.PID {
		t.Errorf("the client's own session is missing or misattributed")
	}
	var outerExe string
	for k, so := range sessions {
		if k != res.Local && so.Identity.Proc != nil {
			outerExe = so.Identity.Proc.Exe
		}
	}
	if outerExe != interlockBin {
		t.Errorf("the outer session should come from the inner interlock, came from %q", outerExe)
	}
	if len(srv.peers()) != 1 {
		t.Errorf("the target saw %d connections, want 1", len(srv.peers()))
	}
	vout, _, code := e.interlock("journal", "verify", "-j", e.journal)
	if code != 0 {
		t.Errorf("journal written by two processes does not verify: %s", vout)
	}
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func waitFile(t *testing.T, path string) {
	t.Helper()
	for i := 0; i < 500; i++ {
		if _, err := os.Stat(path); err == nil {
			return
		}
		waitTick()
	}
	t.Fatalf("%s did not appear", path)
}

func waitTick() { time.Sleep(20 * time.Millisecond) }

// TestRunCleansUp: after a run, its cgroup, pins and state files are gone.
func TestRunCleansUp(t *testing.T) {
	e := newEnv(t, nil, "")
	out, stderr, code := e.runUnder("cat", "/proc/self/cgroup")
	if code != 0 {
		t.Fatalf("run: %s", stderr)
	}
	var cg string
	for _, l := range strings.Split(out, "\n") {
		if p, ok := strings.CutPrefix(l, "0::"); ok {
			cg = p
		}
	}
	if !strings.Contains(cg, "/interlock-run-") {
		t.Fatalf("the command ran in %q", cg)
	}
	if _, err := os.Stat(filepath.Join(cgroupRoot, cg)); !os.IsNotExist(err) {
		t.Errorf("the run's cgroup %s is still there: %v", cg, err)
	}
	if ents, err := os.ReadDir(filepath.Join(e.pin, "run")); err == nil && len(ents) != 0 {
		t.Errorf("pins left under %s/run: %v", e.pin, ents)
	}
	if m, _ := filepath.Glob(filepath.Join(filepath.Dir(e.socket), "runs", "*")); len(m) != 0 {
		t.Errorf("run state left: %v", m)
	}
}
