package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/interlock/interlock/journal/evidence"
	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/test/e2e/pgtest"
)

// One PostgreSQL serves the package's tests; each test gets a database.
var pg pgtest.Shared

func TestMain(m *testing.M) {
	code := m.Run()
	pg.Stop()
	os.Exit(code)
}

func newDB(t *testing.T) string {
	t.Helper()
	return pg.NewDB(t, "store")
}

func openStore(t *testing.T, conn string) *Store {
	t.Helper()
	s, err := Open(context.Background(), conn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func enrol(t *testing.T, s *Store, id string) Host {
	t.Helper()
	tok := []byte("token-of-" + id)
	if err := s.AddToken(context.Background(), tok, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	h := Host{ID: id, Name: id, JournalID: strings.Repeat("a", 30) + id[len(id)-2:], JournalKey: "k", CertFingerprint: "fp", EnrolledAt: time.Now()}
	if err := s.Enroll(context.Background(), tok, h); err != nil {
		t.Fatal(err)
	}
	return h
}

// TestMigrate: Open creates the schema once, a second Open (or several at
// once) finds it, and a newer schema is refused.
func TestMigrate(t *testing.T) {
	conn := newDB(t)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := Open(context.Background(), conn)
			if err == nil {
				s.Close()
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Errorf("concurrent Open: %v", err)
		}
	}
	s := openStore(t, conn)
	if n, root, err := s.FleetHead(context.Background()); err != nil || n != 0 || root != emptyRoot() {
		t.Errorf("fresh fleet head %d %v %v", n, root, err)
	}
	if _, err := s.pool.Exec(context.Background(), `UPDATE hub_schema SET version = 99`); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(context.Background(), conn); err == nil || !strings.Contains(err.Error(), "schema version 99") {
		t.Errorf("Open on a newer schema = %v", err)
	}
}

// TestMigrateFromVersion1: a database a hub of schema 1 made (foreign
// keys from entries and tree_hashes to hosts) is upgraded at Open: the
// keys are gone, what it held is kept, and batches are stored after it.
func TestMigrateFromVersion1(t *testing.T) {
	conn := newDB(t)
	ctx := context.Background()
	s := openStore(t, conn)
	// Back to what version 1 made, with a host that shipped a batch.
	if _, err := s.pool.Exec(ctx, `ALTER TABLE entries ADD CONSTRAINT entries_host_id_fkey FOREIGN KEY (host_id) REFERENCES hosts;
		ALTER TABLE tree_hashes ADD CONSTRAINT tree_hashes_host_id_fkey FOREIGN KEY (host_id) REFERENCES hosts;
		DROP TABLE operations; DROP INDEX sessions_session; `+dropVersion4+`
		UPDATE hub_schema SET version = 1`); err != nil {
		t.Fatal(err)
	}
	h := enrol(t, s, "host-01")
	if _, err := s.Batch(ctx, h.ID, func(st HostState) (*Accepted, error) { return batchOf(st, 3), nil }); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s = openStore(t, conn)
	var v, fks int
	if err := s.pool.QueryRow(ctx, `SELECT version FROM hub_schema`).Scan(&v); err != nil || v != SchemaVersion {
		t.Errorf("schema version %d (%v), want %d", v, err, SchemaVersion)
	}
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND conrelid IN ('entries'::regclass, 'tree_hashes'::regclass)`).Scan(&fks); err != nil || fks != 0 {
		t.Errorf("%d foreign keys left on entries and tree_hashes (%v)", fks, err)
	}
	after, err := s.Batch(ctx, h.ID, func(st HostState) (*Accepted, error) { return batchOf(st, 2), nil })
	if err != nil || after.Size != 5 {
		t.Fatalf("batch after the upgrade: size %d, %v", after.Size, err)
	}
}

// TestMigrateFromVersion2: the upgrade to schema 3 indexes the
// operations among the entries a hub of schema 2 stored (and nothing
// else), and batches index theirs after it.
func TestMigrateFromVersion2(t *testing.T) {
	conn := newDB(t)
	ctx := context.Background()
	s := openStore(t, conn)
	if _, err := s.pool.Exec(ctx, `DROP TABLE operations; DROP INDEX sessions_session; `+dropVersion4+` UPDATE hub_schema SET version = 2`); err != nil {
		t.Fatal(err)
	}
	h := enrol(t, s, "host-01")
	bodies := []struct{ kind, data string }{
		{model.KindPGStatement, `{"sql":"DROP TABLE t","kinds":["drop_table"],"tables":["t"],"decision":{"action":"deny","rule":"r"}}`},
		{model.KindSSHRequest, `{"channel":0,"type":"exec","command":"uptime","decision":{"action":"allow"}}`},
		{model.KindSSHRequest, `{"channel":0,"type":"env","env":"A=b","decision":{"action":"allow"}}`},
		{"test.event", `{}`},
	}
	if _, err := s.Batch(ctx, h.ID, func(st HostState) (*Accepted, error) {
		a := batchOf(st, len(bodies))
		for i, b := range bodies {
			e := &a.Entries[i]
			e.Kind = b.kind
			e.Body = evidence.AppendBody(nil, uint64(e.Seq), 1000+e.Seq, evidence.AppendTail(nil, b.kind, "s1", []byte(b.data), nil))
		}
		return a, nil
	}); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s = openStore(t, conn)
	var v int
	if err := s.pool.QueryRow(ctx, `SELECT version FROM hub_schema`).Scan(&v); err != nil || v != SchemaVersion {
		t.Errorf("schema version %d (%v), want %d", v, err, SchemaVersion)
	}
	found, err := s.Operations(ctx, OperationFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var seqs []int64
	for _, f := range found {
		seqs = append(seqs, f.Seq)
	}
	if fmt.Sprint(seqs) != "[2 1]" {
		t.Errorf("operations indexed by the upgrade: seqs %v, want [2 1]", seqs)
	}
	if got, err := s.Operations(ctx, OperationFilter{Action: "deny", Kind: "drop_table", Table: "t", Text: "drop"}); err != nil || len(got) != 1 || got[0].Seq != 1 {
		t.Errorf("the denied drop after the upgrade: %d (%v)", len(got), err)
	}
	if _, err := s.Batch(ctx, h.ID, func(st HostState) (*Accepted, error) {
		a := batchOf(st, 1)
		a.Operations = []Operation{{Seq: a.Entries[0].Seq, TimeNS: 5000, Session: "s1", Kind: model.KindSSHRequest, Kinds: []string{"shell"}, Tables: []string{}, Action: "allow"}}
		return a, nil
	}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Operations(ctx, OperationFilter{Kind: "shell"}); err != nil || len(got) != 1 || got[0].Seq != 5 {
		t.Errorf("a batch's operation after the upgrade: %d (%v)", len(got), err)
	}
}

func emptyRoot() tlog.Hash {
	h, _ := tlog.TreeHash(0, nil)
	return h
}

// TestEnrollBurnsToken: of several enrolments racing with one token,
// exactly one wins.
func TestEnrollBurnsToken(t *testing.T) {
	s := openStore(t, newDB(t))
	ctx := context.Background()
	tok := []byte("one-token")
	if err := s.AddToken(ctx, tok, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	var wins atomic.Int64
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.Enroll(ctx, tok, Host{ID: fmt.Sprintf("h%d", i), Name: "n", JournalID: fmt.Sprintf("j%d", i), JournalKey: "k", CertFingerprint: "f", EnrolledAt: time.Now()})
			switch {
			case err == nil:
				wins.Add(1)
			case !errors.Is(err, ErrBadToken):
				t.Errorf("Enroll: %v", err)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Errorf("%d enrolments with one token", wins.Load())
	}
	hosts, err := s.Hosts(ctx)
	if err != nil || len(hosts) != 1 {
		t.Errorf("hosts %v %v", hosts, err)
	}
}

// batchOf makes an accepted batch of n made-up leaves after a host's
// state, as the server would.
func batchOf(st HostState, n int) *Accepted {
	cr, _ := evidence.NewCompactRange(st.Host.Size, st.Frontier)
	a := &Accepted{}
	var stored []tlog.Hash
	for i := range n {
		seq := st.Host.Size + int64(i) + 1
		body := []byte(fmt.Sprintf(`{"seq":%d}`, seq))
		leaf := evidence.LeafHash(body)
		stored = cr.AddStored(leaf, stored)
		for j, h := range stored {
			a.Hashes = append(a.Hashes, IndexedHash{Index: tlog.StoredHashIndex(0, seq-1) + int64(j), Hash: h})
		}
		a.Entries = append(a.Entries, Entry{Seq: seq, Kind: "k", Body: body, Hash: make([]byte, 32), Leaf: leaf[:]})
	}
	a.Size, a.Root, a.ChainHash = st.Host.Size+int64(n), cr.Root(), make([]byte, 32)
	a.Checkpoint, a.Cosigned, a.CosignedAt = []byte("cp"), []byte(fmt.Sprintf("cosigned %d", a.Size)), time.Now()
	return a
}

// TestBatch: accepted batches extend the host's tree and the fleet log
// (whose stored hashes give the roots tlog computes); a refusal is kept
// and changes nothing else; any other error keeps nothing.
func TestBatch(t *testing.T) {
	s := openStore(t, newDB(t))
	ctx := context.Background()
	a, b := enrol(t, s, "ha01"), enrol(t, s, "hb02")
	for _, n := range []int{3, 1, 4} {
		for _, h := range []Host{a, b} {
			got, err := s.Batch(ctx, h.ID, func(st HostState) (*Accepted, error) { return batchOf(st, n), nil })
			if err != nil {
				t.Fatal(err)
			}
			root, err := tlog.TreeHash(got.Size, s.TreeHashes(ctx, h.ID))
			if err != nil || string(root[:]) != string(got.Root) {
				t.Errorf("%s: stored tree root %v (%v) != head root %x", h.ID, root, err, got.Root)
			}
		}
	}
	n, root, err := s.FleetHead(ctx)
	if err != nil || n != 6 {
		t.Fatalf("fleet head %d %v", n, err)
	}
	if want, err := tlog.TreeHash(n, s.FleetHashes(ctx)); err != nil || want != root {
		t.Errorf("fleet root %v, stored hashes give %v (%v)", root, want, err)
	}

	ref := &Refusal{Code: "root_mismatch", Message: "fork", From: 9, Entries: 2, Checkpoint: []byte("cp"), Bodies: [][]byte{[]byte("x"), []byte("y")}}
	got, err := s.Batch(ctx, a.ID, func(HostState) (*Accepted, error) { return nil, ref })
	if !errors.Is(err, ref) || got.Size != 8 {
		t.Errorf("refused Batch = %+v, %v", got, err)
	}
	boom := errors.New("boom")
	if _, err := s.Batch(ctx, a.ID, func(HostState) (*Accepted, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Errorf("failed Batch = %v", err)
	}
	refs, err := s.Refusals(ctx, a.ID)
	if err != nil || len(refs) != 1 || refs[0].Code != "root_mismatch" || len(refs[0].Bodies) != 2 {
		t.Errorf("refusals %+v %v", refs, err)
	}
	if _, err := s.Batch(ctx, "nobody", nil); !errors.Is(err, ErrNoHost) {
		t.Errorf("Batch of an unknown host = %v", err)
	}
	if h, _ := s.Host(ctx, a.ID); h.Size != 8 || h.CosignedSize != 8 {
		t.Errorf("host after refusals %+v", h)
	}
}
