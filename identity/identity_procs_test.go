package identity

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/test/testenv"
)

// TestResolveCacheSeesExec: a process resolved once is served from the
// cache while it stays the same, and read again after it execs another
// program under the same pid and start time.
func TestResolveCacheSeesExec(t *testing.T) {
	pid, gate, k := identTestGatedShell(t)
	r := NewResolver(ResolverOptions{})
	shell, _ := filepath.EvalSymlinks("/bin/sh")
	first := r.Resolve(context.Background(), k)
	if first.Proc == nil || first.Proc.Exe != shell {
		t.Fatalf("first resolution: %+v %s", first.Proc, first.ProcError)
	}
	if _, ok := r.procs.get(identProcKey{tgid: k.TGID, startTicks: first.Proc.StartBootNS / r.tickNS, uid: k.UID, gid: k.GID, cgroupID: k.CgroupID}); !ok {
		t.Fatalf("the resolution was not cached")
	}
	second := r.Resolve(context.Background(), k)
	if second.Proc == nil || second.Proc.Exe != shell || second.Proc.ExeSHA256 != first.Proc.ExeSHA256 || len(second.Proc.Parents) == 0 {
		t.Fatalf("cached resolution differs: %+v", second.Proc)
	}

	os.WriteFile(gate, nil, 0o644)
	sleep, _ := filepath.EvalSymlinks("/usr/bin/sleep")
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && !identTestRuns(pid, "/usr/bin/sleep") {
		time.Sleep(10 * time.Millisecond)
	}
	after := r.Resolve(context.Background(), k)
	if after.Proc == nil || after.Proc.Exe != sleep || after.Proc.ExeSHA256 != identTestFileSHA(t, sleep) {
		t.Fatalf("after exec the cache still answered: %+v", after.Proc)
	}
	if len(after.Proc.Cmdline) != 2 || after.Proc.Cmdline[0] != "/usr/bin/sleep" {
		t.Errorf("cmdline after exec: %q", after.Proc.Cmdline)
	}
}

// identTestRuns reports whether pid has finished exec'ing argv0: its
// executable link changes before the loader sets the new image's
// command line, which reads empty in between.
func identTestRuns(pid int, argv0 string) bool {
	b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	return bytes.HasPrefix(b, []byte(argv0+"\x00"))
}

// TestResolveCacheExecDuringResolution: a process that execs while it is
// being resolved must not have the facts read before the exec cached
// under the executable and command line of after it; the next resolution
// sees the new program.
func TestResolveCacheExecDuringResolution(t *testing.T) {
	pid, gate, k := identTestGatedShell(t)
	sleep, _ := filepath.EvalSymlinks("/usr/bin/sleep")
	r := NewResolver(ResolverOptions{})
	r.testHookMidRead = func(uint32) {
		// The exec happens after exe and cmdline were read.
		os.WriteFile(gate, nil, 0o644)
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if identTestRuns(pid, "/usr/bin/sleep") {
				return
			}
		}
		t.Errorf("the process did not exec")
	}
	shell, _ := filepath.EvalSymlinks("/bin/sh")
	if first := r.Resolve(context.Background(), k); first.Proc == nil || first.Proc.Exe != shell {
		t.Fatalf("first resolution: %+v %s", first.Proc, first.ProcError)
	}
	r.testHookMidRead = nil
	after := r.Resolve(context.Background(), k)
	if after.Proc == nil || after.Proc.Exe != sleep || after.Proc.ExeSHA256 != identTestFileSHA(t, sleep) {
		t.Fatalf("after exec the cache answered with the facts from before it: %+v", after.Proc)
	}
}

// identTestGatedShell starts a shell that execs /usr/bin/sleep once the
// file gate exists, and returns its pid, gate and the kernel's facts of a
// connect it makes.
func identTestGatedShell(t *testing.T) (pid int, gate string, k model.KernelFacts) {
	t.Helper()
	testenv.RequireRoot(t)
	root := identTestCgroup2Root(t)
	gate = filepath.Join(t.TempDir(), "go")
	cmd := exec.Command("/bin/sh", "-c", "while [ ! -e "+gate+" ]; do sleep 0.01; done; exec /usr/bin/sleep 30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	pid = cmd.Process.Pid
	identTestWaitExeced(t, pid)
	k = model.KernelFacts{
		PID: uint32(pid), TGID: uint32(pid), UID: uint32(os.Getuid()), GID: uint32(os.Getgid()),
		CgroupID:      identTestIno(t, root+identTestProcCgroup(t, pid)),
		ConnectBootNS: identTestBootNS(t),
	}
	return pid, gate, k
}
