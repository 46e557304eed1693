package ship

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/hub/hubapi"
	"github.com/interlock/interlock/journal"
	"github.com/interlock/interlock/journal/evidence"
	"github.com/interlock/interlock/model"
)

type rig struct {
	j   *journal.Journal
	hub *testHub
	sh  *Shipper
	key *journal.Signer
}

func newRig(t *testing.T, batch int) *rig {
	t.Helper()
	dir := t.TempDir()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	j, err := journal.Open(context.Background(), journal.Options{Path: filepath.Join(dir, "journal.db"), HoldForHub: true, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	key, err := journal.LoadOrCreateKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	hub, srv := newTestHub(t, key.Verifier())
	st := &State{Dir: filepath.Join(dir, "hub"), HostID: "host-1", HubKey: hub.vkey}
	sh, err := New(Options{
		Journal: j, HostKey: key.Verifier(), State: st, Client: NewClientHTTP(srv.URL, srv.Client()),
		Config: config.Ship{HubURL: srv.URL, BatchEntries: batch, BatchBytes: 1 << 20,
			Interval: 5 * time.Millisecond, RetryMin: 5 * time.Millisecond, RetryMax: 40 * time.Millisecond},
		Logger: quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	return &rig{j: j, hub: hub, sh: sh, key: key}
}

func (r *rig) run(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.sh.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func (r *rig) append(t *testing.T, n int, payload bool) {
	t.Helper()
	for i := range n {
		rec := model.Record{Kind: model.KindSSHIO, Session: "s", Data: map[string]int{"i": i}}
		if payload {
			rec.Payload = fmt.Appendf(nil, "output %d", i)
		}
		if _, err := r.j.Append(context.Background(), rec, model.Synced); err != nil {
			t.Fatal(err)
		}
	}
}

func (r *rig) head(t *testing.T) int64 {
	t.Helper()
	st, err := journal.ReadShipState(context.Background(), r.j.Path())
	if err != nil {
		t.Fatal(err)
	}
	return st.Head
}

// caughtUp waits until the hub holds the whole journal and it stays so.
func (r *rig) caughtUp(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	stable := 0
	for stable < 5 {
		if time.Now().After(deadline) {
			t.Fatalf("the hub holds %d entries, the journal %d (status %+v)", r.hub.size(), r.head(t), r.sh.Status())
		}
		time.Sleep(20 * time.Millisecond)
		if r.hub.size() == r.head(t) {
			stable++
		} else {
			stable = 0
		}
	}
}

// checkHub compares what the hub holds with the journal, entry by entry,
// and that it was never sent an entry twice nor a gap.
func (r *rig) checkHub(t *testing.T, allowResend bool) {
	t.Helper()
	var local []journal.Entry
	if err := journal.Entries(context.Background(), r.j.Path(), 1, func(e journal.Entry) error {
		local = append(local, e)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	r.hub.mu.Lock()
	defer r.hub.mu.Unlock()
	if len(r.hub.entries) != len(local) {
		t.Fatalf("hub holds %d entries, journal %d", len(r.hub.entries), len(local))
	}
	for i, e := range local {
		h := r.hub.entries[i]
		if h.Seq != int64(e.Seq) || !bytes.Equal(h.Body, e.Body) || !bytes.Equal(h.Payload, e.Payload) || !bytes.Equal(h.Salt, e.Salt) {
			t.Fatalf("entry %d differs at the hub: %+v", e.Seq, h)
		}
	}
	if !allowResend {
		for i := 1; i < len(r.hub.froms); i++ {
			if r.hub.froms[i] <= r.hub.froms[i-1] {
				t.Fatalf("the hub was sent from %d after %d: a resend (froms %v)", r.hub.froms[i], r.hub.froms[i-1], r.hub.froms)
			}
		}
	}
}

// cosignatures reads the hub.cosignature entries and checks each note
// verifies with the journal's key and the hub's.
func (r *rig) cosignatures(t *testing.T) []model.HubCosignature {
	t.Helper()
	hubKey, err := evidence.NewCosignatureVerifier(r.hub.vkey)
	if err != nil {
		t.Fatal(err)
	}
	var out []model.HubCosignature
	err = journal.Entries(context.Background(), r.j.Path(), 1, func(e journal.Entry) error {
		if e.Kind != model.KindHubCosignature {
			return nil
		}
		p, err := evidence.ParseBody(e.Body)
		if err != nil {
			return err
		}
		var c model.HubCosignature
		if err := json.Unmarshal(p.Data, &c); err != nil {
			return err
		}
		cp, at, err := evidence.VerifyCosigned([]byte(c.Note), r.key.Verifier(), hubKey)
		if err != nil {
			return fmt.Errorf("entry %d: %w", e.Seq, err)
		}
		if cp.Size != c.Size || !bytes.Equal(cp.Root[:], c.Root) || at.UnixNano() != c.CosignedNS || int64(e.Seq) <= c.Size {
			return fmt.Errorf("entry %d: data %+v does not match its note (size %d, time %s)", e.Seq, c, cp.Size, at)
		}
		out = append(out, c)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// The real journal, shipped: entries in batches of at most 7, every
// batch with a checkpoint the journal signed of exactly its end, whose
// root the hub recomputed from the entries; every cosignature journaled
// and verifying; the chain still verifies; and once caught up the
// shipper stops (a cosignature entry does not call for another).
func TestShipsRealJournal(t *testing.T) {
	r := newRig(t, 7)
	r.append(t, 30, true)
	r.run(t)
	r.caughtUp(t)
	r.append(t, 11, false)
	r.caughtUp(t)
	r.checkHub(t, false)

	r.hub.mu.Lock()
	batches := slices.Clone(r.hub.batches)
	entries := slices.Clone(r.hub.entries)
	r.hub.mu.Unlock()
	// The batches that hold an entry other than a hub.cosignature: each
	// gets exactly one cosignature entry; the others none.
	journaled := 0
	for i, from := range batchStarts(batches) {
		for _, e := range entries[from-1 : batches[i].Size] {
			if body, err := evidence.ParseBody(e.Body); err != nil {
				t.Fatal(err)
			} else if body.Kind != model.KindHubCosignature {
				journaled++
				break
			}
		}
	}
	prev := int64(0)
	for _, cp := range batches {
		if cp.Size-prev > 7 || cp.Size <= prev {
			t.Errorf("batch %d..%d: want 1 to 7 entries", prev+1, cp.Size)
		}
		if _, err := evidence.ParseCheckpoint(cp.Note, r.key.Verifier()); err != nil {
			t.Errorf("checkpoint of size %d: %v", cp.Size, err)
		}
		prev = cp.Size
	}
	cos := r.cosignatures(t)
	if len(cos) < 6 {
		t.Fatalf("%d hub.cosignature entries for %d batches", len(cos), len(batches))
	}
	// Only a batch of cosignature entries alone goes unjournaled.
	if got := len(cos); got != journaled {
		t.Errorf("%d cosignatures journaled for %d batches, %d of which hold other entries", got, len(batches), journaled)
	}
	head := r.head(t)
	time.Sleep(100 * time.Millisecond)
	if r.head(t) != head {
		t.Errorf("the journal grew from %d to %d while idle: cosignatures call for cosignatures", head, r.head(t))
	}
	st := r.sh.Status()
	if st.HubSize != head || st.CosignedSize != head || st.LastSuccess.IsZero() || len(st.Errors) != 0 {
		t.Errorf("status %+v, want hub and cosigned size %d and no errors", st, head)
	}
	ss, err := journal.ReadShipState(context.Background(), r.j.Path())
	if err != nil || ss.Behind != 0 {
		t.Errorf("ReadShipState = %+v, %v: want nothing behind", ss, err)
	}

	// Retention holds nothing back once all is cosigned, and the chain,
	// with its hub.cosignature entries and the checkpoints signed for
	// the batches, verifies.
	if res, err := r.j.PrunePayloads(context.Background(), time.Now().Add(time.Hour)); err != nil || res.Deleted != 30 {
		t.Errorf("PrunePayloads = %+v, %v; want the 30 cosigned payloads", res, err)
	}
	r.j.Close()
	rep, err := journal.Verify(context.Background(), r.j.Path(), nil)
	if err != nil || !rep.OK {
		t.Fatalf("Verify = %+v, %v", rep, err)
	}
}

// The hub accepted a batch but its answer was lost: the shipper reads the
// head again and goes on after it, never resending what the hub holds.
func TestResumesAfterLostAnswer(t *testing.T) {
	r := newRig(t, 5)
	lost := 2
	r.hub.after = func(w http.ResponseWriter) bool {
		if lost == 0 {
			return false
		}
		lost--
		w.WriteHeader(http.StatusBadGateway)
		return true
	}
	r.append(t, 23, true)
	r.run(t)
	r.caughtUp(t)
	r.checkHub(t, false)
	if got := r.sh.Status().Errors[CodeHTTP]; got != 2 {
		t.Errorf("errors %v, want 2 http", r.sh.Status().Errors)
	}
}

// A hub that lost its last batches (restored from a backup) refuses the
// next as not_contiguous with its head: the shipper resumes from that
// head and resends exactly what the hub lacks, in order.
func TestResumesFromNotContiguous(t *testing.T) {
	r := newRig(t, 4)
	r.append(t, 12, false)
	r.run(t)
	r.caughtUp(t)
	r.hub.mu.Lock()
	keep := int64(5)
	r.hub.leaves, r.hub.entries = r.hub.leaves[:keep], r.hub.entries[:keep]
	r.hub.cosigned = keep
	r.hub.mu.Unlock()
	r.append(t, 6, false)
	r.caughtUp(t)
	r.checkHub(t, true)
	r.hub.mu.Lock()
	froms := slices.Clone(r.hub.froms)
	r.hub.mu.Unlock()
	i := slices.Index(froms, keep+1)
	if i < 1 || froms[i-1] <= keep+1 {
		t.Fatalf("froms %v: want a refused batch past the restored head, then %d", froms, keep+1)
	}
	if got := r.sh.Status().Errors[hubapi.CodeNotContiguous]; got != 1 {
		t.Errorf("errors %v, want one not_contiguous", r.sh.Status().Errors)
	}
}

// While the hub is down or refuses, the shipper retries the same batch
// with growing waits, counts each failure by code, skips nothing, and
// ships the backlog in order when the hub is back.
func TestBacksOffAndShipsBacklog(t *testing.T) {
	r := newRig(t, 6)
	var tries []time.Time
	refusals := 3
	r.hub.before = func(w http.ResponseWriter, req *http.Request) bool {
		if req.URL.Path != hubapi.PathBatches {
			return false
		}
		tries = append(tries, time.Now())
		switch {
		case len(tries) <= 4:
			// Down: the connection is dropped without an answer.
			hj, _ := w.(http.Hijacker)
			c, _, _ := hj.Hijack()
			c.Close()
			return true
		case refusals > 0:
			refusals--
			r.hub.froms = append(r.hub.froms, 1)
			r.hub.refuse(w, 400, hubapi.CodeBadEntry, "refused for the test")
			return true
		}
		return false
	}
	r.append(t, 20, true)
	r.run(t)
	r.caughtUp(t)
	r.checkHub(t, true)
	r.hub.mu.Lock()
	froms := slices.Clone(r.hub.froms)
	gaps := []time.Duration{}
	for i := 1; i < 4; i++ {
		gaps = append(gaps, tries[i].Sub(tries[i-1]))
	}
	r.hub.mu.Unlock()
	// The refused batch was sent again from 1, then the rest in order.
	if !slices.Equal(froms[:4], []int64{1, 1, 1, 1}) || !slices.IsSorted(froms[3:]) {
		t.Errorf("froms %v: want 1 refused three times, then in order", froms)
	}
	// Only lower bounds: a loaded machine may add to a wait, never take
	// from it (TestBackoff checks the upper bounds).
	for i, g := range gaps {
		if lo := (5 * time.Millisecond << i) / 2; g < lo {
			t.Errorf("wait %d between tries %s, want at least %s (doubling from retry_min 5ms, jittered): %v", i+1, g, lo, gaps)
		}
	}
	errs := r.sh.Status().Errors
	if errs[CodeUnreachable] != 4 || errs[hubapi.CodeBadEntry] != 3 {
		t.Errorf("errors %v, want 4 unreachable and 3 bad_entry", errs)
	}
}

func TestBackoff(t *testing.T) {
	lo, hi := 100*time.Millisecond, time.Second
	for n, want := range []time.Duration{0, 100, 200, 400, 800, 1000, 1000} {
		if n == 0 {
			continue
		}
		want *= time.Millisecond
		for range 50 {
			if d := backoff(lo, hi, n); d < want/2 || d > want {
				t.Fatalf("backoff(%d) = %s, want within [%s, %s]", n, d, want/2, want)
			}
		}
	}
}

// batchStarts is the first seq of each accepted batch, in order.
func batchStarts(batches []evidence.Checkpoint) []int64 {
	out := make([]int64, len(batches))
	prev := int64(0)
	for i, cp := range batches {
		out[i] = prev + 1
		prev = cp.Size
	}
	return out
}
