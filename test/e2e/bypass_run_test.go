package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/runner"
)

// Issue 12: ways a process watched by `interlock run` could reach a target
// without interlock seeing it, and that they are closed.

// TestRunClosesInheritedDescriptors: a socket that the process launching
// interlock connected to a target directly, from outside any intercepted
// cgroup, and left open across exec, does not reach the command: a write
// to it fails with EBADF and nothing arrives at the target. With
// --keep-fd it does reach the command, at the same number.
func TestRunClosesInheritedDescriptors(t *testing.T) {
	srv := startEcho(t, "tcp4", "127.0.0.2:0")
	e := newEnv(t, []target{{name: "echo", address: srv.addr()}}, "")
	const n = 9
	// The write goes through sh's own redirection, so its error is the
	// kernel's: "Bad file descriptor" when the descriptor is not there.
	script := fmt.Sprintf(`printf 'hello pid=%d bulk=0\n' >&%d; echo "rc=$?"`, os.Getpid(), n)

	// run starts `interlock run ARGS -- sh -c script` with a socket
	// connected straight to the target at descriptor n, not close-on-exec
	// in interlock (ExtraFiles clears the flag in the child only).
	run := func(t *testing.T, args ...string) (sock *os.File, stdout, stderr string, code int) {
		t.Helper()
		sock = dialBlocking(t, srv.addr())
		cmd := exec.Command(interlockBin, append(append([]string{"run", "-c", e.cfgPath}, args...), "--", "sh", "-c", script)...)
		cmd.ExtraFiles = make([]*os.File, n-2)
		cmd.ExtraFiles[n-3] = sock
		stdout, stderr, code = runCmd(t, cmd)
		return sock, stdout, stderr, code
	}

	t.Run("closed", func(t *testing.T) {
		c, stdout, stderr, code := run(t)
		if code != 0 {
			t.Fatalf("interlock run exited %d: %s%s", code, stdout, stderr)
		}
		if strings.Contains(stdout, "rc=0") || !strings.Contains(stderr, "Bad file descriptor") {
			t.Errorf("the command could write to the inherited descriptor %d: stdout %q, stderr %q", n, stdout, stderr)
		}
		// Nothing reached the target through the launcher's socket: the
		// echo server answers every hello line.
		if line, err := readLine(c, 300*time.Millisecond); err == nil {
			t.Errorf("the target answered on the launcher's socket: %q", line)
		} else if !errors.Is(err, syscall.EAGAIN) {
			t.Errorf("reading the launcher's socket: %v, want a timeout", err)
		}
	})

	t.Run("kept", func(t *testing.T) {
		c, stdout, stderr, code := run(t, "--keep-fd", strconv.Itoa(n))
		if code != 0 || !strings.Contains(stdout, "rc=0") || strings.Contains(stderr, "Bad file descriptor") {
			t.Fatalf("with --keep-fd %d the command could not write to it (exit %d): %s%s", n, code, stdout, stderr)
		}
		line, err := readLine(c, 5*time.Second)
		if err != nil || !strings.Contains(line, fmt.Sprintf("pid=%d", os.Getpid())) {
			t.Errorf("the target's answer to the command's write on descriptor %d: %q, %v", n, line, err)
		}
		// What --keep-fd passes on is the caller's choice, and is not
		// intercepted: the README says so.
		if s := e.sessions(); len(s) != 0 {
			t.Errorf("a session was recorded for a descriptor passed on: %v", keys(s))
		}
	})

	t.Run("usage", func(t *testing.T) {
		for _, tc := range []struct{ fd, want string }{
			{"2", "always reach the command"},
			{"8", "not started with descriptor 8 open"},
			{"x", "keep-fd"},
		} {
			_, stdout, stderr, code := run(t, "--keep-fd", tc.fd)
			if code != 64 || !strings.Contains(stderr, tc.want) {
				t.Errorf("--keep-fd %s: exit %d, want 64 and %q: %s%s", tc.fd, code, tc.want, stdout, stderr)
			}
		}
	})
}

// dialBlocking connects a plain blocking socket to addr, as a C program
// would, without Go's poller (net.Conn.File would turn the connection's
// own descriptor blocking under the poller's feet).
func dialBlocking(t *testing.T, addr string) *os.File {
	t.Helper()
	ap := netip.MustParseAddrPort(addr)
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Connect(fd, &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}); err != nil {
		syscall.Close(fd)
		t.Fatalf("connect %s: %v", addr, err)
	}
	f := os.NewFile(uintptr(fd), "socket to "+addr)
	t.Cleanup(func() { f.Close() })
	return f
}

// readLine reads one line from a blocking socket, giving up after wait
// with EAGAIN.
func readLine(f *os.File, wait time.Duration) (string, error) {
	tv := syscall.NsecToTimeval(wait.Nanoseconds())
	if err := syscall.SetsockoptTimeval(int(f.Fd()), syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv); err != nil {
		return "", err
	}
	var line []byte
	b := make([]byte, 1)
	for {
		n, err := syscall.Read(int(f.Fd()), b)
		if err != nil {
			return string(line), err
		}
		if n == 0 {
			return string(line), io.EOF
		}
		line = append(line, b[0])
		if b[0] == '\n' {
			return string(line), nil
		}
	}
}

// delegatedCgroup makes a cgroup handed to uid the way systemd delegates
// user@UID.service: the directory, cgroup.procs, cgroup.threads and
// cgroup.subtree_control belong to the user.
func delegatedCgroup(t *testing.T, name string, uid int) (path, dir string) {
	t.Helper()
	path, dir = makeCgroup(t, name)
	for _, p := range []string{dir, dir + "/cgroup.procs", dir + "/cgroup.threads", dir + "/cgroup.subtree_control"} {
		if err := os.Chown(p, uid, uid); err != nil {
			t.Fatal(err)
		}
	}
	return path, dir
}

var (
	reBefore = regexp.MustCompile(`(?m)^before=0::(.*)$`)
	reMove   = regexp.MustCompile(`(?m)^move=(\d+)$`)
	reAfter  = regexp.MustCompile(`(?m)^after=0::(.*)$`)
)

// TestRunConfinedFromDelegatedCgroup: `interlock run` started from a
// cgroup that the command's (non-root) user may write puts the command's
// cgroup below the root-owned /interlock.run instead. The command writes
// its own pid into the delegated cgroup's cgroup.procs, which would take
// it out of a cgroup nested there, then connects to the target: the move
// fails, and the connection is intercepted and journaled. Both with the
// embedded engine and with a daemon.
func TestRunConfinedFromDelegatedCgroup(t *testing.T) {
	for _, engine := range []string{"embedded", "daemon"} {
		t.Run(engine, func(t *testing.T) {
			srv := startEcho(t, "tcp4", "127.0.0.2:0")
			e := newEnv(t, []target{{name: "echo", address: srv.addr()}}, "")
			if engine == "daemon" {
				e.startDaemon()
			}
			cgPath, cgDir := delegatedCgroup(t, "bypass-deleg-"+engine, 65534)
			script := fmt.Sprintf(`echo "before=$(grep ^0:: /proc/self/cgroup)"
echo $$ > %s/cgroup.procs; echo "move=$?"
echo "after=$(grep ^0:: /proc/self/cgroup)"
exec %s -addr %s`, cgDir, clientBin, srv.addr())
			cmd := inCgroup(t, cgDir, interlockBin, "run", "-v", "--engine", engine, "-c", e.cfgPath, "--",
				"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c", script)
			stdout, stderr, code := runCmd(t, cmd)
			if code != 0 {
				t.Fatalf("interlock run exited %d: %s%s", code, stdout, stderr)
			}
			before, after, move := reBefore.FindStringSubmatch(stdout), reAfter.FindStringSubmatch(stdout), reMove.FindStringSubmatch(stdout)
			if before == nil || after == nil || move == nil {
				t.Fatalf("the command's output lacks its cgroups or the move's status: %s\n%s", stdout, stderr)
			}
			runCg := before[1]
			if !regexp.MustCompile(`^` + regexp.QuoteMeta(runner.RunParent) + `/interlock-run-\d+(-\d+)?$`).MatchString(runCg) {
				t.Errorf("the command ran in %s, want a cgroup below %s (the caller's %s is the user's)", runCg, runner.RunParent, cgPath)
			}
			if !strings.Contains(stderr, "below interlock's own subtree") || !strings.Contains(stderr, cgPath) {
				t.Errorf("-v does not say why the cgroup was relocated: %s", stderr)
			}
			moved := move[1] == "0"
			if moved {
				t.Logf("the move into %s succeeded; the connection must still be intercepted", cgPath)
			} else if after[1] != runCg {
				t.Errorf("the move failed (status %s) but the command is now in %s", move[1], after[1])
			}

			res := parseClient(t, []byte(stdout))
			if res.Error != "" {
				t.Fatalf("client: %s", res.Error)
			}
			if res.UID != 65534 {
				t.Errorf("the client ran as uid %d", res.UID)
			}
			// session.open is synced before the client's first byte goes
			// upstream, and the client had its answer: no need to wait.
			so, ok := e.sessions()[res.Local]
			if !ok {
				t.Fatalf("the connection from %s (after the move %s) was not journaled: it reached the target directly (server saw %v)",
					res.Local, map[bool]string{true: "succeeded", false: "failed"}[moved], srv.peers())
			}
			if int(so.Identity.Kernel.TGID) != res.PID || so.Identity.Kernel.UID != 65534 {
				t.Errorf("session attributed to pid %d uid %d, the client was pid %d uid 65534", so.Identity.Kernel.TGID, so.Identity.Kernel.UID, res.PID)
			}
			for _, p := range srv.peers() {
				if p == res.Local {
					t.Errorf("the target saw the client's own socket %s: not proxied", p)
				}
			}
			var rs []model.RunStart
			for _, r := range entriesOf[model.RunStart](e, model.KindRunStart) {
				if r.Cgroup == runCg {
					rs = append(rs, r)
				}
			}
			if len(rs) != 1 || rs[0].Engine != engine {
				t.Errorf("run.start for %s by the %s engine: %+v", runCg, engine, rs)
			}

			// The relocated cgroup is gone; its parent stays, root's alone.
			if _, err := os.Stat(filepath.Join(cgroupRoot, runCg)); !os.IsNotExist(err) {
				t.Errorf("the run's cgroup %s is still there: %v", runCg, err)
			}
			exps, err := runner.NonRootWritable(cgroupRoot, runner.RunParent)
			if err != nil || len(exps) != 0 {
				t.Errorf("%s is writable by others: %v %s", runner.RunParent, err, runner.Describe(exps))
			}
			fi, err := os.Stat(filepath.Join(cgroupRoot, runner.RunParent))
			if st, ok := fi.Sys().(*syscall.Stat_t); err != nil || !ok || st.Uid != 0 || fi.Mode().Perm() != 0o755 {
				t.Errorf("%s: %v, mode %v, want 0755 root", runner.RunParent, err, fi.Mode())
			}
		})
	}
}

// TestRunNestsInRootOnlyCgroup: started from a cgroup only root may write,
// the command's cgroup is below the caller's, as before, so whatever
// intercepts the caller still covers it.
func TestRunNestsInRootOnlyCgroup(t *testing.T) {
	e := newEnv(t, nil, "")
	cgPath, cgDir := makeCgroup(t, "bypass-rootonly")
	stdout, stderr, code := runCmd(t, inCgroup(t, cgDir, interlockBin, "run", "-v", "-c", e.cfgPath, "--", "grep", "^0::", "/proc/self/cgroup"))
	if code != 0 {
		t.Fatalf("interlock run exited %d: %s%s", code, stdout, stderr)
	}
	if want := regexp.MustCompile(`^0::` + regexp.QuoteMeta(cgPath) + `/interlock-run-\d+(-\d+)?\n$`); !want.MatchString(stdout) {
		t.Errorf("the command ran in %q, want below %s", stdout, cgPath)
	}
	if !strings.Contains(stderr, "below the caller's") {
		t.Errorf("-v does not say the cgroup nests below the caller's: %s", stderr)
	}
}

// TestDoctorFlagsBypasses: `interlock doctor --json` on this host reports
// Yama, an intercepted cgroup below one its user may write, and a target
// whose service listens on a wildcard address.
func TestDoctorFlagsBypasses(t *testing.T) {
	ln, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	parent, parentDir := delegatedCgroup(t, "bypass-doctor", 65534)
	job := parent + "/job"
	if err := os.Mkdir(filepath.Join(parentDir, "job"), 0o755); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(filepath.Join(parentDir, "job"))
	e := newEnv(t, []target{{name: "wild", address: fmt.Sprintf("127.0.0.2:%d", port)}}, fmt.Sprintf("intercept:\n  cgroups: [%s]\n", job))
	out, stderr, _ := e.interlock("doctor", "--json", "-c", e.cfgPath)
	var checks []struct{ Name, Status, Detail, Fix string }
	if err := json.Unmarshal([]byte(out), &checks); err != nil {
		t.Fatalf("doctor --json: %v: %s%s", err, out, stderr)
	}
	byName := map[string]struct{ Name, Status, Detail, Fix string }{}
	for _, c := range checks {
		byName[c.Name] = c
	}
	yama := byName["yama ptrace_scope"]
	scope, err := os.ReadFile("/proc/sys/kernel/yama/ptrace_scope")
	switch {
	case err != nil || strings.TrimSpace(string(scope)) == "0":
		if yama.Status != "warn" || !strings.Contains(yama.Fix, "ptrace_scope=1") {
			t.Errorf("Yama off or absent, check says %+v", yama)
		}
	default:
		if yama.Status != "ok" {
			t.Errorf("ptrace_scope %s, check says %+v", scope, yama)
		}
	}
	if c := byName["cgroup "+job+" ancestors"]; c.Status != "warn" || !strings.Contains(c.Detail, parent+" (the directory is owned by uid 65534") {
		t.Errorf("delegated parent of an intercepted cgroup: %+v", c)
	}
	if c := byName["target wild listener"]; c.Status != "warn" || !strings.Contains(c.Detail, "reachable also at: ") ||
		!strings.Contains(c.Detail, fmt.Sprintf("127.0.0.0/8 port %d", port)) {
		t.Errorf("wildcard listener: %+v", c)
	}
}
