package redirector

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/interlock/interlock/identity"
	"github.com/interlock/interlock/test/testenv"
)

// TestLineageKernel runs the lineage programs on this kernel: a process
// that executes a registered executable is tagged, a process it orphaned
// (a double fork through a subshell) still carries the tag after
// reparenting, a process outside its tree carries none, and a tag set
// from userspace on a running process reaches what it forks later.
func TestLineageKernel(t *testing.T) {
	testenv.RequireRoot(t)
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Fatal(err)
	}
	l, err := loadLineage()
	if err != nil {
		t.Fatalf("load the lineage programs: %v", err)
	}
	defer l.close()

	agent := filepath.Join(t.TempDir(), "agent")
	copyFile(t, "/bin/sh", agent)
	var st unix.Stat_t
	if err := unix.Stat(agent, &st); err != nil {
		t.Fatal(err)
	}
	exe := identity.LineageExe{Dev: st.Dev, Ino: st.Ino}
	if err := l.SetExes(map[identity.LineageExe]uint32{exe: 7}); err != nil {
		t.Fatal(err)
	}

	// The agent starts a subshell that starts sleep in the background and
	// exits: sleep is reparented away from the agent.
	pidFile := filepath.Join(t.TempDir(), "pid")
	cmd := exec.Command(agent, "-c", `( exec /bin/sleep 30 >/dev/null 2>&1 & echo $! > "$1" ); exit 0`, "agent", pidFile)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("agent: %v: %s", err, out)
	}
	agentPID := uint32(cmd.Process.Pid)
	orphan := readPID(t, pidFile)
	defer unix.Kill(orphan, unix.SIGKILL)
	if ppid := ppidOf(t, orphan); ppid == int(agentPID) {
		t.Fatalf("the orphan's parent is still the agent")
	}
	tag, ok := lookupPID(t, l, orphan)
	if !ok || tag.AgentID != 7 || tag.RootTGID != agentPID || tag.Exe != exe || tag.RootStartNS == 0 {
		t.Fatalf("orphan's tag = %+v, %v; want agent 7 rooted at %d exe %+v", tag, ok, agentPID, exe)
	}

	// Not below the agent: no tag.
	other := exec.Command("/bin/sleep", "30")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	defer other.Process.Kill()
	if tag, ok := lookupPID(t, l, other.Process.Pid); ok {
		t.Fatalf("a process outside the agent's tree is tagged: %+v", tag)
	}

	// Tagged from userspace while running (an agent older than the
	// programs): what it forks afterwards inherits the tag.
	sh := exec.Command("/bin/sh", "-c", `read x; /bin/sleep 30 & echo $!; wait`)
	in, _ := sh.StdinPipe()
	out, _ := sh.StdoutPipe()
	if err := sh.Start(); err != nil {
		t.Fatal(err)
	}
	defer sh.Process.Kill()
	fd, err := unix.PidfdOpen(sh.Process.Pid, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := identity.LineageTag{AgentID: 9, RootTGID: uint32(sh.Process.Pid), RootStartNS: 1, Exe: exe}
	if err := l.Tag(fd, want); err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)
	io.WriteString(in, "go\n")
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	child, _ := strconv.Atoi(strings.TrimSpace(line))
	defer unix.Kill(child, unix.SIGKILL)
	if tag, ok := lookupPID(t, l, child); !ok || tag != want {
		t.Fatalf("child of a userspace-tagged process: %+v, %v; want %+v", tag, ok, want)
	}

	// Unregistered again: a new exec of the agent is not tagged.
	if err := l.SetExes(nil); err != nil {
		t.Fatal(err)
	}
	again := exec.Command(agent, "-c", "exec /bin/sleep 30")
	if err := again.Start(); err != nil {
		t.Fatal(err)
	}
	defer again.Process.Kill()
	time.Sleep(50 * time.Millisecond)
	if tag, ok := lookupPID(t, l, again.Process.Pid); ok {
		t.Fatalf("an unregistered executable tagged its process: %+v", tag)
	}
}

func lookupPID(t *testing.T, l *lineage, pid int) (identity.LineageTag, bool) {
	t.Helper()
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		t.Fatalf("pidfd_open %d: %v", pid, err)
	}
	defer unix.Close(fd)
	tag, ok, err := l.Lookup(fd)
	if err != nil {
		t.Fatal(err)
	}
	return tag, ok
}

func readPID(t *testing.T, path string) int {
	t.Helper()
	var pid int
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(path)
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && n > 0 {
			return n
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no pid in %s", path)
	return pid
}

func ppidOf(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	n, _ := strconv.Atoi(f[1])
	return n
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkLineageForkExec measures what the lineage programs add to
// every fork and exec on the machine: spawning /bin/true without them,
// with them attached (an untagged spawner: the common case), and from a
// tagged spawner (every child gets a tag). docs/benchmarks.md has the
// figures: go test -run '^$' -bench LineageForkExec -benchtime 2000x.
func BenchmarkLineageForkExec(b *testing.B) {
	testenv.RequireRoot(b)
	if err := rlimit.RemoveMemlock(); err != nil {
		b.Fatal(err)
	}
	spawn := func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if err := exec.Command("/bin/true").Run(); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("off", spawn)
	l, err := loadLineage()
	if err != nil {
		b.Fatal(err)
	}
	defer l.close()
	if err := l.SetExes(map[identity.LineageExe]uint32{{Dev: 1, Ino: 1}: 1}); err != nil {
		b.Fatal(err)
	}
	// The programs' own run time, as the kernel counts it (less noisy
	// than the spawn loop on a busy machine).
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		b.Fatal(err)
	}
	defer stats.Close()
	perRun := func(b *testing.B, p *ebpf.Program, name string) {
		st0, err := p.Stats()
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() {
			st1, err := p.Stats()
			if err != nil || st1.RunCount == st0.RunCount {
				return
			}
			b.ReportMetric(float64(st1.Runtime-st0.Runtime)/float64(st1.RunCount-st0.RunCount), name+"-ns/run")
		})
	}
	withStats := func(b *testing.B) {
		perRun(b, l.objs.LineageExec, "exec")
		perRun(b, l.objs.LineageFork, "fork")
		spawn(b)
	}
	b.Run("on", withStats)
	// Tag this process (the benchmark's own thread group leader).
	fd, err := unix.PidfdOpen(os.Getpid(), 0)
	if err != nil {
		b.Fatal(err)
	}
	defer unix.Close(fd)
	if err := l.Tag(fd, identity.LineageTag{AgentID: 1, RootTGID: uint32(os.Getpid())}); err != nil {
		b.Fatal(err)
	}
	b.Run("on-tagged", withStats)
	b.Run("off-again", func(b *testing.B) {
		l.close()
		spawn(b)
	})
}
