package journal

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/interlock/interlock/journal/evidence"
	"github.com/interlock/interlock/model"
	"golang.org/x/mod/sumdb/note"
)

func copyFile(t testing.TB, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// writeN opens the journal, appends n records and closes it (Close syncs
// and signs, and checkpoints the WAL into the main file).
func writeN(t testing.TB, opts Options, n int) uint64 {
	t.Helper()
	j := openT(t, opts)
	for i := range n {
		appendT(t, j, model.Record{Kind: "op", Session: "s", Data: i}, model.Committed)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	return j.Stats().LastSeq
}

// Start-up guard: a database restored from an older copy (behind the
// checkpoint kept outside it) is refused, and says what is missing.
func TestStartupGuardRefusesRollback(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "j.db")
	sink := filepath.Join(dir, "elsewhere.cp")
	opts := Options{Path: path, CheckpointSinks: []string{sink}, FlushInterval: -1}
	old := writeN(t, opts, 5)
	copyFile(t, path, filepath.Join(dir, "old.db"))
	head := writeN(t, opts, 5)

	// Roll the database back to the old copy.
	copyFile(t, filepath.Join(dir, "old.db"), path)
	os.Remove(path + "-wal")
	os.Remove(path + "-shm")
	_, err := Open(context.Background(), Options{Path: path, CheckpointSinks: []string{sink}, Logger: quietLogger()})
	want := fmt.Sprintf("entries %d to %d are missing", old+1, head)
	if !errors.Is(err, ErrRolledBack) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "Restore it from a backup") {
		t.Fatalf("Open of a rolled-back journal: %v\nwant ErrRolledBack mentioning %q", err, want)
	}
	// The file sink alone is enough: removing the file beside the database
	// does not help.
	os.Remove(CheckpointPath(path))
	_, err = Open(context.Background(), Options{Path: path, CheckpointSinks: []string{sink}, Logger: quietLogger()})
	if !errors.Is(err, ErrRolledBack) || !strings.Contains(err.Error(), sink) {
		t.Fatalf("Open with only the sink: %v", err)
	}
	// verify says the same, against the checkpoint it is given.
	note, _ := os.ReadFile(sink)
	rep, err := VerifyWith(context.Background(), path, VerifyOptions{External: []evidence.ExternalCheckpoint{{Name: sink, Note: note}}})
	if err != nil || rep.OK || rep.FirstBadSeq != old+1 || !strings.Contains(rep.Reason, "tail truncated") {
		t.Fatalf("verify of the rolled-back journal: %+v %v", rep, err)
	}
	// Nothing was written to the refused journal.
	if es := allEntries(t, path); uint64(len(es)) != old {
		t.Errorf("refused journal has %d entries, had %d", len(es), old)
	}
}

// A deleted or replaced database is refused while a checkpoint of the
// original is beside it.
func TestStartupGuardRefusesReplacedDatabase(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "j.db")
	writeN(t, Options{Path: path}, 3)
	for _, f := range []string{path, path + "-wal", path + "-shm"} {
		os.Remove(f)
	}
	_, err := Open(context.Background(), Options{Path: path, Logger: quietLogger()})
	if !errors.Is(err, ErrRolledBack) || !strings.Contains(err.Error(), "deleted or replaced") || !strings.Contains(err.Error(), "move "+CheckpointPath(path)) {
		t.Fatalf("Open after deleting the database: %v", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused Open created %s", path)
	}
	// Another journal (same key) moved in its place.
	other := filepath.Join(dir, "other", "j.db")
	writeN(t, Options{Path: other, StateDir: dir}, 3)
	copyFile(t, other, path)
	_, err = Open(context.Background(), Options{Path: path, Logger: quietLogger()})
	if !errors.Is(err, ErrRolledBack) || !strings.Contains(err.Error(), "the database was replaced") {
		t.Fatalf("Open of a swapped-in journal: %v", err)
	}
	// Moving the checkpoint away is the documented way to accept it.
	os.Rename(CheckpointPath(path), CheckpointPath(path)+".old")
	openT(t, Options{Path: path}).Close()
}

// Entries written after the newest checkpoint (what a crash leaves
// unsigned) are re-checked at Open before they are signed: one edited
// while interlock was down is refused.
func TestStartupGuardChecksUnsignedTail(t *testing.T) {
	path := tamperFixture(t, 6)
	// Forge entry 7 after the final checkpoint, with a made-up hash.
	tamper(t, path, `INSERT INTO entries (seq, time_ns, kind, session, body, hash, tree) SELECT 7, time_ns, kind, session, CAST(replace(CAST(body AS TEXT), '"seq":6', '"seq":7') AS BLOB), hash, tree FROM entries WHERE seq = 6`)
	_, err := Open(context.Background(), Options{Path: path, Logger: quietLogger()})
	if !errors.Is(err, ErrRolledBack) || !strings.Contains(err.Error(), "entry 7") || !strings.Contains(err.Error(), "hash mismatch") {
		t.Fatalf("Open with a forged unsigned entry: %v", err)
	}
	// A changed tree hash inside the signed range: the tree no longer has
	// the signed root.
	path = tamperFixture(t, 6)
	tamper(t, path, `UPDATE entries SET tree = zeroblob(length(tree)) WHERE seq = 4`)
	_, err = Open(context.Background(), Options{Path: path, Logger: quietLogger()})
	if !errors.Is(err, ErrRolledBack) || !strings.Contains(err.Error(), "do not have the tree hash") {
		t.Fatalf("Open with a rewritten tree: %v", err)
	}
}

// A journal whose newest entries were never signed (the writer was killed)
// opens, checks them, and signs them.
func TestOpenSignsCrashTail(t *testing.T) {
	path := tamperFixture(t, 4)
	// Remove the checkpoints as if the writer died before signing.
	tamper(t, path, `DELETE FROM checkpoints`)
	os.Remove(CheckpointPath(path))
	j := openT(t, Options{Path: path})
	waitFor(t, func() bool { return j.Stats().SignedSize == 4 })
	j.Close()
	rep := verifyOK(t, path, 4)
	if rep.SignedSize != 4 {
		t.Errorf("verify: %+v", rep)
	}
}

// Entries removed from outside while the journal is open: the writer
// chains on from the head it finds, and every checkpoint it signs from
// then on is of a tree the database holds (the signed size and root move
// back together). Checkpoints of the removed entries stay as the evidence
// of the cut; none may claim a wrong root for the entries that remain.
func TestHeadWentBackWhileOpen(t *testing.T) {
	path := tempPath(t)
	j := openT(t, Options{Path: path, SyncInterval: 500 * time.Millisecond, checkpointInterval: time.Millisecond, heartbeat: 5 * time.Millisecond, FlushInterval: -1})
	for range 6 {
		appendT(t, j, model.Record{Kind: "op"}, model.Synced)
	}
	waitFor(t, func() bool { return j.Stats().SignedSize == 7 })
	db, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`DELETE FROM entries WHERE seq > 5`); err != nil {
		t.Fatal(err)
	}
	if seq := appendT(t, j, model.Record{Kind: "after"}, model.Committed); seq != 6 {
		t.Fatalf("append after the cut got seq %d, want 6", seq)
	}
	// Heartbeats sign the synced tree while the new entry waits for its
	// sync.
	time.Sleep(50 * time.Millisecond)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	snap, err := OpenSnapshot(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	key, err := note.NewVerifier(snap.SigningKey)
	if err != nil {
		t.Fatal(err)
	}
	cps, err := snap.Checkpoints(key)
	if err != nil {
		t.Fatal(err)
	}
	// Those of more than 5 entries signed before the cut are its evidence
	// (verify reports it); the others must state the tree as it is.
	newest := cps[0]
	for _, cp := range cps {
		if cp.TimeNS > newest.TimeNS {
			newest = cp
		}
		if cp.Size > 5 {
			continue
		}
		tree, err := loadRange(sqlTrees(context.Background(), db), cp.Size)
		if err != nil {
			t.Fatal(err)
		}
		if tree.Root() != cp.Root {
			t.Errorf("checkpoint of %d entries signed at %d states a root the first %d entries do not have", cp.Size, cp.TimeNS, cp.Size)
		}
	}
	if newest.Size != 6 {
		t.Errorf("final checkpoint covers %d entries, want 6", newest.Size)
	} else if tree, err := loadRange(sqlTrees(context.Background(), db), 6); err != nil || tree.Root() != newest.Root {
		t.Errorf("final checkpoint does not state the tree of the journal as it is: %v", err)
	}
}
