package journal

import (
	"cmp"
	"context"
	"crypto/sha256"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"slices"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/interlock/interlock/journal/evidence"
	"github.com/interlock/interlock/model"
	sqlite3 "github.com/mattn/go-sqlite3"
)

// writer owns the write connection. Everything in it is touched only by
// whoever holds tok: the writer goroutine, or a session's goroutine that
// commits its own record while the writer sleeps (lead.go), and by Open
// before that goroutine starts.
type writer struct {
	// tok is the writer's token. Requests leave the queues only in its
	// holder's hands, so the order they were queued in is the order they
	// are committed in, whoever commits them.
	tok  sync.Mutex
	j    *Journal
	opts Options
	log  *slog.Logger
	dsn  string
	db   *sql.DB

	// conn is dedicated so that per-connection pragmas (synchronous,
	// busy_timeout) stay set and the statements stay prepared. nil after a
	// connection was discarded; the next batch reconnects. rc holds its
	// driver-level statements.
	conn *sql.Conn
	rc   rawConn
	// dataVersion is the connection's PRAGMA data_version when it last
	// found the head to be what size and headHash say; dvKnown is false
	// until then and after a failed transaction.
	dataVersion int64
	dvKnown     bool

	// sy fsyncs the WAL (syncer.go); syncing says its goroutine runs.
	sy      *syncer
	syncing bool
	// unsyncedSince is when the oldest committed record that no sync job
	// covers yet was handed to the journal (posted records count from
	// Post, not from their commit); zero when there is none. inflight are
	// the jobs submitted and not yet finished, oldest first.
	unsyncedSince time.Time
	inflight      []inflightSync
	results       []syncResult
	// syncRetryAt delays the next sync after a failed one, so a broken
	// disk does not make the writer spin.
	syncRetryAt time.Time

	// order is the batch as committed: posted records first.
	order []*request
	// postsDue is set while posted records flow: the writer does not wake
	// for each Post then, and takes them with the next batch or at
	// postsDue at the latest (a linger of its own). Zero: the next Post
	// wakes it.
	postsDue time.Time

	// h, leaf, recs, stored, hbuf and last are the batch's scratch space
	// (writer_tx.go). pend are the rows staged for the database, their
	// columns in arena: outside log mode only while a batch is inserted;
	// in log mode the entries the commit log holds and the database not
	// yet, from pendSince.
	h          hash.Hash
	leaf       leafHasher
	recs       []*encodedRecord
	arena      []byte
	pend       []pendRow
	pendSince  time.Time
	stored     []tlog.Hash
	hbuf, last []byte

	// clog is the commit log (commitlog.go), nil when the journal is not
	// the writer's own file. In logMode batches are committed by writing
	// to it; logCheckAt is when the writer next looks whether another
	// process wants to write (in log mode) or tries to take the log back
	// (outside it).
	clog       *commitLog
	logMode    bool
	logCheckAt time.Time
	// flushRetryAt delays the next flush after a failed one.
	flushRetryAt time.Time
	// walDirty says that entries were committed to SQLite directly in
	// log mode since the last sync job: the next one syncs the WAL too.
	walDirty bool

	// size is the tree size (head seq) this writer knows, headHash the
	// chain hash of that entry and tree the compact range of that tree.
	// synced is the size known to be fsynced and syncedTree that tree:
	// only that much is signed.
	size, synced int64
	headHash     []byte
	tree         evidence.CompactRange
	syncedTree   evidence.CompactRange

	cps checkpointer

	// closing is set once the Append queue is closed: the writer drains
	// what is posted and stops.
	closing bool

	// armed is when the sleeping writer goroutine's timer fires (zero:
	// it has none); a leader that makes something fall due earlier wakes
	// it (lead.go). inline is set while a leader commits; flushWanted
	// when its batch asked for a flush, which the writer goroutine does.
	armed       time.Time
	inline      bool
	flushWanted bool
	leadBatch   []*request
}

func newWriter(ctx context.Context, opts Options, log *slog.Logger, signer *Signer) (*writer, error) {
	d, err := writerDSN(opts.Path, opts.BusyTimeout)
	if err != nil {
		return nil, err
	}
	db, err := sql.Open("sqlite3", d)
	if err != nil {
		return nil, fmt.Errorf("journal: open %s: %w", opts.Path, err)
	}
	db.SetMaxOpenConns(1)
	w := &writer{
		opts: opts, log: log, dsn: d, db: db,
		h:   sha256.New(),
		cps: checkpointer{signer: signer, interval: opts.checkpointInterval, heartbeat: opts.heartbeat},
		sy:  newSyncer(log, opts.Path, opts.SyncInterval),
	}
	if err := w.connect(ctx); err != nil {
		w.sy.closeThread()
		db.Close()
		return nil, err
	}
	return w, nil
}

func (w *writer) connect(ctx context.Context) error {
	c, err := w.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("journal: connect %s: %w", w.opts.Path, err)
	}
	// A new file takes large pages; an existing one keeps its own (SQLite
	// ignores the pragma once the file has a page, and in WAL mode).
	size := w.opts.pageSize
	if size == 0 {
		size = pageSize
	}
	if _, err := c.ExecContext(ctx, fmt.Sprintf(`PRAGMA page_size = %d`, size)); err != nil {
		c.Close()
		return fmt.Errorf("journal: set the page size of %s: %w", w.opts.Path, err)
	}
	var mode string
	// Processes opening a new file at once can meet in the switch to WAL
	// mode, where SQLite answers "database is locked" at once rather than
	// wait (either could deadlock the other): retry within the busy
	// timeout.
	for deadline := time.Now().Add(w.opts.BusyTimeout); ; time.Sleep(time.Millisecond) {
		err = c.QueryRowContext(ctx, `PRAGMA journal_mode = WAL`).Scan(&mode)
		var se sqlite3.Error
		if !errors.As(err, &se) || se.Code != sqlite3.ErrBusy || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		c.Close()
		return fmt.Errorf("journal: set WAL mode on %s: %w", w.opts.Path, err)
	}
	if mode != "wal" {
		c.Close()
		return fmt.Errorf("journal: %s refused WAL mode (journal_mode is %q)", w.opts.Path, mode)
	}
	// The syncer fsyncs the WAL after the commits that need it.
	if _, err := c.ExecContext(ctx, `PRAGMA synchronous = NORMAL`); err != nil {
		c.Close()
		return fmt.Errorf("journal: set synchronous on %s: %w", w.opts.Path, err)
	}
	if err := keepWALFiles(ctx, c); err != nil {
		c.Close()
		return err
	}
	if err := w.useWAL(); err != nil {
		c.Close()
		return err
	}
	w.conn = c
	return nil
}

// hotSQL is prepared at Open, so that a journal whose schema does not
// take them fails there rather than at its first batch.
var hotSQL = append([]string{sqlBegin, sqlCommit, sqlRollback, sqlDataVersion, sqlHead, sqlCheckpoint}, sqlInsertRows[:]...)

// prepare needs the schema, so Open calls it after initSchema.
func (w *writer) prepare(context.Context) error {
	return w.withRaw(func(rc *rawConn) error {
		for _, q := range hotSQL {
			if _, err := rc.stmt(q); err != nil {
				return fmt.Errorf("journal: %w", err)
			}
		}
		return nil
	})
}

// discard drops a connection whose state is unknown (a transaction that
// would not roll back). Returning driver.ErrBadConn from Raw makes
// database/sql close it instead of pooling it.
func (w *writer) discard() {
	w.dvKnown = false
	if w.conn == nil {
		return
	}
	_ = w.conn.Raw(func(any) error {
		w.rc.close()
		return driver.ErrBadConn
	})
	_ = w.conn.Close()
	w.conn = nil
}

func (w *writer) close() {
	if w.conn != nil {
		_ = w.conn.Raw(func(any) error {
			w.rc.close()
			return nil
		})
		w.conn.Close()
		w.conn = nil
	}
	w.db.Close()
	w.sy.closeThread()
	if w.sy.wal != nil {
		w.sy.wal.Close()
	}
	if w.clog != nil {
		w.clog.close()
	}
}

func (w *writer) run() {
	j := w.j
	defer close(j.done)
	w.sy.j = j
	go w.sy.run()
	w.syncing = true
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	batch := make([]*request, 0, maxBatch)
	w.tok.Lock()
	for !w.closing {
		wake := w.wakeAt()
		// A writer waiting for postsDue is not woken by each Post.
		j.watchPosts.Store(w.postsDue.IsZero())
		w.armed = wake
		var timerC <-chan time.Time
		if !wake.IsZero() {
			timer.Reset(time.Until(wake))
			timerC = timer.C
		}
		w.tok.Unlock()
		select {
		case <-j.wake:
			w.tok.Lock()
			w.armed = time.Time{}
			if j.closing.Load() {
				w.closing = true
				break
			}
			batch = batch[:0]
			select {
			case r, ok := <-j.reqs:
				if ok {
					batch = append(batch, r)
					if w.opts.beforeBatch != nil {
						w.opts.beforeBatch()
					}
				}
			default:
			}
			// A kick sent meanwhile asks for this batch to go now.
			kicked := false
			select {
			case <-j.kick:
				kicked = true
			default:
			}
			if batch = drain(j.reqs, j.posts, batch, false); len(batch) > 0 {
				if !kicked {
					batch = w.collect(batch)
				}
				w.process(batch)
			}
			w.flushIfWanted()
		case <-j.kick:
			w.tok.Lock()
			w.armed = time.Time{}
			batch = drain(j.reqs, j.posts, batch[:0], false)
			w.process(batch)
			w.flushIfWanted()
		case c := <-j.ctl:
			w.tok.Lock()
			c.err = c.fn(w)
			close(c.done)
		case <-w.sy.note:
			w.tok.Lock()
			w.onSynced()
		case <-timerC:
			w.tok.Lock()
			w.armed = time.Time{}
			timerC = nil
			if !w.postsDue.IsZero() && !time.Now().Before(w.postsDue) {
				// Disarmed unless the batch finds posts to take.
				w.postsDue = time.Time{}
				w.process(drain(j.reqs, j.posts, batch[:0], false))
			}
			if !w.unsyncedSince.IsZero() && !time.Now().Before(w.syncAt()) {
				w.requestSync(nil, true)
			}
			w.logTick(time.Now())
			w.maybeCheckpoint(time.Now())
		}
		// Go 1.23 timers: after Stop no stale tick can be received.
		timer.Stop()
		clear(batch) // let the requests be collected
	}
	// Appends are closed; records posted before Close are written too.
	for {
		batch = drain(j.reqs, j.posts, batch[:0], true)
		if len(batch) == 0 {
			break
		}
		w.process(batch)
		clear(batch)
	}
	w.shutdown()
}

// drain adds whatever is already queued, without waiting: group commit
// comes from records that arrived while the previous batch was committing.
func drain(reqs <-chan *request, posts <-chan *request, batch []*request, closing bool) []*request {
	for len(batch) < maxBatch {
		select {
		case r, ok := <-reqs:
			if !ok {
				reqs = nil
				continue
			}
			batch = append(batch, r)
		case r := <-posts:
			batch = append(batch, r)
		default:
			return batch
		}
	}
	return batch
}

// collect completes a batch. A batch holding only posted records may wait
// a little (PostLinger, and never past their sync deadline) for more, so
// that records posted close together, such as a session.close and the next
// session.open, share a transaction. So may a batch of pipelined records
// (Start with Committed) while other sessions are appending too: nobody
// needs them until their waiter asks (the target is still working on the
// operations they record), and the records other sessions start meanwhile
// share their transaction. An Append ends the wait at once, and so does a
// waiter asking for a pipelined record: a caller is waiting.
func (w *writer) collect(batch []*request) []*request {
	j := w.j
	batch = drain(j.reqs, j.posts, batch, w.closing)
	if w.closing || len(batch) >= maxBatch {
		return batch
	}
	wait, ok := w.lingerFor(batch)
	if !ok {
		return batch
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	for len(batch) < maxBatch {
		select {
		case r, ok := <-j.reqs:
			if !ok {
				w.closing = true
				return batch
			}
			batch = drain(j.reqs, j.posts, append(batch, r), false)
			if _, ok := w.lingerFor(batch); !ok {
				return batch
			}
		case r := <-j.posts:
			batch = append(batch, r)
		case <-j.kick:
			return drain(j.reqs, j.posts, batch, false)
		case <-t.C:
			return batch
		}
	}
	return batch
}

// lingerFor is how long batch may wait for more records before it is
// committed; ok is false if it must be committed now.
func (w *writer) lingerFor(batch []*request) (wait time.Duration, ok bool) {
	var oldest time.Time
	pipelined := false
	for _, r := range batch {
		switch {
		case r.pipelined:
			if r.asked.Load() {
				return 0, false
			}
			pipelined = true
		case r.res != nil:
			return 0, false
		case oldest.IsZero() || r.postedAt.Before(oldest):
			oldest = r.postedAt
		}
	}
	switch {
	case pipelined && (!w.j.company.Load() || w.opts.PipelineLinger <= 0):
		// One session alone: its record commits while the target works,
		// and nothing would share the transaction by waiting.
		return 0, false
	case pipelined:
		wait = w.opts.PipelineLinger
	case w.opts.PostLinger <= 0:
		return 0, false
	default:
		wait = w.opts.PostLinger
	}
	if !oldest.IsZero() {
		// Leave half the interval for the commit and its fsync.
		wait = min(wait, time.Until(oldest.Add(w.opts.SyncInterval/2)))
	}
	return wait, wait > 0
}

func (w *writer) process(batch []*request) {
	if len(batch) == 0 {
		return
	}
	j := w.j
	start := time.Now()
	// Records posted before the last batch was committed may already have
	// waited: their sync deadline counts from Post.
	oldest := start
	for _, r := range batch {
		if r.res == nil && r.postedAt.Before(oldest) {
			oldest = r.postedAt
		}
	}
	if !w.unsyncedSince.IsZero() && w.unsyncedSince.Before(oldest) {
		oldest = w.unsyncedSince
	}
	// The batch waits for an fsync if a record asks for one, or if
	// committed records are due to be synced.
	full := w.opts.Sync == SyncAlways || start.Sub(oldest) >= w.opts.SyncInterval
	for _, r := range batch {
		full = full || r.sync
	}
	// Posted records go first: a caller that posts output and then appends
	// (an exit status, a decision) finds them in that order in the journal.
	// The gap marker follows the posts it accounts for.
	w.order = w.order[:0]
	for _, r := range batch {
		if r.res == nil {
			w.order = append(w.order, r)
		}
	}
	if g := j.takeGap(); g != nil {
		w.order = append(w.order, g)
	}
	waited := len(w.order)
	for _, r := range batch {
		if r.res != nil {
			w.order = append(w.order, r)
		}
	}
	// Appends and Starts keep the order they were made in: a pipelined
	// record that came with the posts must not fall behind a later
	// Append of its session.
	slices.SortStableFunc(w.order[waited:], func(a, b *request) int { return cmp.Compare(a.made, b.made) })
	batch = w.order
	defer clear(w.order)
	if len(batch) > 0 && batch[0].res == nil && batch[0].gap == nil {
		// Posts are flowing: until the linger ends, they wait for the
		// next batch instead of waking the writer one by one.
		w.armPosts(start)
	}
	j.company.Store(manySessions(batch))
	first, err := w.commit(batch)
	if err != nil {
		j.failedBatches.Add(1)
		w.log.Error("journal batch failed; its records were refused", "records", len(batch), "synced", full, "err", err)
		err = fmt.Errorf("journal: record not written: %w", err)
		j.shares.giveBatch(batch)
		for _, r := range batch {
			switch {
			case r.res != nil:
				r.res <- result{err: err}
			case r.gap != nil:
				j.restoreGap(r.gap)
			default:
				j.lose(r.rec.kind, r.rec.session)
			}
		}
		return
	}
	last := first + uint64(len(batch)) - 1
	j.lastSeq.Store(last)
	j.appends.Add(uint64(len(batch)))
	j.batches.Add(1)
	if w.unsyncedSince.IsZero() || oldest.Before(w.unsyncedSince) {
		w.unsyncedSince = oldest
	}
	for _, r := range batch {
		if r.rec.kind == model.KindSessionClose || r.rec.kind == model.KindRunEnd {
			w.cps.want(int64(last))
			break
		}
	}
	// Credit goes back once the records are committed: a session waits
	// for its records to be in the journal, not only out of the queue.
	j.shares.giveBatch(batch)
	// Synced appends (all appends under SyncAlways) are answered by the
	// syncer once the WAL is fsynced; the others now.
	var wait []waiter
	for i, r := range batch {
		seq := first + uint64(i)
		switch {
		case r.res != nil && full && (r.sync || w.opts.Sync == SyncAlways):
			wait = append(wait, waiter{r, seq})
		case r.res != nil:
			r.res <- result{seq: seq}
		case r.gap != nil:
			j.gaps.Add(1)
		default:
			j.postWritten.Add(1)
		}
	}
	if full {
		w.requestSync(wait, false)
	}
	w.publishUnsynced()
	if w.inline {
		// A session's goroutine does not wait for a flush it does not
		// need: the writer goroutine does it.
		w.flushWanted = w.flushWanted || w.shouldFlush()
		return
	}
	w.maybeFlush()
}

// armPosts stops the writer waking for each Post until now plus the
// post linger (never more than half the sync interval: a posted record is
// synced within SyncInterval of its Post).
func (w *writer) armPosts(now time.Time) {
	linger := min(w.opts.PostLinger, w.opts.SyncInterval/2)
	if linger <= 0 || w.closing {
		return
	}
	w.postsDue = now.Add(linger)
}

// manySessions reports whether batch holds records of two sessions or
// more.
func manySessions(batch []*request) bool {
	first := ""
	for _, r := range batch {
		switch s := r.rec.session; {
		case s == "":
		case first == "":
			first = s
		case s != first:
			return true
		}
	}
	return false
}

// shutdown runs once the queues are closed and drained: sync what is still
// only committed, sign the final tree, then release the database.
func (w *writer) shutdown() {
	j := w.j
	w.sy.waitIdle()
	w.onSynced()
	if w.logMode {
		// What stays in the log is replayed at the next Open.
		w.flushLogged()
	}
	if w.synced < w.size {
		if err := w.syncNow(); err != nil {
			j.closeErr = fmt.Errorf("journal: final sync: %w", err)
			w.log.Error("journal final sync failed", "err", err)
		} else {
			j.idleSyncs.Add(1)
		}
	}
	if w.synced == w.size && w.size > w.cps.last.Size {
		w.checkpoint(time.Now())
	}
	if w.logMode {
		w.trimLog()
	}
	w.sy.close()
	w.close()
	if j.sinks != nil {
		j.sinks.close()
	}
	w.log.Info("journal closed", "last_seq", j.lastSeq.Load(), "signed_size", w.cps.last.Size,
		"appends", j.appends.Load(), "batches", j.batches.Load(), "fsyncs", j.fsyncs.Load())
}
