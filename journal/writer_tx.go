package journal

// The writer's transaction: one batch committed as one SQLite write
// transaction, chained and added to the tree.

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/interlock/interlock/journal/evidence"
)

// SQL of the write path, prepared once per connection (rawConn.stmt).
const (
	sqlBegin       = `BEGIN IMMEDIATE`
	sqlCommit      = `COMMIT`
	sqlRollback    = `ROLLBACK`
	sqlDataVersion = `PRAGMA data_version`
	sqlHead        = `SELECT seq, hash FROM entries ORDER BY seq DESC LIMIT 1`
	sqlCheckpoint  = `INSERT INTO checkpoints (tree_size, time_ns, note) VALUES (?, ?, ?)`
	sqlInsertEntry = `INSERT INTO entries (seq, time_ns, kind, session, body, hash, tree, salt, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`
)

// commit writes batch in one transaction and returns the first sequence
// number. BEGIN IMMEDIATE takes the database write lock before the head is
// checked, so another process appending to the same file cannot slip an
// entry between our view of the head and our insert.
func (w *writer) commit(batch []*request) (first uint64, err error) {
	saved := w.tree.Clone()
	savedSize, savedHead := w.size, append([]byte(nil), w.headHash...)
	var seq uint64
	err = w.inTx(func(rc *rawConn) error {
		if err := w.syncHead(rc); err != nil {
			return err
		}
		prev := append(w.prev[:0], w.headHash...)
		curr := w.curr
		seq = uint64(w.size)
		first = seq + 1
		insert := func(r *request) (err error) {
			seq++
			t := r.rec.timeNS
			if !r.rec.hasTime {
				t = time.Now().UnixNano()
			}
			if curr, err = w.insertEntry(rc, seq, t, &r.rec, prev, curr); err != nil {
				return err
			}
			prev, curr = curr, prev
			return nil
		}
		for _, r := range batch {
			if err := insert(r); err != nil {
				return err
			}
		}
		w.prev, w.curr = prev, curr
		return nil
	})
	if err != nil {
		w.tree, w.size, w.headHash = saved, savedSize, savedHead
		return 0, fmt.Errorf("entries %d-%d: %w", first, seq, err)
	}
	w.size, w.headHash = int64(seq), append(w.headHash[:0], w.prev...)
	return first, nil
}

// insertEntry writes rec as entry seq at time t, chained from prev, with
// its payload, and adds its leaf to the tree. It returns the entry's chain
// hash, computed into dst[:0]. The caller holds the write transaction and
// moves size and headHash on once it commits.
func (w *writer) insertEntry(rc *rawConn, seq uint64, t int64, rec *encodedRecord, prev, dst []byte) ([]byte, error) {
	w.body = evidence.AppendBody(w.body[:0], seq, t, rec.tail)
	dst = evidence.AppendChainHash(w.h, dst, prev, w.body)
	w.stored = w.tree.AddStored(tlog.RecordHash(w.body), w.stored)
	w.col = treeColumn(w.col, w.stored)
	if err := rc.exec(sqlInsertEntry, int64(seq), t, rec.kind, rec.session, w.body, dst, w.col, rec.salt, rec.payload); err != nil {
		return dst, fmt.Errorf("insert entry %d: %w", seq, err)
	}
	return dst, nil
}

// syncHead makes size, headHash and tree describe the database's head,
// inside the write transaction. They differ when another process appended
// to (or edited) the same file since our last transaction: then the tree's
// right edge is read back from the entries' tree columns. PRAGMA
// data_version tells whether any other connection committed in between,
// which is much cheaper than reading the head every batch; it does not
// change for our own commits.
func (w *writer) syncHead(rc *rawConn) error {
	if _, err := rc.queryRow(sqlDataVersion, 1); err != nil {
		return fmt.Errorf("read data_version: %w", err)
	}
	dv, _ := rc.dest[0].(int64)
	if w.dvKnown && dv == w.dataVersion {
		return nil
	}
	// Whatever follows, our view is checked against this version.
	w.dataVersion, w.dvKnown = dv, false
	headSeq, headHash := int64(0), make([]byte, evidence.HashSize)
	found, err := rc.queryRow(sqlHead, 2)
	switch {
	case err != nil:
		return fmt.Errorf("read head: %w", err)
	case !found:
		// Only if every entry was deleted from outside. Recording on
		// keeps evidence of what happens next, where refusing would stop
		// every intercepted operation; Verify reports the damage.
		w.log.Warn("journal has no entries; chaining from zero")
	default:
		headSeq, _ = rc.dest[0].(int64)
		headHash, _ = rc.dest[1].([]byte)
		if len(headHash) != evidence.HashSize {
			return fmt.Errorf("head entry %d has a %d-byte hash", headSeq, len(headHash))
		}
	}
	if headSeq != w.size || !bytes.Equal(headHash, w.headHash) {
		tree, err := loadRange(rc.trees(), headSeq)
		if err != nil {
			return fmt.Errorf("read the tree's right edge at %d: %w", headSeq, err)
		}
		if headSeq < w.size {
			w.log.Warn("journal head went back: entries were removed from outside", "had", w.size, "now", headSeq)
			w.synced = min(w.synced, headSeq)
		}
		w.tree, w.size, w.headHash = tree, headSeq, append(w.headHash[:0], headHash...)
	}
	w.dvKnown = true
	return nil
}

// inTx runs fn inside a write transaction on the driver connection and
// commits it (written to the WAL, not synced: the syncer does that). On
// any error the transaction is rolled back; if the connection still has
// one open after that, it is discarded: a half-written batch must never be
// committed by the next one.
func (w *writer) inTx(fn func(rc *rawConn) error) error {
	if w.conn == nil {
		if err := w.connect(context.Background()); err != nil {
			return err
		}
	}
	bad := false
	err := w.withRaw(func(rc *rawConn) error {
		if err := rc.exec(sqlBegin); err != nil {
			return fmt.Errorf("begin write transaction: %w", err)
		}
		err := fn(rc)
		if err == nil {
			if err = rc.exec(sqlCommit); err == nil {
				return nil
			}
			err = fmt.Errorf("commit: %w", err)
		}
		// The head may be ours no more: check it in the next transaction.
		w.dvKnown = false
		rerr := rc.exec(sqlRollback)
		if !rc.sc.AutoCommit() {
			w.log.Warn("journal: discarding write connection after failed rollback", "rollback_err", rerr)
			bad = true
		}
		return err
	})
	if bad {
		w.discard()
	}
	return err
}
