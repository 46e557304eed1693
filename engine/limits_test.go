package engine

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/journal"
	"github.com/interlock/interlock/metrics"
	"github.com/interlock/interlock/model"
)

// fakeClock is a limiter's clock the test moves.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func (c *fakeClock) add(d time.Duration) { c.t = c.t.Add(d) }

func testLimiter(t *testing.T) (*limiter, *fakeClock) {
	t.Helper()
	clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	l := newLimiter()
	l.now = clk.now
	t.Cleanup(l.close)
	return l, clk
}

// lims is the defaults with the given changes.
func lims(change func(*config.Limits)) config.Limits {
	l := config.LimitsConfig{}.Resolve()
	l.FDReserve = 0 // the fd reserve has its own test
	if change != nil {
		change(&l)
	}
	return l
}

func mustAdmit(t *testing.T, l *limiter, uid uint32, cg uint64, lim config.Limits) *admission {
	t.Helper()
	a, r := l.admit(uid, cg, lim)
	if r != nil {
		t.Fatalf("uid %d cgroup %d refused: %s", uid, cg, r.reason)
	}
	return a
}

func mustRefuse(t *testing.T, l *limiter, uid uint32, cg uint64, lim config.Limits, limit string) {
	t.Helper()
	a, r := l.admit(uid, cg, lim)
	if r == nil {
		a.release()
		t.Fatalf("uid %d cgroup %d admitted, want refused by %s", uid, cg, limit)
	}
	if r.limit != limit {
		t.Fatalf("uid %d cgroup %d refused by %s (%s), want %s", uid, cg, r.limit, r.reason, limit)
	}
}

// TestLimiterSessionCaps: a uid and a cgroup have at most their cap of
// sessions open; others are not affected; a session's end frees its
// place.
func TestLimiterSessionCaps(t *testing.T) {
	l, _ := testLimiter(t)
	lim := lims(func(l *config.Limits) {
		l.PerUID = config.Actor{Sessions: 3}
		l.PerCgroup = config.Actor{Sessions: 5}
	})
	var held []*admission
	for i := 0; i < 3; i++ {
		held = append(held, mustAdmit(t, l, 1000, 7, lim))
	}
	mustRefuse(t, l, 1000, 7, lim, limitUIDSessions)
	mustRefuse(t, l, 1000, 8, lim, limitUIDSessions) // another cgroup: same uid
	// Another uid in the same cgroup, up to the cgroup's cap.
	held = append(held, mustAdmit(t, l, 1001, 7, lim), mustAdmit(t, l, 1001, 7, lim))
	mustRefuse(t, l, 1002, 7, lim, limitCgroupSessions)
	// Another uid elsewhere is untouched.
	mustAdmit(t, l, 1002, 9, lim).release()
	held[0].release()
	held[0].release() // twice is once
	mustAdmit(t, l, 1000, 8, lim)
	mustRefuse(t, l, 1000, 8, lim, limitUIDSessions)
	if n := l.uids[1000].live; n != 3 {
		t.Errorf("uid 1000 live = %d, want 3", n)
	}
}

// TestLimiterOpenRate: a token bucket per uid and per cgroup: a burst,
// then the rate; refusals do not spend tokens.
func TestLimiterOpenRate(t *testing.T) {
	l, clk := testLimiter(t)
	lim := lims(func(l *config.Limits) {
		l.PerUID = config.Actor{OpensPerSecond: 10, OpensBurst: 20}
		l.PerCgroup = config.Actor{OpensPerSecond: 1, OpensBurst: 30}
	})
	for i := 0; i < 20; i++ {
		mustAdmit(t, l, 1000, 7, lim).release()
	}
	mustRefuse(t, l, 1000, 7, lim, limitUIDOpens)
	mustRefuse(t, l, 1000, 7, lim, limitUIDOpens)
	clk.add(350 * time.Millisecond) // 3.5 tokens
	for i := 0; i < 3; i++ {
		mustAdmit(t, l, 1000, 7, lim).release()
	}
	mustRefuse(t, l, 1000, 7, lim, limitUIDOpens)
	// The cgroup's bucket (30) has 23 spent; another uid gets the rest.
	for i := 0; i < 7; i++ {
		mustAdmit(t, l, 1001, 7, lim).release()
	}
	mustRefuse(t, l, 1001, 7, lim, limitCgroupOpens)
	mustAdmit(t, l, 1001, 8, lim).release()
	// Idle actors with full buckets are forgotten.
	clk.add(time.Minute)
	l.forgetIdle(lim)
	if len(l.uids) != 0 || len(l.cgroups) != 0 {
		t.Errorf("kept %d uids and %d cgroups with nothing open and full buckets", len(l.uids), len(l.cgroups))
	}
}

// TestLimiterRoot: uid 0 is not limited unless include_root, but its
// sessions still count for the fd reserve.
func TestLimiterRoot(t *testing.T) {
	l, _ := testLimiter(t)
	lim := lims(func(l *config.Limits) { l.PerUID = config.Actor{Sessions: 1} })
	mustAdmit(t, l, 0, 7, lim)
	mustAdmit(t, l, 0, 7, lim)
	if l.pairs[actorPair{0, 7}] != 2 {
		t.Errorf("root's sessions are not counted for the fd reserve")
	}
	lim.IncludeRoot = true
	mustAdmit(t, l, 0, 8, lim)
	mustRefuse(t, l, 0, 8, lim, limitUIDSessions)
}

// TestLimiterFDReserve: when fewer than the reserve are free, the busiest
// (uid, cgroup) gets no new session; everyone else still does.
func TestLimiterFDReserve(t *testing.T) {
	l, clk := testLimiter(t)
	lim := lims(func(l *config.Limits) {
		l.PerUID, l.PerCgroup = config.Actor{}, config.Actor{}
		l.FDReserve = 100
	})
	for i := 0; i < 10; i++ {
		mustAdmit(t, l, 1000, 7, lim)
	}
	mustAdmit(t, l, 1001, 8, lim)
	// Pretend the process is near its limit (a count just taken).
	l.mu.Lock()
	l.fds = fdGauge{count: 950, limit: 1000, sampled: clk.t}
	l.mu.Unlock()
	mustRefuse(t, l, 1000, 7, lim, limitFDReserve)
	mustAdmit(t, l, 1001, 8, lim) // 2 sessions: not the busiest
	mustAdmit(t, l, 1000, 9, lim) // the same uid in another cgroup
	mustAdmit(t, l, 1002, 7, lim) // another uid in the same cgroup
	// Room again: the busiest opens too.
	l.mu.Lock()
	l.fds = fdGauge{count: 100, limit: 1000, sampled: clk.t}
	l.mu.Unlock()
	mustAdmit(t, l, 1000, 7, lim)
}

// TestOpenFDs: the count matches /proc/self/fd.
func TestOpenFDs(t *testing.T) {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	want := len(ents) - 1 // ReadDir's own
	n, limit := openFDs()
	if n < want-2 || n > want+2 || limit <= n {
		t.Errorf("openFDs() = %d of %d, /proc/self/fd lists %d", n, limit, want)
	}
}

// TestLimiterReports: one journal entry per actor and limit per interval;
// the rest are counted into one summary when the interval is over, or at
// shutdown.
func TestLimiterReports(t *testing.T) {
	l, clk := testLimiter(t)
	a := limitHit{limit: limitUIDSessions, uid: 1000, hasActor: true}
	b := limitHit{limit: limitUIDSessions, uid: 1001, hasActor: true}
	if !l.note(a, time.Minute) || !l.note(b, time.Minute) {
		t.Fatal("the first hits were not journaled")
	}
	for i := 0; i < 41; i++ {
		if l.note(a, time.Minute) {
			t.Fatal("a second hit within the interval was journaled")
		}
	}
	if got := l.due(time.Minute, false); len(got) != 0 {
		t.Fatalf("summaries before the interval ended: %+v", got)
	}
	clk.add(time.Minute)
	got := l.due(time.Minute, false)
	if len(got) != 1 || got[0].count != 41 || got[0].hit.uid != 1000 {
		t.Fatalf("summaries %+v, want one of 41 for uid 1000", got)
	}
	// The summary opened a new window.
	if l.note(a, time.Minute) {
		t.Error("a hit right after the summary was journaled")
	}
	if got := l.due(time.Minute, true); len(got) != 1 || got[0].count != 1 {
		t.Fatalf("forced summaries %+v", got)
	}
	clk.add(2 * time.Minute)
	l.due(time.Minute, false)
	if len(l.reports) != 0 {
		t.Errorf("%d quiet actors kept", len(l.reports))
	}
}

// TestFirstByteGuard: a client that sends nothing gets the guard's error
// at the deadline; one that sends in time is read with the handler's
// deadlines only; the handler's earlier deadline stays its own.
func TestFirstByteGuard(t *testing.T) {
	pair := func() (client, server net.Conn) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		client, err = net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		server, err = ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { client.Close(); server.Close() })
		return client, server
	}

	t.Run("silent", func(t *testing.T) {
		_, server := pair()
		start := time.Now()
		g := guardFirstByte(server, 300*time.Millisecond, start, "postgres")
		g.SetDeadline(start.Add(30 * time.Second)) // a handler's own, later
		_, err := g.Read(make([]byte, 1))
		var fe *firstByteError
		if !errors.As(err, &fe) || !g.expired.Load() {
			t.Fatalf("read = %v, want the first-byte error", err)
		}
		if took := time.Since(start); took < 300*time.Millisecond || took > 2*time.Second {
			t.Errorf("refused after %s", took)
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Error("the guard's error passes for a deadline a handler may retry")
		}
		if !strings.Contains(err.Error(), "limits.timeouts.postgres.first_byte") {
			t.Errorf("error %q does not name the setting", err)
		}
	})

	t.Run("handler deadline first", func(t *testing.T) {
		_, server := pair()
		g := guardFirstByte(server, 5*time.Second, time.Now(), "ssh")
		g.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		_, err := g.Read(make([]byte, 1))
		if !errors.Is(err, os.ErrDeadlineExceeded) || g.expired.Load() {
			t.Fatalf("read = %v (expired %v), want the handler's own deadline", err, g.expired.Load())
		}
	})

	t.Run("in time", func(t *testing.T) {
		client, server := pair()
		g := guardFirstByte(server, 300*time.Millisecond, time.Now(), "tcp")
		go func() {
			time.Sleep(100 * time.Millisecond)
			client.Write([]byte("a"))
			time.Sleep(600 * time.Millisecond) // past the guard's deadline
			client.Write([]byte("b"))
		}()
		buf := make([]byte, 1)
		for _, want := range "ab" {
			if _, err := io.ReadFull(g, buf); err != nil || rune(buf[0]) != want {
				t.Fatalf("read %q, %v; want %q", buf, err, want)
			}
		}
		if g.expired.Load() {
			t.Error("expired after the first byte came")
		}
		if _, ok := g.NetConn().(*net.TCPConn); !ok {
			t.Error("NetConn is not the socket")
		}
	})
}

// TestShedOnEMFILE: out of descriptors, a waiting connection is accepted
// with the spare descriptor and reset at once, and the spare is taken
// back.
func TestShedOnEMFILE(t *testing.T) {
	l, _ := testLimiter(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()

	// Fill the descriptor table up to a lowered limit.
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	open, _ := openFDs()
	lowered := old
	lowered.Cur = uint64(open + 16)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lowered); err != nil {
		t.Fatal(err)
	}
	var fill []int
	defer func() {
		for _, fd := range fill {
			unix.Close(fd)
		}
		unix.Setrlimit(unix.RLIMIT_NOFILE, &old)
	}()
	for {
		fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			break
		}
		fill = append(fill, fd)
	}
	_, aerr := ln.Accept()
	if !errors.Is(aerr, syscall.EMFILE) {
		t.Fatalf("accept with no descriptor left: %v, want EMFILE", aerr)
	}
	shed, ok := l.shed(ln, aerr)
	if !ok || !shed {
		t.Fatalf("shed = %v, %v; want the waiting connection shed", shed, ok)
	}
	if l.spare < 0 {
		t.Error("the spare was not taken back")
	}
	client.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := client.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("the client read %v, want a reset", err)
	}
	// Nothing waiting: nothing shed, and no blocking.
	shed, ok = l.shed(ln, aerr)
	if !ok || shed {
		t.Errorf("with nothing waiting: shed = %v, %v", shed, ok)
	}
	if _, ok := l.shed(ln, errors.New("other")); ok {
		t.Error("an unrelated accept error taken for EMFILE")
	}
}

// TestLimitHitsJournaled: a hit is counted, journaled once per actor and
// limit per interval with its detail, and the rest summed at the flush.
func TestLimitHitsJournaled(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancelCause(context.Background())
	j, err := journal.Open(ctx, journal.Options{Path: filepath.Join(dir, "j.db"), StateDir: dir,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	e := &Engine{ctx: ctx, cancel: cancel, cfg: cfg, journal: j, log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		metrics: metrics.New(metrics.Gauges{}), lim: newLimiter()}
	defer e.lim.close()
	hit := limitHit{limit: limitUIDSessions, reason: "refused: uid 1000 has 64 sessions open", value: 64,
		uid: 1000, cgroup: 7, cgPath: "/job", target: "db", hasActor: true}
	for i := 0; i < 25; i++ {
		e.hitLimit(hit)
	}
	e.hitLimit(limitHit{limit: limitFirstByte, reason: "closed", uid: 1000, hasActor: true, session: "s1"})
	cancel(errors.New("shutting down")) // the flush at shutdown sums every window
	e.flushLimits()
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	type rec struct {
		kind, session string
		a             model.Anomaly
	}
	var recs []rec
	err = journal.Entries(context.Background(), filepath.Join(dir, "j.db"), 1, func(en journal.Entry) error {
		var x struct {
			Kind    string        `json:"kind"`
			Session string        `json:"session"`
			Data    model.Anomaly `json:"data"`
		}
		if err := json.Unmarshal(en.Body, &x); err != nil {
			return err
		}
		if x.Kind == model.KindAnomaly {
			recs = append(recs, rec{x.Kind, x.Session, x.Data})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]float64{}
	entries := map[string]int{}
	for _, r := range recs {
		limit, _ := r.a.Detail["limit"].(string)
		c, _ := r.a.Detail["count"].(float64)
		counts[limit] += c
		entries[limit]++
		if limit == limitUIDSessions && (r.a.Detail["uid"] != float64(1000) || r.a.Detail["cgroup"] != "/job" || r.a.Detail["target"] != "db") {
			t.Errorf("detail %v", r.a.Detail)
		}
		if limit == limitFirstByte && r.session != "s1" {
			t.Errorf("first-byte entry not in its session: %q", r.session)
		}
	}
	if entries[limitUIDSessions] != 2 || counts[limitUIDSessions] != 25 {
		t.Errorf("per_uid.sessions: %d entries counting %g, want 2 counting 25", entries[limitUIDSessions], counts[limitUIDSessions])
	}
	if entries[limitFirstByte] != 1 || counts[limitFirstByte] != 1 {
		t.Errorf("first_byte: %d entries counting %g", entries[limitFirstByte], counts[limitFirstByte])
	}
}
