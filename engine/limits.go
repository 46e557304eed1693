package engine

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/interlock/interlock/config"
)

// The limits section (config.LimitsConfig) is enforced here, in the order
// a connection meets them:
//
//   - accept: when the process is out of file descriptors, a spare one is
//     given up to accept the waiting connection and close it at once, so
//     the listener's backlog keeps moving and clients are refused, not
//     left hanging;
//   - identity (in the redirector): hashing an executable is bounded by
//     size and by its owner's budget;
//   - admission, right after the origin is known (the uid and cgroup id
//     are the kernel's record of the connect, which the process cannot
//     change): per-uid and per-cgroup caps on open sessions and token
//     buckets on new ones; and, when fewer than fd_reserve descriptors
//     are free, no new session for the uid in the cgroup holding the most;
//   - the session: the client's first byte within first_byte (a guard on
//     the connection, below), and the handler's idle timer.
//
// Each hit is counted in interlock_limit_hits_total and journaled as an
// anomaly, at most once per actor and limit per report_interval; the hits
// in between are summed into one entry when the interval is over (the
// same one-second flush as the anomaly budget's).

// Limit names, in metrics labels and in the journal's detail.
const (
	limitUIDSessions    = "per_uid.sessions"
	limitCgroupSessions = "per_cgroup.sessions"
	limitUIDOpens       = "per_uid.opens"
	limitCgroupOpens    = "per_cgroup.opens"
	limitFDReserve      = "fd_reserve"
	limitFDExhausted    = "fd_exhausted"
	limitFirstByte      = "first_byte"
	limitIdle           = "idle"
)

// fdsPerSession is what a session is assumed to add to the process's
// open descriptors between two counts: the client, the upstream, and one
// for a TLS or pipe in passing.
const fdsPerSession = 3

// maxReports bounds the actors and limits whose journal budget is
// tracked; past it, new ones share one entry.
const maxReports = 10000

// limiter is the engine's limits state. Its methods are safe for
// concurrent use.
type limiter struct {
	now func() time.Time

	mu      sync.Mutex
	uids    map[uint32]*actorState
	cgroups map[uint64]*actorState
	// pairs counts every live session by (uid, cgroup), root's too: the
	// fd reserve picks the busiest pair.
	pairs   map[actorPair]int
	fds     fdGauge
	reports map[reportKey]*reportState
	// spare is a descriptor held to be given up when accept fails with
	// EMFILE (-1: none).
	spare int
	// hash is the hash limits last given to the resolver.
	hash config.Limits
}

type actorPair struct {
	uid uint32
	cg  uint64
}

// actorState is one uid's or cgroup's sessions and token bucket.
type actorState struct {
	live   int
	tokens float64
	last   time.Time
}

// fdGauge estimates the process's open descriptors between counts.
type fdGauge struct {
	count, limit int
	sampled      time.Time
	// since is how many sessions were admitted since the count.
	since int
}

func newLimiter() *limiter {
	l := &limiter{
		now:     time.Now,
		uids:    map[uint32]*actorState{},
		cgroups: map[uint64]*actorState{},
		pairs:   map[actorPair]int{},
		reports: map[reportKey]*reportState{},
		spare:   -1,
	}
	l.takeSpare()
	return l
}

// refusal is why a session was not admitted.
type refusal struct {
	limit  string
	reason string
	value  any
}

// admission is an admitted session; release it when the session ends.
type admission struct {
	l       *limiter
	pair    actorPair
	subject bool
	once    sync.Once
}

func (a *admission) release() {
	a.once.Do(func() { a.l.release(a) })
}

// admit decides whether a new session of uid in cgroup cg may open.
func (l *limiter) admit(uid uint32, cg uint64, lim config.Limits) (*admission, *refusal) {
	now := l.now()
	pair := actorPair{uid, cg}
	// Root can stop interlock or raise its limits: limiting it protects
	// nobody unless the operator asks for it.
	subject := uid != 0 || lim.IncludeRoot
	l.mu.Lock()
	defer l.mu.Unlock()
	var u, c *actorState
	if subject {
		u, c = actorOf(l.uids, uid, now), actorOf(l.cgroups, cg, now)
		refill(u, lim.PerUID, now)
		refill(c, lim.PerCgroup, now)
		switch {
		case lim.PerUID.Sessions > 0 && u.live >= lim.PerUID.Sessions:
			return nil, &refusal{limitUIDSessions, fmt.Sprintf("uid %d has %d sessions open, as many as limits.per_uid.sessions allows", uid, u.live), lim.PerUID.Sessions}
		case lim.PerCgroup.Sessions > 0 && c.live >= lim.PerCgroup.Sessions:
			return nil, &refusal{limitCgroupSessions, fmt.Sprintf("cgroup %d has %d sessions open, as many as limits.per_cgroup.sessions allows", cg, c.live), lim.PerCgroup.Sessions}
		case lim.PerUID.OpensPerSecond > 0 && u.tokens < 1:
			return nil, &refusal{limitUIDOpens, fmt.Sprintf("uid %d opens sessions faster than limits.per_uid.opens_per_second (%g/s, burst %d)",
				uid, lim.PerUID.OpensPerSecond, lim.PerUID.OpensBurst), lim.PerUID.OpensPerSecond}
		case lim.PerCgroup.OpensPerSecond > 0 && c.tokens < 1:
			return nil, &refusal{limitCgroupOpens, fmt.Sprintf("cgroup %d opens sessions faster than limits.per_cgroup.opens_per_second (%g/s, burst %d)",
				cg, lim.PerCgroup.OpensPerSecond, lim.PerCgroup.OpensBurst), lim.PerCgroup.OpensPerSecond}
		}
	}
	if lim.FDReserve > 0 && l.fdPressureLocked(lim.FDReserve, now) {
		if busiest := l.busiestLocked(); busiest > 0 && l.pairs[pair] >= busiest {
			return nil, &refusal{limitFDReserve, fmt.Sprintf("fewer than limits.fd_reserve (%d) file descriptors are free (%d of %d open), "+
				"and uid %d in cgroup %d holds the most sessions (%d)", lim.FDReserve, l.fds.count, l.fds.limit, uid, cg, l.pairs[pair]), lim.FDReserve}
		}
	}
	if subject {
		if lim.PerUID.OpensPerSecond > 0 {
			u.tokens--
		}
		if lim.PerCgroup.OpensPerSecond > 0 {
			c.tokens--
		}
		u.live++
		c.live++
	}
	l.pairs[pair]++
	l.fds.since++
	return &admission{l: l, pair: pair, subject: subject}, nil
}

func (l *limiter) release(a *admission) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if a.subject {
		if u := l.uids[a.pair.uid]; u != nil {
			u.live--
		}
		if c := l.cgroups[a.pair.cg]; c != nil {
			c.live--
		}
	}
	if l.pairs[a.pair]--; l.pairs[a.pair] <= 0 {
		delete(l.pairs, a.pair)
	}
}

// actorOf returns k's state in m, a new one (with a full bucket) if none.
func actorOf[K comparable](m map[K]*actorState, k K, now time.Time) *actorState {
	s := m[k]
	if s == nil {
		s = &actorState{tokens: -1, last: now}
		m[k] = s
	}
	return s
}

// refill adds the tokens earned since the bucket was last used; a new
// bucket (tokens -1) starts full.
func refill(s *actorState, a config.Actor, now time.Time) {
	burst := float64(a.OpensBurst)
	if s.tokens < 0 {
		s.tokens = burst
	}
	s.tokens = min(burst, s.tokens+now.Sub(s.last).Seconds()*a.OpensPerSecond)
	s.last = now
}

// forgetIdle drops the actors with no session and a full bucket: a new
// one starts the same.
func (l *limiter) forgetIdle(lim config.Limits) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, s := range l.uids {
		if s.live <= 0 && full(s, lim.PerUID, now) {
			delete(l.uids, k)
		}
	}
	for k, s := range l.cgroups {
		if s.live <= 0 && full(s, lim.PerCgroup, now) {
			delete(l.cgroups, k)
		}
	}
}

func full(s *actorState, a config.Actor, now time.Time) bool {
	return a.OpensPerSecond <= 0 || s.tokens+now.Sub(s.last).Seconds()*a.OpensPerSecond >= float64(a.OpensBurst)
}

// fdPressureLocked says whether fewer than reserve descriptors are free.
// It counts them at most once a second, and once every 10ms while the
// estimate (the count, plus fdsPerSession per session admitted since) is
// past the line.
func (l *limiter) fdPressureLocked(reserve int, now time.Time) bool {
	g := &l.fds
	age := now.Sub(g.sampled)
	over := g.limit > 0 && g.count+fdsPerSession*g.since >= g.limit-reserve
	if g.limit == 0 || age > time.Second || (over && age > 10*time.Millisecond) {
		g.count, g.limit = openFDs()
		g.sampled, g.since = now, 0
	}
	return g.count+fdsPerSession*g.since >= g.limit-reserve
}

// busiestLocked is the most live sessions one (uid, cgroup) holds.
func (l *limiter) busiestLocked() int {
	most := 0
	for _, n := range l.pairs {
		most = max(most, n)
	}
	return most
}

// openFDs counts this process's open descriptors and returns its
// RLIMIT_NOFILE. When even the count cannot be taken (no descriptor left
// to read /proc/self/fd with) the process is full.
func openFDs() (open, limit int) {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil || rl.Cur > 1<<30 {
		rl.Cur = 1 << 30
	}
	limit = int(rl.Cur)
	fd, err := unix.Open("/proc/self/fd", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return limit, limit
	}
	defer unix.Close(fd)
	var buf [8192]byte
	n := -1 // the directory's own descriptor
	for {
		k, err := unix.Getdents(fd, buf[:])
		if err != nil {
			return limit, limit
		}
		if k <= 0 {
			break
		}
		// linux_dirent64: ino u64, off s64, reclen u16, type u8, name.
		for off := 0; off+19 < k; {
			reclen := int(buf[off+16]) | int(buf[off+17])<<8
			if reclen == 0 {
				break
			}
			if name := buf[off+19]; name != '.' {
				n++
			}
			off += reclen
		}
	}
	return max(n, 0), limit
}

// takeSpare holds a descriptor in reserve for shedding on EMFILE (with
// l.mu held, or before l is shared).
func (l *limiter) takeSpare() {
	if l.spare != -1 {
		return
	}
	if fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0); err == nil {
		l.spare = fd
	}
}

// close gives back the spare descriptor.
func (l *limiter) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.spare >= 0 {
		unix.Close(l.spare)
		l.spare = -2 // not taken again
	}
}

// shed handles an accept that failed for want of descriptors: it gives
// up the spare, accepts a waiting connection (if one is) and closes it at
// once, and takes the spare back. ok says err was such a failure; shed
// that a connection was closed.
func (l *limiter) shed(ln net.Listener, err error) (shed, ok bool) {
	if !errors.Is(err, syscall.EMFILE) && !errors.Is(err, syscall.ENFILE) {
		return false, false
	}
	sc, isSC := ln.(syscall.Conn)
	if !isSC {
		return false, true
	}
	rc, rerr := sc.SyscallConn()
	if rerr != nil {
		return false, true
	}
	l.mu.Lock()
	if l.spare >= 0 {
		unix.Close(l.spare)
		l.spare = -1
	}
	l.mu.Unlock()
	// The listener is non-blocking: with nothing waiting this returns
	// EAGAIN, and the accept loop comes back after a pause.
	rc.Control(func(fd uintptr) {
		nfd, _, aerr := unix.Accept4(int(fd), unix.SOCK_CLOEXEC)
		if aerr != nil {
			return
		}
		// Reset, not a graceful close: the client learns at once, and
		// nothing lingers on its account.
		unix.SetsockoptLinger(nfd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
		unix.Close(nfd)
		shed = true
	})
	l.mu.Lock()
	l.takeSpare()
	l.mu.Unlock()
	return shed, true
}

// reportKey is one actor's one limit.
type reportKey struct {
	limit, actor string
}

type reportState struct {
	window     time.Time
	suppressed int
	last       limitHit
}

// note records a hit and says whether to journal it now: the first of
// each window is journaled; the rest are counted for the summary.
func (l *limiter) note(h limitHit, interval time.Duration) bool {
	now := l.now()
	key := reportKey{h.limit, h.actor()}
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.reports[key]
	if st == nil && len(l.reports) >= maxReports {
		key.actor = "others"
		st = l.reports[key]
	}
	if st == nil {
		l.reports[key] = &reportState{window: now}
		return true
	}
	if st.suppressed == 0 && now.Sub(st.window) >= interval {
		st.window = now
		return true
	}
	st.suppressed++
	st.last = h
	return false
}

// summary is the hits of one actor and limit left out of the journal in
// one window.
type summary struct {
	hit   limitHit
	count int
	since time.Time
}

// due returns the summaries whose window is over (all of them with
// force), and forgets the quiet actors.
func (l *limiter) due(interval time.Duration, force bool) []summary {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []summary
	for k, st := range l.reports {
		over := now.Sub(st.window) >= interval
		switch {
		case st.suppressed > 0 && (over || force):
			out = append(out, summary{hit: st.last, count: st.suppressed, since: st.window})
			st.window, st.suppressed = now, 0
		case st.suppressed == 0 && over:
			delete(l.reports, k)
		}
	}
	return out
}

// limitHit is one time a limit stopped something.
type limitHit struct {
	limit    string
	reason   string
	value    any
	uid      uint32
	cgroup   uint64
	cgPath   string
	target   string
	session  string
	hasActor bool // uid and cgroup are known
	peer     netip.AddrPort
	local    netip.AddrPort
}

// actor names who the journal budget counts the hit against.
func (h limitHit) actor() string {
	switch {
	case !h.hasActor:
		return "all"
	case h.limit == limitCgroupSessions || h.limit == limitCgroupOpens:
		return fmt.Sprintf("cgroup %d", h.cgroup)
	case h.limit == limitFDReserve:
		return fmt.Sprintf("uid %d cgroup %d", h.uid, h.cgroup)
	}
	return fmt.Sprintf("uid %d", h.uid)
}

func (h limitHit) detail(count int) map[string]any {
	d := map[string]any{"limit": h.limit, "count": count}
	if h.value != nil {
		d["limit_value"] = h.value
	}
	if h.hasActor {
		d["uid"] = h.uid
		if h.cgroup != 0 {
			d["cgroup_id"] = h.cgroup
		}
	}
	if h.cgPath != "" {
		d["cgroup"] = h.cgPath
	}
	if h.target != "" {
		d["target"] = h.target
	}
	return d
}
