package journal

// The writer in log mode (commitlog.go): batches committed by writing them
// to the commit log, flushed to SQLite in large transactions, handed over
// to another process that wants to write, and replayed after a crash.

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// DefaultFlushInterval is how long entries may stay in the commit log
// alone before SQLite takes them: long enough that one SQLite transaction
// carries the statements of many round trips, short beside a person
// looking at the journal from another process. Each flush is a cgo call
// that enters the runtime's system-call state, which wakes Go's sysmon
// out of its idle sleep into a millisecond of 20 us polls; at 2 ms that
// was a fifth more CPU per statement at one client (docs/benchmarks.md,
// "The flush interval").
const DefaultFlushInterval = 10 * time.Millisecond

const (
	// flushRows and flushBytes flush before the interval when this much
	// is pending: SQLite's insert is linear in it, and it is memory.
	flushRows  = 1024
	flushBytes = 8 << 20
	// wantPoll is how often a log-mode writer looks whether a process
	// waits to write through SQLite; promotePoll how often a writer that
	// stepped down tries to take the log back.
	wantPoll    = 20 * time.Millisecond
	promotePoll = time.Second
)

// directPayloadBytes: a batch whose payloads add up to this much is
// committed to SQLite directly in log mode, after what the log holds.
// Written to the log too, its bytes would cost a copy and a write more
// than they save (a transaction is a small part of storing 128 KiB of
// terminal output); the batch's sync then covers the WAL as well.
const directPayloadBytes = 32 << 10

// directRows: so is a batch of this many records (posted output in bulk),
// whose SQLite transaction is shared by enough of them already: through
// the log, batched Post cost 7.1–8.0 → 8.5–10.3 µs of CPU per entry.
const directRows = 32

func payloadSize(recs []*encodedRecord) int {
	n := 0
	for _, r := range recs {
		n += len(r.payload)
	}
	return n
}

// logTrimAt rewinds the log once everything in it is in the database and
// it has grown this far: each rewind costs the WAL an fdatasync, and until
// the first one the log's fsyncs write metadata (the file grows), which
// made a connect through a 16 MiB log 0.1 ms slower than through SQLite.
// A variable so that tests can lower it.
var logTrimAt int64 = 1 << 20

// maxPendingRows and maxPendingBytes bound what waits in memory for a
// database that does not take it (locked by a foreign process, a full
// disk): beyond them records are refused, as they are when a SQLite commit
// fails. Variables so that tests can lower them.
var (
	maxPendingRows  = 1 << 16
	maxPendingBytes = 256 << 20
)

// logBatch stages recs as entries first, ... and writes them to the log.
// On error nothing of them is staged or in the log.
func (w *writer) logBatch(recs []*encodedRecord, first uint64) error {
	if len(w.pend) >= maxPendingRows || len(w.arena) >= maxPendingBytes {
		if err := w.flush(); err != nil {
			return fmt.Errorf("the database has not taken the %d entries the commit log holds: %w", len(w.pend), err)
		}
	}
	n, na := len(w.pend), len(w.arena)
	w.stage(recs, first)
	buf := w.clog.buf[:0]
	for i := n; i < len(w.pend); i++ {
		sp := &w.pend[i]
		buf = appendFrame(buf, &logRow{seq: sp.seq, timeNS: sp.time, kind: sp.rec.kind, session: sp.rec.session,
			tail: sp.rec.tail, salt: sp.rec.salt, payload: sp.rec.payload, hash: w.arena[sp.body:sp.hash]})
	}
	err := w.clog.write(buf)
	if cap(buf) > 1<<20 {
		buf = nil // a large payload's frame is not kept for the next batch
	}
	w.clog.buf = buf
	if err != nil {
		clear(w.pend[n:])
		w.pend, w.arena = w.pend[:n], w.arena[:na]
		return err
	}
	if n == 0 {
		w.pendSince = time.Now()
	}
	return nil
}

// flush inserts the pending entries into the database in one transaction.
func (w *writer) flush() error {
	if len(w.pend) == 0 {
		return nil
	}
	if err := w.inTx(func(*rawConn) error { return nil }); err != nil {
		w.flushRetryAt = time.Now().Add(w.opts.SyncInterval)
		return err
	}
	w.flushRetryAt = time.Time{}
	if w.clog.off >= logTrimAt {
		w.trimLog()
	}
	return nil
}

// committedPending is inTx's report that every staged row is in the
// database: the first held, which the commit log holds too, and those the
// transaction added directly, whose durability is the WAL's alone.
func (w *writer) committedPending(held int) {
	if w.logMode && len(w.pend) > held {
		w.walDirty = true
	}
	w.dropPending(0)
	if held > 0 {
		w.pendSince = time.Time{}
		if w.j != nil {
			w.j.flushes.Add(1)
		}
	}
}

// trimLog empties the log once the database's WAL, which now holds
// everything the log does, is synced.
func (w *writer) trimLog() {
	if len(w.pend) > 0 {
		return
	}
	if err := w.syncWAL(); err != nil {
		w.log.Warn("journal: commit log not emptied: the WAL did not sync", "err", err)
		return
	}
	if err := w.clog.rewind(); err != nil {
		w.log.Warn("journal: commit log not emptied", "err", err)
	}
}

// syncWAL fdatasyncs the database's WAL, whatever the syncer syncs, once
// the syncer is idle (its descriptor is the syncer's).
func (w *writer) syncWAL() error {
	if w.syncing {
		w.sy.waitIdle()
	}
	return w.sy.fsyncWAL()
}

// maybeFlush flushes when shouldFlush says so.
func (w *writer) maybeFlush() {
	if w.shouldFlush() {
		w.flushLogged()
	}
}

// shouldFlush reports whether the entries the log holds are to go to the
// database now: enough are pending, or they are due; not while a failed
// flush waits for its retry. The end of a session does not hurry them
// (it did, for readers, until readers waited for the log: beforeRead):
// with a flush at every session's end, a TCP connection cost a SQLite
// transaction of its own, a tenth of its CPU with the journal on disk and
// a fifth on tmpfs (docs/benchmarks.md).
func (w *writer) shouldFlush() bool {
	if !w.logMode || len(w.pend) == 0 {
		return false
	}
	now := time.Now()
	if !w.flushRetryAt.IsZero() && now.Before(w.flushRetryAt) {
		return false
	}
	return len(w.pend) >= flushRows || len(w.arena) >= flushBytes || !now.Before(w.pendSince.Add(w.opts.FlushInterval))
}

func (w *writer) flushLogged() {
	if err := w.flush(); err != nil {
		w.log.Error("journal: entries not flushed from the commit log to the database; they are kept in the log and retried", "pending", len(w.pend), "err", err)
	}
}

// logWake is when the writer must act for the log: a flush, or a look at
// the other processes.
func (w *writer) logWake() time.Time {
	if w.clog == nil {
		return time.Time{}
	}
	at := w.logCheckAt
	if len(w.pend) > 0 {
		due := w.pendSince.Add(w.opts.FlushInterval)
		if w.flushRetryAt.After(due) {
			due = w.flushRetryAt
		}
		if due.Before(at) {
			at = due
		}
	}
	return at
}

// logTick runs the log's timed work.
func (w *writer) logTick(now time.Time) {
	if w.clog == nil {
		return
	}
	w.maybeFlush()
	if now.Before(w.logCheckAt) {
		return
	}
	if w.logMode {
		w.logCheckAt = now.Add(wantPoll)
		if w.clog.wanted() {
			w.leaveLogMode()
		}
		return
	}
	w.logCheckAt = now.Add(promotePoll)
	if w.opts.FlushInterval > 0 {
		w.enterLogMode()
	}
}

// leaveLogMode hands the journal to a process that wants to write it
// through SQLite: everything goes to the database first, and is synced.
func (w *writer) leaveLogMode() {
	if err := w.flush(); err != nil {
		w.log.Error("journal: cannot hand the journal to another process: flush failed", "err", err)
		return
	}
	if err := w.syncNow(); err != nil {
		w.log.Error("journal: cannot hand the journal to another process: sync failed", "err", err)
		return
	}
	w.sy.logFile = nil
	w.logMode = false
	w.j.logMode.Store(false)
	w.dvKnown = false
	if err := w.clog.acquireShared(w.opts.BusyTimeout); err != nil {
		w.log.Error("journal: lost the commit log's lock; batches are refused until it is back", "err", err)
	}
	w.log.Info("journal: another process writes this journal; committing through SQLite until it stops")
}

// enterLogMode takes the log back when no other process writes the
// journal. Log-mode writers empty the log into the database before they
// step down, so the log holds nothing the database lacks; it is emptied
// once the database's WAL is synced.
func (w *writer) enterLogMode() {
	if !w.clog.tryExclusive() {
		if err := w.clog.acquireShared(w.opts.BusyTimeout); err != nil {
			w.log.Error("journal: lost the commit log's lock; batches are refused until it is back", "err", err)
		}
		return
	}
	err := w.inTx(w.syncHead) // others may have appended meanwhile
	if err == nil {
		err = w.syncNow()
	}
	if err == nil {
		err = w.clog.rewind()
	}
	if err != nil {
		w.log.Warn("journal: staying out of log mode", "err", err)
		if err := w.clog.acquireShared(w.opts.BusyTimeout); err != nil {
			w.log.Error("journal: lost the commit log's lock; batches are refused until it is back", "err", err)
		}
		return
	}
	w.sy.waitIdle()
	w.sy.logFile = w.clog.f
	w.logMode = true
	w.j.logMode.Store(true)
	w.log.Info("journal: writing alone again; committing through the commit log")
}

// holdsLog reports whether the writer may commit through SQLite: it holds
// the log shared, taking it again if it lost it.
func (w *writer) holdsLog() error {
	if w.clog == nil || w.clog.lock != lockNone {
		return nil
	}
	return w.clog.acquireShared(w.opts.BusyTimeout)
}

// openLog opens the commit log at Open, takes it exclusive if no other
// process writes the journal (shared otherwise), and replays into the
// database what a crashed writer left in it.
func (w *writer) openLog() error {
	c, err := openCommitLog(w.opts.Path)
	if err != nil {
		return err
	}
	excl := w.opts.FlushInterval > 0 && c.tryExclusive()
	if !excl {
		if err := c.acquireShared(w.opts.BusyTimeout); err != nil {
			c.close()
			return err
		}
	}
	w.clog = c
	if err := w.recoverLog(); err != nil {
		return err
	}
	if excl {
		w.sy.logFile = c.f
		w.logMode = true
		w.logCheckAt = time.Now().Add(wantPoll)
	} else {
		w.logCheckAt = time.Now().Add(promotePoll)
	}
	return nil
}

// recoverLog inserts the entries of the log that the database lacks,
// each checked to chain onto the one before, syncs the WAL and empties the
// log. The caller holds the log's lock, so no writer adds to it meanwhile.
func (w *writer) recoverLog() error {
	b, err := os.ReadFile(w.clog.path)
	if err != nil {
		return fmt.Errorf("journal: read the commit log: %w", err)
	}
	if len(b) == 0 {
		return nil
	}
	rows, good, err := parseLog(b)
	if err != nil {
		return fmt.Errorf("journal: the commit log %s is damaged (%v); move it aside to open the journal (entries only it holds are then lost)", w.clog.path, err)
	}
	replayed, gap := 0, false
	if len(rows) > 0 {
		err = w.inTx(func(rc *rawConn) error {
			if err := w.syncHead(rc); err != nil {
				return err
			}
			for i := range rows {
				r := &rows[i]
				if r.seq <= w.size {
					continue
				}
				if r.seq != w.size+1 {
					// The entries between were committed to SQLite
					// directly (heavy with payloads) and lost with an
					// unsynced WAL: every sync that covered a later
					// entry synced the WAL too, so none of these was
					// synced either. They cannot chain on.
					w.log.Error("journal: the commit log's entries from this one on follow entries the database lost; they were never synced and are dropped",
						"seq", r.seq, "head_seq", w.size)
					gap = true
					break
				}
				rec := &encodedRecord{kind: r.kind, session: r.session, timeNS: r.timeNS, hasTime: true,
					tail: r.tail, salt: r.salt, payload: r.payload}
				w.stage([]*encodedRecord{rec}, uint64(r.seq))
				if string(w.last) != string(r.hash) {
					return fmt.Errorf("its entry %d does not chain onto the database's entries", r.seq)
				}
				w.size, w.headHash = r.seq, append(w.headHash[:0], w.last...)
				replayed++
			}
			return w.execRows(rc, w.pend)
		})
		if err != nil {
			return fmt.Errorf("journal: replay the commit log %s: %w", w.clog.path, err)
		}
	}
	if torn := len(b) - good; !gap && torn > 0 && (torn < logFrameHeader || binary.LittleEndian.Uint32(b[good:]) != 0) {
		w.log.Warn("journal: the commit log ends in a frame cut short or damaged; its records were never reported committed, and are dropped",
			"offset", good)
	}
	if replayed > 0 {
		w.log.Warn("journal: entries a stopped writer had committed to the commit log were put into the database",
			"entries", replayed, "head_seq", w.size, "torn_bytes", len(b)-good)
	}
	if err := w.syncWAL(); err != nil {
		return fmt.Errorf("journal: sync after replaying the commit log: %w", err)
	}
	return w.clog.rewind()
}

// openJournals are this process's open journals by absolute path: a
// reader in the same process flushes the writer's commit log first, so it
// reads what was appended before it.
var openJournals sync.Map

func journalKey(path string) string {
	if abs, err := filepath.Abs(path); err == nil {
		return abs
	}
	return filepath.Clean(path)
}

// beforeRead brings the database up to date for a reader of path: the
// writer of this process flushes; a log no writer holds (its writer
// crashed) is replayed. When a writer in another process holds the log,
// it returns the last entry number the log holds: that writer moves it
// into the database within its flush interval, and the reader waits for
// it (catchUp), so that it reads what was committed before it began.
func beforeRead(ctx context.Context, path string) (logged int64, err error) {
	if v, ok := openJournals.Load(journalKey(path)); ok {
		err := v.(*Journal).control(ctx, func(w *writer) error { return w.flush() })
		if err != nil && !errors.Is(err, ErrClosed) {
			return 0, err
		}
		return 0, nil
	}
	held, err := replayOrphanLog(ctx, path)
	if err != nil || !held {
		return 0, err
	}
	return loggedHead(path), nil
}

// loggedHead returns the number of the last entry in the commit log of
// path, 0 when it holds none or cannot be read. The file is read while its
// writer writes it: a frame cut short fails its CRC and ends the parse
// (parseLog), and frames left from before a rewind, which the database
// already has, end it where their numbers go back, so the number returned
// is one the writer committed, never more.
func loggedHead(path string) int64 {
	b, err := os.ReadFile(path + LogSuffix)
	if err != nil {
		return 0
	}
	rows, _, _ := parseLog(b)
	if len(rows) == 0 {
		return 0
	}
	return rows[len(rows)-1].seq
}

// catchUpWait bounds how long a reader waits for another process's writer
// to move its commit log into the database (it does so every
// flush_interval, 10 ms by default); a writer that is stuck leaves the
// reader to read what the database has, with a warning. (A writer that
// died holds no lock: its log is replayed, replayOrphanLog.)
var catchUpWait = 3 * time.Second

// catchUp waits until the database read through conn holds entry seq.
func catchUp(ctx context.Context, conn *sql.Conn, path string, seq int64) error {
	deadline := time.Now().Add(catchUpWait)
	for {
		var head int64
		if err := conn.QueryRowContext(ctx, `SELECT coalesce(max(seq), 0) FROM entries`).Scan(&head); err != nil {
			return fmt.Errorf("journal: read the head of %s: %w", path, err)
		}
		if head >= seq {
			return nil
		}
		if time.Now().After(deadline) {
			slog.Warn("journal: the writer of this journal has not moved its commit log into the database; reading without the entries only the log holds",
				"path", path, "database_head", head, "log_head", seq, "waited", catchUpWait)
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// replayOrphanLog replays a commit log that no process holds. A reader that
// may not write the journal's directory reads the database as it is. held
// says that a writer holds the log (it flushes on its own).
func replayOrphanLog(ctx context.Context, path string) (held bool, err error) {
	f, err := os.Open(path + LogSuffix)
	if err != nil {
		return false, nil
	}
	empty, err := (&commitLog{f: f}).empty()
	if err != nil || empty {
		f.Close()
		return false, err
	}
	// Read-only is enough to see a writer's exclusive lock: a reader that
	// may not write the directory still waits for what the log holds.
	err = flock(f, syscall.LOCK_SH|syscall.LOCK_NB)
	f.Close()
	if err != nil {
		return errors.Is(err, syscall.EWOULDBLOCK), nil
	}
	c, err := openCommitLog(path)
	if err != nil {
		if errors.Is(err, fs.ErrPermission) {
			return false, nil
		}
		return false, err
	}
	if err := flock(c.f, syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		c.close() // a writer took it meanwhile: it flushes on its own
		return true, nil
	}
	c.lock = lockShared
	opts, err := Options{Path: path}.withDefaults()
	if err != nil {
		c.close()
		return false, err
	}
	w, err := newWriter(ctx, opts, opts.Logger.With("component", "journal", "path", path), nil)
	if err != nil {
		c.close()
		return false, err
	}
	w.clog = c
	defer w.close()
	if err := w.prepare(ctx); err != nil {
		return false, err
	}
	return false, w.recoverLog()
}
