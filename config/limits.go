package config

import (
	"fmt"
	"time"

	"github.com/interlock/interlock/model"
)

// LimitsConfig is the limits section: bounds on what one actor (a uid, a
// cgroup) can make interlock hold or do, so that one actor's flood of
// sessions, idle connections or executables to hash does not deny service
// to the others.
//
// Every key is optional: a key left out takes the built-in default (see
// Resolve), and 0 turns that limit off. The fields are pointers so that
// "not written" and "written as 0" stay apart, and Default() need not
// spell the defaults out twice.
type LimitsConfig struct {
	// PerUID bounds each uid's sessions; the uid is the kernel's record of
	// the task that connected.
	PerUID UIDLimits `yaml:"per_uid"`
	// PerCgroup bounds each cgroup's sessions (the connecting task's own
	// cgroup, by the kernel's cgroup id).
	PerCgroup ActorLimits `yaml:"per_cgroup"`
	// IncludeRoot subjects uid 0 to PerUID and PerCgroup. Off by default:
	// root can stop interlock or raise its limits, so limiting it
	// protects nobody, and root's test and batch runs would hit them.
	// The fd reserve, the timeouts and the hash budget apply to root
	// either way.
	IncludeRoot *bool `yaml:"include_root,omitempty"`
	// Timeouts end sessions that stay silent, per protocol.
	Timeouts ProtocolTimeouts `yaml:"timeouts"`
	// FDReserve is how many file descriptors below RLIMIT_NOFILE are kept
	// for everyone else: once fewer than this are free, the actor holding
	// the most sessions gets no new one.
	FDReserve *int64 `yaml:"fd_reserve,omitempty"`
	// Hash bounds the work of hashing executables.
	Hash HashLimits `yaml:"hash"`
	// ReportInterval is the journal budget of limit hits: at most one
	// entry per actor and limit per interval, then one summary with the
	// count of those left out.
	ReportInterval *Duration `yaml:"report_interval,omitempty"`
}

// ActorLimits are the limits of one kind of actor (per uid or per cgroup).
type ActorLimits struct {
	// Sessions is how many sessions one actor may have open at once.
	Sessions *int64 `yaml:"sessions,omitempty"`
	// OpensPerSecond is the sustained rate of new sessions (a token
	// bucket refilled at this rate).
	OpensPerSecond *int64 `yaml:"opens_per_second,omitempty"`
	// OpensBurst is the bucket's size: how many sessions may open at once
	// after a quiet spell.
	OpensBurst *int64 `yaml:"opens_burst,omitempty"`
}

// UIDLimits are the per-uid limits: those of every actor, and the ones
// only a uid has.
type UIDLimits struct {
	Sessions       *int64 `yaml:"sessions,omitempty"`
	OpensPerSecond *int64 `yaml:"opens_per_second,omitempty"`
	OpensBurst     *int64 `yaml:"opens_burst,omitempty"`
	// SSHPreauth is how many SSH connections one uid may have that have
	// not finished authenticating with interlock. Interlock opens nothing
	// to the target for them, but each holds a handshake slot for up to
	// the handshake timeout: without a cap, one user's idle connects
	// would hold interlock's descriptors and goroutines.
	SSHPreauth *int64 `yaml:"ssh_preauth,omitempty"`
}

// actor is the part of u every kind of actor has.
func (u UIDLimits) actor() ActorLimits {
	return ActorLimits{Sessions: u.Sessions, OpensPerSecond: u.OpensPerSecond, OpensBurst: u.OpensBurst}
}

// ProtocolTimeouts are the timeouts of each protocol's sessions.
type ProtocolTimeouts struct {
	Postgres Timeouts `yaml:"postgres"`
	SSH      Timeouts `yaml:"ssh"`
	TCP      Timeouts `yaml:"tcp"`
}

// Timeouts of one protocol's sessions.
type Timeouts struct {
	// FirstByte is how long a client has, from the accept, to send its
	// first byte.
	FirstByte *Duration `yaml:"first_byte,omitempty"`
	// Idle is how long a session may stay idle. What idle means depends
	// on the protocol; an operation held for approval is never idle.
	Idle *Duration `yaml:"idle,omitempty"`
}

// HashLimits bound the hashing of executables (the exe_sha256 of an
// identity). An executable that is not hashed has no exe_sha256: policy
// takes its hash as unknown (an allow rule on hashes does not apply, a
// deny or review rule does).
type HashLimits struct {
	// MaxMiB is the largest executable hashed, in MiB.
	MaxMiB *int64 `yaml:"max_mib,omitempty"`
	// BudgetMiB is how many MiB each file owner's executables may have
	// hashed per Interval (a token bucket; 0: no budget).
	BudgetMiB *int64 `yaml:"budget_mib,omitempty"`
	// Interval is the budget's period.
	Interval *Duration `yaml:"interval,omitempty"`
}

// Limits are the limits in effect: LimitsConfig with the defaults filled
// in. Zero turns a limit off.
type Limits struct {
	PerUID, PerCgroup Actor
	// SSHPreauth is limits.per_uid.ssh_preauth: the SSH connections one
	// uid may have that are not yet authenticated with interlock.
	SSHPreauth    int
	IncludeRoot   bool
	Postgres, SSH SessionTimeouts
	TCP           SessionTimeouts
	FDReserve     int
	// HashMaxBytes is the largest executable hashed; HashBudgetBytes per
	// HashInterval per file owner (0: no budget).
	HashMaxBytes    int64
	HashBudgetBytes int64
	HashInterval    time.Duration
	ReportInterval  time.Duration
}

// Actor is one kind of actor's limits in effect.
type Actor struct {
	Sessions       int
	OpensPerSecond float64
	OpensBurst     int
}

// SessionTimeouts are one protocol's timeouts in effect.
type SessionTimeouts struct {
	FirstByte, Idle time.Duration
}

// Timeouts returns the timeouts of a protocol's sessions.
func (l Limits) Timeouts(p model.Protocol) SessionTimeouts {
	switch p {
	case model.ProtoPostgres:
		return l.Postgres
	case model.ProtoSSH:
		return l.SSH
	default:
		return l.TCP
	}
}

// Built-in defaults of the limits section. They are meant to stay out of
// the way of one CI job or agent (a connection pool, a test suite's
// connects) and to stop one actor from taking what the others need.
const (
	defaultUIDSessions       = 64
	defaultUIDOpens          = 20
	defaultUIDBurst          = 40
	defaultUIDSSHPreauth     = 10
	defaultCgroupSessions    = 128
	defaultCgroupOpens       = 40
	defaultCgroupBurst       = 80
	defaultFirstByte         = 10 * time.Second
	defaultIdle              = time.Hour
	defaultFDReserve         = 256
	defaultHashMaxMiB        = 1024
	defaultHashBudgetMiB     = 2048
	defaultHashInterval      = time.Minute
	defaultLimitReportPeriod = time.Minute
)

// Ranges checked by validateLimits.
const (
	maxLimitCount     = 1_000_000
	maxFDReserve      = 1 << 20
	minFirstByte      = 100 * time.Millisecond
	maxFirstByte      = time.Hour
	minIdle           = time.Second
	maxHashMiB        = 1 << 20 // 1 TiB
	minHashInterval   = time.Second
	maxHashInterval   = 24 * time.Hour
	minReportInterval = time.Second
	maxReportInterval = time.Hour
)

// Resolve returns the limits in effect: what the file says, and the
// defaults for what it leaves out.
func (c LimitsConfig) Resolve() Limits {
	return Limits{
		PerUID:          c.PerUID.actor().resolve(defaultUIDSessions, defaultUIDOpens, defaultUIDBurst),
		SSHPreauth:      int(orInt(c.PerUID.SSHPreauth, defaultUIDSSHPreauth)),
		PerCgroup:       c.PerCgroup.resolve(defaultCgroupSessions, defaultCgroupOpens, defaultCgroupBurst),
		IncludeRoot:     c.IncludeRoot != nil && *c.IncludeRoot,
		Postgres:        c.Timeouts.Postgres.resolve(),
		SSH:             c.Timeouts.SSH.resolve(),
		TCP:             c.Timeouts.TCP.resolve(),
		FDReserve:       int(orInt(c.FDReserve, defaultFDReserve)),
		HashMaxBytes:    orInt(c.Hash.MaxMiB, defaultHashMaxMiB) << 20,
		HashBudgetBytes: orInt(c.Hash.BudgetMiB, defaultHashBudgetMiB) << 20,
		HashInterval:    orDuration(c.Hash.Interval, defaultHashInterval),
		ReportInterval:  orDuration(c.ReportInterval, defaultLimitReportPeriod),
	}
}

func (a ActorLimits) resolve(sessions, opens, burst int64) Actor {
	return Actor{
		Sessions:       int(orInt(a.Sessions, sessions)),
		OpensPerSecond: float64(orInt(a.OpensPerSecond, opens)),
		OpensBurst:     int(orInt(a.OpensBurst, burst)),
	}
}

func (t Timeouts) resolve() SessionTimeouts {
	return SessionTimeouts{FirstByte: orDuration(t.FirstByte, defaultFirstByte), Idle: orDuration(t.Idle, defaultIdle)}
}

func orInt(p *int64, def int64) int64 {
	if p == nil {
		return def
	}
	return *p
}

func orDuration(p *Duration, def time.Duration) time.Duration {
	if p == nil {
		return def
	}
	return time.Duration(*p)
}

// validateLimits checks the limits section.
func (c *Config) validateLimits(l *errorList) {
	lc := c.Limits
	for _, a := range []struct {
		key string
		al  ActorLimits
	}{{"limits.per_uid", lc.PerUID.actor()}, {"limits.per_cgroup", lc.PerCgroup}} {
		optCount(l, a.key+".sessions", a.al.Sessions, maxLimitCount)
		optCount(l, a.key+".opens_per_second", a.al.OpensPerSecond, maxLimitCount)
		optCount(l, a.key+".opens_burst", a.al.OpensBurst, maxLimitCount)
		// A rate with an empty bucket would refuse every session.
		if r := a.al.OpensPerSecond; r != nil && *r > 0 && a.al.OpensBurst != nil && *a.al.OpensBurst == 0 {
			l.add(a.key+".opens_burst", fmt.Sprintf("is 0 while opens_per_second is %d: no session could ever open; "+
				"write at least 1 (twice the rate is usual), or set opens_per_second to 0 to turn the rate limit off", *r))
		}
	}
	for _, p := range []struct {
		key string
		t   Timeouts
	}{{"limits.timeouts.postgres", lc.Timeouts.Postgres}, {"limits.timeouts.ssh", lc.Timeouts.SSH}, {"limits.timeouts.tcp", lc.Timeouts.TCP}} {
		optDuration(l, p.key+".first_byte", p.t.FirstByte, minFirstByte, maxFirstByte)
		optDuration(l, p.key+".idle", p.t.Idle, minIdle, 0)
	}
	optCount(l, "limits.per_uid.ssh_preauth", lc.PerUID.SSHPreauth, maxLimitCount)
	optCount(l, "limits.fd_reserve", lc.FDReserve, maxFDReserve)

	if m := lc.Hash.MaxMiB; m != nil && (*m < 1 || *m > maxHashMiB) {
		l.add("limits.hash.max_mib", fmt.Sprintf("%d is out of range; write a size in MiB from 1 to %d", *m, maxHashMiB))
	}
	optCount(l, "limits.hash.budget_mib", lc.Hash.BudgetMiB, maxHashMiB)
	if lc.Hash.Interval != nil {
		if d := time.Duration(*lc.Hash.Interval); d < minHashInterval || d > maxHashInterval {
			l.add("limits.hash.interval", fmt.Sprintf("%s is out of range; write a duration from %s to %s", d, minHashInterval, maxHashInterval))
		}
	}
	// The budget is a bucket of at most budget_mib: a larger executable
	// could never be hashed, whatever max_mib says.
	if r := lc.Resolve(); r.HashBudgetBytes > 0 && r.HashBudgetBytes < r.HashMaxBytes {
		key := "limits.hash.budget_mib"
		if lc.Hash.BudgetMiB == nil {
			key = "limits.hash.max_mib"
		}
		l.add(key, fmt.Sprintf("budget_mib (%d) is below max_mib (%d): an executable larger than the budget would never be hashed; "+
			"make budget_mib at least max_mib, or 0 for no budget", r.HashBudgetBytes>>20, r.HashMaxBytes>>20))
	}
	if lc.ReportInterval != nil {
		if d := time.Duration(*lc.ReportInterval); d < minReportInterval || d > maxReportInterval {
			l.add("limits.report_interval", fmt.Sprintf("%s is out of range; write a duration from %s to %s", d, minReportInterval, maxReportInterval))
		}
	}
}

// optCount checks an optional whole number from 0 (off) to max.
func optCount(l *errorList, key string, v *int64, max int64) {
	if v == nil {
		return
	}
	switch {
	case *v < 0:
		l.add(key, fmt.Sprintf("%d is negative; write 0 to turn this limit off, or a number up to %d", *v, max))
	case *v > max:
		l.add(key, fmt.Sprintf("%d is too large; write at most %d, or 0 to turn this limit off", *v, max))
	}
}

// optDuration checks an optional duration: 0 (off) or from min to max
// (max 0: no maximum).
func optDuration(l *errorList, key string, v *Duration, min, max time.Duration) {
	if v == nil {
		return
	}
	d := time.Duration(*v)
	switch {
	case d == 0:
	case d < 0:
		l.add(key, fmt.Sprintf("%s is negative; write 0 to turn this timeout off, or at least %s", d, min))
	case d < min:
		l.add(key, fmt.Sprintf("%s is too short; write at least %s, or 0 to turn this timeout off", d, min))
	case max > 0 && d > max:
		l.add(key, fmt.Sprintf("%s is too long; write at most %s, or 0 to turn this timeout off", d, max))
	}
}
