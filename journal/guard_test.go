package journal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/interlock/interlock/journal/evidence"
	"github.com/interlock/interlock/model"
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
	opts := Options{Path: path, CheckpointSinks: []string{sink}}
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
