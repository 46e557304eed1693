package journal

// The writer's transaction: one batch committed as one SQLite write
// transaction, chained and added to the tree.

import (
	"bytes"
	"context"
	"database/sql/driver"
	"fmt"
	"time"

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
)

// commit writes batch and returns the first sequence number: in log mode
// by one write to the commit log (logmode.go), otherwise in one SQLite
// transaction. BEGIN IMMEDIATE takes the database write lock before the
// head is checked, so another process appending to the same file cannot
// slip an entry between our view of the head and our insert.
func (w *writer) commit(batch []*request) (first uint64, err error) {
	saved := w.tree.Clone()
	savedSize, savedHead := w.size, append([]byte(nil), w.headHash...)
	w.recs = w.recs[:0]
	for _, r := range batch {
		w.recs = append(w.recs, &r.rec)
	}
	defer clear(w.recs)
	if w.logMode && len(w.recs) < directRows && payloadSize(w.recs) < directPayloadBytes {
		first = uint64(w.size) + 1
		err = w.logBatch(w.recs, first)
	} else if err = w.holdsLog(); err == nil {
		// Outside log mode; or in it, a batch heavy with payloads or with
		// records enough to fill a transaction, written once, to SQLite,
		// after what the log holds.
		err = w.inTx(func(rc *rawConn) error {
			if !w.logMode {
				if err := w.syncHead(rc); err != nil {
					return err
				}
			}
			first = uint64(w.size) + 1
			return w.insertNow(rc, w.recs, first)
		})
	}
	if err != nil {
		w.tree, w.size, w.headHash = saved, savedSize, savedHead
		return 0, fmt.Errorf("entries %d-%d: %w", first, first+uint64(len(batch))-1, err)
	}
	w.size, w.headHash = int64(first)+int64(len(batch))-1, append(w.headHash[:0], w.last...)
	return first, nil
}

// Rows are inserted up to maxInsertRows per statement: one statement
// (one cgo crossing, one VDBE run) per row cost more than SQLite's work
// on the row itself. A batch is cut into statements of power-of-two sizes,
// so a handful of prepared statements serve every batch size.
const (
	rowCols       = 9
	insertSizes   = 9
	maxInsertRows = 1 << (insertSizes - 1)
)

// sqlInsertRows[k] inserts 1<<k entries.
var sqlInsertRows = func() (qs [insertSizes]string) {
	const row = `(?, ?, ?, ?, ?, ?, ?, ?, ?)`
	for k := range qs {
		q := `INSERT INTO entries (seq, time_ns, kind, session, body, hash, tree, salt, payload) VALUES ` + row
		for range 1<<k - 1 {
			q += `, ` + row
		}
		qs[k] = q
	}
	return qs
}()

// pendRow is an entry staged for the database: its record, and where its
// body, hash and tree column end in w.arena (each starts where the one
// before ends; the first row's body at start).
type pendRow struct {
	seq, time        int64
	rec              *encodedRecord
	start            int
	body, hash, tree int
}

// stage numbers recs first, first+1, ..., chains them from w.headHash,
// adds their leaves to the tree, and appends them to w.pend with their
// columns in w.arena; w.last is left holding the last one's chain hash.
// The caller moves size and headHash on once they are committed.
func (w *writer) stage(recs []*encodedRecord, first uint64) {
	w.last = append(w.last[:0], w.headHash...)
	seq := int64(first)
	for _, rec := range recs {
		t := rec.timeNS
		if !rec.hasTime {
			t = time.Now().UnixNano()
		}
		start := len(w.arena)
		w.arena = evidence.AppendBody(w.arena, uint64(seq), t, rec.tail)
		sp := pendRow{seq: seq, time: t, rec: rec, start: start, body: len(w.arena)}
		w.hbuf = evidence.AppendChainHash(w.h, w.hbuf, w.last, w.arena[start:sp.body])
		w.last = append(w.last[:0], w.hbuf...)
		w.arena = append(w.arena, w.hbuf...)
		sp.hash = len(w.arena)
		w.stored = w.tree.AddStored(w.leaf.sum(w.arena[start:sp.body]), w.stored)
		for _, h := range w.stored {
			w.arena = append(w.arena, h[:]...)
		}
		sp.tree = len(w.arena)
		w.pend = append(w.pend, sp)
		seq++
	}
}

// execRows inserts rows, staged by stage, inside the caller's write
// transaction.
func (w *writer) execRows(rc *rawConn, rows []pendRow) error {
	for len(rows) > 0 {
		k := 0
		for 2<<k <= min(len(rows), maxInsertRows) {
			k++
		}
		n := 1 << k
		chunk := rows[:n]
		rows = rows[n:]
		args := rc.args[:0]
		for i, sp := range chunk {
			rec := sp.rec
			for c, v := range [rowCols]driver.Value{sp.seq, sp.time, rec.kind, rec.session,
				w.arena[sp.start:sp.body], w.arena[sp.body:sp.hash], w.arena[sp.hash:sp.tree], rec.salt, rec.payload} {
				args = append(args, driver.NamedValue{Ordinal: i*rowCols + c + 1, Value: v})
			}
		}
		rc.args = args
		if err := rc.run(sqlInsertRows[k], args); err != nil {
			return fmt.Errorf("insert entries %d-%d: %w", chunk[0].seq, chunk[n-1].seq, err)
		}
	}
	return nil
}

// insertNow stages recs as entries first, first+1, ... and inserts them
// inside the caller's write transaction (inTx drops them if it fails).
func (w *writer) insertNow(rc *rawConn, recs []*encodedRecord, first uint64) error {
	n := len(w.pend)
	w.stage(recs, first)
	return w.execRows(rc, w.pend[n:])
}

// dropPending forgets the staged rows from n on (all of them for 0).
func (w *writer) dropPending(n int) {
	if n == 0 {
		clear(w.pend)
		w.pend, w.arena = w.pend[:0], w.arena[:0]
		return
	}
	w.arena = w.arena[:w.pend[n-1].tree]
	clear(w.pend[n:])
	w.pend = w.pend[:n]
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
			if headSeq < w.synced {
				// A checkpoint signs (synced, syncedTree): both must
				// describe the same tree.
				w.synced, w.syncedTree = headSeq, tree.Clone()
			}
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
	// In log mode the entries only the commit log holds go first:
	// whatever fn writes (a batch, a checkpoint, a retention record) comes
	// after them, as it did in the log's order. Rows fn stages go to the
	// database only: refused, they are dropped here.
	held := 0
	if w.logMode {
		held = len(w.pend)
	}
	bad, committed := false, false
	err := w.withRaw(func(rc *rawConn) error {
		if err := rc.exec(sqlBegin); err != nil {
			return fmt.Errorf("begin write transaction: %w", err)
		}
		err := w.execRows(rc, w.pend[:held])
		if err == nil {
			err = fn(rc)
		}
		if err == nil {
			if err = rc.exec(sqlCommit); err == nil {
				committed = true
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
	switch {
	case committed:
		w.committedPending(held)
	case len(w.pend) > held:
		w.dropPending(held)
	}
	return err
}
