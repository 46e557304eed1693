package journal

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/interlock/interlock/model"
)

func TestDurabilityLevels(t *testing.T) {
	const interval = 300 * time.Millisecond
	path := tempPath(t)
	j := openT(t, Options{Path: path, SyncInterval: interval})

	appendT(t, j, model.Record{Kind: "synced"}, model.Synced)
	if st := j.Stats(); st.FsyncBatches != 1 || st.Batches != 1 {
		t.Fatalf("after a Synced append: %+v, want 1 fsync batch", st)
	}

	committedAt := time.Now()
	appendT(t, j, model.Record{Kind: "committed"}, model.Committed)
	if st := j.Stats(); st.FsyncBatches != 1 || st.IdleSyncs != 0 || st.Batches != 2 {
		t.Fatalf("right after a Committed append: %+v, want no new sync", st)
	}
	time.Sleep(interval / 3)
	if st := j.Stats(); st.IdleSyncs != 0 {
		t.Fatalf("synced %v after a Committed append, before the %v interval: %+v", time.Since(committedAt), interval, st)
	}
	waitFor(t, func() bool { return j.Stats().IdleSyncs == 1 })
	if waited := time.Since(committedAt); waited < interval {
		t.Errorf("idle sync came after %v, before the %v interval", waited, interval)
	}
	// Once synced, nothing is pending: no further syncs while idle.
	time.Sleep(2 * interval)
	if st := j.Stats(); st.IdleSyncs != 1 || st.FsyncBatches != 1 {
		t.Errorf("idle journal kept syncing: %+v", st)
	}

	// A Synced record makes its batch an fsync batch, which also covers the
	// Committed records before it: no idle sync is needed afterwards.
	appendT(t, j, model.Record{Kind: "committed"}, model.Committed)
	appendT(t, j, model.Record{Kind: "synced"}, model.Synced)
	if st := j.Stats(); st.FsyncBatches != 2 {
		t.Fatalf("second Synced append: %+v", st)
	}
	time.Sleep(interval + interval/2)
	if st := j.Stats(); st.IdleSyncs != 1 {
		t.Errorf("idle sync after an fsync batch already covered it: %+v", st)
	}
	j.Close()
	verifyOK(t, path, 5)
}

func TestSyncAlways(t *testing.T) {
	path := tempPath(t)
	j := openT(t, Options{Path: path, Sync: SyncAlways, SyncInterval: time.Hour})
	for range 3 {
		appendT(t, j, model.Record{Kind: "committed"}, model.Committed)
	}
	if st := j.Stats(); st.FsyncBatches != st.Batches || st.Batches == 0 {
		t.Fatalf("sync always: %+v, want every batch fsynced", st)
	}
}

// A batch that finds committed data older than the interval carries the
// fsync itself instead of leaving it to the timer.
func TestOverdueBatchSyncs(t *testing.T) {
	const interval = 50 * time.Millisecond
	path := tempPath(t)
	batches := 0
	// Runs in the writer goroutine: the writer sits in it instead of in
	// its select, so the timer cannot sync first.
	hook := func() {
		batches++
		if batches == 2 {
			time.Sleep(2 * interval)
		}
	}
	j := openT(t, Options{Path: path, SyncInterval: interval, beforeBatch: hook})
	appendT(t, j, model.Record{Kind: "committed"}, model.Committed)
	if st := j.Stats(); st.FsyncBatches != 0 {
		t.Fatalf("first Committed append was fsynced: %+v", st)
	}
	appendT(t, j, model.Record{Kind: "committed"}, model.Committed)
	// The Committed append returns at its commit; the fsync its batch
	// carries follows.
	waitFor(t, func() bool { return j.Stats().FsyncBatches == 1 })
	if st := j.Stats(); st.IdleSyncs != 0 {
		t.Fatalf("overdue batch: %+v, want it fsynced and no idle sync", st)
	}
}

// Another process holding the write lock longer than the busy timeout makes
// the batch fail: every Append in it errors, the journal is unchanged, and
// appends work again once the lock is gone.
func TestFailClosedWhileLocked(t *testing.T) {
	path := tempPath(t)
	j := openT(t, Options{Path: path, BusyTimeout: 100 * time.Millisecond, FlushInterval: -1})
	appendT(t, j, model.Record{Kind: "before"}, model.Synced)

	other, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=1000")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	lock, err := other.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if _, err := lock.ExecContext(context.Background(), `BEGIN IMMEDIATE`); err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() {
			d := model.Committed
			if i%2 == 0 {
				d = model.Synced
			}
			_, errs[i] = j.Append(context.Background(), model.Record{Kind: "refused"}, d)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err == nil || !strings.Contains(err.Error(), "record not written") {
			t.Errorf("Append %d while locked: %v", i, err)
		}
	}
	st := j.Stats()
	if st.FailedBatches == 0 || st.LastSeq != 2 || st.Appends != 1 {
		t.Errorf("after refused appends: %+v", st)
	}

	if _, err := lock.ExecContext(context.Background(), `ROLLBACK`); err != nil {
		t.Fatal(err)
	}
	if seq := appendT(t, j, model.Record{Kind: "after"}, model.Committed); seq != 3 {
		t.Errorf("first append after the lock: seq %d, want 3", seq)
	}
	j.Close()
	verifyOK(t, path, 3)
}

// A failure in the middle of a batch rolls the whole batch back: the record
// that did insert must not survive, and nothing is half-written.
func TestFailedBatchRollsBack(t *testing.T) {
	path := tempPath(t)
	g := newGate()
	j := openT(t, Options{Path: path, beforeBatch: g.hook, FlushInterval: -1})

	db, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE TRIGGER boom BEFORE INSERT ON entries WHEN NEW.kind = 'boom' BEGIN SELECT RAISE(ABORT, 'boom refused'); END`); err != nil {
		t.Fatal(err)
	}

	type res struct {
		seq uint64
		err error
	}
	okRes, boomRes := make(chan res, 1), make(chan res, 1)
	go func() {
		seq, err := j.Append(context.Background(), model.Record{Kind: "fine"}, model.Committed)
		okRes <- res{seq, err}
	}()
	<-g.entered
	go func() {
		seq, err := j.Append(context.Background(), model.Record{Kind: "boom"}, model.Committed)
		boomRes <- res{seq, err}
	}()
	waitFor(t, func() bool { return len(j.reqs) == 1 })
	close(g.release)
	r1, r2 := <-okRes, <-boomRes
	if r1.err == nil || r2.err == nil || !strings.Contains(r2.err.Error(), "boom refused") {
		t.Fatalf("batch with a failing record: %+v %+v, want both refused", r1, r2)
	}
	if st := j.Stats(); st.LastSeq != 1 || st.Appends != 0 || st.FailedBatches != 1 {
		t.Errorf("after the failed batch: %+v", st)
	}
	verifyOK(t, path, 1)

	if _, err := db.Exec(`DROP TRIGGER boom`); err != nil {
		t.Fatal(err)
	}
	if seq := appendT(t, j, model.Record{Kind: "fine"}, model.Synced); seq != 2 {
		t.Errorf("append after the failure: seq %d, want 2", seq)
	}
	j.Close()
	verifyOK(t, path, 2)
}

func TestAppendErrorsAfterClose(t *testing.T) {
	j := openT(t, Options{Path: tempPath(t)})
	j.Close()
	if _, err := j.Append(context.Background(), model.Record{Kind: "k"}, model.Synced); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close: %v", err)
	}
}

// A batch is inserted in statements of power-of-two sizes up to
// maxInsertRows; every size and remainder must chain and store each
// entry's own body, payload and tree.
func TestInsertChunks(t *testing.T) {
	path := tempPath(t)
	j := openT(t, Options{Path: path})
	want := []string{model.KindJournalOpen}
	withPayload := map[string]bool{}
	for _, n := range []int{1, 2, 3, 7, 8, 9, 255, 256, 257, 511, 700} {
		batch := make([]*request, n)
		for i := range batch {
			rec := model.Record{Kind: fmt.Sprintf("k%d-%d", n, i), Session: "s", Data: i}
			if i%3 == 0 {
				rec.Payload = []byte(rec.Kind)
				withPayload[rec.Kind] = true
			}
			enc, err := encodeRecord(rec)
			if err != nil {
				t.Fatal(err)
			}
			batch[i] = &request{rec: enc}
			want = append(want, rec.Kind)
		}
		if err := j.control(context.Background(), func(w *writer) error {
			_, err := w.commit(batch)
			return err
		}); err != nil {
			t.Fatalf("batch of %d: %v", n, err)
		}
	}
	j.Close()
	verifyOK(t, path, uint64(len(want)))
	for i, e := range allEntries(t, path) {
		if e.Kind != want[i] {
			t.Fatalf("entry %d is %s, want %s", e.Seq, e.Kind, want[i])
		}
		if withPayload[e.Kind] != (e.Payload != nil) || (e.Payload != nil && string(e.Payload) != e.Kind) {
			t.Fatalf("entry %d (%s) has payload %q", e.Seq, e.Kind, e.Payload)
		}
	}
}
