package model

import (
	"context"
	"net/netip"
	"time"
)

// Protocol is how interlock inspects a target's traffic.
type Protocol string

const (
	ProtoTCP      Protocol = "tcp"
	ProtoPostgres Protocol = "postgres"
	ProtoSSH      Protocol = "ssh"
	// ProtoKubernetes is a Kubernetes API server (HTTPS).
	ProtoKubernetes Protocol = "kubernetes"
)

// Target is a destination whose connections interlock intercepts.
type Target struct {
	Name     string   `json:"name"`
	Protocol Protocol `json:"protocol"`
	// Address is the configured host:port, before name resolution.
	Address string `json:"address"`
}

// Origin is what interlock knows about an intercepted connection when it
// accepts it: where the client meant to go and who the client is.
type Origin struct {
	// Session is the id of the session this connection became (set by
	// the engine before the handler runs).
	Session string `json:"session,omitempty"`
	Target  Target `json:"target"`
	// OrigDst is the destination the client passed to connect().
	OrigDst netip.AddrPort `json:"orig_dst"`
	// Client is the client socket's own address and port.
	Client   netip.AddrPort `json:"client"`
	Identity Identity       `json:"identity"`
	Accepted time.Time      `json:"-"`
}

// Journal entry kinds shared by every layer.
const (
	KindJournalOpen  = "journal.open"
	KindSessionOpen  = "session.open"
	KindSessionClose = "session.close"
	KindAnomaly      = "anomaly"
)

// SessionOpen is the data of a session.open entry.
type SessionOpen struct {
	Target   Target         `json:"target"`
	OrigDst  netip.AddrPort `json:"orig_dst"`
	Client   netip.AddrPort `json:"client"`
	Identity Identity       `json:"identity"`
	Decision Decision       `json:"decision"`
	// Postgres and SSH describe what the client asked for, for sessions
	// of those protocols.
	Postgres *PGStartup  `json:"postgres,omitempty"`
	SSH      *SSHStartup `json:"ssh,omitempty"`
	// Kubernetes is who interlock calls the API server as, for sessions
	// of kubernetes targets.
	Kubernetes *K8sStartup `json:"kubernetes,omitempty"`
}

// SessionClose is the data of a session.close entry.
type SessionClose struct {
	// BytesUp flowed from the client to the target, BytesDown back.
	BytesUp    int64  `json:"bytes_up"`
	BytesDown  int64  `json:"bytes_down"`
	DurationNS int64  `json:"duration_ns"`
	Error      string `json:"error,omitempty"`
}

// Anomaly is the data of an anomaly entry: something that should not
// happen on the data path and was refused.
type Anomaly struct {
	Reason string         `json:"reason"`
	Peer   netip.AddrPort `json:"peer,omitempty"`
	Local  netip.AddrPort `json:"local,omitempty"`
	Detail map[string]any `json:"detail,omitempty"`
}

// Durability says how far a record must have reached the disk before
// Append returns.
type Durability int

const (
	// Committed records are in SQLite's WAL (a crash of interlock loses
	// nothing); the next group fsync makes them power-safe.
	Committed Durability = iota
	// Synced records have been fsynced. Use it for anything that changes
	// state or grants access.
	Synced
)

// Record is one journal entry before the journal numbers and chains it.
type Record struct {
	Kind    string
	Session string
	// Time is the event time; the journal uses its own clock when zero.
	Time time.Time
	// Data is marshalled to JSON. It must not contain floats: durations
	// and times are integer nanoseconds.
	Data any
	// Payload, when not nil, is content that may hold personal data
	// (result rows, terminal output). It is stored beside the entry and
	// committed to the chain through a salted hash, so a retention job can
	// delete it later without breaking verification. []byte is stored as
	// is; anything else is marshalled to JSON.
	Payload any
}

// Recorder is how the data path writes the journal.
type Recorder interface {
	// Append returns the entry's sequence number once the record is as
	// durable as asked; an error means the operation the record describes
	// must not take effect.
	Append(ctx context.Context, rec Record, d Durability) (uint64, error)
	// Post queues a record for the batched path: for output streams and
	// other records nothing waits on. It returns at once unless the
	// session's share of the bounded queue is full, and then waits for
	// the journal to commit that session's earlier records (backpressure,
	// not loss); a journal.gap entry is written only when storage fails.
	// Like Append, it keeps no reference to a []byte payload: the caller
	// may reuse its buffer once Post returns.
	Post(rec Record)
}

// Starter is a Recorder that can queue a record without waiting for it.
// Start returns at once; wait returns what Append would have returned,
// once the record is as durable as asked. Between the two the caller may
// do only what the record need not precede: for a read-only statement,
// forward it to the server while the record commits, and hold its answer
// until wait returns.
type Starter interface {
	Start(ctx context.Context, rec Record, d Durability) (wait func() (uint64, error))
}

// Committer is a Starter that may keep a started record queued until it
// is told the operation was sent on: the caller calls CommitStarted then,
// so that the record commits while the target works (wait commits it
// too, if nothing did before).
type Committer interface {
	CommitStarted()
}

// CommitStarted tells r, if it is a Committer, that the operations of the
// records started so far were sent on.
func CommitStarted(r Recorder) {
	if c, ok := r.(Committer); ok {
		c.CommitStarted()
	}
}

// Start queues rec on r without waiting when r is a Starter, and appends
// it at once (waiting) otherwise; either way wait returns Append's result.
func Start(ctx context.Context, r Recorder, rec Record, d Durability) (wait func() (uint64, error)) {
	if s, ok := r.(Starter); ok {
		return s.Start(ctx, rec, d)
	}
	seq, err := r.Append(ctx, rec, d)
	return func() (uint64, error) { return seq, err }
}

// Entry kinds for `interlock run`.
const (
	KindRunStart = "run.start"
	KindRunEnd   = "run.end"
)

// RunStart is the data of a run.start entry: a command started under
// `interlock run`, and who started it.
type RunStart struct {
	// Argv is the command with the values of secrets in it replaced
	// (identity/argvredact); ArgvRedacted counts them.
	Argv         []string `json:"argv"`
	ArgvRedacted int      `json:"argv_redacted,omitempty"`
	Cgroup       string   `json:"cgroup"`
	CgroupID     uint64   `json:"cgroup_id"`
	// Engine is "embedded" or "daemon".
	Engine  string   `json:"engine"`
	Invoker Identity `json:"invoker"`
}

// RunEnd is the data of a run.end entry.
type RunEnd struct {
	ExitCode   int    `json:"exit_code"`
	Signal     string `json:"signal,omitempty"`
	DurationNS int64  `json:"duration_ns"`
	// Killed counts processes left in the run's cgroup after the command
	// exited; they are killed so none outlives its interception.
	Killed    int   `json:"killed"`
	Sessions  int   `json:"sessions"`
	Refused   int   `json:"refused"`
	Anomalies int   `json:"anomalies"`
	BytesUp   int64 `json:"bytes_up"`
	BytesDown int64 `json:"bytes_down"`
}
