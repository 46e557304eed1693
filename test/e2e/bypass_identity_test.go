package e2e

// The bypass suite, part identity and interception (issue 12): each case is
// a determined process inside an intercepted cgroup, not root, trying to
// reach a target unrecorded or to be allowed under another program's
// identity. Each asserts the outcome: refused, or caught and attributed
// correctly.

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/test/e2e/pgtest"
)

// asNobody prefixes argv to run it as uid/gid 65534 with no capabilities.
func asNobody(argv ...string) []string {
	return append([]string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"}, argv...)
}

// noRateLimits turns off the open-rate limits, which a case that opens
// many sessions from one uid in a second would hit (they have their own
// cases in bypass_limits_test.go).
const noRateLimits = "limits:\n  per_uid: {opens_per_second: 0}\n  per_cgroup: {opens_per_second: 0}\n"

// bypassDaemon starts a daemon intercepting a fresh cgroup, with an echo
// target and the given policy.
func bypassDaemon(t *testing.T, name, policy string) (*env, *daemon, *echoServer, string) {
	t.Helper()
	srv := startEcho(t, "tcp4", "127.0.0.2:0")
	cgPath, cgDir := makeCgroup(t, name)
	e := newEnv(t, []target{{name: "echo", address: srv.addr()}}, fmt.Sprintf("intercept:\n  cgroups: [%s]\n%s%s", cgPath, noRateLimits, policy))
	d := e.startDaemon()
	return e, d, srv, cgDir
}

func resolved(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	p, err = filepath.EvalSymlinks(p)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// talkScript is bash that connects fd 3 to addr, says hello and prints the
// reply (empty when the connection was refused or closed).
func talkScript(addr string) string {
	host, port, _ := strings.Cut(addr, ":")
	return fmt.Sprintf(`exec 3<>/dev/tcp/%s/%s || exit 3; echo hello >&3; read -t 3 line <&3; echo "reply:$line"`, host, port)
}

// answered says whether a talkScript got a reply from the target.
func answered(out string) bool { return regexp.MustCompile(`reply:\S`).MatchString(out) }

// TestBypassExecRace: a process connects and immediately execs an allowed
// binary while a child it forked before does the talking. Interlock reads
// /proc after accept; the kernel's record of the connect names the
// program that connected, so the session is never attributed to (nor
// allowed as) the exec'd binary.
func TestBypassExecRace(t *testing.T) {
	sleep := resolved(t, "sleep")
	e, _, srv, cgDir := bypassDaemon(t, "exec-race", fmt.Sprintf(`policy:
  default: deny
  rules:
    - {name: sleep-only, match: {identity: {exes: [%s]}}, action: allow}
`, sleep))
	host, port, _ := strings.Cut(srv.addr(), ":")
	script := fmt.Sprintf(`exec 3<>/dev/tcp/%s/%s || exit 3
( echo hello >&3; read -t 3 line <&3; echo "reply:$line" ) &
exec %s 0.5`, host, port, sleep)
	const tries = 50
	var wg sync.WaitGroup
	outs := make([]string, tries)
	for i := 0; i < tries; i += 10 {
		for j := i; j < i+10 && j < tries; j++ {
			wg.Add(1)
			go func(j int) {
				defer wg.Done()
				out, _, _ := runCmd(t, inCgroup(t, cgDir, asNobody("bash", "-c", script)...))
				outs[j] = out
			}(j)
		}
		wg.Wait()
	}
	for i, out := range outs {
		if answered(out) {
			t.Errorf("try %d: the target answered: %q", i, out)
		}
	}
	waitSessions(t, e, tries)
	raced := 0
	for _, so := range e.sessions() {
		p := so.Identity.Proc
		if so.Decision.Action == model.Allow {
			t.Errorf("a session was allowed: %+v %+v", so.Decision, p)
		}
		if p != nil && p.Exe == sleep && p.ExeTrust == model.ExeVerified {
			t.Errorf("a session was attributed to the exec'd %s as verified: %+v", sleep, p)
		}
		if strings.Contains(so.Identity.ProcError, "exec'd") {
			raced++
		}
	}
	if len(srv.seen) != 0 {
		t.Errorf("the echo server saw connections: %v", srv.seen)
	}
	t.Logf("%d of %d tries exec'd before interlock read the process; each was caught by the kernel's record", raced, tries)
}

// TestBypassLoader: a program run under the dynamic loader is recorded as
// the loader running it; an allow rule about the program does not apply
// to the loader, and `policy check` warns about allow rules naming one.
func TestBypassLoader(t *testing.T) {
	bash := resolved(t, "bash")
	e, _, srv, cgDir := bypassDaemon(t, "loader", fmt.Sprintf(`policy:
  default: deny
  rules:
    - {name: bash-ok, match: {identity: {exes: [%s]}}, action: allow}
`, bash))
	loader := "/lib64/ld-linux-x86-64.so.2"
	out, _, _ := runCmd(t, inCgroup(t, cgDir, asNobody(loader, bash, "-c", talkScript(srv.addr()))...))
	if answered(out) {
		t.Fatalf("the program run under the loader was allowed: %q", out)
	}
	waitSessions(t, e, 1)
	for _, so := range e.sessions() {
		p := so.Identity.Proc
		if p == nil || p.Runner != "loader" || p.Program != bash {
			t.Errorf("not recorded as the loader running %s: %+v (%s)", bash, p, so.Identity.ProcError)
		}
		if so.Decision.Action != model.Deny {
			t.Errorf("decision %+v", so.Decision)
		}
	}
	// bash itself, directly, is allowed: the rule works.
	out, _, _ = runCmd(t, inCgroup(t, cgDir, asNobody(bash, "-c", talkScript(srv.addr()))...))
	if !answered(out) {
		t.Errorf("bash itself was not allowed: %q", out)
	}
	// policy check warns about an allow rule naming an interpreter.
	lint := filepath.Join(e.dir, "lint.yaml")
	os.WriteFile(lint, []byte(fmt.Sprintf(`targets:
  - {name: echo, protocol: tcp, address: %q}
policy:
  rules:
    - {name: py, match: {identity: {exes: [/usr/bin/python3]}}, action: allow}
`, srv.addr())), 0o644)
	stdout, stderr, _ := e.interlock("policy", "check", "-c", lint)
	if !strings.Contains(stdout+stderr, "is an interpreter: it runs whatever") {
		t.Errorf("policy check does not warn about the interpreter:\n%s%s", stdout, stderr)
	}
}

// TestBypassNamespaceLies: in its own user and mount namespaces an
// unprivileged process can bind-mount any file over an allowed path and
// run it, so /proc shows the allowed path. Executable facts from another
// user or mount namespace are only claimed; rules about the executable do
// not apply to them.
func TestBypassNamespaceLies(t *testing.T) {
	sleep, bash := resolved(t, "sleep"), resolved(t, "bash")
	e, _, srv, cgDir := bypassDaemon(t, "ns-lie", fmt.Sprintf(`policy:
  default: deny
  rules:
    - {name: sleep-only, match: {identity: {exes: [%s]}}, action: allow}
`, sleep))
	lie := fmt.Sprintf("mount --bind %s %s && exec %s -c '%s'", bash, sleep, sleep, talkScript(srv.addr()))
	out, stderr, _ := runCmd(t, inCgroup(t, cgDir, asNobody("unshare", "-U", "-r", "-m", "sh", "-c", lie)...))
	if answered(out) {
		t.Fatalf("the bind-mounted lie was allowed: %q %s", out, stderr)
	}
	waitSessions(t, e, 1)
	for _, so := range e.sessions() {
		p := so.Identity.Proc
		if p == nil {
			t.Fatalf("no process facts: %s", so.Identity.ProcError)
		}
		if p.Exe != sleep {
			t.Errorf("the case did not lie as meant: exe %q (stderr %s)", p.Exe, stderr)
		}
		if p.ExeTrust != model.ExeClaimed {
			t.Errorf("exe_trust %q, want claimed", p.ExeTrust)
		}
		if so.Decision.Action != model.Deny {
			t.Errorf("decision %+v", so.Decision)
		}
	}
}

// listenerOf finds the daemon's IPv6 listener in its ready line.
func listenerOf(t *testing.T, d *daemon) string {
	t.Helper()
	m := regexp.MustCompile(`"listeners":\["[^"]*","(\[::1\]:[0-9]+)"\]`).FindStringSubmatch(d.stderr.String())
	if m == nil {
		t.Fatalf("no IPv6 listener in the daemon's log: %s", d.stderr.String())
	}
	return m[1]
}

// TestBypassStaleRecord: a connect the hook records and that then fails
// leaves nothing a later connect of the same socket, straight to
// interlock's listener, could be served with.
func TestBypassStaleRecord(t *testing.T) {
	e, d, srv, cgDir := bypassDaemon(t, "stale", "")
	ln := listenerOf(t, d)
	for i := 0; i < 5; i++ {
		out, stderr, code := runCmd(t, inCgroup(t, cgDir, asNobody(clientBin, "-net", "stale6", "-addr", srv.addr(), "-listener", ln)...))
		if !strings.Contains(stderr, "first connect failed as meant") {
			t.Fatalf("the case did not set up the failed connect: %s %s", out, stderr)
		}
		if code == 0 {
			t.Fatalf("try %d: the second connect was served: %s", i, out)
		}
	}
	if n := len(e.sessions()); n != 0 {
		t.Errorf("%d sessions journaled from stale records: %+v", n, e.sessions())
	}
	if len(srv.seen) != 0 {
		t.Errorf("the echo server saw connections: %v", srv.seen)
	}
}

// TestBypassForeignSocket: a socket made outside the intercepted cgroup
// (inherited or passed) and connected to a target from inside it is
// refused; so is UDP to a target's address.
func TestBypassForeignSocket(t *testing.T) {
	_, _, srv, cgDir := bypassDaemon(t, "foreign", "")
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "outside")
	defer f.Close()
	cmd := inCgroup(t, cgDir, asNobody(clientBin, "-net", "fd3", "-addr", srv.addr())...)
	cmd.ExtraFiles = []*os.File{f}
	out, _, code := runCmd(t, cmd)
	if code == 0 || !strings.Contains(out, "operation not permitted") {
		t.Errorf("a socket made outside the cgroup reached the target: %s", out)
	}
	// The same client making its own socket is intercepted and served.
	out, _, code = runCmd(t, inCgroup(t, cgDir, asNobody(clientBin, "-addr", srv.addr())...))
	if code != 0 {
		t.Errorf("the client's own socket was not served: %s", out)
	}
	out, _, code = runCmd(t, inCgroup(t, cgDir, asNobody(clientBin, "-net", "udp", "-addr", srv.addr())...))
	if code == 0 || !strings.Contains(out, "operation not permitted") {
		t.Errorf("UDP to the target was not refused: %s", out)
	}
}

// TestBypassLateCgroup: a configured cgroup made while the daemon runs,
// with a job moved in and connecting at once, a hundred times: no job
// ever reaches the target directly.
func TestBypassLateCgroup(t *testing.T) {
	srv := startEcho(t, "tcp4", "127.0.0.2:0")
	parentPath, parentDir := makeCgroup(t, "late")
	job := parentPath + "/job"
	jobDir := filepath.Join(parentDir, "job")
	e := newEnv(t, []target{{name: "echo", address: srv.addr()}}, fmt.Sprintf("intercept:\n  cgroups: [%s]\n%s", job, noRateLimits))
	e.startDaemon()
	var locals []string
	refused, reset := 0, 0
	for i := 0; i < 100; i++ {
		if err := os.Mkdir(jobDir, 0o755); err != nil {
			t.Fatal(err)
		}
		out, _, code := runCmd(t, inCgroup(t, jobDir, asNobody(clientBin, "-addr", srv.addr())...))
		res := parseClient(t, []byte(out))
		switch {
		case code == 0:
			locals = append(locals, res.Local)
		case strings.Contains(res.Error, "operation not permitted"):
			refused++
		case res.Local != "" && (strings.Contains(res.Error, "reset by peer") || res.Error == "EOF"):
			// Reached interlock and was closed there: not direct
			// (checked against the server below).
			locals = append(locals, res.Local)
			reset++
		default:
			t.Errorf("job %d: %s", i, out)
		}
		for k := 0; ; k++ {
			if err := os.Remove(jobDir); err == nil {
				break
			} else if k > 200 {
				t.Fatalf("remove %s: %v", jobDir, err)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitSessions(t, e, len(locals)-reset)
	sessions := e.sessions()
	srv.mu.Lock()
	seen := append([]string(nil), srv.seen...)
	srv.mu.Unlock()
	direct, intercepted := 0, 0
	for _, l := range locals {
		if _, ok := sessions[l]; ok {
			// Interlock's upstream connections may reuse a client's
			// port number: an intercepted client is not direct.
			intercepted++
		} else if slices.Contains(seen, l) {
			direct++
		}
	}
	if direct != 0 {
		t.Errorf("%d of 100 jobs reached the target directly", direct)
	}
	if reset > 5 {
		t.Errorf("%d of 100 jobs were redirected and then closed by interlock; a placed cgroup's connects should be served", reset)
	}
	t.Logf("100 jobs in a cgroup made just before: %d intercepted, %d refused before it was attached, %d closed by interlock, %d direct", intercepted, refused, reset, direct)
}

// TestBypassOtherAddresses: a target on a service that listens on a
// wildcard address is reachable at every local address and all of
// 127.0.0.0/8; connects to any of them are intercepted as that target.
func TestBypassOtherAddresses(t *testing.T) {
	srv := startEcho(t, "tcp", ":0")
	cgPath, cgDir := makeCgroup(t, "other-addrs")
	e := newEnv(t, []target{{name: "echo", address: fmt.Sprintf("127.0.0.2:%d", srv.port())}}, fmt.Sprintf("intercept:\n  cgroups: [%s]\n", cgPath))
	e.startDaemon()
	addrs := []string{fmt.Sprintf("127.0.0.9:%d", srv.port()), fmt.Sprintf("[::1]:%d", srv.port())}
	if ifas, err := net.InterfaceAddrs(); err == nil {
		for _, ifa := range ifas {
			if ipn, ok := ifa.(*net.IPNet); ok && !ipn.IP.IsLoopback() && ipn.IP.To4() != nil {
				addrs = append(addrs, net.JoinHostPort(ipn.IP.String(), fmt.Sprint(srv.port())))
				break
			}
		}
	}
	var locals []string
	for _, a := range addrs {
		out, _, code := runCmd(t, inCgroup(t, cgDir, asNobody(clientBin, "-addr", a)...))
		if code != 0 {
			t.Errorf("%s: %s", a, out)
			continue
		}
		locals = append(locals, parseClient(t, []byte(out)).Local)
	}
	waitSessions(t, e, len(locals))
	sessions := e.sessions()
	for i, l := range locals {
		if so, ok := sessions[l]; !ok || so.Target.Name != "echo" {
			t.Errorf("the connect to %s was not intercepted as target echo", addrs[i])
		}
	}
	out, _, code := runCmd(t, inCgroup(t, cgDir, asNobody(clientBin, "-net", "udp", "-addr", addrs[0])...))
	if code == 0 || !strings.Contains(out, "operation not permitted") {
		t.Errorf("UDP to another address of the target was not refused: %s", out)
	}
}

// TestBypassForgedExe: an unprivileged process enters a user namespace,
// unmaps its own executable and points /proc/self/exe at an allowed binary
// with prctl(PR_SET_MM_MAP, exe_fd), then connects. The kernel itself now
// holds the allowed binary as its exe file; what gives it away is the user
// namespace, and executable facts from outside the initial one are only
// claimed.
func TestBypassForgedExe(t *testing.T) {
	sleep := resolved(t, "sleep")
	e, _, srv, cgDir := bypassDaemon(t, "forged-exe", fmt.Sprintf(`policy:
  default: deny
  rules:
    - {name: sleep-only, match: {identity: {exes: [%s]}}, action: allow}
`, sleep))
	forge := buildForge(t, e.dir)
	host, port, _ := strings.Cut(srv.addr(), ":")
	out, stderr, _ := runCmd(t, inCgroup(t, cgDir, asNobody(forge, host, port, sleep)...))
	if !strings.Contains(out, "exe:"+sleep) {
		t.Fatalf("the forgery did not take: %q %s", out, stderr)
	}
	if answered(out) {
		t.Fatalf("the forged executable was allowed: %q", out)
	}
	waitSessions(t, e, 1)
	for _, so := range e.sessions() {
		p := so.Identity.Proc
		if p == nil {
			t.Fatalf("no process facts: %s", so.Identity.ProcError)
		}
		if p.Exe != sleep || p.ExeTrust != model.ExeClaimed {
			t.Errorf("exe %q exe_trust %q, want the forged %s, claimed", p.Exe, p.ExeTrust, sleep)
		}
		if so.Decision.Action != model.Deny {
			t.Errorf("decision %+v", so.Decision)
		}
	}
}

// buildForge compiles test/e2e/testdata/forge into dir (readable by all).
func buildForge(t *testing.T, dir string) string {
	t.Helper()
	cc, err := exec.LookPath("cc")
	if err != nil {
		cc, err = exec.LookPath("clang")
	}
	if err != nil {
		t.Fatalf("no C compiler (make test installs clang): %v", err)
	}
	src, _ := filepath.Abs("testdata/forge")
	out := filepath.Join(dir, "forge-bin")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"-O2", "-shared", "-fPIC", "-Wl,-z,now", "-o", filepath.Join(out, "libforge.so"), filepath.Join(src, "libforge.c")},
		{"-O2", "-Wl,-z,now", "-o", filepath.Join(out, "forge"), filepath.Join(src, "main.c"), "-L" + out, "-lforge", "-Wl,-rpath,$ORIGIN"},
	} {
		if b, err := exec.Command(cc, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %v: %v\n%s", cc, args, err, b)
		}
	}
	return filepath.Join(out, "forge")
}

// TestBypassMaskScopedToProgram: a detector mask rule scoped to a program
// still masks when interlock cannot establish the program (here, psql run
// in a user namespace, whose executable facts are only claimed): unknown
// never unmasks data. (Column rules were already taken in for the whole
// session by SessionMasks; detector rules were skipped before b13d876.)
func TestBypassMaskScopedToProgram(t *testing.T) {
	srv := requirePG(t)
	if out, err := srv.PSQL(pgtest.AppDB,
		"CREATE TABLE IF NOT EXISTS scoped_pii(id int, email text)",
		"TRUNCATE scoped_pii", "INSERT INTO scoped_pii VALUES (1, 'jane@example.com')",
		"GRANT ALL ON scoped_pii TO "+pgtest.AppUser); err != nil {
		t.Fatalf("setup: %v %s", err, out)
	}
	psql, err := filepath.EvalSymlinks(filepath.Join(srv.BinDir, "psql"))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, []target{pgTarget(t, "db", srv.Addr(), pgtest.AppPassword, "")}, fmt.Sprintf(`policy:
  rules:
    - {name: psql-pii, match: {targets: [db], identity: {exes: [%s]}}, action: mask, mask: {detectors: [email]}}
`, psql))
	query := func(prefix ...string) string {
		argv := append([]string{interlockBin, "run", "-q", "-c", e.cfgPath, "--"}, prefix...)
		argv = append(argv, psql, "-X", "-A", "-t", "-c", "SELECT email FROM scoped_pii", conninfo(srv, "sslmode=disable"))
		out, stderr, code := runCmd(t, exec.Command(argv[0], argv[1:]...))
		if code != 0 {
			t.Fatalf("%v: exit %d: %s %s", prefix, code, out, stderr)
		}
		return strings.TrimSpace(out)
	}
	if got := query(); got == "jane@example.com" {
		t.Fatalf("the rule does not mask even for the verified program: %q", got)
	}
	if got := query("unshare", "-U", "-r"); got == "jane@example.com" || strings.Contains(got, "jane@") {
		t.Errorf("psql in a user namespace (executable claimed) got the value unmasked: %q", got)
	}
	claimed := false
	for _, so := range e.sessions() {
		if p := so.Identity.Proc; p != nil && p.ExeTrust == model.ExeClaimed {
			claimed = true
		}
	}
	if !claimed {
		t.Errorf("no session was recorded with a claimed executable: the case did not set itself up")
	}
}

// TestBypassUnknownIdentityDenied: on a target guarded by a deny rule,
// under `default: allow`, a session whose program identity is unknown (the
// exec race won) is denied by policy.unknown_identity, while the same
// script read before its exec (a verified bash) is allowed.
func TestBypassUnknownIdentityDenied(t *testing.T) {
	e, _, srv, cgDir := bypassDaemon(t, "unknown-identity", `policy:
  rules:
    - {name: no-uid-4242, match: {identity: {uids: [4242]}}, action: deny}
`)
	host, port, _ := strings.Cut(srv.addr(), ":")
	script := fmt.Sprintf(`exec 3<>/dev/tcp/%s/%s || exit 3
( echo hello >&3; read -t 3 line <&3; echo "reply:$line" ) &
exec sleep 0.3`, host, port)
	unknown, tries := 0, 0
	for unknown == 0 && tries < 100 {
		var wg sync.WaitGroup
		for j := 0; j < 10; j++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				runCmd(t, inCgroup(t, cgDir, asNobody("bash", "-c", script)...))
			}()
		}
		wg.Wait()
		tries += 10
		waitSessions(t, e, tries)
		unknown = 0
		for _, so := range e.sessions() {
			p := so.Identity.Proc
			switch {
			case p != nil && p.ExeTrust == model.ExeUnknown:
				unknown++
				if so.Decision.Action != model.Deny || so.Decision.Rule != "policy.unknown_identity" {
					t.Errorf("an unknown identity was not denied by policy.unknown_identity: %+v (%s)", so.Decision, so.Identity.ProcError)
				}
			case p != nil && p.ExeTrust == model.ExeVerified:
				if so.Decision.Action != model.Allow {
					t.Errorf("a verified bash was not allowed: %+v", so.Decision)
				}
			}
		}
	}
	if unknown == 0 {
		t.Fatalf("in %d tries the exec never beat interlock's read: the case did not set itself up", tries)
	}
	t.Logf("%d of %d sessions had an unknown identity, each denied by policy.unknown_identity", unknown, tries)
}
