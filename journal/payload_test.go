package journal

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"os"
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
	if _, err := db.Exec(`UPDATE payloads SET data = CAST('frash' AS BLOB) WHERE seq = ?`, keep); err != nil {
		t.Fatal(err)
	}
	rep, _ = Verify(context.Background(), path, nil)
	if rep.OK || rep.FirstBadSeq != keep || !strings.Contains(rep.Reason, "payload does not match its commitment") {
		t.Fatalf("changed payload: %+v", rep)
	}
	// Deleted with no retention entry covering it: caught.
	if _, err := db.Exec(`DELETE FROM payloads WHERE seq = ?`, keep); err != nil {
		t.Fatal(err)
	}
	rep, _ = Verify(context.Background(), path, nil)
	if rep.OK || rep.FirstBadSeq != keep || !strings.Contains(rep.Reason, "no journal.retention entry deleted it") {
		t.Fatalf("deleted payload: %+v", rep)
	}
}

// A version 1 journal (the first layout: no tree, payloads or checkpoints)
// is upgraded at Open and keeps its entries byte for byte.
func TestMigrateV1(t *testing.T) {
	path := tamperFixture(t, 5)
	before := allEntries(t, path)
	tamper(t, path, `DROP TABLE payloads; DROP TABLE checkpoints; ALTER TABLE entries DROP COLUMN tree; UPDATE meta SET value = 1 WHERE key = 'schema_version'; DELETE FROM meta WHERE key = 'signing_key';`)
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
}
