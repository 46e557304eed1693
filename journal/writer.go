package journal

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"time"

	sqlite3 "github.com/mattn/go-sqlite3"
)

// writer owns the write connection. Everything in it is touched only by the
// writer goroutine (and by Open before that goroutine starts).
type writer struct {
	j    *Journal
	opts Options
	log  *slog.Logger
	dsn  string
	db   *sql.DB

	// conn is dedicated so that per-connection pragmas (synchronous,
	// busy_timeout) stay set and the statements stay prepared. nil after a
	// connection was discarded; the next batch reconnects.
	conn              *sql.Conn
	insert, head, put *sql.Stmt
	// full is the connection's current synchronous setting, to skip
	// redundant pragmas; valid only while conn is.
	full bool

	// unsyncedSince is when the oldest commit that has not been fsynced
	// was made; zero when everything is synced.
	unsyncedSince time.Time
	// syncRetryAt delays the next idle sync after a failed one, so a
	// broken disk does not make the writer spin.
	syncRetryAt time.Time

	h          hash.Hash
	body       []byte
	prev, curr []byte
}

func newWriter(ctx context.Context, opts Options, log *slog.Logger) (*writer, error) {
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
		h:    sha256.New(),
		prev: make([]byte, 0, HashSize),
		curr: make([]byte, 0, HashSize),
	}
	if err := w.connect(ctx); err != nil {
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
	var mode string
	if err := c.QueryRowContext(ctx, `PRAGMA journal_mode = WAL`).Scan(&mode); err != nil {
		c.Close()
		return fmt.Errorf("journal: set WAL mode on %s: %w", w.opts.Path, err)
	}
	if mode != "wal" {
		c.Close()
		return fmt.Errorf("journal: %s refused WAL mode (journal_mode is %q)", w.opts.Path, mode)
	}
	if _, err := c.ExecContext(ctx, `PRAGMA synchronous = FULL`); err != nil {
		c.Close()
		return fmt.Errorf("journal: set synchronous on %s: %w", w.opts.Path, err)
	}
	w.conn, w.full = c, true
	return nil
}

// prepare needs the schema, so Open calls it after initSchema.
func (w *writer) prepare(ctx context.Context) error {
	var err error
	if w.insert, err = w.conn.PrepareContext(ctx, `INSERT INTO entries (seq, time_ns, kind, session, body, hash) VALUES (?, ?, ?, ?, ?, ?)`); err != nil {
		return fmt.Errorf("journal: prepare insert: %w", err)
	}
	if w.head, err = w.conn.PrepareContext(ctx, `SELECT seq, hash FROM entries ORDER BY seq DESC LIMIT 1`); err != nil {
		return fmt.Errorf("journal: prepare head query: %w", err)
	}
	if w.put, err = w.conn.PrepareContext(ctx, `INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)`); err != nil {
		return fmt.Errorf("journal: prepare meta update: %w", err)
	}
	return nil
}

// discard drops a connection whose state is unknown (a transaction that
// would not roll back). Returning driver.ErrBadConn from Raw makes
// database/sql close it instead of pooling it.
func (w *writer) discard() {
	w.closeStmts()
	if w.conn == nil {
		return
	}
	_ = w.conn.Raw(func(any) error { return driver.ErrBadConn })
	_ = w.conn.Close()
	w.conn = nil
}

func (w *writer) closeStmts() {
	for _, s := range []*sql.Stmt{w.insert, w.head, w.put} {
		if s != nil {
			s.Close()
		}
	}
	w.insert, w.head, w.put = nil, nil, nil
}

func (w *writer) close() {
	w.closeStmts()
	if w.conn != nil {
		w.conn.Close()
		w.conn = nil
	}
	w.db.Close()
}

func (w *writer) run() {
	j := w.j
	defer close(j.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	batch := make([]*request, 0, maxBatch)
	for {
		var syncC <-chan time.Time
		if !w.unsyncedSince.IsZero() {
			at := w.unsyncedSince.Add(w.opts.SyncInterval)
			if w.syncRetryAt.After(at) {
				at = w.syncRetryAt
			}
			timer.Reset(time.Until(at))
			syncC = timer.C
		}
		select {
		case r, ok := <-j.reqs:
			if !ok {
				timer.Stop()
				w.shutdown()
				return
			}
			batch = append(batch[:0], r)
			if w.opts.beforeBatch != nil {
				w.opts.beforeBatch()
			}
			batch = drain(j.reqs, batch)
			w.process(batch)
			clear(batch) // let the requests be collected
		case <-syncC:
			w.idleSync()
		}
	}
}

// drain adds whatever is already queued, without waiting: group commit
// comes from records that arrived while the previous batch was committing.
func drain(reqs <-chan *request, batch []*request) []*request {
	for len(batch) < maxBatch {
		select {
		case r, ok := <-reqs:
			if !ok {
				return batch
			}
			batch = append(batch, r)
		default:
			return batch
		}
	}
	return batch
}

func (w *writer) process(batch []*request) {
	j := w.j
	start := time.Now()
	full := w.opts.Sync == SyncAlways ||
		(!w.unsyncedSince.IsZero() && start.Sub(w.unsyncedSince) >= w.opts.SyncInterval)
	for _, r := range batch {
		full = full || r.sync
	}
	first, err := w.commit(batch, full)
	if err != nil {
		j.failedBatches.Add(1)
		w.log.Error("journal batch failed; its records were refused", "records", len(batch), "synced", full, "err", err)
		err = fmt.Errorf("journal: record not written: %w", err)
		for _, r := range batch {
			r.res <- result{err: err}
		}
		return
	}
	last := first + uint64(len(batch)) - 1
	j.lastSeq.Store(last)
	j.appends.Add(uint64(len(batch)))
	j.batches.Add(1)
	if full {
		j.fsyncBatches.Add(1)
		w.unsyncedSince = time.Time{}
	} else if w.unsyncedSince.IsZero() {
		w.unsyncedSince = start
	}
	for i, r := range batch {
		r.res <- result{seq: first + uint64(i)}
	}
}

// commit writes batch in one transaction and returns the first sequence
// number. BEGIN IMMEDIATE takes the database write lock before the head is
// read, so another process appending to the same file cannot slip an
// entry between our read of the head and our insert.
func (w *writer) commit(batch []*request, full bool) (first uint64, err error) {
	ctx := context.Background() // bounded by busy_timeout, not by any caller
	if err := w.begin(ctx, full); err != nil {
		return 0, err
	}
	defer func() {
		if err != nil {
			w.rollback()
		}
	}()

	var headSeq int64
	var headHash []byte
	err = w.head.QueryRowContext(ctx).Scan(&headSeq, &headHash)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		// Only if every entry was deleted from outside. Recording on
		// keeps evidence of what happens next, where refusing would stop
		// every intercepted operation; Verify reports the damage.
		w.log.Warn("journal has no entries; chaining from zero")
		headSeq, headHash, err = 0, make([]byte, HashSize), nil
	case err != nil:
		return 0, fmt.Errorf("read head: %w", err)
	case len(headHash) != HashSize:
		return 0, fmt.Errorf("head entry %d has a %d-byte hash", headSeq, len(headHash))
	}
	prev := append(w.prev[:0], headHash...)
	curr := w.curr
	seq := uint64(headSeq)
	for _, r := range batch {
		seq++
		t := r.rec.timeNS
		if !r.rec.hasTime {
			t = time.Now().UnixNano()
		}
		w.body = appendBody(w.body[:0], seq, t, r.rec.tail)
		curr = chainHash(w.h, curr, prev, w.body)
		if _, err := w.insert.ExecContext(ctx, int64(seq), t, r.rec.kind, r.rec.session, w.body, curr); err != nil {
			return 0, fmt.Errorf("insert entry %d: %w", seq, err)
		}
		prev, curr = curr, prev
	}
	w.prev, w.curr = prev, curr
	if _, err := w.conn.ExecContext(ctx, `COMMIT`); err != nil {
		return 0, fmt.Errorf("commit entries %d-%d: %w", uint64(headSeq)+1, seq, err)
	}
	return uint64(headSeq) + 1, nil
}

// begin sets the durability of the coming commit and opens the write
// transaction. The pragma cannot change inside a transaction. Under WAL,
// a FULL commit fsyncs the WAL, which also makes every earlier NORMAL
// commit durable: that is what lets one fsync serve many records.
func (w *writer) begin(ctx context.Context, full bool) error {
	if w.conn == nil {
		if err := w.connect(ctx); err != nil {
			return err
		}
		if err := w.prepare(ctx); err != nil {
			w.discard()
			return err
		}
	}
	if full != w.full {
		mode := "NORMAL"
		if full {
			mode = "FULL"
		}
		if _, err := w.conn.ExecContext(ctx, `PRAGMA synchronous = `+mode); err != nil {
			return fmt.Errorf("set synchronous=%s: %w", mode, err)
		}
		w.full = full
	}
	if _, err := w.conn.ExecContext(ctx, `BEGIN IMMEDIATE`); err != nil {
		return fmt.Errorf("begin write transaction: %w", err)
	}
	return nil
}

// rollback undoes a failed transaction. If the connection still has one
// open afterwards, it is discarded: a half-written batch must never be
// committed by the next one.
func (w *writer) rollback() {
	_, rerr := w.conn.ExecContext(context.Background(), `ROLLBACK`)
	inTx := true
	cerr := w.conn.Raw(func(dc any) error {
		if c, ok := dc.(*sqlite3.SQLiteConn); ok {
			inTx = !c.AutoCommit()
		}
		return nil
	})
	if inTx || cerr != nil {
		w.log.Warn("journal: discarding write connection after failed rollback", "rollback_err", rerr, "err", cerr)
		w.discard()
	}
}

// idleSync makes committed records durable when no batch came along within
// SyncInterval to carry the fsync. An empty transaction would not touch
// the WAL, so it rewrites a meta row under synchronous=FULL.
func (w *writer) idleSync() {
	if err := w.syncNow(); err != nil {
		w.syncRetryAt = time.Now().Add(w.opts.SyncInterval)
		w.log.Error("journal sync failed; will retry", "unsynced_since", w.unsyncedSince, "err", err)
		return
	}
	w.j.idleSyncs.Add(1)
}

func (w *writer) syncNow() (err error) {
	ctx := context.Background()
	if err := w.begin(ctx, true); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			w.rollback()
		}
	}()
	now := time.Now()
	if _, err := w.put.ExecContext(ctx, "last_sync_ns", now.UnixNano()); err != nil {
		return fmt.Errorf("write last_sync_ns: %w", err)
	}
	if _, err := w.conn.ExecContext(ctx, `COMMIT`); err != nil {
		return fmt.Errorf("commit sync: %w", err)
	}
	w.unsyncedSince, w.syncRetryAt = time.Time{}, time.Time{}
	return nil
}

// shutdown runs once the queue is closed and drained: sync what is still
// only committed, then release the database.
func (w *writer) shutdown() {
	j := w.j
	if !w.unsyncedSince.IsZero() {
		if err := w.syncNow(); err != nil {
			j.closeErr = fmt.Errorf("journal: final sync: %w", err)
			w.log.Error("journal final sync failed", "err", err)
		} else {
			j.idleSyncs.Add(1)
		}
	}
	w.close()
	w.log.Info("journal closed", "last_seq", j.lastSeq.Load())
}
