package journal

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	_ "github.com/mattn/go-sqlite3" // registers the "sqlite3" driver
	"golang.org/x/mod/sumdb/tlog"

	"github.com/interlock/interlock/journal/evidence"
	"github.com/interlock/interlock/model"
)

// Entries are a rowid table in seq order, so a batch appends to the last
// leaf page and the WAL gets one page per commit for most batches. The
// time_ns, kind and session columns copy body fields for queries (Verify
// checks that they agree); the payload and its salt sit in the entry's row
// (NULL without one), where a retention job clears them and the entry's
// commitment stays. No index covers every entry: each would dirty pages of
// its own in every commit. The partial indexes below are written only for
// the few entries they cover (a session's open and close, retention runs),
// and are all that listing sessions and verifying retention need.
// checkpoints keeps every signed tree head this journal issued, for verify
// and export.
var schemaDDL = append([]string{
	`CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value NOT NULL)`,
	`CREATE TABLE entries (
		seq     INTEGER PRIMARY KEY,
		time_ns INTEGER NOT NULL,
		kind    TEXT NOT NULL,
		session TEXT NOT NULL,
		body    BLOB NOT NULL,
		hash    BLOB NOT NULL,
		tree    BLOB NOT NULL,
		salt    BLOB,
		payload BLOB
	)`,
	`CREATE TABLE checkpoints (id INTEGER PRIMARY KEY, tree_size INTEGER NOT NULL, time_ns INTEGER NOT NULL, note BLOB NOT NULL)`,
	`CREATE INDEX checkpoints_size ON checkpoints (tree_size, time_ns)`,
}, entryIndexes...)

// entryIndexes are the partial indexes on entries. A query uses one only
// when its WHERE names the same kind as a literal (SQLite must prove the
// index covers every row the query wants), so the queries spell the kinds
// out too.
//
//   - entries_opens lists sessions by open time (ListSessions);
//   - entries_bounds finds a session's open and close entries
//     (ListSessions, Snapshot.SessionEntries, SelectRange);
//   - entries_retention finds retention runs (Verify).
var entryIndexes = []string{
	`CREATE INDEX entries_opens ON entries (time_ns) WHERE kind = '` + model.KindSessionOpen + `'`,
	`CREATE INDEX entries_bounds ON entries (session, kind) WHERE kind = '` + model.KindSessionOpen + `' OR kind = '` + model.KindSessionClose + `'`,
	`CREATE INDEX entries_retention ON entries (kind) WHERE kind = '` + KindRetention + `'`,
}

// pageSize is the page size of a new journal file. Payloads (terminal
// output, file contents) are most of a journal's bytes, and SQLite writes
// each page of one as a WAL frame (two pwrites: the frame's header, then
// the page) and again into the database at the checkpoint: at 4 KiB pages
// that cost as much CPU as the proxy's relaying. Larger pages cost the
// small records: a flush of a few session.open and close records dirties
// a page in each of three B-trees, and the WAL grows by whole pages, so
// SQLite's automatic checkpoint (every 1,000 pages, 16 MB here), whose
// fsyncs hold up the appends behind it, comes as often as the page is
// large. 16 KiB keeps nearly all of the payloads' gain (docs/benchmarks.md).
const pageSize = 16 << 10

// dsn builds a go-sqlite3 URI for path. The path is escaped because
// go-sqlite3 splits the DSN at the first '?' and SQLite decodes %XX.
func dsn(path string, params url.Values) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("journal: resolve %s: %w", path, err)
	}
	return "file:" + (&url.URL{Path: abs}).EscapedPath() + "?" + params.Encode(), nil
}

// Both connections are used by one goroutine at a time (database/sql hands
// a connection to one caller; the writer's is its own), so SQLite's
// per-call connection mutex (_mutex=full, go-sqlite3's default) only costs:
// a lock and unlock around every step and every column read.

func writerDSN(path string, busy time.Duration) (string, error) {
	return dsn(path, url.Values{
		// rw, not rwc: Open created the file with the right mode, and a
		// reconnect after the file vanished must fail, not start afresh.
		"mode":          {"rw"},
		"_busy_timeout": {strconv.FormatInt(busy.Milliseconds(), 10)},
		"_mutex":        {"no"},
	})
}

func readerDSN(path string) (string, error) {
	return dsn(path, url.Values{
		"mode":          {"ro"},
		"_query_only":   {"1"},
		"_busy_timeout": {strconv.FormatInt(DefaultBusyTimeout.Milliseconds(), 10)},
		"_mutex":        {"no"},
	})
}

// checkVersion reads the schema version; ok is false when there is no meta
// table at all.
func checkVersion(ctx context.Context, q queryer) (version int64, ok bool, err error) {
	var n int
	if err := q.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'`).Scan(&n); err != nil {
		return 0, false, fmt.Errorf("journal: read schema: %w", err)
	}
	if n == 0 {
		return 0, false, nil
	}
	var v any
	err = q.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = 'schema_version'`).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, true, errors.New("journal: meta table has no schema_version: not an interlock journal")
	}
	if err != nil {
		return 0, true, fmt.Errorf("journal: read schema version: %w", err)
	}
	iv, isInt := v.(int64)
	if !isInt || iv < 1 || iv > SchemaVersion {
		return 0, true, fmt.Errorf("journal: unsupported schema version %v (this interlock knows versions 1 to %d)", v, SchemaVersion)
	}
	return iv, true, nil
}

func metaString(ctx context.Context, q queryer, key string) (string, error) {
	var v any
	err := q.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("journal: read meta %s: %w", key, err)
	}
	s, _ := v.(string)
	return s, nil
}

// initSchema creates a fresh journal, or checks (and if need be migrates)
// an existing one, inside one write transaction so that two processes
// opening a new file at once cannot both write entry 1.
func (w *writer) initSchema(ctx context.Context) (id string, created bool, err error) {
	c := w.conn
	if _, err := c.ExecContext(ctx, `BEGIN IMMEDIATE`); err != nil {
		return "", false, fmt.Errorf("journal: lock %s: %w", w.opts.Path, err)
	}
	defer func() {
		if err != nil {
			_, _ = c.ExecContext(context.Background(), `ROLLBACK`)
		}
	}()
	version, hasMeta, err := checkVersion(ctx, c)
	if err != nil {
		return "", false, err
	}
	if !hasMeta {
		var n int
		if err := c.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master`).Scan(&n); err != nil {
			return "", false, fmt.Errorf("journal: read schema: %w", err)
		}
		if n > 0 {
			return "", false, fmt.Errorf("journal: %s is an SQLite database but not an interlock journal", w.opts.Path)
		}
		if id, err = w.create(ctx); err != nil {
			return "", false, err
		}
		created = true
	} else {
		if version < SchemaVersion {
			if err := w.migrate(ctx, version); err != nil {
				return "", false, err
			}
		}
		if id, err = metaString(ctx, c, "journal_id"); err != nil {
			return "", false, err
		}
		key, err := metaString(ctx, c, "signing_key")
		if err != nil {
			return "", false, err
		}
		switch key {
		case w.cps.signer.VerifierKey:
		case "":
			if _, err := c.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES ('signing_key', ?)`, w.cps.signer.VerifierKey); err != nil {
				return "", false, fmt.Errorf("journal: record signing key: %w", err)
			}
		default:
			return "", false, fmt.Errorf("journal: %s is signed with key %s, but the key in %s is %s: "+
				"run interlock with the state_dir that holds the journal's key (checkpoints signed with another key would not verify)",
				w.opts.Path, key, w.opts.StateDir, w.cps.signer.VerifierKey)
		}
	}
	if _, err := c.ExecContext(ctx, `COMMIT`); err != nil {
		return "", false, fmt.Errorf("journal: commit schema: %w", err)
	}
	return id, created, nil
}

func (w *writer) create(ctx context.Context) (string, error) {
	c := w.conn
	for _, stmt := range schemaDDL {
		if _, err := c.ExecContext(ctx, stmt); err != nil {
			return "", fmt.Errorf("journal: create schema: %w", err)
		}
	}
	var raw [16]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", fmt.Errorf("journal: journal id: %w", err)
	}
	id := hex.EncodeToString(raw[:])
	if _, err := c.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES ('schema_version', ?), ('journal_id', ?), ('signing_key', ?)`,
		SchemaVersion, id, w.cps.signer.VerifierKey); err != nil {
		return "", fmt.Errorf("journal: write meta: %w", err)
	}
	enc, err := encodeRecord(model.Record{
		Kind: model.KindJournalOpen,
		Data: evidence.OpenData{JournalID: id, Encoding: evidence.EncodingVersion},
	})
	if err != nil {
		return "", err
	}
	t := time.Now().UnixNano()
	b := evidence.AppendBody(nil, 1, t, enc.tail)
	h := evidence.AppendChainHash(w.h, nil, make([]byte, evidence.HashSize), b)
	var cr evidence.CompactRange
	col := treeColumn(nil, cr.AddStored(tlog.RecordHash(b), nil))
	if _, err := c.ExecContext(ctx, `INSERT INTO entries (seq, time_ns, kind, session, body, hash, tree) VALUES (1, ?, ?, ?, ?, ?, ?)`,
		t, enc.kind, enc.session, b, h, col); err != nil {
		return "", fmt.Errorf("journal: write entry 1: %w", err)
	}
	return id, nil
}

// reader is a read-only connection inside one read transaction, so a
// whole walk sees one snapshot while writers go on appending. It is a
// Conn rather than a Tx so that Verify can step rows on the driver
// connection (Conn.Raw) within the same transaction.
type reader struct {
	db   *sql.DB
	conn *sql.Conn
}

func (r *reader) close() {
	_, _ = r.conn.ExecContext(context.Background(), `ROLLBACK`)
	r.conn.Close()
	r.db.Close()
}

// openReader opens path read-only and starts a read transaction.
func openReader(ctx context.Context, path string) (*reader, error) {
	// Without this check SQLite's error for a missing file is the opaque
	// "unable to open database file".
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	logged, err := beforeRead(ctx, path)
	if err != nil {
		return nil, err
	}
	d, err := readerDSN(path)
	if err != nil {
		return nil, err
	}
	db, err := sql.Open("sqlite3", d)
	if err != nil {
		return nil, fmt.Errorf("journal: open %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	conn, err := db.Conn(ctx)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("journal: open %s: %w", path, err)
	}
	if logged > 0 {
		if err := catchUp(ctx, conn, path, logged); err != nil {
			conn.Close()
			db.Close()
			return nil, err
		}
	}
	r := &reader{db: db, conn: conn}
	// The snapshot is taken at the first read, checkVersion's.
	if _, err := conn.ExecContext(ctx, `BEGIN`); err != nil {
		conn.Close()
		db.Close()
		return nil, fmt.Errorf("journal: open %s: %w", path, err)
	}
	v, ok, err := checkVersion(ctx, conn)
	switch {
	case err != nil:
	case !ok:
		err = fmt.Errorf("journal: %s is not an interlock journal (no meta table)", path)
	case v < SchemaVersion:
		err = fmt.Errorf("journal: %s has schema version %d; start interlock once (daemon or run) to upgrade it to version %d, then read it again", path, v, SchemaVersion)
	}
	if err != nil {
		r.close()
		return nil, err
	}
	return r, nil
}
