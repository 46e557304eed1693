package journal

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/interlock/interlock/journal/evidence"
	"github.com/interlock/interlock/model"
)

// tamperCases is how many random edits TestTamperSuite makes on copies of
// one real journal. Each case verifies a small journal, so 10,000 of them
// take seconds.
const tamperCases = 10000

// suiteJournal writes a closed journal with sessions, payloads (some
// posted), several checkpoints, and its checkpoint file beside it.
func suiteJournal(t *testing.T) (path string, ext evidence.ExternalCheckpoint) {
	t.Helper()
	path = tempPath(t)
	j := openT(t, Options{Path: path, checkpointInterval: time.Millisecond})
	for s := range 4 {
		id := fmt.Sprint("sess-", s)
		appendT(t, j, model.Record{Kind: model.KindSessionOpen, Session: id, Data: map[string]any{"target": "db", "n": s}}, model.Synced)
		for i := range 6 {
			appendT(t, j, model.Record{Kind: model.KindPGStatement, Session: id, Data: map[string]any{"sql": fmt.Sprint("select ", i)}}, model.Committed)
			j.Post(model.Record{Kind: model.KindSSHIO, Session: id, Data: map[string]int{"i": i}, Payload: []byte(fmt.Sprint("output line ", s, i))})
		}
		appendT(t, j, model.Record{Kind: model.KindSessionClose, Session: id, Data: map[string]int{"bytes": 10 * s}}, model.Committed)
		time.Sleep(3 * time.Millisecond) // let checkpoints fall between sessions
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	note, err := os.ReadFile(CheckpointPath(path))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := VerifyWith(context.Background(), path, VerifyOptions{External: []evidence.ExternalCheckpoint{{Name: "external", Note: note}}, RequireSigned: true})
	if err != nil || !rep.OK || rep.Checkpoints < 3 || rep.Payloads == 0 {
		t.Fatalf("suite journal does not verify cleanly: %+v %v", rep, err)
	}
	return path, evidence.ExternalCheckpoint{Name: "external", Note: note}
}

// mutation edits a copy of the journal; it returns a description, or ""
// when the random choice did not apply (the case is drawn again).
type mutation func(db *sql.DB, r *rand.Rand) (string, error)

// cell is a column of a table that holds evidence.
var evidenceCells = []struct{ table, column, key string }{
	{"entries", "body", "seq"}, {"entries", "hash", "seq"}, {"entries", "tree", "seq"},
	{"entries", "kind", "seq"}, {"entries", "session", "seq"}, {"entries", "time_ns", "seq"},
	{"entries", "salt", "seq"}, {"entries", "payload", "seq"},
	{"checkpoints", "note", "id"}, {"checkpoints", "tree_size", "id"}, {"checkpoints", "time_ns", "id"},
	{"meta", "value", "key"},
}

func randomRow(db *sql.DB, r *rand.Rand, table, key string) (any, error) {
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM ` + table).Scan(&n); err != nil || n == 0 {
		return nil, err
	}
	var k any
	err := db.QueryRow(fmt.Sprintf(`SELECT %s FROM %s ORDER BY %s LIMIT 1 OFFSET ?`, key, table, key), r.IntN(n)).Scan(&k)
	return k, err
}

// changeByte changes one byte of one evidence cell to another value.
func changeByte(db *sql.DB, r *rand.Rand) (string, error) {
	c := evidenceCells[r.IntN(len(evidenceCells))]
	k, err := randomRow(db, r, c.table, c.key)
	if err != nil || k == nil {
		return "", err
	}
	if k == "last_sync_ns" {
		return "", nil // bookkeeping, not evidence
	}
	var v any
	if err := db.QueryRow(fmt.Sprintf(`SELECT %s FROM %s WHERE %s = ?`, c.column, c.table, c.key), k).Scan(&v); err != nil {
		return "", err
	}
	var nv any
	switch x := v.(type) {
	case int64:
		nv = x + int64(r.IntN(1000)+1)
	case []byte, string:
		b := []byte(fmt.Sprint(x))
		if bb, ok := x.([]byte); ok {
			b = append([]byte(nil), bb...)
		}
		if len(b) == 0 {
			return "", nil
		}
		i := r.IntN(len(b))
		b[i] ^= byte(r.IntN(255) + 1)
		if _, isString := x.(string); isString {
			nv = string(b)
		} else {
			nv = b
		}
	default:
		return "", nil
	}
	_, err = db.Exec(fmt.Sprintf(`UPDATE %s SET %s = ? WHERE %s = ?`, c.table, c.column, c.key), nv, k)
	return fmt.Sprintf("byte of %s.%s at %v", c.table, c.column, k), err
}

// deleteRow deletes an entry, or clears an entry's payload as a retention
// run would, but without its journal.retention entry.
func deleteRow(db *sql.DB, r *rand.Rand) (string, error) {
	if r.IntN(2) == 0 {
		var seq int64
		err := db.QueryRow(`SELECT seq FROM entries WHERE payload IS NOT NULL ORDER BY random() LIMIT 1`).Scan(&seq)
		if errors.Is(err, sql.ErrNoRows) {
			return "", nil
		}
		if err != nil {
			return "", err
		}
		_, err = db.Exec(`UPDATE entries SET salt = NULL, payload = NULL WHERE seq = ?`, seq)
		return fmt.Sprintf("delete payload of %d", seq), err
	}
	k, err := randomRow(db, r, "entries", "seq")
	if err != nil || k == nil {
		return "", err
	}
	_, err = db.Exec(`DELETE FROM entries WHERE seq = ?`, k)
	return fmt.Sprintf("delete entry %v", k), err
}

// insertRow adds a row: an entry past the head (a copy of a random entry
// renumbered, its hash and tree recomputed as a careful forger would), or
// a payload to an entry that commits to none.
func insertRow(db *sql.DB, r *rand.Rand) (string, error) {
	if r.IntN(2) == 0 {
		var seq int64
		var body []byte
		if err := db.QueryRow(`SELECT seq, body FROM entries WHERE payload IS NULL ORDER BY random() LIMIT 1`).Scan(&seq, &body); err != nil {
			return "", err
		}
		_, err := db.Exec(`UPDATE entries SET salt = zeroblob(32), payload = CAST('x' AS BLOB) WHERE seq = ?`, seq)
		return fmt.Sprintf("payload for entry %d", seq), err
	}
	var head int64
	var prevHash []byte
	if err := db.QueryRow(`SELECT seq, hash FROM entries ORDER BY seq DESC LIMIT 1`).Scan(&head, &prevHash); err != nil {
		return "", err
	}
	k, err := randomRow(db, r, "entries", "seq")
	if err != nil {
		return "", err
	}
	var timeNS int64
	var kind, session string
	var body []byte
	if err := db.QueryRow(`SELECT time_ns, kind, session, body FROM entries WHERE seq = ?`, k).Scan(&timeNS, &kind, &session, &body); err != nil {
		return "", err
	}
	p, err := evidence.ParseBody(body)
	if err != nil {
		return "", err
	}
	nb := evidence.AppendBody(nil, uint64(head+1), timeNS, evidence.AppendTail(nil, kind, session, p.Data, nil))
	h := evidence.ChainHash(prevHash, nb)
	tree, err := loadRange(sqlTrees(context.Background(), db), head)
	if err != nil {
		return "", err
	}
	col := treeColumn(nil, tree.AddStored(evidence.LeafHash(nb), nil))
	_, err = db.Exec(`INSERT INTO entries (seq, time_ns, kind, session, body, hash, tree) VALUES (?, ?, ?, ?, ?, ?, ?)`, head+1, timeNS, kind, session, nb, h[:], col)
	return fmt.Sprintf("forged entry %d after the head", head+1), err
}

func swapRows(db *sql.DB, r *rand.Rand) (string, error) {
	a, err := randomRow(db, r, "entries", "seq")
	if err != nil || a == nil {
		return "", err
	}
	b, err := randomRow(db, r, "entries", "seq")
	if err != nil || b == nil || a == b {
		return "", err
	}
	if r.IntN(3) == 0 {
		// Two entries' payloads (with their salts) trade places.
		var sa, pa, sb, pb []byte
		if err := db.QueryRow(`SELECT salt, payload FROM entries WHERE seq = ?`, a).Scan(&sa, &pa); err != nil {
			return "", err
		}
		if err := db.QueryRow(`SELECT salt, payload FROM entries WHERE seq = ?`, b).Scan(&sb, &pb); err != nil {
			return "", err
		}
		if pa == nil && pb == nil {
			return "", nil // nothing to swap
		}
		for _, u := range []struct {
			salt, pay []byte
			seq       any
		}{{sb, pb, a}, {sa, pa, b}} {
			if _, err := db.Exec(`UPDATE entries SET salt = ?, payload = ? WHERE seq = ?`, u.salt, u.pay, u.seq); err != nil {
				return "", err
			}
		}
		return fmt.Sprintf("swap the payloads of entries %v and %v", a, b), nil
	}
	// Through a free seq, as the primary key forbids a direct swap.
	for _, q := range []string{
		`UPDATE entries SET seq = -1 WHERE seq = ?1`,
		`UPDATE entries SET seq = ?1 WHERE seq = ?2`,
		`UPDATE entries SET seq = ?2 WHERE seq = -1`,
	} {
		if _, err := db.Exec(q, a, b); err != nil {
			return "", err
		}
	}
	return fmt.Sprintf("swap entries %v and %v", a, b), nil
}

// truncateTail cuts the journal after a random entry, with the checkpoints
// that would betray it: only the external checkpoint is left to show it.
func truncateTail(db *sql.DB, r *rand.Rand) (string, error) {
	var head int64
	if err := db.QueryRow(`SELECT max(seq) FROM entries`).Scan(&head); err != nil {
		return "", err
	}
	k := 1 + r.Int64N(head-1)
	for _, q := range []string{`DELETE FROM entries WHERE seq > ?`, `DELETE FROM checkpoints WHERE tree_size > ?`} {
		if _, err := db.Exec(q, k); err != nil {
			return "", err
		}
	}
	return fmt.Sprintf("truncate after %d", k), nil
}

// TestTamperSuite: random single-byte changes, row deletions, insertions,
// swaps and tail truncations, each on a fresh copy of a real journal, each
// detected by verify (with the external checkpoint, on a journal that was
// closed and so fully signed).
func TestTamperSuite(t *testing.T) {
	src, ext := suiteJournal(t)
	orig, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	muts := []struct {
		name   string
		weight int
		fn     mutation
	}{{"byte", 60, changeByte}, {"delete", 10, deleteRow}, {"insert", 10, insertRow}, {"swap", 10, swapRows}, {"truncate", 10, truncateTail}}
	var mu sync.Mutex
	counts := map[string]int{}
	var wg sync.WaitGroup
	workers := 4
	for w := range workers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 42))
			path := filepath.Join(t.TempDir(), "copy.db")
			for i := w; i < tamperCases && !t.Failed(); i += workers {
				pick := r.IntN(100)
				m := muts[0]
				for _, c := range muts {
					if pick < c.weight {
						m = c
						break
					}
					pick -= c.weight
				}
				desc, err := applyMutation(path, orig, r, m.fn)
				if err != nil {
					t.Errorf("case %d (%s): %v", i, m.name, err)
					return
				}
				if desc == "" {
					i -= workers // not applicable: draw again
					continue
				}
				rep, err := VerifyWith(context.Background(), path, VerifyOptions{External: []evidence.ExternalCheckpoint{ext}, RequireSigned: true})
				if err == nil && rep.OK {
					t.Errorf("case %d: %s was not detected: %+v", i, desc, rep)
					return
				}
				mu.Lock()
				counts[m.name]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	total := 0
	for _, n := range counts {
		total += n
	}
	if !t.Failed() && total != tamperCases {
		t.Fatalf("%d cases run, want %d", total, tamperCases)
	}
	t.Logf("detected all %d: %v", total, counts)
}

func applyMutation(path string, orig []byte, r *rand.Rand, m mutation) (string, error) {
	for _, f := range []string{path + "-wal", path + "-shm"} {
		os.Remove(f)
	}
	if err := os.WriteFile(path, orig, 0o600); err != nil {
		return "", err
	}
	db, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=5000")
	if err != nil {
		return "", err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	return m(db, r)
}
