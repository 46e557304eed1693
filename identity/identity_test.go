package identity

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/interlock/interlock/model"
)

// identTestProc describes one process of a fake /proc.
type identTestProc struct {
	pid, ppid  uint32
	comm       string
	state      byte
	startTicks uint64
	uid, euid  uint32
	threads    int
	exe        string // symlink target; "" for no exe link
	cmdline    string // raw; "" for no file when noCmdline
	environ    string
	cgroup     string // raw file content; "" for none
	noStatus   bool
}

func identTestStat(p identTestProc) string {
	st := p.state
	if st == 0 {
		st = 'S'
	}
	return fmt.Sprintf("%d (%s) %c %d 1 1 0 -1 4194304 0 0 0 0 0 0 0 0 20 0 1 0 %d 1000 10 18446744073709551615\n",
		p.pid, p.comm, st, p.ppid, p.startTicks)
}

func identTestWrite(t *testing.T, root string, p identTestProc) {
	t.Helper()
	dir := filepath.Join(root, fmt.Sprint(p.pid))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	w := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	w("stat", identTestStat(p))
	if !p.noStatus {
		th := p.threads
		if th == 0 {
			th = 1
		}
		w("status", fmt.Sprintf("Name:\t%s\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t%d\nPid:\t%d\nPPid:\t%d\nUid:\t%d\t%d\t%d\t%d\nGid:\t%d\t%d\t%d\t%d\nVmRSS:\t1 kB\nThreads:\t%d\n",
			p.comm, p.pid, p.pid, p.ppid, p.uid, p.euid, p.euid, p.euid, p.uid+1, p.euid+1, p.euid+1, p.euid+1, th))
	}
	if p.cmdline != "" {
		w("cmdline", p.cmdline)
	}
	if p.environ != "" {
		w("environ", p.environ)
	}
	if p.cgroup != "" {
		w("cgroup", p.cgroup)
	}
	if p.exe != "" {
		_ = os.Remove(filepath.Join(dir, "exe"))
		if err := os.Symlink(p.exe, filepath.Join(dir, "exe")); err != nil {
			t.Fatal(err)
		}
	}
}

// identTestFake is a fake /proc and cgroup2 root with a three-process chain
// 100 (tool) → 50 (runner) → 1 (init).
type identTestFake struct {
	proc, cg, bin string
	exeSum        string
	r             *Resolver
	logs          *bytes.Buffer
	k             model.KernelFacts
	tool          identTestProc
}

func newIdentTestFake(t *testing.T) *identTestFake {
	t.Helper()
	base := t.TempDir()
	f := &identTestFake{proc: filepath.Join(base, "proc"), cg: filepath.Join(base, "cgroup"), bin: filepath.Join(base, "bin")}
	for _, d := range []string{f.proc, f.bin, filepath.Join(f.cg, "system.slice", "actions.runner.org-repo.runner1.service")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	content := []byte("#!fake executable\n" + strings.Repeat("x", 100000))
	if err := os.WriteFile(filepath.Join(f.bin, "tool"), content, 0o755); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(content)
	f.exeSum = hex.EncodeToString(sum[:])
	f.tool = identTestProc{
		pid: 100, ppid: 50, comm: "tool", startTicks: 1000, uid: 1000, euid: 0,
		exe:     filepath.Join(f.bin, "tool"),
		cmdline: "tool\x00--flag\x00arg with space\x00",
		environ: "PATH=/bin\x00GITHUB_TOKEN=ghs_secret\x00GITHUB_REPOSITORY=org/repo\x00GITHUB_RUN_ID=77\x00",
		cgroup:  "12:pids:/system.slice\n0::/system.slice/actions.runner.org-repo.runner1.service\n",
	}
	identTestWrite(t, f.proc, f.tool)
	identTestWrite(t, f.proc, identTestProc{pid: 50, ppid: 1, comm: "Runner.Listener", startTicks: 500, uid: 1001, euid: 1001, exe: "/opt/runner/bin/Runner.Listener"})
	identTestWrite(t, f.proc, identTestProc{pid: 1, ppid: 0, comm: "systemd", startTicks: 1, uid: 0, exe: "/usr/lib/systemd/systemd"})
	f.logs = new(bytes.Buffer)
	f.r = NewResolver(ResolverOptions{
		ProcRoot:    f.proc,
		Cgroup2Root: f.cg,
		Logger:      slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	f.k = model.KernelFacts{
		PID: 101, TGID: 100, UID: 0, GID: 0, Comm: "iou-wrk-100",
		CgroupID:      cgroupinfoTestIno(t, filepath.Join(f.cg, "system.slice", "actions.runner.org-repo.runner1.service")),
		NetnsCookie:   4096,
		ConnectBootNS: 20 * uint64(time.Second),
	}
	return f
}

func TestIdentityFakeProc(t *testing.T) {
	f := newIdentTestFake(t)
	id := f.r.Resolve(context.Background(), f.k)
	if id.Kernel != f.k {
		t.Fatalf("kernel facts changed: %+v", id.Kernel)
	}
	if id.Proc == nil {
		t.Fatalf("no proc facts: %s", id.ProcError)
	}
	p := id.Proc
	want := &model.ProcFacts{
		Exe:         f.tool.exe,
		ExeSHA256:   f.exeSum,
		Cmdline:     []string{"tool", "--flag", "arg with space"},
		StartBootNS: 1000 * f.r.tickNS,
		PPID:        50,
		Parents: []model.ProcessRef{
			{PID: 50, Comm: "Runner.Listener", Exe: "/opt/runner/bin/Runner.Listener", UID: 1001, StartBootNS: 500 * f.r.tickNS},
			{PID: 1, Comm: "systemd", Exe: "/usr/lib/systemd/systemd", UID: 0, StartBootNS: 1 * f.r.tickNS},
		},
		EUID: 0, EGID: 1,
		User: "root", Group: "root",
		CgroupPath:  "/system.slice/actions.runner.org-repo.runner1.service",
		SystemdUnit: "actions.runner.org-repo.runner1.service",
		// No kernel record of the executable: nothing to check the
		// link against.
		ExeTrust: model.ExeUnknown,
	}
	if !reflect.DeepEqual(p, want) {
		t.Fatalf("proc facts\n got %+v\nwant %+v", p, want)
	}
	if !strings.Contains(id.ProcError, "no executable") {
		t.Fatalf("ProcError = %q, want it to say the record has no executable", id.ProcError)
	}
	if !reflect.DeepEqual(id.Claimed, map[string]string{"GITHUB_REPOSITORY": "org/repo", "GITHUB_RUN_ID": "77"}) {
		t.Fatalf("claims %q", id.Claimed)
	}
	// the hash is cached: one computation for several resolutions
	for i := 0; i < 3; i++ {
		f.r.Resolve(context.Background(), f.k)
	}
	if n := f.r.hashes.computed.Load(); n != 1 {
		t.Fatalf("hashed %d times", n)
	}
	// a changed executable is hashed again
	newContent := []byte("replaced binary")
	if err := os.WriteFile(f.tool.exe, newContent, 0o755); err != nil {
		t.Fatal(err)
	}
	id = f.r.Resolve(context.Background(), f.k)
	sum := sha256.Sum256(newContent)
	if id.Proc == nil || id.Proc.ExeSHA256 != hex.EncodeToString(sum[:]) {
		t.Fatalf("stale hash after replace: %+v", id.Proc)
	}
}

func TestIdentityExitedAndReused(t *testing.T) {
	f := newIdentTestFake(t)
	ctx := context.Background()

	gone := f.k
	gone.TGID, gone.PID = 4242, 4242
	id := f.r.Resolve(ctx, gone)
	if id.Proc != nil || id.Claimed != nil || id.ProcError != identErrExited || id.Kernel != gone {
		t.Fatalf("exited: %+v", id)
	}

	if id := f.r.Resolve(ctx, model.KernelFacts{}); id.Proc != nil || id.ProcError == "" {
		t.Fatalf("zero facts: %+v", id)
	}

	// started after the connection (beyond one tick of tolerance): reused
	tick := f.r.tickNS
	k := f.k
	k.ConnectBootNS = 1000*tick - 2*tick
	id = f.r.Resolve(ctx, k)
	if id.Proc != nil || id.Claimed != nil || id.ProcError != identErrReused || id.Kernel != k {
		t.Fatalf("reused: %+v", id)
	}
	// within one tick: accepted
	k.ConnectBootNS = 1000*tick - tick
	if id = f.r.Resolve(ctx, k); id.Proc == nil {
		t.Fatalf("one tick of tolerance: %s", id.ProcError)
	}
	// unknown connect time: no check
	k.ConnectBootNS = 0
	if id = f.r.Resolve(ctx, k); id.Proc == nil {
		t.Fatalf("unknown connect time: %s", id.ProcError)
	}

	// start time changes between the two reads: reused mid-read
	f.r.testHookMidRead = func(tgid uint32) {
		p := f.tool
		p.startTicks = 1500
		identTestWrite(t, f.proc, p)
	}
	id = f.r.Resolve(ctx, f.k)
	if id.Proc != nil || id.Claimed != nil || id.ProcError != identErrReusedMid {
		t.Fatalf("mid-read reuse: %+v", id)
	}
	// vanishes between the two reads
	f.r.testHookMidRead = func(tgid uint32) {
		os.Remove(filepath.Join(f.proc, "100", "stat"))
	}
	identTestWrite(t, f.proc, f.tool)
	id = f.r.Resolve(ctx, f.k)
	if id.Proc != nil || id.ProcError != identErrExited {
		t.Fatalf("exit mid-read: %+v", id)
	}
	f.r.testHookMidRead = nil

	// a zombie is an exited process, unless other threads still run
	z := f.tool
	z.state = 'Z'
	identTestWrite(t, f.proc, z)
	if id = f.r.Resolve(ctx, f.k); id.Proc != nil || id.ProcError != identErrExited {
		t.Fatalf("zombie: %+v", id)
	}
	z.threads = 3
	identTestWrite(t, f.proc, z)
	if id = f.r.Resolve(ctx, f.k); id.Proc == nil {
		t.Fatalf("zombie leader with live threads: %s", id.ProcError)
	}
}

func TestIdentityMissingFiles(t *testing.T) {
	f := newIdentTestFake(t)
	identTestWrite(t, f.proc, identTestProc{pid: 300, ppid: 0, comm: "bare", startTicks: 10, noStatus: true})
	k := f.k
	k.TGID, k.PID, k.CgroupID = 300, 300, 0
	id := f.r.Resolve(context.Background(), k)
	if id.Proc == nil {
		t.Fatalf("no proc facts: %s", id.ProcError)
	}
	if id.Proc.Exe != "" || id.Proc.ExeSHA256 != "" || id.Proc.Cmdline != nil || id.Proc.Parents != nil || id.Proc.CgroupPath != "" || id.Claimed != nil {
		t.Fatalf("invented facts: %+v", id.Proc)
	}
	if !strings.Contains(f.logs.String(), "level=DEBUG") {
		t.Fatalf("misses not logged at debug: %s", f.logs)
	}
	// an unparsable stat is an error, not a panic
	if err := os.WriteFile(filepath.Join(f.proc, "300", "stat"), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if id := f.r.Resolve(context.Background(), k); id.Proc != nil || !strings.Contains(id.ProcError, "unparsable") {
		t.Fatalf("garbage stat: %+v", id)
	}
}

func TestIdentityHostileContents(t *testing.T) {
	f := newIdentTestFake(t)
	var cmd strings.Builder
	for i := 0; i < 1000; i++ {
		cmd.WriteString("arg\x00")
	}
	huge := strings.Repeat("A", 200<<10)
	var env strings.Builder
	env.WriteString("GITHUB_ACTOR=" + strings.Repeat("b", 1000) + "\x00")
	env.WriteString("CI=tr\xffue\x00")
	for env.Len() < procfsEnvironMaxBytes+10 {
		env.WriteString("FILLER=" + strings.Repeat("f", 4000) + "\x00")
	}
	env.WriteString("GITHUB_REPOSITORY=beyond/the-cap\x00")
	p := identTestProc{
		pid: 200, ppid: 100, comm: "a) S 1 (b\xff", startTicks: 1500, uid: 5, euid: 5,
		cmdline: cmd.String(), environ: env.String(),
		cgroup: "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234abcd_5678_90ab_cdef_1234567890ab.slice/cri-containerd-" + cgroupinfoTestID + ".scope\n",
	}
	identTestWrite(t, f.proc, p)
	k := f.k
	k.TGID, k.PID, k.CgroupID = 200, 200, 0
	id := f.r.Resolve(context.Background(), k)
	if id.Proc == nil {
		t.Fatalf("no proc facts: %s", id.ProcError)
	}
	c := id.Proc.Cmdline
	if len(c) != procfsCmdlineMaxArgs+1 || c[len(c)-1] != procfsTruncatedMark {
		t.Fatalf("cmdline not capped: %d args", len(c))
	}
	if id.Proc.PPID != 100 || len(id.Proc.Parents) != 3 || id.Proc.Parents[0].PID != 100 || id.Proc.Parents[2].PID != 1 {
		t.Fatalf("parents: %+v", id.Proc.Parents)
	}
	if len(id.Claimed["GITHUB_ACTOR"]) != procfsClaimMaxValue || id.Claimed["CI"] != "tr\uFFFDue" {
		t.Fatalf("claims: %q", id.Claimed)
	}
	if _, ok := id.Claimed["GITHUB_REPOSITORY"]; ok {
		t.Fatal("environ read past 1 MiB")
	}
	if id.Proc.ContainerID != cgroupinfoTestID || id.Proc.PodUID != "1234abcd-5678-90ab-cdef-1234567890ab" {
		t.Fatalf("cgroup details: %+v", id.Proc)
	}

	// one huge argument
	p.cmdline = huge
	identTestWrite(t, f.proc, p)
	id = f.r.Resolve(context.Background(), k)
	c = id.Proc.Cmdline
	if len(c) != 2 || len(c[0]) != procfsCmdlineMaxBytes || c[1] != procfsTruncatedMark {
		t.Fatalf("huge arg: %d args, first %d bytes", len(c), len(c[0]))
	}

	// invalid UTF-8 everywhere survives JSON
	p.cmdline = "bad\xff\xfe\x00ok\x00"
	p.exe = filepath.Join(f.bin, "we\xffird")
	if err := os.WriteFile(p.exe, []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	identTestWrite(t, f.proc, p)
	id = f.r.Resolve(context.Background(), k)
	b, err := json.Marshal(id)
	if err != nil {
		t.Fatal(err)
	}
	if !utf8.Valid(b) {
		t.Fatal("JSON is not UTF-8")
	}
	var back model.Identity
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Proc.Cmdline[0] != "bad\uFFFD" || back.Proc.Exe != filepath.Join(f.bin, "we\uFFFDird") || !reflect.DeepEqual(back, id) {
		t.Fatalf("round trip: %+v", back.Proc)
	}
}

func TestIdentityParentChain(t *testing.T) {
	f := newIdentTestFake(t)
	ctx := context.Background()
	// a loop 600 → 601 → 602 → 601 stops
	identTestWrite(t, f.proc, identTestProc{pid: 600, ppid: 601, comm: "c", startTicks: 9})
	identTestWrite(t, f.proc, identTestProc{pid: 601, ppid: 602, comm: "p", startTicks: 8})
	identTestWrite(t, f.proc, identTestProc{pid: 602, ppid: 601, comm: "g", startTicks: 7})
	k := f.k
	k.TGID, k.CgroupID = 600, 0
	id := f.r.Resolve(ctx, k)
	if id.Proc == nil || len(id.Proc.Parents) != 2 {
		t.Fatalf("loop: %+v", id.Proc)
	}
	// depth cap: 1000 → 1001 → ... → 1099
	for i := uint32(0); i < 100; i++ {
		identTestWrite(t, f.proc, identTestProc{pid: 1000 + i, ppid: 1001 + i, comm: "d", startTicks: 5})
	}
	k.TGID = 1000
	id = f.r.Resolve(ctx, k)
	if id.Proc == nil || len(id.Proc.Parents) != identMaxParents || id.Proc.Parents[0].PID != 1001 {
		t.Fatalf("depth cap: %d parents", len(id.Proc.Parents))
	}

	// ancestor cache: exe and comm are always fresh, the uid is cached
	// under the same pid, start time and comm
	k = f.k
	if id = f.r.Resolve(ctx, k); id.Proc.Parents[0].UID != 1001 {
		t.Fatalf("ancestor: %+v", id.Proc.Parents[0])
	}
	identTestWrite(t, f.proc, identTestProc{pid: 50, ppid: 1, comm: "Runner.Listener", startTicks: 500, uid: 2002, exe: "/opt/runner/bin/Other"})
	id = f.r.Resolve(ctx, k)
	if got := id.Proc.Parents[0]; got.Exe != "/opt/runner/bin/Other" || got.UID != 1001 {
		t.Fatalf("cached ancestor: %+v", got)
	}
	identTestWrite(t, f.proc, identTestProc{pid: 50, ppid: 1, comm: "bash", startTicks: 500, uid: 2002, exe: "/usr/bin/bash"})
	id = f.r.Resolve(ctx, k)
	if got := id.Proc.Parents[0]; got.Comm != "bash" || got.UID != 2002 {
		t.Fatalf("ancestor after exec: %+v", got)
	}
	// the ancestor pid is reused by another process: new start time
	identTestWrite(t, f.proc, identTestProc{pid: 50, ppid: 1, comm: "bash", startTicks: 900, uid: 3003, exe: "/usr/bin/bash"})
	id = f.r.Resolve(ctx, k)
	if got := id.Proc.Parents[0]; got.UID != 3003 {
		t.Fatalf("reused ancestor pid: %+v", got)
	}
}

func TestIdentityCgroupCrossCheck(t *testing.T) {
	f := newIdentTestFake(t)
	ctx := context.Background()
	podDir := filepath.Join(f.cg, "kubepods.slice", "kubepods-besteffort.slice", "kubepods-besteffort-pod0d6a2a5c_6a1c_4b8e_9b53_5f2c3a1e7f00.slice", "crio-"+cgroupinfoTestID+".scope")
	if err := os.MkdirAll(podDir, 0o755); err != nil {
		t.Fatal(err)
	}
	// the kernel says the connection came from the pod cgroup; /proc now
	// shows the runner service (the process moved): the kernel wins
	k := f.k
	k.CgroupID = cgroupinfoTestIno(t, podDir)
	id := f.r.Resolve(ctx, k)
	p := id.Proc
	if p == nil || p.CgroupPath != strings.TrimPrefix(podDir, f.cg) || p.ContainerID != cgroupinfoTestID ||
		p.PodUID != "0d6a2a5c-6a1c-4b8e-9b53-5f2c3a1e7f00" || p.SystemdUnit != "crio-"+cgroupinfoTestID+".scope" {
		t.Fatalf("moved process: %+v", p)
	}
	// a namespaced view in /proc (relative path)
	ns := f.tool
	ns.cgroup = "0::/../../crio-" + cgroupinfoTestID + ".scope\n"
	identTestWrite(t, f.proc, ns)
	if id = f.r.Resolve(ctx, k); id.Proc.CgroupPath != strings.TrimPrefix(podDir, f.cg) {
		t.Fatalf("namespaced path: %q", id.Proc.CgroupPath)
	}
	// an id that matches nothing: keep the /proc path, warn
	identTestWrite(t, f.proc, f.tool)
	k.CgroupID = 1 << 60
	f.logs.Reset()
	id = f.r.Resolve(ctx, k)
	if id.Proc.CgroupPath != "/system.slice/actions.runner.org-repo.runner1.service" || id.Proc.SystemdUnit != "actions.runner.org-repo.runner1.service" {
		t.Fatalf("unknown id: %+v", id.Proc)
	}
	if !strings.Contains(f.logs.String(), "level=WARN") || !strings.Contains(f.logs.String(), "not found") {
		t.Fatalf("no warning: %s", f.logs)
	}
}

func TestIdentityHashSingleflight(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "big")
	content := bytes.Repeat([]byte("interlock"), 4<<20) // 36 MiB
	if err := os.WriteFile(p, content, 0o644); err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(content)
	var st unix.Statx_t
	if err := identStatx(unix.AT_FDCWD, p, &st); err != nil {
		t.Fatal(err)
	}
	key := identFileKeyOf(&st)
	open := func() (int, error) { return unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0) }
	c := newIdentHashCache(4)
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, 8)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			s, err := c.sum(context.Background(), key, 0, open)
			if err != nil || s != hex.EncodeToString(want[:]) {
				errs <- fmt.Errorf("sum %q err %v", s, err)
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := c.computed.Load(); n != 1 {
		t.Fatalf("hashed %d times", n)
	}
	if len(c.slots) != 0 || len(c.inflight) != 0 {
		t.Fatalf("leaked: %d slots, %d in flight", len(c.slots), len(c.inflight))
	}

	// a key that does not describe the opened file is refused
	stale := key
	stale.mtimeNsec++
	if _, err := c.sum(context.Background(), stale, 0, open); err != errIdentFileChanged {
		t.Fatalf("stale key: %v", err)
	}
	// a cancelled context does not compute a hash when slots are taken
	for i := 0; i < identHashSlots; i++ {
		c.slots <- struct{}{}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	other := key
	other.ino++
	if _, err := c.sum(ctx, other, 0, open); err == nil {
		t.Fatal("hashed without a slot")
	}
	for i := 0; i < identHashSlots; i++ {
		<-c.slots
	}
	// a file larger than the bound is not read
	huge := key
	huge.size = identMaxHashBytes + 1
	if _, err := c.sum(context.Background(), huge, 0, func() (int, error) { t.Fatal("opened"); return -1, nil }); err == nil {
		t.Fatal("hashed an oversized file")
	}
}

func TestIdentityMemoryReadSlots(t *testing.T) {
	f := newIdentTestFake(t)
	for i := 0; i < identMMSlots; i++ {
		f.r.mmSlots <- struct{}{}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	id := f.r.Resolve(ctx, f.k)
	if id.Proc == nil || id.Proc.Cmdline != nil || id.Claimed != nil || id.Proc.Exe == "" {
		t.Fatalf("with no slot free: %+v %q", id.Proc, id.Claimed)
	}
	if !strings.Contains(f.logs.String(), "too many blocked reads") {
		t.Fatalf("not logged: %s", f.logs)
	}
	for i := 0; i < identMMSlots; i++ {
		<-f.r.mmSlots
	}
	id = f.r.Resolve(context.Background(), f.k)
	if id.Proc.Cmdline == nil || id.Claimed == nil || len(f.r.mmSlots) != 0 {
		t.Fatalf("slot not released: %+v", id.Proc)
	}
}

func TestIdentityPanicSafe(t *testing.T) {
	r := NewResolver(ResolverOptions{ProcRoot: t.TempDir(), Cgroup2Root: t.TempDir()})
	r.testHookMidRead = func(uint32) { panic("boom") }
	identTestWrite(t, r.procRoot, identTestProc{pid: 7, ppid: 0, comm: "x", startTicks: 1})
	k := model.KernelFacts{PID: 7, TGID: 7}
	id := r.Resolve(context.Background(), k)
	if id.Proc != nil || id.ProcError != identErrInternal || id.Kernel != k {
		t.Fatalf("%+v", id)
	}
}
