package journal

import (
	"context"
	"testing"
	"time"

	"github.com/interlock/interlock/model"
)

// TestStatsQueueAndSyncLag: Stats shows the records waiting for a held
// writer, when the oldest committed record still waits for its fsync, and
// zero once it is synced (the metrics journal_queue_depth and
// journal_sync_lag_seconds read them).
func TestStatsQueueAndSyncLag(t *testing.T) {
	const interval = 300 * time.Millisecond
	g := newGate()
	j := openT(t, Options{Path: tempPath(t), SyncInterval: interval, beforeBatch: g.hook})
	if st := j.Stats(); st.Queued != 0 || !st.UnsyncedSince.IsZero() {
		t.Fatalf("fresh journal: queued %d, unsynced since %v", st.Queued, st.UnsyncedSince)
	}
	go j.Append(context.Background(), model.Record{Kind: "hold"}, model.Committed)
	<-g.entered
	for range 3 {
		j.Post(model.Record{Kind: "waiting"})
	}
	if st := j.Stats(); st.Queued != 3 {
		t.Errorf("three posts behind a held writer: queued %d, want 3", st.Queued)
	}
	handed := time.Now()
	close(g.release)
	waitFor(t, func() bool { return j.Stats().PostWritten == 3 })
	st := j.Stats()
	if st.Queued != 0 {
		t.Errorf("after the writer drained: queued %d", st.Queued)
	}
	if st.FsyncBatches+st.IdleSyncs == 0 && (st.UnsyncedSince.IsZero() || st.UnsyncedSince.After(handed)) {
		t.Errorf("committed, not yet synced: unsynced since %v, want a time before %v", st.UnsyncedSince, handed)
	}
	waitFor(t, func() bool { return j.Stats().UnsyncedSince.IsZero() })
	if st := j.Stats(); st.FsyncBatches+st.IdleSyncs == 0 {
		t.Errorf("unsynced time cleared with no sync: %+v", st)
	}
}
