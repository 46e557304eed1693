package journal

import (
	"fmt"
	"time"

	"github.com/interlock/interlock/journal/evidence"
)

// Checkpoint cadence.
const (
	// DefaultCheckpointInterval: while entries flow, a new tree head is
	// signed at least this often.
	DefaultCheckpointInterval = time.Second
	// DefaultHeartbeat: while nothing is written, the same tree head is
	// signed again this often, so that silence is evidence too.
	DefaultHeartbeat = 60 * time.Second
	// sessionEndGap coalesces the checkpoints owed to session ends: a
	// session that ends within this of the last checkpoint is covered by
	// the next one, signed then. Without it, a thousand short connections
	// a second would each sign, store and publish a checkpoint.
	sessionEndGap = 100 * time.Millisecond
)

// checkpointer decides when the writer signs. It lives in the writer
// goroutine.
type checkpointer struct {
	signer              *Signer
	origin              string
	interval, heartbeat time.Duration
	// last is the newest checkpoint this writer knows (signed by it, or
	// found in the database at Open); lastAt is when it was signed here
	// (or loaded), by the local clock.
	last   evidence.Checkpoint
	lastAt time.Time
	// wantAt is the tree size of a session.close or run.end waiting for
	// its checkpoint (signed as soon as that size is synced); 0 if none.
	wantAt int64
}

// immediately is a due time already past, whatever the clock says.
var immediately = time.Unix(1, 0)

func (c *checkpointer) want(size int64) { c.wantAt = max(c.wantAt, size) }

// due says when the next checkpoint falls due for a writer whose tree has
// synced entries fsynced: only synced trees are signed. Zero means never
// (no signer, or nothing synced yet).
func (c *checkpointer) due(synced int64) time.Time {
	if c.signer == nil || synced == 0 {
		return time.Time{}
	}
	switch {
	case c.lastAt.IsZero():
		return immediately
	case synced > c.last.Size && c.wantAt > c.last.Size && c.wantAt <= synced:
		if at := c.lastAt.Add(sessionEndGap); at.After(immediately) {
			return at
		}
		return immediately
	case synced > c.last.Size:
		return c.lastAt.Add(c.interval)
	}
	return c.lastAt.Add(c.heartbeat)
}

// maybeCheckpoint signs the synced tree if a checkpoint is due.
func (w *writer) maybeCheckpoint(now time.Time) {
	at := w.cps.due(w.synced)
	if at.IsZero() || now.Before(at) {
		return
	}
	w.checkpoint(now)
}

// checkpoint signs the synced tree (which may be behind the head while
// later batches wait for their fsync), stores the checkpoint and hands it
// to the sinks. A failure is logged and retried at the next interval:
// checkpoints are evidence about the journal, not part of it, so they never
// stop a record.
func (w *writer) checkpoint(now time.Time) {
	// A checkpoint covers nothing the database lacks: a reader of the
	// database checks it against the entries there.
	if w.logMode {
		if err := w.flush(); err != nil {
			w.cps.lastAt = now
			w.log.Error("journal checkpoint not signed: the commit log did not flush", "err", err)
			return
		}
	}
	cp, err := evidence.SignCheckpoint(w.cps.signer, w.cps.origin, w.synced, w.syncedTree.Root(), now)
	w.cps.lastAt = now
	if err != nil {
		w.log.Error("journal checkpoint not signed", "size", w.synced, "err", err)
		return
	}
	w.cps.last = cp
	if w.cps.wantAt <= cp.Size {
		w.cps.wantAt = 0
	}
	w.j.checkpoints.Add(1)
	w.j.signedSize.Store(uint64(cp.Size))
	if err := w.storeCheckpoint(cp); err != nil {
		w.log.Error("journal checkpoint not stored in the database", "size", cp.Size, "err", err)
	}
	if w.j.sinks != nil {
		w.j.sinks.publish(cp)
	}
}

// storeCheckpoint keeps the checkpoint in the database for verify and
// export. The transaction is not fsynced on its own: the next sync carries
// it, and the copy outside the database is what guards against rollback.
func (w *writer) storeCheckpoint(cp evidence.Checkpoint) error {
	return w.inTx(func(rc *rawConn) error {
		if err := rc.exec(sqlCheckpoint, cp.Size, cp.TimeNS, cp.Note); err != nil {
			return fmt.Errorf("insert checkpoint: %w", err)
		}
		return nil
	})
}
