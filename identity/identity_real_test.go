package identity

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/interlock/interlock/internal/testkit"
	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/test/testenv"
)

// identTestCgroup2Root finds the cgroup2 mount in /proc/self/mountinfo,
// independently of the code under test.
func identTestCgroup2Root(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		if !ok || !strings.HasPrefix(post, "cgroup2 ") {
			continue
		}
		f := strings.Fields(pre)
		if len(f) >= 5 && f[3] == "/" {
			return strings.ReplaceAll(f[4], `\040`, " ")
		}
	}
	testenv.Require(t, "a cgroup2 mount", errors.New("none in /proc/self/mountinfo"))
	return ""
}

// identTestProcCgroup returns the cgroup v2 path of pid, read directly.
func identTestProcCgroup(t testing.TB, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			return p
		}
	}
	t.Fatalf("no cgroup v2 line in %q", b)
	return ""
}

func identTestIno(t testing.TB, p string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func identTestBootNS(t testing.TB) uint64 {
	t.Helper()
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		t.Fatal(err)
	}
	return uint64(ts.Nano())
}

func identTestFileSHA(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// identTestStartSleep starts `sleep 30`, in cgroupDir when it is not "".
func identTestStartSleep(t *testing.T, cgroupDir string, env []string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("/usr/bin/sleep", "30")
	cmd.Args[0] = "sleep"
	cmd.Env = env
	if cgroupDir != "" {
		fd, err := unix.Open(cgroupDir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	identTestWaitExeced(t, cmd.Process.Pid)
	return cmd
}

// identTestWaitExeced waits until the process's new image has its
// arguments and environment in place. Start returns once execve has
// replaced the memory map (a vfork'd child releases its parent there),
// but the ELF loader sets the argument and environment bounds later:
// until then /proc/PID/cmdline and environ read empty. A process that
// connects has long passed that point; a test that reads it at once has
// not.
func identTestWaitExeced(t *testing.T, pid int) {
	t.Helper()
	path := fmt.Sprintf("/proc/%d/cmdline", pid)
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("waiting for pid %d to exec: %v", pid, err)
		}
		if len(b) > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d has no command line 10 s after exec", pid)
		}
		time.Sleep(time.Millisecond)
	}
}

// identTestMkCgroup creates a cgroup directory under root, removed at the end.
func identTestMkCgroup(t *testing.T, root, name string) string {
	t.Helper()
	dir := filepath.Join(root, fmt.Sprintf("interlock-idtest-%d-%s", os.Getpid(), name))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// processes must be gone first: wait for the kill in other cleanups
		for i := 0; i < 100; i++ {
			if err := unix.Rmdir(dir); err == nil || err == unix.ENOENT {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Errorf("cannot remove %s", dir)
	})
	return dir
}

func TestResolveRealChild(t *testing.T) {
	testenv.RequireRoot(t)
	root := identTestCgroup2Root(t)
	cmd := identTestStartSleep(t, "", []string{"PATH=/usr/bin", "GITHUB_TOKEN=ghs_secret", "GITHUB_REPOSITORY=org/repo", "CI=true"})
	pid := cmd.Process.Pid
	cgPath := identTestProcCgroup(t, pid)
	k := model.KernelFacts{
		PID: uint32(pid), TGID: uint32(pid), UID: uint32(os.Getuid()), GID: uint32(os.Getgid()), Comm: "sleep",
		CgroupID:      identTestIno(t, root+cgPath),
		ConnectBootNS: identTestBootNS(t),
	}
	r := NewResolver(ResolverOptions{})
	if r.cg.root != root {
		t.Fatalf("cgroup2 root %q, want %q", r.cg.root, root)
	}
	id := r.Resolve(context.Background(), k)
	if id.Proc == nil {
		t.Fatalf("no proc facts: %s", id.ProcError)
	}
	p := id.Proc
	wantExe, err := filepath.EvalSymlinks("/usr/bin/sleep")
	if err != nil {
		t.Fatal(err)
	}
	if p.Exe != wantExe {
		t.Fatalf("exe %q, want %q", p.Exe, wantExe)
	}
	if p.ExeSHA256 != identTestFileSHA(t, wantExe) {
		t.Fatalf("sha256 %s, want %s", p.ExeSHA256, identTestFileSHA(t, wantExe))
	}
	if !reflect.DeepEqual(p.Cmdline, []string{"sleep", "30"}) {
		t.Fatalf("cmdline %q", p.Cmdline)
	}
	if p.PPID != uint32(os.Getpid()) || len(p.Parents) == 0 || p.Parents[0].PID != uint32(os.Getpid()) {
		t.Fatalf("ppid %d parents %+v", p.PPID, p.Parents)
	}
	self, _ := os.Executable()
	comm, _ := os.ReadFile("/proc/self/comm")
	if p.Parents[0].Exe != self || p.Parents[0].Comm != strings.TrimSpace(string(comm)) || p.Parents[0].UID != uint32(os.Getuid()) {
		t.Fatalf("parent %+v, want exe %q comm %q", p.Parents[0], self, comm)
	}
	if last := p.Parents[len(p.Parents)-1]; last.PID != 1 {
		t.Fatalf("chain does not reach pid 1: %+v", p.Parents)
	}
	if p.CgroupPath != cgPath {
		t.Fatalf("cgroup path %q, want %q", p.CgroupPath, cgPath)
	}
	if p.EUID != uint32(os.Geteuid()) || p.EGID != uint32(os.Getegid()) || p.User != "root" {
		t.Fatalf("ids: euid %d egid %d user %q", p.EUID, p.EGID, p.User)
	}
	// start time: independently from /proc/PID/stat, and before the connect
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	ticks, _ := strconv.ParseUint(f[19], 10, 64)
	if p.StartBootNS != ticks*uint64(time.Second)/100 || p.StartBootNS > k.ConnectBootNS || k.ConnectBootNS-p.StartBootNS > uint64(time.Minute) {
		t.Fatalf("start %d (ticks %d), connect %d", p.StartBootNS, ticks, k.ConnectBootNS)
	}
	if !reflect.DeepEqual(id.Claimed, map[string]string{"GITHUB_REPOSITORY": "org/repo", "CI": "true"}) {
		t.Fatalf("claims %q", id.Claimed)
	}
	if id.Kernel != k {
		t.Fatal("kernel facts changed")
	}

	// the connection was made before the pid's current process started:
	// a reused pid
	k2 := k
	k2.ConnectBootNS = p.StartBootNS - uint64(time.Second)
	if id := r.Resolve(context.Background(), k2); id.Proc != nil || id.Claimed != nil || id.ProcError != identErrReused {
		t.Fatalf("reuse not detected: %+v", id)
	}
}

func TestResolveRealExited(t *testing.T) {
	testenv.RequireRoot(t)
	cmd := exec.Command("/usr/bin/true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	k := model.KernelFacts{PID: uint32(pid), TGID: uint32(pid), Comm: "true", CgroupID: 1, ConnectBootNS: identTestBootNS(t)}
	id := NewResolver(ResolverOptions{}).Resolve(context.Background(), k)
	if id.Kernel != k || id.Proc != nil || id.Claimed != nil || id.ProcError != identErrExited {
		t.Fatalf("%+v", id)
	}

	// a zombie (exited, not yet reaped) is exited too
	z := exec.Command("/usr/bin/true")
	if err := z.Start(); err != nil {
		t.Fatal(err)
	}
	defer z.Wait()
	zpid := z.Process.Pid
	for i := 0; ; i++ {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", zpid))
		if err != nil {
			t.Fatal(err)
		}
		if st, ok := procfsParseStat(b); ok && st.state == 'Z' {
			break
		}
		if i > 500 {
			t.Fatal("child never became a zombie")
		}
		time.Sleep(10 * time.Millisecond)
	}
	k.PID, k.TGID = uint32(zpid), uint32(zpid)
	if id := NewResolver(ResolverOptions{}).Resolve(context.Background(), k); id.Proc != nil || id.ProcError != identErrExited {
		t.Fatalf("zombie: %+v", id)
	}
}

func TestResolveRealThread(t *testing.T) {
	testenv.RequireRoot(t)
	// the connecting task is a thread other than the main one (as an
	// io_uring worker is): the process is resolved from the tgid
	tidc := make(chan int)
	done := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		tidc <- unix.Gettid()
		<-done
	}()
	tid := <-tidc
	defer close(done)
	if tid == os.Getpid() {
		t.Skip("locked thread is the main thread")
	}
	k := model.KernelFacts{PID: uint32(tid), TGID: uint32(os.Getpid()), Comm: "iou-wrk-" + strconv.Itoa(tid), ConnectBootNS: identTestBootNS(t)}
	id := NewResolver(ResolverOptions{}).Resolve(context.Background(), k)
	self, _ := os.Executable()
	if id.Proc == nil || id.Proc.Exe != self || !reflect.DeepEqual(id.Proc.Cmdline, os.Args) || id.Proc.PPID != uint32(os.Getppid()) {
		t.Fatalf("%+v %s", id.Proc, id.ProcError)
	}
}

func TestResolveRealFreshCgroup(t *testing.T) {
	testenv.RequireRoot(t)
	root := identTestCgroup2Root(t)
	dir := identTestMkCgroup(t, root, "fresh.scope")
	cmd := identTestStartSleep(t, dir, nil)
	pid := cmd.Process.Pid
	want := strings.TrimPrefix(dir, root)
	if got := identTestProcCgroup(t, pid); got != want {
		t.Fatalf("child is in %q, not %q", got, want)
	}
	k := model.KernelFacts{PID: uint32(pid), TGID: uint32(pid), CgroupID: identTestIno(t, dir), ConnectBootNS: identTestBootNS(t)}
	r := NewResolver(ResolverOptions{Cgroup2Root: root})
	id := r.Resolve(context.Background(), k)
	if id.Proc == nil || id.Proc.CgroupPath != want || id.Proc.SystemdUnit != filepath.Base(dir) {
		t.Fatalf("%+v %s", id.Proc, id.ProcError)
	}
	if r.cg.walks != 0 {
		t.Fatalf("searched the hierarchy although the path matched (%d walks)", r.cg.walks)
	}
}

func TestResolveRealMovedCgroup(t *testing.T) {
	testenv.RequireRoot(t)
	root := identTestCgroup2Root(t)
	a := identTestMkCgroup(t, root, "a.scope")
	b := identTestMkCgroup(t, root, "b")
	cmd := identTestStartSleep(t, a, nil)
	pid := cmd.Process.Pid
	k := model.KernelFacts{PID: uint32(pid), TGID: uint32(pid), CgroupID: identTestIno(t, a), ConnectBootNS: identTestBootNS(t)}
	// the process moves after it connected
	if err := os.WriteFile(filepath.Join(b, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := identTestProcCgroup(t, pid); got != strings.TrimPrefix(b, root) {
		t.Fatalf("move failed: %q", got)
	}
	r := NewResolver(ResolverOptions{Cgroup2Root: root})
	for i := 0; i < 3; i++ {
		id := r.Resolve(context.Background(), k)
		if id.Proc == nil || id.Proc.CgroupPath != strings.TrimPrefix(a, root) || id.Proc.SystemdUnit != filepath.Base(a) {
			t.Fatalf("%+v %s", id.Proc, id.ProcError)
		}
	}
	if r.cg.walks != 1 {
		t.Fatalf("%d walks, want 1 (then the cache)", r.cg.walks)
	}
}

func TestResolveRealDeletedExe(t *testing.T) {
	testenv.RequireRoot(t)
	// run a copy of sleep, then replace the copy on disk: the hash is of
	// what runs, not of what the path now holds
	dir := t.TempDir()
	bin := filepath.Join(dir, "mysleep")
	orig, err := os.ReadFile("/usr/bin/sleep")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, orig, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	identTestWaitExeced(t, cmd.Process.Pid)
	if err := os.Remove(bin); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho impostor\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	k := model.KernelFacts{PID: uint32(pid), TGID: uint32(pid), ConnectBootNS: identTestBootNS(t)}
	id := NewResolver(ResolverOptions{}).Resolve(context.Background(), k)
	if id.Proc == nil {
		t.Fatal(id.ProcError)
	}
	want := sha256.Sum256(orig)
	if id.Proc.ExeSHA256 != hex.EncodeToString(want[:]) {
		t.Fatalf("hash %s, want that of the running binary %x", id.Proc.ExeSHA256, want)
	}
	if id.Proc.Exe != bin+" (deleted)" {
		t.Fatalf("exe %q", id.Proc.Exe)
	}
}

// BenchmarkResolve resolves the test process itself with warm caches.
func BenchmarkResolve(b *testing.B) {
	root := ""
	if os.Geteuid() == 0 {
		root = identTestCgroup2Root(b)
	}
	pid := os.Getpid()
	k := model.KernelFacts{PID: uint32(pid), TGID: uint32(pid), UID: uint32(os.Getuid()), GID: uint32(os.Getgid()), ConnectBootNS: identTestBootNS(b)}
	if root != "" {
		k.CgroupID = identTestIno(b, root+identTestProcCgroup(b, pid))
	}
	// What the hook records of the program, so the resolution judges it
	// as it does a connect's (the namespaces, the executable's identity).
	var ex unix.Statx_t
	var su, sm unix.Stat_t
	if unix.Statx(unix.AT_FDCWD, "/proc/self/exe", 0, unix.STATX_BASIC_STATS, &ex) != nil ||
		unix.Stat("/proc/self/ns/user", &su) != nil || unix.Stat("/proc/self/ns/mnt", &sm) != nil {
		b.Fatal("cannot read the test's own executable and namespaces")
	}
	k.ExeDev, k.ExeIno = unix.Mkdev(ex.Dev_major, ex.Dev_minor), ex.Ino
	k.ExeCtimeNS = ex.Ctime.Sec*1e9 + int64(ex.Ctime.Nsec)
	k.UserNS, k.MntNS = uint32(su.Ino), uint32(sm.Ino)
	r := NewResolver(ResolverOptions{Cgroup2Root: root})
	ctx := context.Background()
	if id := r.Resolve(ctx, k); id.Proc == nil || id.Proc.ExeSHA256 == "" || id.Proc.ExeTrust != model.ExeVerified {
		b.Fatalf("%+v %s", id.Proc, id.ProcError)
	}
	b.ReportAllocs()
	cpu0 := testkit.ProcessCPU(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r.Resolve(ctx, k)
	}
	b.StopTimer()
	// CPU time per resolution (user+system, whole process): on a busy
	// machine wall time also counts waiting for a CPU.
	b.ReportMetric(float64(testkit.ProcessCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
}
