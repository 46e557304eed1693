// Package journal is interlock's tamper-evident record of what intercepted
// sessions did: an append-only SQLite log whose entries are hash-chained and
// are the leaves of an RFC 6962 Merkle tree, written through one
// group-committing writer, with signed checkpoints kept inside and outside
// the database, and checked by Verify. docs/journal.md specifies the
// format.
package journal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/interlock/interlock/journal/evidence"
	"github.com/interlock/interlock/model"
)

// SyncMode says when the writer fsyncs.
type SyncMode string

const (
	// SyncNormal fsyncs for Synced records, and otherwise at most
	// SyncInterval after a record was handed over: the documented loss
	// bound on power failure for Committed and posted records.
	SyncNormal SyncMode = "normal"
	// SyncAlways fsyncs every batch, so Committed and Synced are the same.
	SyncAlways SyncMode = "always"
)

// Defaults for Options.
const (
	DefaultSyncInterval = 10 * time.Millisecond
	DefaultBusyTimeout  = 10 * time.Second
	DefaultPostQueue    = 16384
	DefaultPostLinger   = 2 * time.Millisecond
	// DefaultPipelineLinger is longer than a typical statement's round
	// trip to its server and short beside the sync interval.
	DefaultPipelineLinger = time.Millisecond
)

// Schema version stored in the meta table. Older versions are upgraded at
// Open (migrate.go); any other version is refused: guessing at an unknown
// layout could misreport evidence.
const SchemaVersion = 3

// maxBatch bounds one transaction so a burst cannot hold the write lock
// (and other processes) for long.
const maxBatch = 1024

// queueSize lets bursts from many sessions line up without blocking their
// goroutines while the writer is inside a commit.
const queueSize = 4096

// ErrClosed is returned by Append after Close.
var ErrClosed = errors.New("journal: closed")

// Options configure Open.
type Options struct {
	// Path is the SQLite file. Its directory is created (0750) if needed.
	Path string
	// StateDir holds the signing key (journal.key, 0600) and its public
	// half (journal.pub); both are created at first start. Default: the
	// directory of Path.
	StateDir string
	// CheckpointSinks receive every new checkpoint besides the file next
	// to the database (Path + ".checkpoint"): absolute file paths,
	// "syslog", or http(s) URLs that get a POST. File sinks are also
	// checked at Open.
	CheckpointSinks []string
	// Sync is SyncNormal (the default) or SyncAlways.
	Sync SyncMode
	// SyncInterval bounds how long a Committed or posted record may stay
	// unsynced.
	SyncInterval time.Duration
	// BusyTimeout is how long a write waits for another process's lock
	// before the batch fails.
	BusyTimeout time.Duration
	// PostQueue bounds the records Post may hold; beyond it Post waits
	// for the writer. A quarter of it (at most 2,048) is one session's
	// share.
	PostQueue int
	// PostLinger is how long a batch of posted records alone may wait for
	// more before it commits (never past half the sync interval); negative
	// disables the wait.
	PostLinger time.Duration
	// FlushInterval is how long entries committed to the commit log may
	// wait for SQLite to take them (logmode.go); negative keeps the
	// journal out of log mode, every batch a SQLite transaction.
	FlushInterval time.Duration
	// PipelineLinger is how long a Committed record of Start may wait for
	// its waiter to ask for it while other sessions append (their records
	// then share its transaction); negative commits it at once.
	PipelineLinger time.Duration
	Logger         *slog.Logger
	// HoldForHub keeps, when shipping to a fleet hub is configured, the
	// payloads of every entry that no hub.cosignature entry covers yet:
	// PrunePayloads stops at the newest cosigned size.
	HoldForHub bool

	// beforeBatch runs in the writer after it took a batch's first request
	// and before it drains the queue; tests use it to shape batches.
	beforeBatch func()
	// checkpointInterval and heartbeat override the checkpoint cadence in
	// tests.
	checkpointInterval, heartbeat time.Duration
	// pageSize overrides the page size a new journal file is created
	// with (benchmarks compare it); 0 is pageSize.
	pageSize int
}

func (o Options) withDefaults() (Options, error) {
	if o.Path == "" {
		return o, errors.New("journal: no path")
	}
	if o.StateDir == "" {
		o.StateDir = filepath.Dir(o.Path)
	}
	switch o.Sync {
	case "":
		o.Sync = SyncNormal
	case SyncNormal, SyncAlways:
	default:
		return o, fmt.Errorf("journal: unknown sync mode %q (want %q or %q)", o.Sync, SyncNormal, SyncAlways)
	}
	for _, d := range []struct {
		v    *time.Duration
		def  time.Duration
		name string
	}{
		{&o.SyncInterval, DefaultSyncInterval, "sync interval"},
		{&o.BusyTimeout, DefaultBusyTimeout, "busy timeout"},
		{&o.checkpointInterval, DefaultCheckpointInterval, "checkpoint interval"},
		{&o.heartbeat, DefaultHeartbeat, "heartbeat"},
	} {
		switch {
		case *d.v == 0:
			*d.v = d.def
		case *d.v < 0:
			return o, fmt.Errorf("journal: negative %s %s", d.name, *d.v)
		}
	}
	switch {
	case o.PostQueue == 0:
		o.PostQueue = DefaultPostQueue
	case o.PostQueue < 0:
		return o, fmt.Errorf("journal: negative post queue %d", o.PostQueue)
	}
	if o.PostLinger == 0 {
		o.PostLinger = DefaultPostLinger
	}
	if o.PipelineLinger == 0 {
		o.PipelineLinger = DefaultPipelineLinger
	}
	if o.FlushInterval == 0 {
		o.FlushInterval = DefaultFlushInterval
	}
	for _, s := range o.CheckpointSinks {
		if err := ParseSink(s); err != nil {
			return o, fmt.Errorf("journal: checkpoint sink: %w", err)
		}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o, nil
}

// Stats are counters of one Journal since Open.
type Stats struct {
	// Appends is the number of entries committed (appended, posted and
	// gap markers).
	Appends uint64
	// Batches is the number of committed write transactions holding records.
	Batches uint64
	// FsyncBatches counts the Batches whose records were fsynced before
	// their appends returned.
	FsyncBatches uint64
	// IdleSyncs counts syncs made because committed records were waiting
	// for their interval and no batch came to carry the fsync.
	IdleSyncs uint64
	// Fsyncs counts the fsyncs of the WAL: one may serve several batches
	// (FsyncBatches) and idle syncs.
	Fsyncs uint64
	// FailedBatches counts batches rolled back; every record in them was
	// refused (posted ones are counted as lost).
	FailedBatches uint64
	// LastSeq is the sequence number of the last entry this Journal wrote
	// (or the head it found at Open).
	LastSeq uint64
	// Posted counts records given to Post; PostWritten those committed;
	// PostLost those that storage failed to keep (or that could not be
	// encoded, or came after Close), and Gaps the journal.gap entries
	// that recorded them. PostWaits counts Posts that waited for room:
	// a session slowed, nothing lost.
	Posted, PostWritten, PostLost, Gaps, PostWaits uint64
	// Flushes counts the transactions that moved entries from the
	// commit log into the database; LogMode says batches are committed
	// to the commit log now (no other process writes the journal).
	Flushes uint64
	LogMode bool
	// Checkpoints counts checkpoints signed; SignedSize is the tree size
	// of the newest.
	Checkpoints, SignedSize uint64
	// Queued is the number of records waiting for the writer (appended
	// and posted); UnsyncedSince is when the oldest record committed but
	// not yet fsynced was handed over (zero when everything is synced).
	Queued        int
	UnsyncedSince time.Time
}

// Journal appends records to one journal file. It is safe for concurrent
// use, and several Journals (in several processes) may share a file.
type Journal struct {
	opts Options
	log  *slog.Logger
	id   string

	// mu orders Append's and Post's hand-over against Close closing the
	// queues: RLock to send, Lock to close.
	mu     sync.RWMutex
	closed bool
	reqs   chan *request
	posts  chan *request
	ctl    chan *ctlRequest
	// kick wakes a writer that is not watching posts (writer.postsDue):
	// a poster that has to wait for room sends it, so that the wait is
	// the writer's progress, not its linger.
	kick chan struct{}
	// wake tells the writer goroutine that requests are queued (or that a
	// leader moved a deadline earlier, lead.go); watchPosts says whether
	// a Post should send it too. closing is set before reqs is closed.
	wake       chan struct{}
	watchPosts atomic.Bool
	closing    atomic.Bool
	w          *writer
	// company says the writer's last batch held records of more than one
	// session: others are likely to come while a pipelined record waits,
	// so Start sends it with the posted ones, without waking the writer,
	// and the writer holds it back until its waiter asks (collect).
	company atomic.Bool
	// made counts the Appends and Starts made (request.made).
	made atomic.Uint64
	// logMode mirrors the writer's, for Stats.
	logMode atomic.Bool

	done     chan struct{} // closed when the writer has stopped
	closeErr error         // set by the writer before done
	sinks    *sinks

	gapMu      sync.Mutex
	gapLost    uint64
	gapKind    map[string]uint64
	gapSession map[string]uint64

	appends, batches, fsyncBatches, idleSyncs, fsyncs, failedBatches, lastSeq atomic.Uint64
	// unsyncedNanos mirrors the writer's unsyncedSince (UnixNano, 0 when
	// all is synced) for Stats, which other goroutines call.
	unsyncedNanos                                                         atomic.Int64
	posted, postWritten, postLost, gaps, checkpoints, signedSize, flushes atomic.Uint64
	// shares is the per-session credit of posted records in flight.
	shares    postShares
	postWaits atomic.Uint64
}

type request struct {
	rec  encodedRecord
	sync bool
	// res is nil for posted records: nobody waits for them.
	res chan result
	// pipelined is set on a Committed record of Start: its waiter asks
	// for it (asked) when it needs it, and the writer may hold it back
	// until then (writer.collect).
	pipelined bool
	asked     atomic.Bool
	// made numbers Appends and Starts in the order they were made.
	made     uint64
	postedAt time.Time
	// size is what a posted record holds in memory until it is written.
	size int64
	// gap is set on the journal.gap record the writer adds itself.
	gap *model.Gap
}

type result struct {
	seq uint64
	err error
}

// ctlRequest runs fn in the writer goroutine, between batches.
type ctlRequest struct {
	fn   func(*writer) error
	err  error
	done chan struct{}
}

// Open opens the journal at opts.Path, creating it (0640) with its first
// entry if it does not exist, and the signing key in opts.StateDir if there
// is none, and starts its writer. It refuses a journal that is behind, or
// differs from, its last checkpoint kept outside it, and one whose entries
// after its last checkpoint do not chain.
func Open(ctx context.Context, opts Options) (*Journal, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	log := opts.Logger.With("component", "journal", "path", opts.Path)
	signer, err := LoadOrCreateKey(opts.StateDir)
	if err != nil {
		return nil, err
	}
	if err := refuseMissingDatabase(opts, signer.Verifier()); err != nil {
		return nil, err
	}
	if err := createFile(opts.Path); err != nil {
		return nil, err
	}
	w, err := newWriter(ctx, opts, log, signer)
	if err != nil {
		return nil, err
	}
	id, created, err := w.initSchema(ctx)
	if err == nil {
		err = w.prepare(ctx)
	}
	if err == nil {
		err = w.openLog()
	}
	if err == nil {
		w.cps.origin = evidence.Origin(id)
		err = w.startupChecks(ctx, created)
	}
	if err == nil {
		// Sign nothing that is not on disk: what a crashed predecessor
		// committed may still be only in the page cache.
		err = w.syncNow()
	}
	if err != nil {
		w.close()
		return nil, err
	}
	j := &Journal{
		opts:       opts,
		log:        log,
		id:         id,
		reqs:       make(chan *request, queueSize),
		posts:      make(chan *request, opts.PostQueue),
		ctl:        make(chan *ctlRequest),
		kick:       make(chan struct{}, 1),
		wake:       make(chan struct{}, 1),
		done:       make(chan struct{}),
		gapKind:    map[string]uint64{},
		gapSession: map[string]uint64{},
	}
	if j.sinks, err = startSinks(log, CheckpointPath(opts.Path), opts.CheckpointSinks); err != nil {
		w.close()
		return nil, err
	}
	j.shares.init(opts.PostQueue, j.kickWriter)
	j.lastSeq.Store(uint64(w.size))
	j.logMode.Store(w.logMode)
	j.signedSize.Store(uint64(w.cps.last.Size))
	w.j = j
	j.w = w
	j.watchPosts.Store(true)
	w.maybeCheckpoint(time.Now())
	openJournals.Store(journalKey(opts.Path), j)
	go w.run()
	log.Info("journal opened", "journal_id", id, "head_seq", w.size, "created", created, "sync", string(opts.Sync),
		"sync_interval", opts.SyncInterval, "key", signer.VerifierKey)
	return j, nil
}

// createFile makes the directory and an empty file with interlock's modes
// before SQLite sees the path, because SQLite would create it 0644; the
// -wal and -shm files inherit the database file's mode.
func createFile(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return fmt.Errorf("journal: create directory for %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("journal: open %s: %w", path, err)
	}
	fi, err := f.Stat()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("journal: stat %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("journal: %s is not a regular file", path)
	}
	// A new file gets 0640 whatever the umask: the audit group (the
	// directory's, by its setgid bit) reads it.
	if fi.Size() == 0 && fi.Mode().Perm() != 0o640 {
		if err := os.Chmod(path, 0o640); err != nil {
			return fmt.Errorf("journal: chmod %s: %w", path, err)
		}
	}
	return nil
}

// ID is the random journal id written in entry 1.
func (j *Journal) ID() string { return j.id }

// Path is the journal's database file.
func (j *Journal) Path() string { return j.opts.Path }

// Append adds rec to the journal and returns its sequence number once it is
// as durable as d asks. An error means the record is not in the journal and
// whatever it describes must not take effect.
//
// If ctx ends before the writer took the record, Append returns ctx.Err().
// Once the writer has it, Append waits for the outcome whatever ctx does:
// the record may already be committed, and the caller must know.
func (j *Journal) Append(ctx context.Context, rec model.Record, d model.Durability) (uint64, error) {
	return j.start(ctx, rec, d, false)()
}

// Start queues rec as Append does and returns without waiting for the
// writer; wait returns what Append would have, once the record is as
// durable as asked. It implements model.Starter: the data path uses it to
// let the target work while a record it must precede is committed. Errors
// found before the record is queued (a cancelled ctx, a closed journal, a
// record that cannot be encoded) are returned by wait as well.
//
// A Committed record is queued until the caller says it sent the
// operation on (CommitStarted) or calls wait, and then committed in the
// caller's goroutine if the writer is idle (lead.go). While other sessions
// append, it goes with the posted records and may be held back until wait
// is called or a millisecond has passed, so that the records of operations
// in flight share one transaction. A Post made before wait returns may be
// committed ahead of it.
func (j *Journal) Start(ctx context.Context, rec model.Record, d model.Durability) (wait func() (uint64, error)) {
	return j.start(ctx, rec, d, d == model.Committed)
}

func (j *Journal) start(ctx context.Context, rec model.Record, d model.Durability, pipelined bool) (wait func() (uint64, error)) {
	failed := func(err error) func() (uint64, error) {
		return func() (uint64, error) { return 0, err }
	}
	if err := ctx.Err(); err != nil {
		return failed(err)
	}
	if d != model.Committed && d != model.Synced {
		return failed(fmt.Errorf("journal: unknown durability %d", d))
	}
	enc, err := encodeRecord(rec)
	if err != nil {
		return failed(err)
	}
	r := &request{rec: enc, sync: d == model.Synced, res: make(chan result, 1), pipelined: pipelined, made: j.made.Add(1)}
	q := j.reqs
	if pipelined && j.company.Load() {
		q = j.posts
	}

	j.mu.RLock()
	if j.closed {
		j.mu.RUnlock()
		return failed(ErrClosed)
	}
	// A pipelined record waits in the queue for CommitStarted (or its
	// waiter), which the caller calls once it has sent the operation on:
	// committing it then overlaps the target's work instead of delaying
	// the operation or waking the writer.
	deferred := pipelined && q == j.reqs
	if !deferred && q == j.reqs && j.tryLead(r) {
		j.mu.RUnlock()
		return sync.OnceValues(func() (uint64, error) {
			res := <-r.res
			return res.seq, res.err
		})
	}
	select {
	case q <- r:
	default:
		// Full: whoever drains it must be awake.
		j.wakeWriter()
		select {
		case q <- r:
		case <-ctx.Done():
			j.mu.RUnlock()
			return failed(ctx.Err())
		}
	}
	j.mu.RUnlock()
	switch {
	case deferred && len(q) < deferredMax:
	case q == j.reqs || j.watchPosts.Load():
		j.wakeWriter()
	}

	return sync.OnceValues(func() (uint64, error) {
		if pipelined {
			select {
			case res := <-r.res:
				return res.seq, res.err
			default:
			}
			if !j.leadQueued() {
				r.asked.Store(true)
				j.kickWriter()
			}
		}
		res := <-r.res
		return res.seq, res.err
	})
}

// deferredMax bounds the records Start leaves queued for CommitStarted:
// past it, the writer is woken for them.
const deferredMax = 64

// CommitStarted commits the records Start queued, in the caller's
// goroutine if the writer is idle (waking it otherwise). It implements
// model.Committer: the data path calls it once it has sent on the
// operations it started records for.
func (j *Journal) CommitStarted() {
	if len(j.reqs) == 0 {
		return
	}
	if !j.leadQueued() {
		j.wakeWriter()
	}
}

// leadQueued commits what is queued if the writer's token is free; it
// reports whether it did.
func (j *Journal) leadQueued() bool {
	j.mu.RLock()
	defer j.mu.RUnlock()
	return !j.closed && j.tryLead(nil)
}

// control runs fn in the writer goroutine.
func (j *Journal) control(ctx context.Context, fn func(*writer) error) error {
	c := &ctlRequest{fn: fn, done: make(chan struct{})}
	j.mu.RLock()
	if j.closed {
		j.mu.RUnlock()
		return ErrClosed
	}
	select {
	case j.ctl <- c:
	case <-ctx.Done():
		j.mu.RUnlock()
		return ctx.Err()
	}
	j.mu.RUnlock()
	<-c.done
	return c.err
}

// Close writes what is queued (posted records included), syncs, signs a
// final checkpoint and stops the writer. Appends that race with Close
// either get in before it or return ErrClosed.
func (j *Journal) Close() error {
	j.mu.Lock()
	if !j.closed {
		j.closed = true
		j.closing.Store(true)
		close(j.reqs)
	}
	j.mu.Unlock()
	j.wakeWriter()
	<-j.done
	openJournals.CompareAndDelete(journalKey(j.opts.Path), j)
	return j.closeErr
}

// Stats returns the current counters.
func (j *Journal) Stats() Stats {
	return Stats{
		Appends:       j.appends.Load(),
		Batches:       j.batches.Load(),
		FsyncBatches:  j.fsyncBatches.Load(),
		IdleSyncs:     j.idleSyncs.Load(),
		Fsyncs:        j.fsyncs.Load(),
		FailedBatches: j.failedBatches.Load(),
		LastSeq:       j.lastSeq.Load(),
		Posted:        j.posted.Load(),
		PostWritten:   j.postWritten.Load(),
		PostLost:      j.postLost.Load(),
		Gaps:          j.gaps.Load(),
		PostWaits:     j.postWaits.Load(),
		Flushes:       j.flushes.Load(),
		LogMode:       j.logMode.Load(),
		Checkpoints:   j.checkpoints.Load(),
		SignedSize:    j.signedSize.Load(),
		Queued:        len(j.reqs) + len(j.posts),
		UnsyncedSince: unixNanos(j.unsyncedNanos.Load()),
	}
}

// Compile-time check that Journal is what the data path expects.
var _ model.Recorder = (*Journal)(nil)
