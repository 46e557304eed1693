package journal

import (
	"context"
	"errors"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/interlock/interlock/journal/evidence"
	"github.com/interlock/interlock/model"
)

// A shipper gets checkpoints ending where its batches end: of exactly the
// size asked while it is synced, never beyond what is synced, each with
// the root of that tree, stored so verify checks it too.
func TestCheckpointAt(t *testing.T) {
	path := tempPath(t)
	j := openT(t, Options{Path: path})
	for range 9 {
		appendT(t, j, model.Record{Kind: "x"}, model.Synced)
	}
	ctx := context.Background()
	snapRoot := func(n int64) tlog.Hash {
		s, err := OpenSnapshot(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		h, err := tlog.TreeHash(n, s.HashReader())
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	key, err := LoadOrCreateKey(j.opts.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ ask, want int64 }{{3, 3}, {1, 1}, {10, 10}, {10, 10}, {7, 7}, {100, 10}} {
		cp, err := j.CheckpointAt(ctx, c.ask)
		if err != nil {
			t.Fatalf("CheckpointAt(%d): %v", c.ask, err)
		}
		if cp.Size != c.want || cp.Root != snapRoot(c.want) {
			t.Fatalf("CheckpointAt(%d) = size %d root %x, want size %d root %x", c.ask, cp.Size, cp.Root, c.want, snapRoot(c.want))
		}
		if _, err := evidence.ParseCheckpoint(cp.Note, key.Verifier()); err != nil {
			t.Fatalf("CheckpointAt(%d): %v", c.ask, err)
		}
	}
	if _, err := j.CheckpointAt(ctx, 0); !errors.Is(err, ErrNoCheckpoint) {
		t.Fatalf("CheckpointAt(0) = %v, want ErrNoCheckpoint", err)
	}
	j.Close()
	rep := verifyOK(t, path, 10)
	if rep.Checkpoints < 5 {
		t.Errorf("verify checked %d checkpoints; the ones CheckpointAt signed should be stored", rep.Checkpoints)
	}
}

// With HoldForHub, retention deletes no payload above the size the newest
// hub.cosignature covers: what the hub has not witnessed stays whole. The
// chain still verifies; without a cosignature nothing is deleted.
func TestPruneHoldsForHub(t *testing.T) {
	path := tempPath(t)
	j := openT(t, Options{Path: path, HoldForHub: true})
	ctx := context.Background()
	old := time.Now().Add(-48 * time.Hour)
	for i := range 6 {
		appendT(t, j, model.Record{Kind: model.KindSSHIO, Session: "s", Time: old.Add(time.Duration(i)), Payload: []byte("old output")}, model.Committed)
	}
	cut := time.Now().Add(-24 * time.Hour)
	if res, err := j.PrunePayloads(ctx, cut); err != nil || res.Deleted != 0 {
		t.Fatalf("PrunePayloads with no cosignature = %+v, %v; want nothing deleted", res, err)
	}
	// The hub cosigned entries 1..4 (entry 1 is journal.open).
	appendT(t, j, model.Record{Kind: model.KindHubCosignature, Data: model.HubCosignature{Size: 4, HubKey: "hub", Note: "n"}}, model.Synced)
	res, err := j.PrunePayloads(ctx, cut)
	if err != nil || res.Deleted != 3 {
		t.Fatalf("PrunePayloads = %+v, %v; want the 3 payloads of entries 2..4", res, err)
	}
	for _, e := range allEntries(t, path) {
		if e.Kind != model.KindSSHIO {
			continue
		}
		if held := e.Seq > 4; held != (e.Payload != nil) {
			t.Errorf("entry %d payload %q: held above the cosigned size 4 = %v", e.Seq, e.Payload, held)
		}
	}
	st, err := ReadShipState(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	// 2..7 are ssh.io, 8 the cosignature, 9 the retention entry.
	if st.Head != 9 || st.Cosigned.Size != 4 || st.CosignatureSeq != 8 || st.Behind != 4 {
		t.Errorf("ReadShipState = %+v; want head 9, cosigned 4 at entry 8, 4 behind (5, 6, 7, 9)", st)
	}
	j.Close()
	verifyOK(t, path, 9)

	// Without the hold (shipping not configured) retention reaches the head.
	j = openT(t, Options{Path: path})
	if res, err := j.PrunePayloads(ctx, cut); err != nil || res.Deleted != 3 {
		t.Fatalf("PrunePayloads without the hold = %+v, %v; want the 3 held payloads", res, err)
	}
}

// TestCheckpointAtRightAfterSynced: an append that returned synced is
// one CheckpointAt vouches for at once (the syncer hands its result to
// the writer before it answers the appender).
func TestCheckpointAtRightAfterSynced(t *testing.T) {
	j := openT(t, Options{Path: tempPath(t)})
	ctx := context.Background()
	for i := range 200 {
		seq := appendT(t, j, model.Record{Kind: "x"}, model.Synced)
		cp, err := j.CheckpointAt(ctx, int64(seq))
		if err != nil || cp.Size != int64(seq) {
			t.Fatalf("append %d: seq %d synced, CheckpointAt gave size %d (%v)", i, seq, cp.Size, err)
		}
	}
}
