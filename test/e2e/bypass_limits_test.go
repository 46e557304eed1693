package e2e

// Class 6, "per-actor resources are unbounded" (issue 12): one uid's
// flood of idle sessions, silent connections or executables to hash must
// not deny service to another uid in another cgroup. Uid A is nobody
// (65534) in one cgroup, uid B is daemon (1) in another; both run real
// clients through the real daemon.

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/interlock/interlock/internal/testkit"
	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/test/e2e/pgtest"
)

const (
	uidA = 65534 // nobody: the flooder
	uidB = 1     // daemon: the bystander
	// bLatency is what "normal latency" allows one of B's connects,
	// process start to exit included.
	bLatency = 2 * time.Second
)

// asUID runs argv as uid (and gid) with no capabilities.
func asUID(uid int, argv ...string) []string {
	return append([]string{"setpriv", "--reuid=" + strconv.Itoa(uid), "--regid=" + strconv.Itoa(uid), "--clear-groups", "--inh-caps=-all"}, argv...)
}

// sharedDir is a directory every uid may write.
func sharedDir(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	if err := os.Chmod(d, 0o777); err != nil {
		t.Fatal(err)
	}
	return d
}

// limitEntries are the journal's limit-hit anomalies of one limit.
func limitEntries(e *env, limit string) []model.Anomaly {
	var out []model.Anomaly
	for _, a := range entriesOf[model.Anomaly](e, model.KindAnomaly) {
		if a.Detail["limit"] == limit {
			out = append(out, a)
		}
	}
	return out
}

// countOf sums the counts of limit entries about uid.
func countOf(entries []model.Anomaly, uid int) (n, records int) {
	for _, a := range entries {
		if a.Detail["uid"] != float64(uid) {
			continue
		}
		c, _ := a.Detail["count"].(float64)
		n += int(c)
		records++
	}
	return n, records
}

func scrapeMetric(t *testing.T, addr, series string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindSubmatch(b)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

// bystander runs B's client n times, one after another, and fails the test
// for any that fails or takes longer than bLatency. It returns the
// slowest.
func bystander(t *testing.T, n int, cmd func() *exec.Cmd, ok func(out string) bool) time.Duration {
	t.Helper()
	var slowest time.Duration
	for i := 0; i < n; i++ {
		start := time.Now()
		out, stderr, code := runCmd(t, cmd())
		took := time.Since(start)
		slowest = max(slowest, took)
		if code != 0 || !ok(out) {
			t.Errorf("B's connect %d failed (exit %d) during A's flood: %s %s", i, code, out, stderr)
		}
		if took > bLatency {
			t.Errorf("B's connect %d took %s during A's flood, want under %s", i, took, bLatency)
		}
	}
	return slowest
}

// TestLimitsIdleSessionFlood: uid A holds more idle PostgreSQL sessions
// than limits.per_uid.sessions allows; every one of B's connects still
// succeeds in normal time, A's excess is refused, and the refusals are
// journaled in one entry plus one summary that counts them all.
func TestLimitsIdleSessionFlood(t *testing.T) {
	srv := requirePG(t)
	psql := filepath.Join(srv.BinDir, "psql")
	cgA, dirA := makeCgroup(t, "limits-flood-a")
	cgB, dirB := makeCgroup(t, "limits-flood-b")
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", testkit.FreePort(t, "127.0.0.1"))
	const capA, flood = 8, 20
	e := newEnv(t, []target{pgTarget(t, "db", srv.Addr(), pgtest.AppPassword, "")}, fmt.Sprintf(
		"intercept:\n  cgroups: [%s, %s]\nmetrics:\n  listen: %s\nlimits:\n  per_uid: {sessions: %d}\n  report_interval: 1m\n",
		cgA, cgB, metricsAddr, capA))
	d := e.startDaemon()

	// A: flood psql processes, each idle on its stdin once connected.
	out := sharedDir(t)
	script := fmt.Sprintf(`for i in $(seq %d); do
  (%s -X -q -At %q < <(sleep 30) > %s/psql.$i 2>&1; echo "exit=$?" >> %s/psql.$i) &
done
wait`, flood, psql, conninfo(srv, "sslmode=disable"), out, out)
	flooder := inCgroup(t, dirA, asUID(uidA, "bash", "-c", script)...)
	if err := flooder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		os.WriteFile(filepath.Join(dirA, "cgroup.kill"), []byte("1"), 0)
		flooder.Wait()
	})
	refused := func() int {
		n := 0
		for i := 1; i <= flood; i++ {
			b, _ := os.ReadFile(filepath.Join(out, "psql."+strconv.Itoa(i)))
			if bytes.Contains(b, []byte("exit=")) {
				n++
			}
		}
		return n
	}
	waitFor(t, func() bool {
		return refused() >= flood-capA && scrapeMetric(t, metricsAddr, "interlock_sessions_live") >= capA
	})

	// B, from its own cgroup, while A holds its sessions.
	slowest := bystander(t, 10, func() *exec.Cmd {
		return inCgroup(t, dirB, asUID(uidB, psql, "-X", "-At", "-c", "SELECT 'b-ok'", conninfo(srv, "sslmode=disable"))...)
	}, func(out string) bool { return strings.TrimSpace(out) == "b-ok" })
	t.Logf("B's slowest connect and query during A's flood: %s", slowest)

	if n := refused(); n != flood-capA {
		t.Errorf("%d of A's %d sessions were refused, want %d (its cap is %d)", n, flood, flood-capA, capA)
	}
	if v := scrapeMetric(t, metricsAddr, `interlock_limit_hits_total{limit="per_uid.sessions"}`); v != float64(flood-capA) {
		t.Errorf("interlock_limit_hits_total{limit=per_uid.sessions} = %v, want %d", v, flood-capA)
	}
	// The journal: the first refusal at once; the rest in one summary
	// (at shutdown here, the report interval being a minute).
	first, _ := countOf(limitEntries(e, "per_uid.sessions"), uidA)
	if first != 1 {
		t.Errorf("refusals journaled before the summary count %d, want the first one only", first)
	}
	os.WriteFile(filepath.Join(dirA, "cgroup.kill"), []byte("1"), 0)
	d.stop(t, syscall.SIGTERM)
	entries := limitEntries(e, "per_uid.sessions")
	n, records := countOf(entries, uidA)
	if records != 2 || n != flood-capA {
		t.Errorf("A's refusals journaled as %d entries counting %d, want 2 (the first and a summary) counting %d: %+v", records, n, flood-capA, entries)
	}
	if b, _ := countOf(entries, uidB); b != 0 {
		t.Errorf("B was refused %d times", b)
	}
	for _, a := range entries {
		if !strings.Contains(a.Reason, "limits.per_uid.sessions") || a.Detail["cgroup"] != cgA || a.Detail["target"] != "db" {
			t.Errorf("entry does not say which limit, cgroup and target: %+v", a)
		}
	}
}

// TestLimitsFDReserve: with the daemon's descriptor limit scaled down and
// no per-uid cap, A's idle sessions fill the descriptors up to the reserve
// and no further; B's connects from another cgroup keep working.
func TestLimitsFDReserve(t *testing.T) {
	srv := startEcho(t, "tcp4", "127.0.0.2:0")
	cgA, dirA := makeCgroup(t, "limits-fd-a")
	cgB, dirB := makeCgroup(t, "limits-fd-b")
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", testkit.FreePort(t, "127.0.0.1"))
	e := newEnv(t, []target{{name: "echo", address: srv.addr()}}, fmt.Sprintf(
		"intercept:\n  cgroups: [%s, %s]\nmetrics:\n  listen: %s\nlimits:\n  per_uid: {sessions: 0, opens_per_second: 0}\n  per_cgroup: {sessions: 0, opens_per_second: 0}\n  fd_reserve: 100\n",
		cgA, cgB, metricsAddr))
	d := e.startDaemon()
	const nofile = 320
	lim := unix.Rlimit{Cur: nofile, Max: nofile}
	if err := unix.Prlimit(d.cmd.Process.Pid, unix.RLIMIT_NOFILE, &lim, nil); err != nil {
		t.Fatal(err)
	}

	// A: 300 connections (each two descriptors in the daemon: over the
	// limit without the reserve), each saying hello and then holding;
	// then one more every 10ms, to take any descriptor freed.
	host, port := "127.0.0.2", srv.port()
	script := fmt.Sprintf(`open() { exec {fd}<>/dev/tcp/%s/%d && printf 'hello pid=%%d bulk=0\n' $$ >&$fd; } 2>/dev/null
for i in $(seq 300); do open; done
echo opened
for i in $(seq 3000); do open; sleep 0.01; done`, host, port)
	flooder := inCgroup(t, dirA, asUID(uidA, "bash", "-c", script)...)
	var fout bytes.Buffer
	flooder.Stdout = &fout
	if err := flooder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		os.WriteFile(filepath.Join(dirA, "cgroup.kill"), []byte("1"), 0)
		flooder.Wait()
	})
	waitFor(t, func() bool { return strings.Contains(fout.String(), "opened") })
	// "opened" means the kernel queued A's 300 connects, not that the
	// daemon took them: B starts once every one of them is a live session,
	// refused at the reserve or shed, as the burst may run the daemon out
	// of descriptors while it works through it (below). A CI run in which
	// B connected during the burst had B's connect shed.
	waitFor(t, func() bool {
		return scrapeMetric(t, metricsAddr, "interlock_sessions_live")+
			scrapeMetric(t, metricsAddr, `interlock_limit_hits_total{limit="fd_reserve"}`)+
			scrapeMetric(t, metricsAddr, `interlock_limit_hits_total{limit="fd_exhausted"}`) >= 300
	})

	slowest := bystander(t, 10, func() *exec.Cmd {
		return inCgroup(t, dirB, asUID(uidB, clientBin, "-addr", srv.addr())...)
	}, func(out string) bool { return strings.Contains(out, `"reply":"peer=`) })
	t.Logf("B's slowest connect during A's flood at the fd reserve: %s", slowest)

	open := 0
	if ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", d.cmd.Process.Pid)); err == nil {
		open = len(ents)
	}
	if open >= nofile-10 {
		t.Errorf("the daemon holds %d descriptors of %d: the reserve was not kept", open, nofile)
	}
	// A's first burst can still run the daemon out for a moment (each
	// connect costs descriptors to resolve before it is refused): those
	// are shed, and A's alone, since B connects after it.
	t.Logf("daemon descriptors at A's peak: %d of %d; A refused %v times; %v connections shed", open, nofile,
		scrapeMetric(t, metricsAddr, `interlock_limit_hits_total{limit="fd_reserve"}`),
		scrapeMetric(t, metricsAddr, `interlock_limit_hits_total{limit="fd_exhausted"}`))
	waitFor(t, func() bool {
		_, records := countOf(limitEntries(e, "fd_reserve"), uidA)
		return records == 1
	})
	if n, _ := countOf(limitEntries(e, "fd_reserve"), uidB); n != 0 {
		t.Errorf("B was refused %d times by the fd reserve", n)
	}
}

// TestLimitsFirstByte: a connect that never sends a byte is closed after
// limits.timeouts.PROTOCOL.first_byte, before a postgres session costs an
// upstream connection, and journaled.
func TestLimitsFirstByte(t *testing.T) {
	srv := requirePG(t)
	echo := startEcho(t, "tcp4", "127.0.0.3:0")
	cgA, dirA := makeCgroup(t, "limits-firstbyte")
	e := newEnv(t, []target{pgTarget(t, "db", srv.Addr(), pgtest.AppPassword, ""), {name: "echo", address: echo.addr()}}, fmt.Sprintf(
		"intercept:\n  cgroups: [%s]\nlimits:\n  timeouts:\n    postgres: {first_byte: 1s}\n    tcp: {first_byte: 1500ms}\n", cgA))
	e.startDaemon()

	// The client connects, sends nothing, and reads until the end.
	silent := func(host string, port int) (time.Duration, string) {
		script := fmt.Sprintf(`exec 3<>/dev/tcp/%s/%d || exit 9
start=$(date +%%s%%N); cat <&3 >/dev/null; end=$(date +%%s%%N)
echo "ms=$(( (end - start) / 1000000 ))"`, host, port)
		out, stderr, code := runCmd(t, inCgroup(t, dirA, asUID(uidA, "bash", "-c", script)...))
		if code != 0 {
			t.Fatalf("silent client: exit %d: %s %s", code, out, stderr)
		}
		var ms int
		fmt.Sscanf(strings.TrimSpace(out[strings.LastIndex(out, "ms="):]), "ms=%d", &ms)
		return time.Duration(ms) * time.Millisecond, out
	}
	for _, tc := range []struct {
		name, host string
		port       int
		limit      time.Duration
	}{
		{"postgres", srv.Host, srv.Port, time.Second},
		{"tcp", "127.0.0.3", echo.port(), 1500 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			took, out := silent(tc.host, tc.port)
			if took < tc.limit-100*time.Millisecond || took > tc.limit+2*time.Second {
				t.Errorf("a silent client was closed after %s, want about %s (%s)", took, tc.limit, out)
			}
		})
	}
	waitFor(t, func() bool { return len(limitEntries(e, "first_byte")) == 1 })
	entries := limitEntries(e, "first_byte")
	a := entries[0]
	if a.Detail["uid"] != float64(uidA) || a.Detail["cgroup"] != cgA || !strings.Contains(a.Reason, "first_byte") {
		t.Errorf("first_byte entry: %+v", a)
	}
	// The postgres one never reached the server: no session was opened.
	for _, so := range e.sessions() {
		if so.Target.Name == "db" {
			t.Errorf("a silent postgres client got a session: %+v", so)
		}
	}
	// The tcp one: its close record says why it ended. session.close is
	// posted (batched), so it may land a moment after the client saw the
	// connection end.
	closedWhy := func() bool {
		for _, c := range e.closes() {
			if strings.Contains(c.Error, "limits.timeouts.tcp.first_byte") {
				return true
			}
		}
		return false
	}
	deadline := time.Now().Add(5 * time.Second)
	for !closedWhy() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !closedWhy() {
		t.Errorf("no tcp session.close names the first-byte limit: %+v", e.closes())
	}
}

// daemonCPU is the daemon's user and system CPU time so far.
func daemonCPU(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command (which may hold spaces) in parentheses.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100 // USER_HZ
}

// TestLimitsHashAmplification: A runs a 512 MiB sparse executable (a real
// client with holes appended) that it touches or rewrites between
// connects. Touches cost the daemon little (the holes' zeros are hashed
// once); rewrites are bounded by A's hash budget, past which A's sessions
// have no exe_sha256. B's connects stay fast, and the daemon's CPU for
// A's loop stays bounded.
func TestLimitsHashAmplification(t *testing.T) {
	srv := startEcho(t, "tcp4", "127.0.0.2:0")
	cgA, dirA := makeCgroup(t, "limits-hash-a")
	cgB, dirB := makeCgroup(t, "limits-hash-b")
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", testkit.FreePort(t, "127.0.0.1"))
	e := newEnv(t, []target{{name: "echo", address: srv.addr()}}, fmt.Sprintf(
		"intercept:\n  cgroups: [%s, %s]\nmetrics:\n  listen: %s\nlimits:\n  hash: {max_mib: 1024, budget_mib: 1024, interval: 1m}\n",
		cgA, cgB, metricsAddr))
	d := e.startDaemon()

	// The executable: the client, 64 KiB of A's own bytes, holes to 512
	// MiB. It still runs: the kernel maps what the ELF headers name.
	dir := sharedDir(t)
	exe := filepath.Join(dir, "big-client")
	elf, err := os.ReadFile(clientBin)
	if err != nil {
		t.Fatal(err)
	}
	tail := make([]byte, 64<<10)
	rand.Read(tail)
	if err := os.WriteFile(exe, append(elf, tail...), 0o755); err != nil {
		t.Fatal(err)
	}
	const size = 512 << 20
	if err := os.Truncate(exe, size); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(exe, uidA, uidA); err != nil {
		t.Fatal(err)
	}
	sum := func() string {
		f, err := os.Open(exe)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		h := sha256.New()
		io.Copy(h, f)
		return hex.EncodeToString(h.Sum(nil))
	}
	hashedBytes := func() float64 {
		return scrapeMetric(t, metricsAddr, "interlock_exe_hashed_bytes_total")
	}

	// runA runs A's loop: before each connect, touch the executable, or
	// rewrite a byte of its tail (a new version with new contents).
	runA := func(n int, change string) []clientResult {
		var b strings.Builder
		for i := 0; i < n; i++ {
			switch change {
			case "touch":
				fmt.Fprintf(&b, "touch %s\n", exe)
			case "rewrite":
				fmt.Fprintf(&b, "printf '%%04d' %d | dd of=%s bs=1 seek=%d conv=notrunc status=none\n", i, exe, len(elf)+8)
			}
			fmt.Fprintf(&b, "%s -addr %s\n", exe, srv.addr())
		}
		out, stderr, code := runCmd(t, inCgroup(t, dirA, asUID(uidA, "sh", "-c", b.String())...))
		if code != 0 {
			t.Fatalf("A's loop: exit %d: %s %s", code, out, stderr)
		}
		var rs []clientResult
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			rs = append(rs, parseClient(t, []byte(line)))
		}
		return rs
	}
	exeSHA := func(rs []clientResult) []string {
		sessions := e.sessions()
		var out []string
		for _, r := range rs {
			so, ok := sessions[r.Local]
			if !ok || so.Identity.Proc == nil {
				t.Fatalf("A's session %s not journaled with its process: %+v", r.Local, so.Identity)
			}
			out = append(out, so.Identity.Proc.ExeSHA256)
		}
		return out
	}

	// Touches: every version is hashed, right, at the cost of its data.
	want := sum()
	cpu0, bytes0 := daemonCPU(t, d.cmd.Process.Pid), hashedBytes()
	touched := runA(8, "touch")
	waitSessions(t, e, 8)
	cpuTouch, bytesTouch := daemonCPU(t, d.cmd.Process.Pid)-cpu0, hashedBytes()-bytes0
	for i, s := range exeSHA(touched) {
		if s != want {
			t.Errorf("A's connect %d after a touch: exe_sha256 %q, want %s", i, s, want)
		}
	}
	if bytesTouch > size+8*(32<<20) {
		t.Errorf("8 touched versions fed %.0f MiB to SHA-256, want one file's worth and the data of the rest", bytesTouch/(1<<20))
	}
	t.Logf("8 connects with touches: daemon CPU %s, %.0f MiB hashed", cpuTouch, bytesTouch/(1<<20))

	// Rewrites: each is a full hash of 512 MiB, until A's budget is
	// spent; B connects meanwhile.
	var wg sync.WaitGroup
	var slowest time.Duration
	wg.Add(1)
	go func() {
		defer wg.Done()
		slowest = bystander(t, 10, func() *exec.Cmd {
			return inCgroup(t, dirB, asUID(uidB, clientBin, "-addr", srv.addr())...)
		}, func(out string) bool { return strings.Contains(out, `"reply":"peer=`) })
	}()
	cpu1, bytes1 := daemonCPU(t, d.cmd.Process.Pid), hashedBytes()
	rewritten := runA(12, "rewrite")
	wg.Wait()
	waitSessions(t, e, 8+12+10)
	cpuRewrite, bytesRewrite := daemonCPU(t, d.cmd.Process.Pid)-cpu1, hashedBytes()-bytes1
	t.Logf("12 connects with rewrites: daemon CPU %s, %.0f MiB hashed; B's slowest connect %s", cpuRewrite, bytesRewrite/(1<<20), slowest)
	missing := 0
	for _, s := range exeSHA(rewritten) {
		if s == "" {
			missing++
		}
	}
	// The budget (1 GiB a minute, half of it left after the touches)
	// allows two or three full hashes in the loop's few seconds.
	if missing < 12-4 {
		t.Errorf("%d of A's 12 rewritten versions were hashed, want at most 4 within a 1 GiB budget", 12-missing)
	}
	if bytesRewrite > 4*size {
		t.Errorf("rewrites fed %.0f MiB to SHA-256, over the budget", bytesRewrite/(1<<20))
	}
	if cpuRewrite > 4*time.Second {
		t.Errorf("the daemon spent %s of CPU on A's 12 connects, want it bounded by the budget", cpuRewrite)
	}
	entries := limitEntries(e, "hash_budget")
	if n, _ := countOf(entries, uidA); n < 1 {
		t.Errorf("the spent hash budget was not journaled: %+v", entries)
	}
	if n, _ := countOf(entries, uidB); n != 0 {
		t.Errorf("B's hashing was refused")
	}
	// B's sessions carry their hash.
	for _, so := range e.sessions() {
		if so.Identity.Kernel.UID == uidB && (so.Identity.Proc == nil || so.Identity.Proc.ExeSHA256 != clientSHA256) {
			t.Errorf("B's session lost its exe_sha256: %+v", so.Identity.Proc)
		}
	}
}
