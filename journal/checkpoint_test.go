package journal

import (
	"context"
	"database/sql"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/interlock/interlock/journal/evidence"
	"github.com/interlock/interlock/model"
)

func storedCheckpoints(t testing.TB, path string, v note.Verifier) []evidence.Checkpoint {
	t.Helper()
	s, err := OpenSnapshot(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cps, err := s.Checkpoints(v)
	if err != nil {
		t.Fatal(err)
	}
	return cps
}

func signerT(t testing.TB, dir string) *Signer {
	t.Helper()
	s, err := LoadSigner(filepath.Join(dir, KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The key is made at first start, 0600, with its public half beside it,
// and a second Open uses the same key.
func TestKeyCreatedOnce(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	path := filepath.Join(dir, "j.db")
	j := openT(t, Options{Path: path, StateDir: state})
	j.Close()
	fi, err := os.Stat(filepath.Join(state, KeyFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi, err)
	}
	_, vkey, err := evidence.LoadVerifier(filepath.Join(state, PublicKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	s := signerT(t, state)
	if vkey != s.VerifierKey {
		t.Errorf("journal.pub %q does not match the key's public half %q", vkey, s.VerifierKey)
	}
	j = openT(t, Options{Path: path, StateDir: state})
	j.Close()
	if again := signerT(t, state); again.VerifierKey != s.VerifierKey {
		t.Error("second Open made a new key")
	}
	// A journal is refused with another key: its checkpoints would not verify.
	other := filepath.Join(dir, "other")
	if _, err := Open(context.Background(), Options{Path: path, StateDir: other, Logger: quietLogger()}); err == nil || !strings.Contains(err.Error(), "signed with key") {
		t.Errorf("Open with another key: %v", err)
	}
	// A key others can read is refused.
	os.Chmod(filepath.Join(state, KeyFile), 0o644)
	if _, err := Open(context.Background(), Options{Path: path, StateDir: state, Logger: quietLogger()}); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("Open with a 0644 key: %v", err)
	}
}

// Checkpoints: at Close (final), at each session end, at least every
// interval while entries flow, and as a heartbeat when idle; each one is
// signed over synced data, stored, and written beside the database.
func TestCheckpointCadence(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "j.db")
	j := openT(t, Options{Path: path, checkpointInterval: 150 * time.Millisecond, heartbeat: 400 * time.Millisecond})
	v := signerT(t, dir).Verifier()
	waitFor(t, func() bool { return j.Stats().Checkpoints >= 1 }) // at Open: nothing signed yet
	base := j.Stats().Checkpoints

	// A session end is signed once it is synced, before the interval (and
	// no sooner than sessionEndGap after the previous checkpoint).
	appendT(t, j, model.Record{Kind: model.KindSessionOpen, Session: "a"}, model.Synced)
	seq := appendT(t, j, model.Record{Kind: model.KindSessionClose, Session: "a"}, model.Committed)
	start := time.Now()
	waitFor(t, func() bool { return j.Stats().SignedSize >= seq })
	if d := time.Since(start); d > sessionEndGap+100*time.Millisecond {
		t.Errorf("session end signed after %v", d)
	}

	// While entries flow, a checkpoint at least every interval.
	flowStart := j.Stats().Checkpoints
	stop := time.Now().Add(700 * time.Millisecond)
	for time.Now().Before(stop) {
		appendT(t, j, model.Record{Kind: "flow"}, model.Committed)
		time.Sleep(2 * time.Millisecond)
	}
	if n := j.Stats().Checkpoints - flowStart; n < 3 {
		t.Errorf("%d checkpoints in 700ms of flow with a 150ms interval", n)
	}

	// Idle: heartbeats re-sign the same tree.
	waitFor(t, func() bool { st := j.Stats(); return st.SignedSize == st.LastSeq })
	idle := j.Stats()
	time.Sleep(900 * time.Millisecond)
	if st := j.Stats(); st.Checkpoints-idle.Checkpoints < 1 || st.SignedSize != idle.SignedSize {
		t.Errorf("idle for 900ms with a 400ms heartbeat: %d new checkpoints, size %d->%d", st.Checkpoints-idle.Checkpoints, idle.SignedSize, st.SignedSize)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if j.Stats().Checkpoints <= base {
		t.Fatal("no checkpoints")
	}

	cps := storedCheckpoints(t, path, v)
	if uint64(len(cps)) != j.Stats().Checkpoints {
		t.Errorf("%d stored checkpoints, %d signed", len(cps), j.Stats().Checkpoints)
	}
	last := cps[len(cps)-1]
	if uint64(last.Size) != j.Stats().LastSeq {
		t.Errorf("newest checkpoint covers %d, head is %d", last.Size, j.Stats().LastSeq)
	}
	// Each signed root is the tree of that many entries, recomputed here
	// with tlog from the bodies alone.
	var hashes []tlog.Hash
	for _, e := range allEntries(t, path) {
		stored, err := tlog.StoredHashes(int64(e.Seq-1), e.Body, tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
			out := make([]tlog.Hash, len(idx))
			for i, x := range idx {
				out[i] = hashes[x]
			}
			return out, nil
		}))
		if err != nil {
			t.Fatal(err)
		}
		hashes = append(hashes, stored...)
	}
	reader := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = hashes[x]
		}
		return out, nil
	})
	for _, cp := range cps {
		root, err := tlog.TreeHash(cp.Size, reader)
		if err != nil || root != cp.Root {
			t.Fatalf("checkpoint of %d: root %v, tlog says %v (%v)", cp.Size, cp.Root, root, err)
		}
	}
	beside, err := evidence.ReadCheckpointFile(CheckpointPath(path), v)
	if err != nil || !evidence.SameTree(beside, last) {
		t.Errorf("file beside the database: %+v, %v; want the newest", beside, err)
	}
	rep := verifyOK(t, path, j.Stats().LastSeq)
	if rep.SignedSize != rep.HeadSeq || rep.Unsigned != 0 || rep.Checkpoints != len(cps)+1 {
		t.Errorf("verify: %+v", rep)
	}
}

// Sinks get every checkpoint: a file sink, and an HTTP endpoint that
// receives the note as a POST. A dead sink does not hold up the journal.
func TestCheckpointSinks(t *testing.T) {
	var mu sync.Mutex
	var posts []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		if r.Method == http.MethodPost && r.Header.Get("Content-Type") == "text/plain; charset=utf-8" {
			posts = append(posts, string(b))
		}
		mu.Unlock()
	}))
	defer srv.Close()
	dir := t.TempDir()
	sinkFile := filepath.Join(dir, "elsewhere", "cp")
	os.Mkdir(filepath.Dir(sinkFile), 0o755)
	path := filepath.Join(dir, "j.db")
	j := openT(t, Options{Path: path, CheckpointSinks: []string{sinkFile, srv.URL, "http://127.0.0.1:1/dead"}})
	appendT(t, j, model.Record{Kind: model.KindRunEnd}, model.Synced)
	start := time.Now()
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Close took %v with a dead sink", d)
	}
	v := signerT(t, dir).Verifier()
	cp, err := evidence.ReadCheckpointFile(sinkFile, v)
	if err != nil || cp.Size != 2 {
		t.Fatalf("file sink: %+v %v", cp, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(posts) == 0 || posts[len(posts)-1] != string(cp.Note) {
		t.Fatalf("HTTP sink got %d posts, last %q; want the final checkpoint", len(posts), posts)
	}
	if _, err := Open(context.Background(), Options{Path: path, CheckpointSinks: []string{"relative"}, Logger: quietLogger()}); err == nil {
		t.Error("Open accepted a relative sink path")
	}
}

// The database's checkpoints table is checked by verify: a row whose
// columns disagree with its signed text is caught.
func TestVerifyChecksStoredCheckpoints(t *testing.T) {
	path := tamperFixture(t, 6)
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`UPDATE checkpoints SET tree_size = tree_size - 1`); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(context.Background(), path, nil)
	if err != nil || rep.OK || !strings.Contains(rep.Reason, "columns do not match its signed text") {
		t.Fatalf("verify: %+v %v", rep, err)
	}
}
