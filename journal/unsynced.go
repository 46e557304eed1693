package journal

// The writer's side of syncing: which committed records wait for an fsync,
// the jobs it hands to the syncer, and what it learns back.

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"
)

// inflightSync is a sync job the writer submitted and has not heard back
// of.
type inflightSync struct {
	size  int64
	since time.Time
}

// requestSync hands the syncer a job covering everything committed so far;
// waiters are answered once it is done. idle says no batch asked for it:
// committed records reached their sync interval.
func (w *writer) requestSync(waiters []waiter, idle bool) {
	since := w.unsyncedSince
	if since.IsZero() {
		since = time.Now()
	}
	w.sy.submit(&syncJob{size: w.size, tree: w.tree.Clone(), since: since, waiters: waiters, idle: idle, wal: w.walDirty})
	w.walDirty = false
	w.inflight = append(w.inflight, inflightSync{w.size, since})
	w.unsyncedSince = time.Time{}
	w.publishUnsynced()
}

// onSynced takes in the syncer's finished jobs: the synced tree moves on,
// and a failed sync puts its records back to wait, retried after an
// interval (answered appends got the error already).
func (w *writer) onSynced() {
	w.results = w.sy.results(w.results[:0])
	if len(w.results) == 0 {
		return
	}
	var failedSince time.Time
	var failedSize int64
	for _, r := range w.results {
		// Jobs finish in the order they were submitted.
		w.inflight = w.inflight[1:]
		if r.err != nil {
			if failedSince.IsZero() || r.since.Before(failedSince) {
				failedSince = r.since
			}
			failedSize = max(failedSize, r.size)
			continue
		}
		if r.size > w.synced {
			w.synced, w.syncedTree = r.size, r.tree
		}
		if r.size >= failedSize {
			// A later fsync covers what an earlier one failed to.
			failedSince, failedSize = time.Time{}, 0
		}
	}
	clear(w.results)
	if !failedSince.IsZero() {
		if w.unsyncedSince.IsZero() || failedSince.Before(w.unsyncedSince) {
			w.unsyncedSince = failedSince
		}
		w.syncRetryAt = time.Now().Add(w.opts.SyncInterval)
	} else {
		w.syncRetryAt = time.Time{}
	}
	w.publishUnsynced()
	w.maybeCheckpoint(time.Now())
}

// syncNow makes everything committed durable before it returns: at Open
// (before the syncer runs), for a retention run, and at Close.
func (w *writer) syncNow() error {
	if w.syncing {
		w.sy.waitIdle()
		w.onSynced()
	}
	err := w.sy.fsync()
	if err == nil && w.walDirty && w.sy.logFile != nil {
		err = w.sy.fsyncWAL()
	}
	if err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	w.walDirty = false
	if w.j != nil {
		w.j.fsyncs.Add(1)
	}
	w.synced, w.syncedTree = w.size, w.tree.Clone()
	w.unsyncedSince, w.syncRetryAt = time.Time{}, time.Time{}
	w.publishUnsynced()
	return nil
}

// useWAL opens the WAL file for the syncer when the writer (re)connects,
// unless the one open is still the database's: a reconnect after the
// file was replaced must not go on syncing the old one.
func (w *writer) useWAL() error {
	if w.syncing {
		// The syncer touches the file only for jobs the writer submits.
		w.sy.waitIdle()
	}
	if w.sy.wal != nil {
		a, aerr := w.sy.wal.Stat()
		b, berr := os.Stat(w.opts.Path + "-wal")
		if aerr == nil && berr == nil && os.SameFile(a, b) {
			return nil
		}
	}
	f, err := openWAL(w.opts.Path)
	if errors.Is(err, fs.ErrNotExist) && w.sy.wal == nil {
		return nil // the first sync opens it
	}
	if err != nil {
		return err
	}
	if w.sy.wal != nil {
		w.sy.wal.Close()
	}
	w.sy.wal = f
	return nil
}

// publishUnsynced tells Stats when the oldest committed record still
// waiting for an fsync was handed over (zero: none).
func (w *writer) publishUnsynced() {
	t := w.unsyncedSince
	if len(w.inflight) > 0 && (t.IsZero() || w.inflight[0].since.Before(t)) {
		t = w.inflight[0].since
	}
	switch {
	case w.j == nil:
		// During Open the writer has no Journal yet; Open syncs before it
		// makes one.
	case t.IsZero():
		w.j.unsyncedNanos.Store(0)
	default:
		w.j.unsyncedNanos.Store(t.UnixNano())
	}
}

// syncAt is when records no job covers must be synced at the latest.
func (w *writer) syncAt() time.Time {
	at := w.unsyncedSince.Add(w.opts.SyncInterval)
	if w.syncRetryAt.After(at) {
		at = w.syncRetryAt
	}
	return at
}

// nextWake is when the writer must act on its own: a sync falling due or a
// checkpoint. Zero means nothing is scheduled (a finished sync wakes it
// anyway).
func (w *writer) nextWake() time.Time {
	var at time.Time
	if !w.unsyncedSince.IsZero() {
		at = w.syncAt()
	}
	if cp := w.cps.due(w.synced); !cp.IsZero() && (at.IsZero() || cp.Before(at)) {
		at = cp
	}
	if lw := w.logWake(); !lw.IsZero() && (at.IsZero() || lw.Before(at)) {
		at = lw
	}
	return at
}

// unixNanos is the time of n nanoseconds since the epoch; zero for 0.
func unixNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}
