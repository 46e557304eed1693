package journal

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/interlock/interlock/journal/evidence"
	"github.com/interlock/interlock/model"
)

// A payload is stored beside its entry; the body carries
// SHA-256(salt || payload), computed here independently.
func TestPayloadCommitment(t *testing.T) {
	path := tempPath(t)
	j := openT(t, Options{Path: path})
	rows := []map[string]string{{"email": "a@example.com"}}
	seq := appendT(t, j, model.Record{Kind: model.KindPGResult, Session: "s", Data: map[string]int{"rows": 1}, Payload: rows}, model.Committed)
	raw := appendT(t, j, model.Record{Kind: model.KindSSHIO, Session: "s", Payload: []byte("\x00\xffterminal")}, model.Committed)
	j.Close()
	es := allEntries(t, path)
	for _, c := range []struct {
		seq  uint64
		want []byte
	}{{seq, mustJSON(t, rows)}, {raw, []byte("\x00\xffterminal")}} {
		e := es[c.seq-1]
		if !bytes.Equal(e.Payload, c.want) || len(e.Salt) != evidence.SaltSize {
			t.Fatalf("entry %d payload %q salt %x", c.seq, e.Payload, e.Salt)
		}
		h := sha256.Sum256(append(append([]byte{}, e.Salt...), c.want...))
		if !bytes.HasSuffix(e.Body, []byte(`,"payload":"`+hex.EncodeToString(h[:])+`"}`)) {
			t.Fatalf("entry %d body %s lacks commitment %x", c.seq, e.Body, h)
		}
	}
	if bytes.Equal(es[seq-1].Salt, es[raw-1].Salt) {
		t.Error("two payloads share a salt")
	}
	verifyOK(t, path, 3)
}

func mustJSON(t testing.TB, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Retention deletes old payloads; verify still passes (and counts them as
// deleted), while a payload changed or deleted without a retention entry
// fails it.
func TestPrunePayloads(t *testing.T) {
	path := tempPath(t)
	j := openT(t, Options{Path: path})
	old := time.Now().Add(-48 * time.Hour)
	for i := range 5 {
		appendT(t, j, model.Record{Kind: model.KindSSHIO, Session: "s", Time: old.Add(time.Duration(i) * time.Second), Payload: []byte("secret old output")}, model.Committed)
	}
	keep := appendT(t, j, model.Record{Kind: model.KindSSHIO, Session: "s", Payload: []byte("fresh")}, model.Committed)
	res, err := j.PrunePayloads(context.Background(), time.Now().Add(-24*time.Hour))
	if err != nil || res.Deleted != 5 || res.Seq != keep+1 {
		t.Fatalf("PrunePayloads = %+v, %v", res, err)
	}
	again, err := j.PrunePayloads(context.Background(), time.Now().Add(-24*time.Hour))
	if err != nil || again.Deleted != 0 {
		t.Fatalf("second prune = %+v, %v", again, err)
	}
	appendT(t, j, model.Record{Kind: "after"}, model.Synced)
	j.Close()
	rep := verifyOK(t, path, keep+2)
	if rep.Payloads != 1 || rep.PayloadsDeleted != 5 || rep.SignedSize != rep.HeadSeq {
		t.Fatalf("verify after prune: %+v", rep)
	}
	es := allEntries(t, path)
	if es[1].Payload != nil || !bytes.Equal(es[keep-1].Payload, []byte("fresh")) || es[keep].Kind != KindRetention {
		t.Fatalf("after prune: entry 2 payload %q, entry %d payload %q, entry %d kind %s", es[1].Payload, keep, es[keep-1].Payload, keep+1, es[keep].Kind)
	}
	// secure_delete and the WAL truncation leave no copy of the content.
	for _, f := range []string{path, path + "-wal"} {
		if b, err := os.ReadFile(f); err == nil && bytes.Contains(b, []byte("secret old output")) {
			t.Errorf("%s still holds a deleted payload", f)
		}
	}

	// The kept payload changed: caught.
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`UPDATE entries SET payload = CAST('frash' AS BLOB) WHERE seq = ?`, keep); err != nil {
		t.Fatal(err)
	}
	rep, _ = Verify(context.Background(), path, nil)
	if rep.OK || rep.FirstBadSeq != keep || !strings.Contains(rep.Reason, "payload does not match its commitment") {
		t.Fatalf("changed payload: %+v", rep)
	}
	// Deleted with no retention entry covering it: caught.
	if _, err := db.Exec(`UPDATE entries SET salt = NULL, payload = NULL WHERE seq = ?`, keep); err != nil {
		t.Fatal(err)
	}
	rep, _ = Verify(context.Background(), path, nil)
	if rep.OK || rep.FirstBadSeq != keep || !strings.Contains(rep.Reason, "no journal.retention entry deleted it") {
		t.Fatalf("deleted payload: %+v", rep)
	}
}

// toV1 turns a current journal into the first layout: no tree, payloads
// or checkpoints, and the two indexes over every entry.
const toV1 = `DROP TABLE checkpoints; DROP INDEX entries_opens; DROP INDEX entries_bounds; DROP INDEX entries_retention;
	ALTER TABLE entries DROP COLUMN salt; ALTER TABLE entries DROP COLUMN payload; ALTER TABLE entries DROP COLUMN tree;
	CREATE INDEX entries_session ON entries (session, kind); CREATE INDEX entries_kind ON entries (kind, time_ns);
	UPDATE meta SET value = 1 WHERE key = 'schema_version'; DELETE FROM meta WHERE key = 'signing_key';`

// toV2 turns a current journal into version 2 (its DDL as it was): the
// payloads in a table of their own, the two indexes over every entry.
const toV2 = `CREATE TABLE payloads (seq INTEGER PRIMARY KEY, salt BLOB NOT NULL, data BLOB NOT NULL);
	INSERT INTO payloads SELECT seq, salt, payload FROM entries WHERE payload IS NOT NULL;
	DROP INDEX entries_opens; DROP INDEX entries_bounds; DROP INDEX entries_retention;
	ALTER TABLE entries DROP COLUMN salt; ALTER TABLE entries DROP COLUMN payload;
	CREATE INDEX entries_session ON entries (session, kind); CREATE INDEX entries_kind ON entries (kind, time_ns);
	UPDATE meta SET value = 2 WHERE key = 'schema_version';`

// A version 1 journal (the first layout: no tree, payloads or checkpoints)
// is upgraded at Open and keeps its entries byte for byte.
func TestMigrateV1(t *testing.T) {
	path := tamperFixture(t, 5)
	before := allEntries(t, path)
	tamper(t, path, toV1)
	os.Remove(CheckpointPath(path))
	if _, err := Verify(context.Background(), path, nil); err == nil || !strings.Contains(err.Error(), "schema version 1") {
		t.Fatalf("Verify of a v1 journal: %v", err)
	}
	j := openT(t, Options{Path: path})
	appendT(t, j, model.Record{Kind: "after"}, model.Synced)
	j.Close()
	after := allEntries(t, path)
	for i, e := range before {
		if !bytes.Equal(e.Body, after[i].Body) || !bytes.Equal(e.Hash, after[i].Hash) {
			t.Fatalf("entry %d changed in the upgrade", e.Seq)
		}
	}
	if rep := verifyOK(t, path, 6); rep.SignedSize != 6 {
		t.Errorf("verify after upgrade: %+v", rep)
	}
	checkLayout(t, path)
}

// A version 2 journal (payloads in a table of their own, indexes over
// every entry) is upgraded at Open: its entries, payloads and salts keep
// their bytes, retention's deletions stay accounted for, its checkpoints
// still verify, and the sessions still list.
func TestMigrateV2(t *testing.T) {
	path := tempPath(t)
	j := openT(t, Options{Path: path})
	old := time.Now().Add(-48 * time.Hour)
	appendT(t, j, model.Record{Kind: model.KindSessionOpen, Session: "a", Time: old, Data: sessionOpen("pg", 1, 2, 3, "")}, model.Synced)
	for i := range 4 {
		appendT(t, j, model.Record{Kind: model.KindSSHIO, Session: "a", Time: old.Add(time.Duration(i) * time.Second), Payload: []byte(fmt.Sprint("old ", i))}, model.Committed)
	}
	appendT(t, j, model.Record{Kind: model.KindSessionClose, Session: "a", Data: model.SessionClose{BytesUp: 1}}, model.Committed)
	if _, err := j.PrunePayloads(context.Background(), time.Now().Add(-24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	keep := appendT(t, j, model.Record{Kind: model.KindSSHIO, Session: "b", Payload: []byte("fresh")}, model.Synced)
	j.Close()
	before := allEntries(t, path)
	tamper(t, path, toV2)
	if _, err := Verify(context.Background(), path, nil); err == nil || !strings.Contains(err.Error(), "schema version 2") {
		t.Fatalf("Verify of a v2 journal: %v", err)
	}

	// A payload row without its entry is refused: moving the payloads
	// into the entries would lose that evidence.
	orphan := filepath.Join(t.TempDir(), "orphan.db")
	copyFile(t, path, orphan)
	tamper(t, orphan, `INSERT INTO payloads VALUES (999, zeroblob(32), x'00')`)
	if _, err := Open(context.Background(), Options{Path: orphan, StateDir: filepath.Dir(path), Logger: quietLogger()}); err == nil || !strings.Contains(err.Error(), "1 payload rows belong to no entry") {
		t.Fatalf("Open of a v2 journal with an orphan payload: %v", err)
	}

	j = openT(t, Options{Path: path})
	appendT(t, j, model.Record{Kind: "after"}, model.Synced)
	j.Close()
	after := allEntries(t, path)
	if len(after) != len(before)+1 {
		t.Fatalf("%d entries after the upgrade, %d before", len(after), len(before))
	}
	for i, e := range before {
		a := after[i]
		if !bytes.Equal(e.Body, a.Body) || !bytes.Equal(e.Hash, a.Hash) || !bytes.Equal(e.Payload, a.Payload) || !bytes.Equal(e.Salt, a.Salt) {
			t.Fatalf("entry %d changed in the upgrade: %+v, was %+v", e.Seq, a, e)
		}
	}
	if p := after[keep-1].Payload; string(p) != "fresh" {
		t.Errorf("payload of entry %d after the upgrade: %q", keep, p)
	}
	rep := verifyOK(t, path, uint64(len(after)))
	if rep.Payloads != 1 || rep.PayloadsDeleted != 4 || rep.SignedSize != rep.HeadSeq {
		t.Errorf("verify after the upgrade: %+v", rep)
	}
	ss, err := ListSessions(context.Background(), path, SessionFilter{})
	if err != nil || len(ss) != 1 || ss[0].ID != "a" || ss[0].Close == nil || ss[0].BytesUp != 1 {
		t.Errorf("sessions after the upgrade: %+v %v", ss, err)
	}
	checkLayout(t, path)
}

// checkLayout compares the schema of an upgraded journal with a new one's.
func checkLayout(t *testing.T, path string) {
	t.Helper()
	fresh := tempPath(t)
	openT(t, Options{Path: fresh}).Close()
	layout := func(p string) string {
		db, err := sql.Open("sqlite3", "file:"+p+"?mode=ro")
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var out []string
		rows, err := db.Query(`SELECT type, name, tbl_name FROM sqlite_master ORDER BY type, name`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var typ, name, tbl string
			if err := rows.Scan(&typ, &name, &tbl); err != nil {
				t.Fatal(err)
			}
			out = append(out, typ+" "+name+" "+tbl)
		}
		cols, err := db.Query(`SELECT name, type, "notnull" FROM pragma_table_info('entries') ORDER BY cid`)
		if err != nil {
			t.Fatal(err)
		}
		defer cols.Close()
		for cols.Next() {
			var name, typ string
			var notNull bool
			if err := cols.Scan(&name, &typ, &notNull); err != nil {
				t.Fatal(err)
			}
			out = append(out, fmt.Sprint("column ", name, " ", typ, " ", notNull))
		}
		return strings.Join(out, "\n")
	}
	if got, want := layout(path), layout(fresh); got != want {
		t.Errorf("upgraded layout:\n%s\nwant, as a new journal's:\n%s", got, want)
	}
}
