package journal

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/interlock/interlock/model"
)

// rawHead is the database's head as SQLite has it, read without the
// journal's reader (which flushes the commit log first).
func rawHead(t *testing.T, path string) int64 {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var head int64
	if err := db.QueryRow(`SELECT coalesce(max(seq), 0) FROM entries`).Scan(&head); err != nil {
		t.Fatal(err)
	}
	return head
}

// logEmpty reports whether the commit log holds no frame.
func logEmpty(t *testing.T, path string) bool {
	t.Helper()
	f, err := os.Open(path + LogSuffix)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	empty, err := (&commitLog{f: f}).empty()
	if err != nil {
		t.Fatal(err)
	}
	return empty
}

func logSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path + LogSuffix)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// slowLog keeps entries in the commit log until something flushes them.
func slowLog(path string) Options {
	return Options{Path: path, FlushInterval: time.Hour, checkpointInterval: time.Hour, heartbeat: time.Hour}
}

// TestLogModeCommitsToLog: alone on its file, the journal commits to the
// commit log; the database takes the entries when a reader of this process
// asks, and at Close, after which the log is empty.
func TestLogModeCommitsToLog(t *testing.T) {
	path := tempPath(t)
	j := openT(t, slowLog(path))
	if !j.Stats().LogMode {
		t.Fatal("a journal alone on its file is not in log mode")
	}
	for i := range 50 {
		d := model.Committed
		if i%10 == 0 {
			d = model.Synced
		}
		appendT(t, j, model.Record{Kind: "op", Session: "s", Payload: []byte{byte(i)}}, d)
	}
	if got := rawHead(t, path); got != 1 {
		t.Fatalf("the database holds %d entries before any flush, want 1 (the rest in the log)", got)
	}
	if logEmpty(t, path) || logSize(t, path) == 0 {
		t.Fatal("the commit log is empty after 50 appends")
	}
	n := 0
	if err := Entries(context.Background(), path, 1, func(Entry) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != 51 {
		t.Fatalf("a reader in the writer's process saw %d entries, want 51", n)
	}
	if st := j.Stats(); st.Flushes != 1 || st.Batches != 50 {
		t.Errorf("stats after the read: %+v, want 50 batches in 1 flush", st)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if !logEmpty(t, path) {
		t.Error("the commit log holds frames after Close")
	}
	verifyOK(t, path, 51)
}

// TestLogModeFlushesOnItsOwn: entries reach the database within the flush
// interval with nobody reading, many batches per SQLite transaction.
func TestLogModeFlushesOnItsOwn(t *testing.T) {
	path := tempPath(t)
	j := openT(t, Options{Path: path, FlushInterval: 20 * time.Millisecond})
	for range 200 {
		appendT(t, j, model.Record{Kind: "op", Session: "s"}, model.Committed)
	}
	waitFor(t, func() bool { return rawHead(t, path) == 201 })
	if st := j.Stats(); st.Flushes == 0 || st.Flushes > 40 {
		t.Errorf("200 batches took %d flushes", st.Flushes)
	}
	j.Close()
	verifyOK(t, path, 201)
}

// TestLogModeHandsOver: a second writer of the same file (another
// process's, here another Open) makes the log-mode writer flush and step
// down; both then write through SQLite, their entries chained in one log;
// once the second is gone the first takes the log back.
func TestLogModeHandsOver(t *testing.T) {
	path := tempPath(t)
	j1 := openT(t, slowLog(path))
	for range 10 {
		appendT(t, j1, model.Record{Kind: "first"}, model.Committed)
	}
	j2 := openT(t, Options{Path: path})
	if j1.Stats().LogMode || j2.Stats().LogMode {
		t.Fatalf("two writers, log mode: first %v, second %v", j1.Stats().LogMode, j2.Stats().LogMode)
	}
	if got := rawHead(t, path); got != 11 {
		t.Fatalf("after the hand-over the database holds %d entries, want 11", got)
	}
	var wg sync.WaitGroup
	for _, j := range []*Journal{j1, j2} {
		wg.Go(func() {
			for range 100 {
				if _, err := j.Append(context.Background(), model.Record{Kind: "both"}, model.Committed); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := j2.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return j1.Stats().LogMode })
	for range 10 {
		appendT(t, j1, model.Record{Kind: "again"}, model.Committed)
	}
	if err := j1.Close(); err != nil {
		t.Fatal(err)
	}
	verifyOK(t, path, 221)
}

// crashCopy copies a journal whose writer is still open, as a crash would
// leave it: the database and its WAL without the entries only the commit
// log holds, the log, the key and the checkpoint beside it.
func crashCopy(t *testing.T, path string) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Dir(path)
	for _, name := range []string{"journal.db", "journal.db-wal", "journal.db" + LogSuffix, "journal.key", "journal.pub", "journal.db.checkpoint"} {
		b, err := os.ReadFile(filepath.Join(src, name))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "journal.db")
}

func readFrames(t *testing.T, path string) []logRow {
	t.Helper()
	b, err := os.ReadFile(path + LogSuffix)
	if err != nil {
		t.Fatal(err)
	}
	rows, good, err := parseLog(b)
	if err != nil || good != len(b)-logFrameHeader || !bytes.Equal(b[good:], make([]byte, logFrameHeader)) {
		t.Fatalf("parse the log: %d of %d bytes, not ended by the marker, %v", good, len(b), err)
	}
	return rows
}

func writeFrames(t *testing.T, path string, rows []logRow) {
	t.Helper()
	var buf []byte
	for i := range rows {
		buf = appendFrame(buf, &rows[i])
	}
	if err := os.WriteFile(path+LogSuffix, buf, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestLogReplay: what a crashed writer left only in its commit log is put
// into the database by the next Open, or by a reader when no writer comes;
// a log edited afterwards (a changed entry with its CRC fixed) is refused,
// not replayed; a frame cut short, and the entries after a missing one,
// are dropped.
func TestLogReplay(t *testing.T) {
	path := tempPath(t)
	j := openT(t, slowLog(path))
	for i := range 20 {
		appendT(t, j, model.Record{Kind: "op", Session: "s", Data: map[string]int{"n": i}, Payload: []byte("out")}, model.Synced)
	}
	copies := map[string]string{}
	for _, name := range []string{"open", "reader", "edited", "gap", "torn"} {
		copies[name] = crashCopy(t, path)
	}
	j.Close()

	p := copies["open"]
	if got := rawHead(t, p); got != 1 {
		t.Fatalf("the crashed copy's database holds %d entries, want 1", got)
	}
	j2 := openT(t, Options{Path: p})
	if !logEmpty(t, p) {
		t.Error("the log is not emptied after its replay")
	}
	appendT(t, j2, model.Record{Kind: "after"}, model.Committed)
	j2.Close()
	verifyOK(t, p, 22)
	payloads := 0
	if err := Entries(context.Background(), p, 1, func(e Entry) error {
		if string(e.Payload) == "out" {
			payloads++
		}
		return nil
	}); err != nil || payloads != 20 {
		t.Errorf("replayed payloads: %d, %v", payloads, err)
	}

	// No writer opens it: the reader replays.
	verifyOK(t, copies["reader"], 21)

	p = copies["edited"]
	rows := readFrames(t, p)
	edited := bytes.Replace(rows[7].tail, []byte(`"n":7`), []byte(`"n":9`), 1)
	if bytes.Equal(edited, rows[7].tail) {
		t.Fatalf("entry %d's tail %q holds no n:7", rows[7].seq, rows[7].tail)
	}
	rows[7].tail = edited
	writeFrames(t, p, rows)
	if _, err := Open(context.Background(), Options{Path: p, Logger: quietLogger()}); err == nil || !strings.Contains(err.Error(), "does not chain") {
		t.Errorf("Open of a journal whose log was edited: %v", err)
	}

	// An entry missing from the log: those after it cannot chain on
	// (lost with power, they were never synced), and are not replayed.
	p = copies["gap"]
	rows = readFrames(t, p)
	writeFrames(t, p, append(rows[:5:5], rows[6:]...))
	j4 := openT(t, Options{Path: p})
	j4.Close()
	verifyOK(t, p, 6)

	p = copies["torn"]
	b, err := os.ReadFile(p + LogSuffix)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p+LogSuffix, b[:len(b)-10], 0o600); err != nil {
		t.Fatal(err)
	}
	j3 := openT(t, Options{Path: p})
	j3.Close()
	verifyOK(t, p, 20)
}

// TestLogModeDatabaseStuck: while a foreign connection holds SQLite's
// write lock the log keeps committing, up to its bound; beyond it records
// are refused (fail closed); once the lock goes everything acknowledged is
// in the database.
func TestLogModeDatabaseStuck(t *testing.T) {
	defer func(r, b int) { maxPendingRows, maxPendingBytes = r, b }(maxPendingRows, maxPendingBytes)
	maxPendingRows = 8
	path := tempPath(t)
	j := openT(t, Options{Path: path, BusyTimeout: 20 * time.Millisecond, FlushInterval: time.Millisecond})
	other, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=1000")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	other.SetMaxOpenConns(1)
	tx, err := other.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(`INSERT INTO meta (key, value) VALUES ('lock', 'held')`); err != nil {
		t.Fatal(err)
	}
	acked := 0
	var refused error
	for range 20 {
		if _, err := j.Append(context.Background(), model.Record{Kind: "op"}, model.Committed); err != nil {
			refused = err
			break
		}
		acked++
	}
	if refused == nil || acked < maxPendingRows || !strings.Contains(refused.Error(), "has not taken") {
		t.Fatalf("with the database locked: %d acked, then %v; want %d acked, then refused", acked, refused, maxPendingRows)
	}
	// A batch that goes to SQLite directly is refused too, and takes
	// nothing of what the log holds with it.
	if _, err := j.Append(context.Background(), model.Record{Kind: "big", Payload: bytes.Repeat([]byte("x"), 64<<10)}, model.Committed); err == nil {
		t.Fatal("a heavy record was acked while the database was locked")
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	appendT(t, j, model.Record{Kind: "after"}, model.Committed)
	j.Close()
	verifyOK(t, path, uint64(acked)+2)
}

// FuzzParseLog: any bytes parse without a panic, good never runs past the
// input, and the frames parsed encode to bytes that parse to them again.
func FuzzParseLog(f *testing.F) {
	f.Add(appendFrame(nil, &logRow{seq: 2, timeNS: 5, kind: "k", session: "s", tail: []byte("}"), payload: []byte{}, hash: make([]byte, 32)}))
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		rows, good, err := parseLog(b)
		if good > len(b) || good < 0 {
			t.Fatalf("good %d of %d", good, len(b))
		}
		if err != nil {
			return
		}
		var again []byte
		for i := range rows {
			again = appendFrame(again, &rows[i])
		}
		back, n, err := parseLog(again)
		if err != nil || n != len(again) || len(back) != len(rows) {
			t.Fatalf("frames do not parse back: %d of %d rows, %v", len(back), len(rows), err)
		}
		for i := range rows {
			if back[i].seq != rows[i].seq || !bytes.Equal(back[i].payload, rows[i].payload) || (back[i].payload == nil) != (rows[i].payload == nil) {
				t.Fatalf("row %d differs after a round trip", i)
			}
		}
	})
}

// TestLogModeHeavyPayloadsDirect: in log mode a batch heavy with payloads
// goes to SQLite directly, after the entries the log holds, and the chain
// runs through both; what the log holds after it is replayed on top.
func TestLogModeHeavyPayloadsDirect(t *testing.T) {
	path := tempPath(t)
	j := openT(t, slowLog(path))
	for range 3 {
		appendT(t, j, model.Record{Kind: "small"}, model.Committed)
	}
	big := bytes.Repeat([]byte("x"), 64<<10)
	if seq := appendT(t, j, model.Record{Kind: "big", Payload: big}, model.Synced); seq != 5 {
		t.Fatalf("heavy record got seq %d, want 5", seq)
	}
	if got := rawHead(t, path); got != 5 {
		t.Fatalf("after the heavy batch the database holds %d entries, want 5", got)
	}
	for range 2 {
		appendT(t, j, model.Record{Kind: "small"}, model.Committed)
	}
	if got := rawHead(t, path); got != 5 {
		t.Fatalf("small records after it went to the database (%d), not the log", got)
	}
	cp := crashCopy(t, path)
	j.Close()
	verifyOK(t, path, 7)
	verifyOK(t, cp, 7)
	found := false
	if err := Entries(context.Background(), cp, 5, func(e Entry) error {
		found = found || (e.Seq == 5 && bytes.Equal(e.Payload, big))
		return nil
	}); err != nil || !found {
		t.Errorf("heavy payload after replay: found %v, %v", found, err)
	}
}

// TestLogModeRewinds: once flushed past logTrimAt the log is overwritten
// from its start, so it stays small, and a crash among frames of earlier
// passes replays exactly the entries the database lacks.
func TestLogModeRewinds(t *testing.T) {
	defer func(v int64) { logTrimAt = v }(logTrimAt)
	logTrimAt = 2048
	path := tempPath(t)
	j := openT(t, Options{Path: path, FlushInterval: 200 * time.Microsecond, checkpointInterval: time.Hour, heartbeat: time.Hour})
	for i := range 400 {
		appendT(t, j, model.Record{Kind: "op", Data: map[string]int{"n": i}}, model.Committed)
	}
	// Stop flushing: the entries from here on are only in the log, over
	// frames of earlier passes.
	if err := j.control(context.Background(), func(w *writer) error { w.opts.FlushInterval = time.Hour; return nil }); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		appendT(t, j, model.Record{Kind: "tail"}, model.Committed)
	}
	if sz := logSize(t, path); sz > 16<<10 {
		t.Errorf("the log grew to %d bytes", sz)
	}
	cp := crashCopy(t, path)
	if got := rawHead(t, cp); got >= 406 {
		t.Fatalf("the crash copy's database already holds %d entries", got)
	}
	j.Close()
	verifyOK(t, path, 406)
	verifyOK(t, cp, 406)
}

// The log's raw pwrite writes all of a buffer where asked, and a log
// closed under it fails the write instead of writing to whatever file
// reuses the descriptor's number.
func TestCommitLogRawWrite(t *testing.T) {
	path := tempPath(t)
	c, err := openCommitLog(path)
	if err != nil {
		t.Fatal(err)
	}
	frame := bytes.Repeat([]byte("frame!"), 50_000) // 300 KB, one call
	c.off = 4096
	if err := c.write(append([]byte(nil), frame...)); err != nil {
		t.Fatal(err)
	}
	if c.off != 4096+int64(len(frame)) {
		t.Fatalf("off = %d after a write of %d at 4096", c.off, len(frame))
	}
	got, err := os.ReadFile(path + LogSuffix)
	if err != nil {
		t.Fatal(err)
	}
	if want := 4096 + len(frame) + logFrameHeader; len(got) != want || !bytes.Equal(got[4096:4096+len(frame)], frame) ||
		!bytes.Equal(got[4096+len(frame):], make([]byte, logFrameHeader)) {
		t.Fatalf("the log holds %d bytes, want %d: the frame then the end marker", len(got), want)
	}
	c.close()
	other, err := os.CreateTemp(t.TempDir(), "reuse")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := c.write([]byte("late")); err == nil {
		t.Fatal("a write to a closed log succeeded")
	}
	if fi, _ := other.Stat(); fi.Size() != 0 {
		t.Fatalf("a write to a closed log reached another file (%d bytes)", fi.Size())
	}
}
