package journal

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/interlock/interlock/model"
)

// Posted records land in order, with Appends, and Close writes what is
// still queued.
func TestPostIsWritten(t *testing.T) {
	path := tempPath(t)
	j := openT(t, Options{Path: path})
	for i := range 100 {
		j.Post(model.Record{Kind: model.KindSSHIO, Session: "s", Data: model.SSHIO{Stream: "o", OffsetNS: int64(i)}, Payload: []byte{byte(i)}})
	}
	appendT(t, j, model.Record{Kind: "after"}, model.Synced)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	st := j.Stats()
	if st.Posted != 100 || st.PostWritten != 100 || st.PostLost != 0 || st.Gaps != 0 {
		t.Fatalf("stats %+v", st)
	}
	es := allEntries(t, path)
	if len(es) != 102 {
		t.Fatalf("%d entries, want 102", len(es))
	}
	// Posts from one goroutine keep their order, and their payloads.
	for i, e := range es[1:101] {
		var b struct{ Data model.SSHIO }
		if err := json.Unmarshal(e.Body, &b); err != nil {
			t.Fatal(err)
		}
		if b.Data.OffsetNS != int64(i) || len(e.Payload) != 1 || e.Payload[0] != byte(i) {
			t.Fatalf("entry %d holds offset %d payload %v, want %d", e.Seq, b.Data.OffsetNS, e.Payload, i)
		}
	}
	rep := verifyOK(t, path, 102)
	if rep.Payloads != 100 {
		t.Errorf("verify checked %d payloads, want 100", rep.Payloads)
	}
}

// A full queue never blocks Post: what does not fit is counted and
// written as one journal.gap entry with the count by kind.
func TestPostOverflowWritesGap(t *testing.T) {
	path := tempPath(t)
	g := newGate()
	j := openT(t, Options{Path: path, PostQueue: 8, beforeBatch: g.hook})
	// Hold the writer inside a batch so the post queue cannot drain.
	go j.Append(context.Background(), model.Record{Kind: "hold"}, model.Committed)
	<-g.entered
	start := time.Now()
	for i := range 20 {
		kind := model.KindSSHIO
		if i%2 == 1 {
			kind = model.KindSSHResize
		}
		j.Post(model.Record{Kind: kind, Session: "s", Data: i})
	}
	j.Post(model.Record{Kind: "bad", Data: 1.5}) // cannot be encoded: counted too
	if d := time.Since(start); d > time.Second {
		t.Errorf("Post blocked for %v with the writer stuck", d)
	}
	close(g.release)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	st := j.Stats()
	if st.PostWritten != 8 || st.PostLost != 13 || st.Gaps != 1 {
		t.Fatalf("stats %+v, want 8 written, 13 lost, 1 gap", st)
	}
	var gaps []model.Gap
	for _, e := range allEntries(t, path) {
		if e.Kind == model.KindGap {
			var b struct{ Data model.Gap }
			if err := json.Unmarshal(e.Body, &b); err != nil {
				t.Fatal(err)
			}
			gaps = append(gaps, b.Data)
		}
	}
	if len(gaps) != 1 || gaps[0].Lost != 13 || gaps[0].Kinds["bad"] != 1 || gaps[0].Kinds[model.KindSSHIO]+gaps[0].Kinds[model.KindSSHResize] != 12 {
		t.Fatalf("gap entries %+v", gaps)
	}
	verifyOK(t, path, uint64(1+1+8+1))
}

// A posted record is fsynced within the sync interval counted from Post,
// even when it was committed late.
func TestPostSyncDeadlineCountsFromPost(t *testing.T) {
	const interval = 200 * time.Millisecond
	path := tempPath(t)
	g := newGate()
	j := openT(t, Options{Path: path, SyncInterval: interval, beforeBatch: g.hook})
	go j.Append(context.Background(), model.Record{Kind: "hold"}, model.Committed)
	<-g.entered
	posted := time.Now()
	j.Post(model.Record{Kind: "late"})
	// The writer is held for most of the interval; the posted record waits.
	time.Sleep(interval * 3 / 4)
	close(g.release)
	waitFor(t, func() bool { return j.Stats().PostWritten == 1 })
	waitFor(t, func() bool { st := j.Stats(); return st.FsyncBatches+st.IdleSyncs > 0 })
	synced := time.Since(posted)
	// Counting from the commit would sync only at ~1.75 intervals.
	if synced > interval+interval/2 {
		t.Errorf("posted record synced %v after Post; the bound is %v", synced, interval)
	}
}

// Records posted just before an Append share its transaction; an Append
// never waits for the linger of posted records.
func TestPostLingerAndAppendLatency(t *testing.T) {
	path := tempPath(t)
	j := openT(t, Options{Path: path, PostLinger: 50 * time.Millisecond, SyncInterval: time.Second})
	appendT(t, j, model.Record{Kind: "warm"}, model.Committed)
	before := j.Stats().Batches
	j.Post(model.Record{Kind: model.KindSessionClose, Session: "a"})
	time.Sleep(5 * time.Millisecond) // the writer now lingers on the post
	start := time.Now()
	appendT(t, j, model.Record{Kind: model.KindSessionOpen, Session: "b"}, model.Committed)
	if d := time.Since(start); d > 40*time.Millisecond {
		t.Errorf("Append waited %v behind a lingering post batch", d)
	}
	if got := j.Stats().Batches - before; got != 1 {
		t.Errorf("close and open took %d batches, want 1 shared transaction", got)
	}
	j.Close()
	verifyOK(t, path, 4)
}

func TestPostAfterCloseIsCounted(t *testing.T) {
	j := openT(t, Options{Path: tempPath(t)})
	j.Close()
	j.Post(model.Record{Kind: "late"})
	if st := j.Stats(); st.PostLost != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestPostBoundedInBytes: big posted records are bounded by bytes, not
// only by count; what does not fit is counted in a gap entry.
func TestPostBoundedInBytes(t *testing.T) {
	j := openT(t, Options{Path: tempPath(t)})
	big := make([]byte, MaxPayload)
	n := int(MaxPostQueueBytes/int64(len(big))) * 4
	for i := 0; i < n; i++ {
		j.Post(model.Record{Kind: model.KindSSHIO, Session: "s", Data: model.SSHIO{Stream: "o", Bytes: len(big)}, Payload: big})
	}
	if held := j.postBytes.Load(); held > MaxPostQueueBytes {
		t.Errorf("%d bytes queued, over the %d bound", held, MaxPostQueueBytes)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	st := j.Stats()
	if st.PostWritten+st.PostLost != uint64(n) || st.PostLost == 0 {
		t.Errorf("posted %d: written %d, lost %d", n, st.PostWritten, st.PostLost)
	}
	if j.postBytes.Load() != 0 {
		t.Errorf("%d bytes still counted after Close", j.postBytes.Load())
	}
}
