// Package journal is interlock's tamper-evident record of what intercepted
// sessions did: an append-only, hash-chained SQLite log, written through one
// group-committing writer and checked by Verify.
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

	"github.com/interlock/interlock/model"
)

// SyncMode says when the writer fsyncs.
type SyncMode string

const (
	// SyncNormal fsyncs for Synced records, and otherwise at most
	// SyncInterval after a commit: the documented loss bound on power
	// failure for Committed records.
	SyncNormal SyncMode = "normal"
	// SyncAlways fsyncs every batch, so Committed and Synced are the same.
	SyncAlways SyncMode = "always"
)

// Defaults for Options.
const (
	DefaultSyncInterval = 10 * time.Millisecond
	DefaultBusyTimeout  = 10 * time.Second
)

// Schema version stored in the meta table. Opening or reading a journal with
// any other version is refused: guessing at an unknown layout could
// misreport evidence.
const SchemaVersion = 1

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
	// Sync is SyncNormal (the default) or SyncAlways.
	Sync SyncMode
	// SyncInterval bounds how long a Committed record may stay unsynced.
	SyncInterval time.Duration
	// BusyTimeout is how long a write waits for another process's lock
	// before the batch fails.
	BusyTimeout time.Duration
	Logger      *slog.Logger

	// beforeBatch runs in the writer after it took a batch's first request
	// and before it drains the queue; tests use it to shape batches.
	beforeBatch func()
}

func (o Options) withDefaults() (Options, error) {
	if o.Path == "" {
		return o, errors.New("journal: no path")
	}
	switch o.Sync {
	case "":
		o.Sync = SyncNormal
	case SyncNormal, SyncAlways:
	default:
		return o, fmt.Errorf("journal: unknown sync mode %q (want %q or %q)", o.Sync, SyncNormal, SyncAlways)
	}
	switch {
	case o.SyncInterval == 0:
		o.SyncInterval = DefaultSyncInterval
	case o.SyncInterval < 0:
		return o, fmt.Errorf("journal: negative sync interval %s", o.SyncInterval)
	}
	switch {
	case o.BusyTimeout == 0:
		o.BusyTimeout = DefaultBusyTimeout
	case o.BusyTimeout < 0:
		return o, fmt.Errorf("journal: negative busy timeout %s", o.BusyTimeout)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o, nil
}

// Stats are counters of one Journal since Open.
type Stats struct {
	// Appends is the number of records committed.
	Appends uint64
	// Batches is the number of committed write transactions holding records.
	Batches uint64
	// FsyncBatches counts the Batches committed with synchronous=FULL.
	FsyncBatches uint64
	// IdleSyncs counts syncs made because Committed records were waiting
	// for their interval and no batch came to carry the fsync.
	IdleSyncs uint64
	// FailedBatches counts batches rolled back; every record in them was
	// refused.
	FailedBatches uint64
	// LastSeq is the sequence number of the last entry this Journal wrote
	// (or the head it found at Open).
	LastSeq uint64
}

// Journal appends records to one journal file. It is safe for concurrent
// use, and several Journals (in several processes) may share a file.
type Journal struct {
	opts Options
	log  *slog.Logger
	id   string

	// mu orders Append's hand-over against Close closing the queue: RLock
	// to send, Lock to close.
	mu     sync.RWMutex
	closed bool
	reqs   chan *request

	done     chan struct{} // closed when the writer has stopped
	closeErr error         // set by the writer before done

	appends, batches, fsyncBatches, idleSyncs, failedBatches, lastSeq atomic.Uint64
}

type request struct {
	rec  encodedRecord
	sync bool
	res  chan result
}

type result struct {
	seq uint64
	err error
}

// Open opens the journal at opts.Path, creating it (0640) with its first
// entry if it does not exist, and starts its writer.
func Open(ctx context.Context, opts Options) (*Journal, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	log := opts.Logger.With("component", "journal", "path", opts.Path)
	if err := createFile(opts.Path); err != nil {
		return nil, err
	}
	w, err := newWriter(ctx, opts, log)
	if err != nil {
		return nil, err
	}
	id, head, created, err := w.initSchema(ctx)
	if err != nil {
		w.close()
		return nil, err
	}
	if err := w.prepare(ctx); err != nil {
		w.close()
		return nil, err
	}
	j := &Journal{
		opts: opts,
		log:  log,
		id:   id,
		reqs: make(chan *request, queueSize),
		done: make(chan struct{}),
	}
	j.lastSeq.Store(head)
	w.j = j
	go w.run()
	log.Info("journal opened", "journal_id", id, "head_seq", head, "created", created, "sync", string(opts.Sync), "sync_interval", opts.SyncInterval)
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
	return nil
}

// ID is the random journal id written in entry 1.
func (j *Journal) ID() string { return j.id }

// Append adds rec to the journal and returns its sequence number once it is
// as durable as d asks. An error means the record is not in the journal and
// whatever it describes must not take effect.
//
// If ctx ends before the writer took the record, Append returns ctx.Err().
// Once the writer has it, Append waits for the outcome whatever ctx does:
// the record may already be committed, and the caller must know.
func (j *Journal) Append(ctx context.Context, rec model.Record, d model.Durability) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if d != model.Committed && d != model.Synced {
		return 0, fmt.Errorf("journal: unknown durability %d", d)
	}
	enc, err := encodeRecord(rec)
	if err != nil {
		return 0, err
	}
	r := &request{rec: enc, sync: d == model.Synced, res: make(chan result, 1)}

	j.mu.RLock()
	if j.closed {
		j.mu.RUnlock()
		return 0, ErrClosed
	}
	select {
	case j.reqs <- r:
	case <-ctx.Done():
		j.mu.RUnlock()
		return 0, ctx.Err()
	}
	j.mu.RUnlock()

	res := <-r.res
	return res.seq, res.err
}

// Close writes what is queued, syncs, and stops the writer. Appends that
// race with Close either get in before it or return ErrClosed.
func (j *Journal) Close() error {
	j.mu.Lock()
	if !j.closed {
		j.closed = true
		close(j.reqs)
	}
	j.mu.Unlock()
	<-j.done
	return j.closeErr
}

// Stats returns the current counters.
func (j *Journal) Stats() Stats {
	return Stats{
		Appends:       j.appends.Load(),
		Batches:       j.batches.Load(),
		FsyncBatches:  j.fsyncBatches.Load(),
		IdleSyncs:     j.idleSyncs.Load(),
		FailedBatches: j.failedBatches.Load(),
		LastSeq:       j.lastSeq.Load(),
	}
}

// Compile-time check that Journal is what the data path expects.
var _ model.Recorder = (*Journal)(nil)
