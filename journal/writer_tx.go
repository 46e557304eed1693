package journal

// The writer's transaction: one batch committed as one SQLite write
// transaction, chained and added to the tree.

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	sqlite3 "github.com/mattn/go-sqlite3"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/interlock/interlock/journal/evidence"
)

// commit writes batch in one transaction and returns the first sequence
// number. BEGIN IMMEDIATE takes the database write lock before the head is
// read, so another process appending to the same file cannot slip an
// entry between our read of the head and our insert.
func (w *writer) commit(batch []*request, full bool) (first uint64, _ []*request, err error) {
	ctx := context.Background() // bounded by busy_timeout, not by any caller
	if err := w.begin(ctx, full); err != nil {
		return 0, batch, err
	}
	saved := w.tree.Clone()
	savedSize, savedHead := w.size, append([]byte(nil), w.headHash...)
	defer func() {
		if err != nil {
			w.rollback()
			w.tree, w.size, w.headHash = saved, savedSize, savedHead
		}
	}()
	if err := w.syncHead(ctx); err != nil {
		return 0, batch, err
	}
	prev := append(w.prev[:0], w.headHash...)
	curr := w.curr
	seq := uint64(w.size)
	insert := func(r *request) (err error) {
		seq++
		t := r.rec.timeNS
		if !r.rec.hasTime {
			t = time.Now().UnixNano()
		}
		if curr, err = w.insertEntry(ctx, seq, t, &r.rec, prev, curr); err != nil {
			return err
		}
		prev, curr = curr, prev
		return nil
	}
	for _, r := range batch {
		if err := insert(r); err != nil {
			return 0, batch, err
		}
	}
	// Records that arrived while this batch was being written join it
	// when it is about to fsync anyway: the fsync is the expensive part,
	// and they would otherwise wait for the next one.
	if full && w.j != nil {
		n := len(batch)
		batch = drain(w.j.reqs, w.j.posts, batch, w.closing)
		for _, r := range batch[n:] {
			if err := insert(r); err != nil {
				return 0, batch, err
			}
		}
	}
	w.prev, w.curr = prev, curr
	firstSeq := uint64(w.size) + 1
	if _, err := w.conn.ExecContext(ctx, `COMMIT`); err != nil {
		return 0, batch, fmt.Errorf("commit entries %d-%d: %w", firstSeq, seq, err)
	}
	w.size, w.headHash = int64(seq), append(w.headHash[:0], prev...)
	return firstSeq, batch, nil
}

// insertEntry writes rec as entry seq at time t, chained from prev, with
// its payload, and adds its leaf to the tree. It returns the entry's chain
// hash, computed into dst[:0]. The caller holds the write transaction and
// moves size and headHash on once it commits.
func (w *writer) insertEntry(ctx context.Context, seq uint64, t int64, rec *encodedRecord, prev, dst []byte) ([]byte, error) {
	w.body = evidence.AppendBody(w.body[:0], seq, t, rec.tail)
	dst = evidence.AppendChainHash(w.h, dst, prev, w.body)
	w.stored = w.tree.AddStored(tlog.RecordHash(w.body), w.stored)
	w.col = treeColumn(w.col, w.stored)
	if _, err := w.insert.ExecContext(ctx, int64(seq), t, rec.kind, rec.session, w.body, dst, w.col); err != nil {
		return dst, fmt.Errorf("insert entry %d: %w", seq, err)
	}
	if rec.payload != nil {
		if _, err := w.insertPayload.ExecContext(ctx, int64(seq), rec.salt, rec.payload); err != nil {
			return dst, fmt.Errorf("insert payload of entry %d: %w", seq, err)
		}
	}
	return dst, nil
}

// syncHead makes size, headHash and tree describe the database's head,
// inside the write transaction. They differ when another process appended
// to the same file since our last batch: then the tree's right edge is read
// back from the entries' tree columns.
func (w *writer) syncHead(ctx context.Context) error {
	var headSeq int64
	var headHash []byte
	err := w.head.QueryRowContext(ctx).Scan(&headSeq, &headHash)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		// Only if every entry was deleted from outside. Recording on
		// keeps evidence of what happens next, where refusing would stop
		// every intercepted operation; Verify reports the damage.
		w.log.Warn("journal has no entries; chaining from zero")
		headSeq, headHash = 0, make([]byte, evidence.HashSize)
	case err != nil:
		return fmt.Errorf("read head: %w", err)
	case len(headHash) != evidence.HashSize:
		return fmt.Errorf("head entry %d has a %d-byte hash", headSeq, len(headHash))
	}
	if headSeq == w.size && bytes.Equal(headHash, w.headHash) {
		return nil
	}
	tree, err := loadRange(ctx, w.conn, headSeq)
	if err != nil {
		return fmt.Errorf("read the tree's right edge at %d: %w", headSeq, err)
	}
	if headSeq < w.size {
		w.log.Warn("journal head went back: entries were removed from outside", "had", w.size, "now", headSeq)
		w.synced = min(w.synced, headSeq)
	}
	w.tree, w.size, w.headHash = tree, headSeq, append(w.headHash[:0], headHash...)
	return nil
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
	if w.conn == nil {
		return
	}
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
