package pkg

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/interlock/interlock/internal/cgroupfs"
	"github.com/interlock/interlock/internal/testkit"
	"github.com/interlock/interlock/redirector"
)

// unitCaps turns the unit's CapabilityBoundingSet into setpriv's form.
func unitCaps(t *testing.T) string {
	t.Helper()
	unit := readUnit(t, filepath.Join(repoRoot, "packaging", "interlock.service"))
	var caps []string
	for _, c := range strings.Fields(unit["CapabilityBoundingSet"]) {
		caps = append(caps, "+"+strings.ToLower(strings.TrimPrefix(c, "CAP_")))
	}
	if len(caps) == 0 {
		t.Fatal("the unit sets no CapabilityBoundingSet")
	}
	return "-all," + strings.Join(caps, ",")
}

type doctorResult map[string]doctorCheck

func runDoctor(t *testing.T, bin, cfg string) doctorResult {
	t.Helper()
	out, err := exec.Command(bin, "doctor", "--json", "-c", cfg).Output()
	if ee, ok := err.(*exec.ExitError); err != nil && (!ok || ee.ExitCode() != 1) {
		t.Fatalf("doctor: %v", err)
	}
	var list []doctorCheck
	if err := json.Unmarshal(out, &list); err != nil {
		t.Fatalf("doctor --json: %v\n%s", err, out)
	}
	m := doctorResult{}
	for _, c := range list {
		m[c.Name] = c
	}
	return m
}

// TestDaemonUnderUnitCapabilities starts the packaged binary's daemon the
// way the unit does as far as privileges go (only the unit's bounding
// set, no new privileges) and checks that it intercepts a process of
// another user placed in the configured cgroup after it started, and the
// descendants of that process, with the process resolved (which needs the
// ptrace and DAC capabilities). Then doctor, on the live install: pins
// attached to the cgroup, listener up; and after SIGKILL, pins left
// refusing (fail closed), which doctor reports.
func TestDaemonUnderUnitCapabilities(t *testing.T) {
	bin := filepath.Join(workDir, v1, "build", "interlock")
	// Not t.TempDir(): its parent is private, and the client runs as nobody.
	dir, err := os.MkdirTemp("", "interlock-pkgtest-daemon-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	client := filepath.Join(dir, "tcpclient")
	build := exec.Command("go", "build", "-o", client, "./test/e2e/tcpclient")
	build.Dir = repoRoot
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build tcpclient: %v\n%s", err, out)
	}
	// Executable, not readable, by others: hashing it needs CAP_DAC_READ_SEARCH.
	os.Chmod(client, 0o711)

	ln, err := net.Listen("tcp4", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				line, _ := bufio.NewReader(c).ReadString('\n')
				fmt.Fprintf(c, "peer=%s %s", c.RemoteAddr(), line)
			}()
		}
	}()

	cgRoot, err := cgroupfs.Root()
	if err != nil {
		t.Fatal(err)
	}
	cgPath := "/interlock-pkgtest-unit"
	cgDir := filepath.Join(cgRoot, cgPath)
	os.Remove(cgDir)
	if err := os.Mkdir(cgDir, 0o755); err != nil {
		t.Fatal(err)
	}
	defer func() {
		os.WriteFile(filepath.Join(cgDir, "cgroup.kill"), []byte("1"), 0)
		for i := 0; i < 100 && os.Remove(cgDir) != nil; i++ {
			time.Sleep(20 * time.Millisecond)
		}
	}()

	var rnd [4]byte
	rand.Read(rnd[:])
	pin := "/sys/fs/bpf/interlock-pkgtest-" + hex.EncodeToString(rnd[:])
	defer func() {
		if _, err := os.Stat(pin); err == nil {
			redirector.DetachPinned(pin)
		}
	}()
	cfg := filepath.Join(dir, "interlock.yaml")
	journal := filepath.Join(dir, "state", "journal.db")
	yaml := fmt.Sprintf(`state_dir: %s
journal:
  path: %s
control:
  socket: %s
bpf:
  pin_path: %s
log:
  level: debug
intercept:
  cgroups: [%s]
targets:
  - name: echo
    protocol: tcp
    address: %q
`, filepath.Join(dir, "state"), journal, filepath.Join(dir, "run", "ctl.sock"), pin, cgPath, ln.Addr().String())
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}

	var stderr testkit.SyncBuffer
	daemon := exec.Command("setpriv", "--bounding-set="+unitCaps(t), "--inh-caps=-all", "--no-new-privs", "--", bin, "daemon", "-c", cfg)
	daemon.Stderr = &stderr
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { daemon.Wait(); close(done) }()
	defer func() {
		daemon.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("daemon stderr:\n%s", stderr.String())
		}
	}()
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(stderr.String(), "interlock daemon ready") {
		select {
		case <-done:
			t.Fatalf("the daemon exited under the unit's capabilities:\n%s", stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon not ready:\n%s", stderr.String())
		}
	}
	// Structured logs: stderr is a pipe, so log.format auto writes JSON.
	first := strings.SplitN(stderr.String(), "\n", 2)[0]
	if !json.Valid([]byte(first)) {
		t.Errorf("the daemon's log is not JSON on a pipe: %q", first)
	}

	// A process of another user, put in the cgroup now, and its child
	// (a shell runs the client, which is then the shell's descendant).
	f, err := os.Open(cgDir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	inCgroup := func(cmd *exec.Cmd) *exec.Cmd {
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(f.Fd())}
		return cmd
	}
	cmd := inCgroup(exec.Command("/bin/sh", "-c", client+" -addr "+ln.Addr().String()+"; echo done"))
	cmd.Env = []string{"PATH=/usr/bin:/bin", "GITHUB_REPOSITORY=octo-org/octo-repo", "GITHUB_RUN_ID=42"}
	cmd.SysProcAttr.Credential = &syscall.Credential{Uid: 65534, Gid: 65534}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"reply":"peer=127.0.0.1:`) {
		t.Fatalf("client in the cgroup: %v\n%s", err, out)
	}

	var sessions []struct {
		UID        uint32 `json:"uid"`
		Exe        string `json:"exe"`
		CgroupPath string `json:"cgroup_path"`
	}
	deadline = time.Now().Add(10 * time.Second)
	for len(sessions) == 0 && time.Now().Before(deadline) {
		raw, err := exec.Command(bin, "sessions", "list", "--json", "-j", journal).Output()
		if err == nil {
			json.Unmarshal(raw, &sessions)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(sessions) != 1 {
		t.Fatalf("want 1 recorded session, got %+v", sessions)
	}
	if s := sessions[0]; s.UID != 65534 || s.Exe != client || s.CgroupPath != cgPath {
		t.Errorf("session not attributed: %+v (want uid 65534, exe %s, cgroup %s)", s, client, cgPath)
	}
	for _, bad := range []string{"permission denied", "operation not permitted"} {
		if strings.Contains(strings.ToLower(stderr.String()), bad) {
			t.Errorf("the daemon logged %q under the unit's capabilities", bad)
		}
	}

	// doctor on the live install.
	d := runDoctor(t, bin, cfg)
	for _, name := range []string{"pins " + cgPath, "listener", "daemon", "journal", "state dir", "keys"} {
		if d[name].Status != "ok" {
			t.Errorf("doctor %q = %+v, want ok", name, d[name])
		}
	}

	// Killed: the pins stay and refuse; doctor says so.
	daemon.Process.Kill()
	<-done
	d = runDoctor(t, bin, cfg)
	if c := d["pins "+cgPath]; c.Status != "fail" || !strings.Contains(c.Detail, "refused") {
		t.Errorf("doctor with pins and no daemon: %+v, want fail (connects refused)", c)
	}
	if out, err := inCgroup(exec.Command(client, "-addr", ln.Addr().String())).CombinedOutput(); err == nil || !strings.Contains(string(out), "operation not permitted") {
		t.Errorf("with the daemon killed, the connect gave %v: %s", err, out)
	}

	// package-helper detach (what the packages' prerm runs) lets them go.
	if out, err := exec.Command(bin, "package-helper", "detach", "-c", cfg).CombinedOutput(); err != nil {
		t.Fatalf("package-helper detach: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if out, err := inCgroup(exec.CommandContext(ctx, client, "-addr", ln.Addr().String())).CombinedOutput(); err != nil {
		t.Errorf("after detach, a connect from the cgroup failed: %v\n%s", err, out)
	}
}
