package journal

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/test/testenv"
)

const sqlite3CLI = "/usr/bin/sqlite3"

// tamper edits the journal with the real sqlite3 shell, the way someone
// with access to the file would, not through this package's connection.
func tamper(t *testing.T, path string, sql string) {
	t.Helper()
	_, err := os.Stat(sqlite3CLI)
	testenv.Require(t, "tamper tests need "+sqlite3CLI, err)
	out, err := exec.Command(sqlite3CLI, "-bail", path, sql).CombinedOutput()
	if err != nil {
		t.Fatalf("sqlite3 %q: %v\n%s", sql, err, out)
	}
}

// tamperFixture writes a closed journal of n entries (entry 1 is
// journal.open) whose data is {"x":"a"}.
func tamperFixture(t *testing.T, n int) string {
	t.Helper()
	path := tempPath(t)
	j := openT(t, Options{Path: path})
	for i := 2; i <= n; i++ {
		appendT(t, j, model.Record{Kind: "op", Session: fmt.Sprint("s", i%3), Data: map[string]string{"x": "a"}}, model.Committed)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	verifyOK(t, path, uint64(n))
	return path
}

func TestVerifyCatchesTampering(t *testing.T) {
	const n = 12
	cases := []struct {
		name    string
		sql     string
		badSeq  uint64
		reason  string
		entries uint64 // good entries before the bad one
	}{
		{
			name:   "body byte changed",
			sql:    `UPDATE entries SET body = CAST(replace(CAST(body AS TEXT), '"x":"a"', '"x":"b"') AS BLOB) WHERE seq = 7`,
			badSeq: 7, reason: "hash mismatch: body was changed",
		},
		{
			name:   "first entry body changed",
			sql:    `UPDATE entries SET body = CAST(replace(CAST(body AS TEXT), '"encoding":1', '"encoding":2') AS BLOB) WHERE seq = 1`,
			badSeq: 1, reason: "hash mismatch: body was changed",
		},
		{
			name:   "head body changed",
			sql:    fmt.Sprintf(`UPDATE entries SET body = CAST(replace(CAST(body AS TEXT), '"x":"a"', '"x":"b"') AS BLOB) WHERE seq = %d`, n),
			badSeq: n, reason: "hash mismatch: body or stored hash was changed",
		},
		{
			name:   "middle row deleted",
			sql:    `DELETE FROM entries WHERE seq = 5`,
			badSeq: 5, reason: "entry 5 missing",
		},
		{
			name:   "first row deleted",
			sql:    `DELETE FROM entries WHERE seq = 1`,
			badSeq: 1, reason: "entry 1 missing",
		},
		{
			name:   "kind column edited",
			sql:    `UPDATE entries SET kind = 'harmless' WHERE seq = 4`,
			badSeq: 4, reason: "kind column does not match body",
		},
		{
			name:   "session column edited",
			sql:    `UPDATE entries SET session = 'other' WHERE seq = 9`,
			badSeq: 9, reason: "session column does not match body",
		},
		{
			name:   "time column edited",
			sql:    `UPDATE entries SET time_ns = time_ns - 1000000000 WHERE seq = 3`,
			badSeq: 3, reason: "time_ns column does not match body",
		},
		{
			name:   "stored hash edited",
			sql:    `UPDATE entries SET hash = zeroblob(32) WHERE seq = 6`,
			badSeq: 6, reason: "stored hash changed",
		},
		{
			name:   "stored hash truncated",
			sql:    `UPDATE entries SET hash = substr(hash, 1, 31) WHERE seq = 8`,
			badSeq: 8, reason: "stored hash changed (31 bytes, want 32)",
		},
		{
			name: "row renumbered into a gap",
			sql: `DELETE FROM entries WHERE seq = 10;
			      UPDATE entries SET seq = 10 WHERE seq = 11`,
			badSeq: 10, reason: "body seq 11 does not match row seq 10",
		},
		{
			name:   "body no longer JSON",
			sql:    `UPDATE entries SET body = CAST('{"v":1,' AS BLOB) WHERE seq = 2`,
			badSeq: 2, reason: "body does not parse",
		},
		{
			name:   "entry inserted past the head with a made-up hash",
			sql:    fmt.Sprintf(`INSERT INTO entries (seq, time_ns, kind, session, body, hash, tree) SELECT seq + 1, time_ns, kind, session, CAST(replace(CAST(body AS TEXT), '"seq":%d', '"seq":%d') AS BLOB), hash, tree FROM entries WHERE seq = %d`, n, n+1, n),
			badSeq: n + 1, reason: "hash mismatch",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := tamperFixture(t, n)
			tamper(t, path, c.sql)
			rep, err := Verify(context.Background(), path, nil)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if rep.OK || rep.FirstBadSeq != c.badSeq || !strings.HasPrefix(rep.Reason, c.reason) {
				t.Fatalf("Verify = %+v\nwant first bad seq %d, reason %q", rep, c.badSeq, c.reason)
			}
			if rep.Entries != c.badSeq-1 || rep.HeadSeq != c.badSeq-1 {
				t.Errorf("report counts %d good entries up to %d, want %d", rep.Entries, rep.HeadSeq, c.badSeq-1)
			}
		})
	}
}

// A journal whose tail was edited must still accept appends once reopened
// (the writer chains from the stored head), and Verify still names the
// edited entry: appending must not launder tampering.
func TestAppendAfterTamperingKeepsEvidence(t *testing.T) {
	path := tamperFixture(t, 8)
	tamper(t, path, `UPDATE entries SET body = CAST(replace(CAST(body AS TEXT), '"x":"a"', '"x":"b"') AS BLOB) WHERE seq = 8`)
	j := openT(t, Options{Path: path})
	appendT(t, j, model.Record{Kind: "after"}, model.Synced)
	j.Close()
	rep, err := Verify(context.Background(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK || rep.FirstBadSeq != 8 || rep.Reason != "hash mismatch: body was changed (or entry 7 was rewritten together with its hash)" {
		t.Fatalf("Verify = %+v", rep)
	}
}
