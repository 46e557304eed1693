package journal

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/interlock/interlock/internal/testkit"
	"github.com/interlock/interlock/model"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func tempPath(t testing.TB) string {
	return filepath.Join(t.TempDir(), "journal.db")
}

func openT(t testing.TB, opts Options) *Journal {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	j, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", opts.Path, err)
	}
	t.Cleanup(func() { j.Close() })
	return j
}

func appendT(t testing.TB, j *Journal, rec model.Record, d model.Durability) uint64 {
	t.Helper()
	seq, err := j.Append(context.Background(), rec, d)
	if err != nil {
		t.Fatalf("Append(%s): %v", rec.Kind, err)
	}
	return seq
}

func verifyOK(t testing.TB, path string, wantEntries uint64) VerifyReport {
	t.Helper()
	rep, err := Verify(context.Background(), path, nil)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if !rep.OK || rep.Entries != wantEntries || rep.HeadSeq != wantEntries {
		t.Fatalf("Verify = %+v, want OK with %d entries", rep, wantEntries)
	}
	return rep
}

func allEntries(t testing.TB, path string) []Entry {
	t.Helper()
	var out []Entry
	if err := Entries(context.Background(), path, 0, func(e Entry) error {
		out = append(out, e)
		return nil
	}); err != nil {
		t.Fatalf("Entries: %v", err)
	}
	return out
}

// The body is specified byte for byte, so it is written out here by hand
// rather than built with the package's own encoder, and the hash is
// recomputed independently.
func TestEncodingIsExact(t *testing.T) {
	path := tempPath(t)
	j := openT(t, Options{Path: path})
	when := time.Date(2023, 11, 14, 22, 13, 20, 123456789, time.FixedZone("x", 3600))
	type data struct {
		B string `json:"b"`
		A int64  `json:"a"`
	}
	seq := appendT(t, j, model.Record{Kind: `k"<`, Session: "s1", Time: when, Data: data{B: "x&y", A: -7}}, model.Committed)
	if seq != 2 {
		t.Fatalf("first append got seq %d, want 2", seq)
	}
	appendT(t, j, model.Record{Kind: "nil.data"}, model.Committed)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}

	es := allEntries(t, path)
	if len(es) != 3 {
		t.Fatalf("got %d entries, want 3", len(es))
	}
	open := regexp.MustCompile(`^\{"v":1,"seq":1,"time":[0-9]+,"kind":"journal\.open","session":"","data":\{"journal_id":"([0-9a-f]{32})","encoding":1\}\}$`)
	m := open.FindSubmatch(es[0].Body)
	if m == nil {
		t.Fatalf("entry 1 body = %s", es[0].Body)
	}
	if string(m[1]) != j.ID() {
		t.Errorf("entry 1 journal id %s, Journal.ID() %s", m[1], j.ID())
	}
	want := `{"v":1,"seq":2,"time":1699996400123456789,"kind":"k\"\u003c","session":"s1","data":{"b":"x\u0026y","a":-7}}`
	if string(es[1].Body) != want {
		t.Errorf("entry 2 body\n got %s\nwant %s", es[1].Body, want)
	}
	if es[1].TimeNS != 1699996400123456789 || es[1].Kind != `k"<` || es[1].Session != "s1" {
		t.Errorf("entry 2 columns = %d %q %q", es[1].TimeNS, es[1].Kind, es[1].Session)
	}
	if !bytes.HasSuffix(es[2].Body, []byte(`,"kind":"nil.data","session":"","data":null}`)) {
		t.Errorf("entry 3 body = %s", es[2].Body)
	}
	prev := make([]byte, 32)
	for _, e := range es {
		h := sha256.Sum256(append(append([]byte{}, prev...), e.Body...))
		if !bytes.Equal(h[:], e.Hash) {
			t.Fatalf("entry %d hash %x, want %x", e.Seq, e.Hash, h)
		}
		prev = h[:]
	}
	rep := verifyOK(t, path, 3)
	if rep.HeadHash != hex.EncodeToString(prev) {
		t.Errorf("HeadHash %s, want %x", rep.HeadHash, prev)
	}
}

func TestConcurrentAppend(t *testing.T) {
	const goroutines, perG = 64, 200
	path := tempPath(t)
	j := openT(t, Options{Path: path})
	type key struct{ G, I int }
	var mu sync.Mutex
	bySeq := map[uint64]key{}
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			for i := range perG {
				d := model.Committed
				if (g+i)%4 == 0 {
					d = model.Synced
				}
				seq, err := j.Append(context.Background(), model.Record{Kind: "test", Session: fmt.Sprint("s", g), Data: key{g, i}}, d)
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				if prev, dup := bySeq[seq]; dup {
					mu.Unlock()
					errs <- fmt.Errorf("seq %d returned twice: %v and %v", seq, prev, key{g, i})
					return
				}
				bySeq[seq] = key{g, i}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	const n = goroutines * perG
	for s := uint64(2); s <= n+1; s++ {
		if _, ok := bySeq[s]; !ok {
			t.Fatalf("seq %d never returned (got %d seqs)", s, len(bySeq))
		}
	}
	if len(bySeq) != n {
		t.Fatalf("got %d distinct seqs, want %d", len(bySeq), n)
	}
	st := j.Stats()
	if st.Appends != n || st.LastSeq != n+1 || st.FailedBatches != 0 {
		t.Errorf("Stats = %+v", st)
	}
	if st.Batches >= n {
		t.Errorf("no group commit: %d batches for %d appends", st.Batches, n)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	verifyOK(t, path, n+1)
	// The seq each Append returned must be the entry holding its record.
	for _, e := range allEntries(t, path)[1:] {
		var b struct{ Data key }
		if err := json.Unmarshal(e.Body, &b); err != nil {
			t.Fatal(err)
		}
		if b.Data != bySeq[e.Seq] {
			t.Fatalf("entry %d holds %v, Append returned it for %v", e.Seq, b.Data, bySeq[e.Seq])
		}
	}
	t.Logf("%d appends in %d batches (%d fsync batches, %d idle syncs)", st.Appends, st.Batches, st.FsyncBatches, st.IdleSyncs)
}

// Two Journals on one file behave like two interlock processes without a
// daemon: each writer has its own connection and only SQLite's file lock
// orders them.
func TestTwoWritersOneFile(t *testing.T) {
	path := tempPath(t)
	a := openT(t, Options{Path: path})
	b := openT(t, Options{Path: path})
	if a.ID() != b.ID() || a.ID() == "" {
		t.Fatalf("journal ids %q and %q", a.ID(), b.ID())
	}
	const perWriter, goroutines = 300, 4
	var mu sync.Mutex
	var seqs []uint64
	var wg sync.WaitGroup
	for _, j := range []*Journal{a, b} {
		for g := range goroutines {
			wg.Go(func() {
				for i := range perWriter / goroutines {
					d := model.Committed
					if i%10 == 0 {
						d = model.Synced
					}
					seq, err := j.Append(context.Background(), model.Record{Kind: "test", Session: fmt.Sprint(j.ID()[:4], g), Data: i}, d)
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					seqs = append(seqs, seq)
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	sort.Slice(seqs, func(i, k int) bool { return seqs[i] < seqs[k] })
	for i, s := range seqs {
		if s != uint64(i)+2 {
			t.Fatalf("seqs not contiguous from 2: position %d holds %d", i, s)
		}
	}
	if a.Stats().Appends == 0 || b.Stats().Appends == 0 {
		t.Errorf("one writer did nothing: %+v %+v", a.Stats(), b.Stats())
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	verifyOK(t, path, 2*perWriter+1)
}

// Processes starting together on a fresh path must agree on one journal:
// exactly one of them writes entry 1.
func TestConcurrentCreate(t *testing.T) {
	path := tempPath(t)
	const n = 6
	js := make([]*Journal, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { js[i], errs[i] = Open(context.Background(), Options{Path: path, Logger: quietLogger()}) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("Open %d: %v", i, errs[i])
		}
		defer js[i].Close()
		if js[i].ID() != js[0].ID() {
			t.Errorf("journal ids differ: %s and %s", js[i].ID(), js[0].ID())
		}
		appendT(t, js[i], model.Record{Kind: "k"}, model.Committed)
	}
	for _, j := range js {
		j.Close()
	}
	verifyOK(t, path, n+1)
	opens := 0
	for _, e := range allEntries(t, path) {
		if e.Kind == model.KindJournalOpen {
			opens++
		}
	}
	if opens != 1 {
		t.Errorf("%d journal.open entries, want 1", opens)
	}
}

func TestReopenContinuesChain(t *testing.T) {
	path := filepath.Join(t.TempDir(), "new", "dir", "journal.db")
	j := openT(t, Options{Path: path})
	id := j.ID()
	appendT(t, j, model.Record{Kind: "a"}, model.Committed)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]os.FileMode{filepath.Dir(path): 0o750 | os.ModeDir, path: 0o640} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s mode %v, want %v", p, fi.Mode(), want)
		}
	}
	j = openT(t, Options{Path: path})
	if j.ID() != id {
		t.Errorf("reopened id %s, want %s", j.ID(), id)
	}
	if st := j.Stats(); st.LastSeq != 2 {
		t.Errorf("reopened LastSeq %d, want 2", st.LastSeq)
	}
	if seq := appendT(t, j, model.Record{Kind: "b"}, model.Synced); seq != 3 {
		t.Errorf("append after reopen got seq %d, want 3", seq)
	}
	j.Close()
	verifyOK(t, path, 3)
	es := allEntries(t, path)
	if es[0].Kind != model.KindJournalOpen || es[1].Kind != "a" || es[2].Kind != "b" {
		t.Errorf("kinds %s %s %s", es[0].Kind, es[1].Kind, es[2].Kind)
	}
}

func TestRefusesForeignDatabases(t *testing.T) {
	dir := t.TempDir()
	exec := func(path string, stmts ...string) {
		t.Helper()
		db, err := sql.Open("sqlite3", path)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		for _, s := range stmts {
			if _, err := db.Exec(s); err != nil {
				t.Fatalf("%s: %v", s, err)
			}
		}
	}

	future := filepath.Join(dir, "future.db")
	j := openT(t, Options{Path: future})
	j.Close()
	next := fmt.Sprint(SchemaVersion + 1)
	exec(future, `UPDATE meta SET value = `+next+` WHERE key = 'schema_version'`)
	if _, err := Open(context.Background(), Options{Path: future, Logger: quietLogger()}); err == nil || !strings.Contains(err.Error(), "unsupported schema version "+next) {
		t.Errorf("Open of schema v%s: %v", next, err)
	}
	if _, err := Verify(context.Background(), future, nil); err == nil || !strings.Contains(err.Error(), "unsupported schema version "+next) {
		t.Errorf("Verify of schema v%s: %v", next, err)
	}

	other := filepath.Join(dir, "other.db")
	exec(other, `CREATE TABLE t (x)`)
	if _, err := Open(context.Background(), Options{Path: other, Logger: quietLogger()}); err == nil || !strings.Contains(err.Error(), "not an interlock journal") {
		t.Errorf("Open of a foreign database: %v", err)
	}
	if _, err := ListSessions(context.Background(), other, SessionFilter{}); err == nil || !strings.Contains(err.Error(), "not an interlock journal") {
		t.Errorf("ListSessions of a foreign database: %v", err)
	}

	text := filepath.Join(dir, "text.db")
	if err := os.WriteFile(text, bytes.Repeat([]byte("not a database\n"), 100), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(context.Background(), Options{Path: text, Logger: quietLogger()}); err == nil {
		t.Error("Open of a text file succeeded")
	}
	if _, err := Verify(context.Background(), filepath.Join(dir, "missing.db"), nil); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Verify of a missing file: %v", err)
	}
	if _, err := Open(context.Background(), Options{Path: filepath.Join(dir, "x.db"), Sync: "sometimes"}); err == nil {
		t.Error("Open accepted sync mode \"sometimes\"")
	}
}

func TestRecordValidation(t *testing.T) {
	path := tempPath(t)
	j := openT(t, Options{Path: path})
	ctx := context.Background()
	bad := []struct {
		name string
		rec  model.Record
		is   error
	}{
		{"float", model.Record{Kind: "k", Data: map[string]any{"f": 1.5}}, ErrFloat},
		{"exponent", model.Record{Kind: "k", Data: []float64{1e21}}, ErrFloat},
		{"nested float", model.Record{Kind: "k", Data: map[string]any{"a": []any{"1.5", map[string]any{"b": -0.25}}}}, ErrFloat},
		{"json.Number", model.Record{Kind: "k", Data: json.Number("2.50")}, ErrFloat},
		{"no kind", model.Record{Data: 1}, nil},
		{"bad utf-8 session", model.Record{Kind: "k", Session: "\xff"}, nil},
		{"bad utf-8 raw data", model.Record{Kind: "k", Data: json.RawMessage("\"\x8a\"")}, nil},
		{"unmarshalable", model.Record{Kind: "k", Data: make(chan int)}, nil},
	}
	for _, c := range bad {
		_, err := j.Append(ctx, c.rec, model.Committed)
		if err == nil || (c.is != nil && !errors.Is(err, c.is)) {
			t.Errorf("%s: Append error = %v, want %v", c.name, err, c.is)
		}
	}
	if _, err := j.Append(ctx, model.Record{Kind: "k"}, model.Durability(7)); err == nil {
		t.Error("Append accepted durability 7")
	}
	// Numbers in strings, integers, and a float64 that marshals as an
	// integer carry no float token and are accepted.
	appendT(t, j, model.Record{Kind: "k", Data: map[string]any{"s": "1.5e3", "i": -12, "whole": 3.0, "t": true, "e": "E"}}, model.Committed)
	if st := j.Stats(); st.Appends != 1 {
		t.Errorf("rejected records reached the writer: %+v", st)
	}
	j.Close()
	verifyOK(t, path, 2)
}

func TestVerifyWhileWriting(t *testing.T) {
	path := tempPath(t)
	j := openT(t, Options{Path: path})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := j.Append(context.Background(), model.Record{Kind: "w", Data: "x"}, model.Committed); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	var last uint64
	for range 5 {
		var calls int
		rep, err := Verify(context.Background(), path, func(done, total uint64) {
			calls++
			if done > total {
				t.Errorf("progress %d/%d", done, total)
			}
		})
		if err != nil || !rep.OK {
			t.Fatalf("Verify during writes: %+v %v", rep, err)
		}
		if calls == 0 {
			t.Error("progress never called")
		}
		if rep.HeadSeq < last {
			t.Errorf("head went back from %d to %d", last, rep.HeadSeq)
		}
		last = rep.HeadSeq
		time.Sleep(5 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if last < 2 {
		t.Errorf("writers made no progress during Verify (head %d)", last)
	}
}

// waitFor polls often: its conditions are the writer's counters, cheap to
// read.
func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	testkit.WaitFor(t, 5*time.Second, time.Millisecond, cond)
}
