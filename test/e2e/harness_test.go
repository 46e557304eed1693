// Package e2e tests interlock end to end: the real kernel's BPF hooks on a
// real cgroup, the real binary, real client processes and servers on
// loopback addresses. It needs root; under CI=true a missing prerequisite
// fails instead of skipping.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/interlock/interlock/internal/cgroupfs"
	"github.com/interlock/interlock/internal/testkit"
	"github.com/interlock/interlock/journal"
	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/redirector"
)

var (
	// binDir holds the binaries, readable and executable by everyone so a
	// non-root user can run them too.
	binDir       string
	interlockBin string
	clientBin    string
	clientSHA256 string
	cgroupRoot   string
)

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	ci := os.Getenv("CI") == "true"
	if os.Geteuid() != 0 {
		if ci {
			fmt.Fprintln(os.Stderr, "e2e: these tests need root (CI=true: failing, not skipping)")
			return 1
		}
		fmt.Fprintln(os.Stderr, "e2e: skipped: not root")
		return 0
	}
	for _, tool := range []string{"sqlite3", "setpriv", "runuser"} {
		if _, err := exec.LookPath(tool); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: %s is missing (make test installs it): %v\n", tool, err)
			return 1
		}
	}
	var err error
	if cgroupRoot, err = cgroupfs.Root(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	binDir, err = os.MkdirTemp("", "interlock-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(binDir)
	if err := os.Chmod(binDir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	interlockBin = filepath.Join(binDir, "interlock")
	clientBin = filepath.Join(binDir, "tcpclient")
	for out, pkg := range map[string]string{interlockBin: "../../cmd/interlock", clientBin: "./tcpclient"} {
		cmd := exec.Command("go", "build", "-o", out, pkg)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: build %s: %v\n", pkg, err)
			return 1
		}
	}
	b, err := os.ReadFile(clientBin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	sum := sha256.Sum256(b)
	clientSHA256 = hex.EncodeToString(sum[:])
	return m.Run()
}

// echoServer is a target: it answers each connection's hello line with the
// peer address it saw, and counts bulk bytes until EOF.
type echoServer struct {
	t    *testing.T
	ln   net.Listener
	mu   sync.Mutex
	seen []string // peer addresses, in accept order
}

func startEcho(t *testing.T, network, addr string) *echoServer {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	s := &echoServer{t: t, ln: ln}
	go s.serve()
	t.Cleanup(func() { ln.Close() })
	return s
}

func (s *echoServer) addr() string { return s.ln.Addr().String() }

func (s *echoServer) port() int { return s.ln.Addr().(*net.TCPAddr).Port }

func (s *echoServer) serve() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.seen = append(s.seen, c.RemoteAddr().String())
		s.mu.Unlock()
		go func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(60 * time.Second))
			r := bufio.NewReader(c)
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			var pid, bulk int
			fmt.Sscanf(line, "hello pid=%d bulk=%d", &pid, &bulk)
			if bulk > 0 {
				n, _ := io.Copy(io.Discard, r)
				fmt.Fprintf(c, "peer=%s got=%d\n", c.RemoteAddr(), n)
				return
			}
			fmt.Fprintf(c, "peer=%s pid=%d\n", c.RemoteAddr(), pid)
			// A held client says hello again later on the same connection.
			if again, err := r.ReadString('\n'); err == nil {
				fmt.Fprintf(c, "still here: %s\n", strings.TrimSpace(again))
			}
		}()
	}
}

func (s *echoServer) peers() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.seen...)
}

// clientResult is tcpclient's output line.
type clientResult struct {
	PID   int    `json:"pid"`
	UID   int    `json:"uid"`
	Local string `json:"local"`
	Peer  string `json:"peer"`
	Reply string `json:"reply"`
	Error string `json:"error"`
}

func parseClient(t *testing.T, out []byte) clientResult {
	t.Helper()
	var r clientResult
	line := bytes.TrimSpace(out)
	if i := bytes.LastIndexByte(line, '\n'); i >= 0 {
		line = line[i+1:]
	}
	if err := json.Unmarshal(line, &r); err != nil {
		t.Fatalf("client output %q: %v", out, err)
	}
	return r
}

// env is one test's interlock configuration and files.
type env struct {
	t       *testing.T
	dir     string
	cfgPath string
	journal string
	socket  string
	pin     string
}

type target struct {
	name, address string
	// protocol defaults to tcp; extra is YAML added under the target,
	// indented by four spaces (such as "credentials:\n      user: u").
	protocol, extra string
}

// newEnv writes a config with the given targets (and extra YAML lines) into
// a fresh directory. The control socket and pins are private to the test.
func newEnv(t *testing.T, targets []target, extra string) *env {
	t.Helper()
	dir := t.TempDir()
	// Other users (approvers, the non-root tests) must reach the sockets.
	os.Chmod(dir, 0o755)
	os.Chmod(filepath.Dir(dir), 0o755)
	var rnd [4]byte
	rand.Read(rnd[:])
	e := &env{
		t:       t,
		dir:     dir,
		cfgPath: filepath.Join(dir, "interlock.yaml"),
		journal: filepath.Join(dir, "journal.db"),
		socket:  filepath.Join(dir, "run", "ctl.sock"),
		pin:     "/sys/fs/bpf/interlock-e2e-" + hex.EncodeToString(rnd[:]),
	}
	var b strings.Builder
	fmt.Fprintf(&b, "state_dir: %s\njournal:\n  path: %s\ncontrol:\n  socket: %s\nbpf:\n  pin_path: %s\nlog:\n  level: debug\n",
		filepath.Join(dir, "state"), e.journal, e.socket, e.pin)
	b.WriteString(extra)
	if len(targets) > 0 {
		b.WriteString("targets:\n")
		for _, tg := range targets {
			proto := tg.protocol
			if proto == "" {
				proto = "tcp"
			}
			fmt.Fprintf(&b, "  - name: %s\n    protocol: %s\n    address: %q\n", tg.name, proto, tg.address)
			if tg.extra != "" {
				fmt.Fprintf(&b, "    %s\n", tg.extra)
			}
		}
	}
	if err := os.WriteFile(e.cfgPath, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := os.Stat(e.pin); err == nil {
			if err := redirector.DetachPinned(e.pin); err != nil {
				t.Logf("clean pins %s: %v", e.pin, err)
			}
		}
	})
	return e
}

// interlock runs the binary to completion.
func (e *env) interlock(args ...string) (stdout, stderr string, code int) {
	e.t.Helper()
	return runCmd(e.t, exec.Command(interlockBin, args...))
}

func runCmd(t *testing.T, cmd *exec.Cmd) (stdout, stderr string, code int) {
	t.Helper()
	var o, eb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &eb
	err := cmd.Run()
	code = 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("run %v: %v", cmd.Args, err)
		}
		code = ee.ExitCode()
	}
	return o.String(), eb.String(), code
}

// runUnder runs argv with `interlock run`.
func (e *env) runUnder(argv ...string) (stdout, stderr string, code int) {
	e.t.Helper()
	return e.interlock(append([]string{"run", "-c", e.cfgPath, "--"}, argv...)...)
}

// entries reads every journal entry, decoded.
type entry struct {
	Seq     uint64          `json:"seq"`
	Time    int64           `json:"time"`
	Kind    string          `json:"kind"`
	Session string          `json:"session"`
	Data    json.RawMessage `json:"data"`
}

func (e *env) entries() []entry {
	e.t.Helper()
	var out []entry
	err := journal.Entries(context.Background(), e.journal, 1, func(en journal.Entry) error {
		var x entry
		if err := json.Unmarshal(en.Body, &x); err != nil {
			return err
		}
		out = append(out, x)
		return nil
	})
	if err != nil {
		e.t.Fatalf("read journal: %v", err)
	}
	return out
}

// entriesOf returns the data of the journal's entries of one kind, decoded.
func entriesOf[T any](e *env, kind string) []T {
	e.t.Helper()
	var out []T
	for _, en := range e.entries() {
		if en.Kind != kind {
			continue
		}
		var v T
		if err := json.Unmarshal(en.Data, &v); err != nil {
			e.t.Fatalf("%s %d: %v", kind, en.Seq, err)
		}
		out = append(out, v)
	}
	return out
}

// sessions returns the session.open records, keyed by the client address.
func (e *env) sessions() map[string]model.SessionOpen {
	e.t.Helper()
	out := map[string]model.SessionOpen{}
	for _, so := range entriesOf[model.SessionOpen](e, model.KindSessionOpen) {
		out[so.Client.String()] = so
	}
	return out
}

func (e *env) closes() map[string]model.SessionClose {
	e.t.Helper()
	out := map[string]model.SessionClose{}
	for _, en := range e.entries() {
		if en.Kind != model.KindSessionClose {
			continue
		}
		var sc model.SessionClose
		if err := json.Unmarshal(en.Data, &sc); err != nil {
			e.t.Fatalf("session.close %d: %v", en.Seq, err)
		}
		out[en.Session] = sc
	}
	return out
}

// daemon is a running `interlock daemon`.
type daemon struct {
	cmd    *exec.Cmd
	stderr *testkit.SyncBuffer
	done   chan struct{}
}

func (e *env) startDaemon(args ...string) *daemon {
	e.t.Helper()
	d := &daemon{stderr: &testkit.SyncBuffer{}, done: make(chan struct{})}
	d.cmd = exec.Command(interlockBin, append([]string{"daemon", "-c", e.cfgPath}, args...)...)
	d.cmd.Stderr = d.stderr
	if err := d.cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	go func() { d.cmd.Wait(); close(d.done) }()
	e.t.Cleanup(func() {
		d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.done:
		case <-time.After(10 * time.Second):
			d.cmd.Process.Kill()
		}
		if e.t.Failed() {
			e.t.Logf("daemon stderr:\n%s", d.stderr.String())
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if strings.Contains(d.stderr.String(), "interlock daemon ready") {
			return d
		}
		select {
		case <-d.done:
			e.t.Fatalf("daemon exited early: %s", d.stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	e.t.Fatalf("daemon not ready: %s", d.stderr.String())
	return nil
}

func (d *daemon) stop(t *testing.T, sig syscall.Signal) {
	t.Helper()
	d.cmd.Process.Signal(sig)
	select {
	case <-d.done:
	case <-time.After(15 * time.Second):
		t.Fatalf("daemon did not stop on %v", sig)
	}
}

// makeCgroup creates a cgroup for a test and removes it at the end.
func makeCgroup(t *testing.T, name string) (path, dir string) {
	t.Helper()
	path = "/interlock-e2e-" + name
	dir = filepath.Join(cgroupRoot, path)
	os.Remove(dir)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0)
		for i := 0; i < 100; i++ {
			if err := os.Remove(dir); err == nil || os.IsNotExist(err) {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	return path, dir
}

// inCgroup returns a command that starts directly in the cgroup directory.
func inCgroup(t *testing.T, dir string, argv ...string) *exec.Cmd {
	t.Helper()
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(f.Fd())}
	return cmd
}

// stopRun ends an `interlock run` a test may have left running. SIGTERM
// first: the run forwards it to its command, then removes its cgroup.
// SIGKILL only when it does not end, as a killed run leaves its cgroup
// behind for the next process with its pid.
func stopRun(c *exec.Cmd) {
	if c.Process == nil || c.ProcessState != nil {
		return
	}
	c.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { c.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		c.Process.Kill()
		<-done
	}
}
