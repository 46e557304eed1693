package journal

import (
	"bytes"
	"context"
	"database/sql"
	"testing"

	"github.com/interlock/interlock/model"
)

// fileInt reads one integer (a pragma, a count) from the file at path on
// a read-only connection of its own, as a reader in another process
// would, without the commit log.
func fileInt(t *testing.T, path, query string) int {
	t.Helper()
	d, err := readerDSN(path)
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite3", d)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v int
	if err := db.QueryRow(query).Scan(&v); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return v
}

// TestPageSize: a new journal takes large pages; a journal created with
// small pages keeps them when opened again; both hold and verify payloads
// larger than a page.
func TestPageSize(t *testing.T) {
	payload := bytes.Repeat([]byte("0123456789abcdef"), 20<<10) // 320 KiB: overflow pages in both
	rec := model.Record{Kind: model.KindSSHIO, Session: "sess-1", Data: model.SSHIO{Stream: "o", Bytes: len(payload)}, Payload: payload}
	for _, c := range []struct {
		name   string
		create int
		want   int
	}{
		{"new", 0, pageSize},
		{"old file keeps 4k", 4 << 10, 4 << 10},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := tempPath(t)
			j := openT(t, Options{Path: path, pageSize: c.create})
			appendT(t, j, rec, model.Synced)
			if got := fileInt(t, path, "PRAGMA page_size"); got != c.want {
				t.Fatalf("page_size = %d, want %d", got, c.want)
			}
			if err := j.Close(); err != nil {
				t.Fatal(err)
			}
			// Opened again by a build whose default differs: the file's own
			// page size stays.
			j = openT(t, Options{Path: path})
			appendT(t, j, rec, model.Synced)
			if err := j.Close(); err != nil {
				t.Fatal(err)
			}
			if got := fileInt(t, path, "PRAGMA page_size"); got != c.want {
				t.Fatalf("page_size after reopening = %d, want %d", got, c.want)
			}
			rep, err := Verify(context.Background(), path, nil)
			if err != nil || !rep.OK || rep.Payloads != 2 {
				t.Fatalf("Verify = %+v, %v; want OK with 2 payloads", rep, err)
			}
			n := 0
			for _, e := range allEntries(t, path) {
				if e.Kind != model.KindSSHIO {
					continue
				}
				n++
				if !bytes.Equal(e.Payload, payload) {
					t.Fatalf("entry %d: payload of %d bytes read back, want the %d posted", e.Seq, len(e.Payload), len(payload))
				}
			}
			if n != 2 {
				t.Fatalf("%d ssh.io entries read back, want 2", n)
			}
		})
	}
}
