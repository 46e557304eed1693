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

	"github.com/interlock/interlock/model"
)

// The session index leads with session and carries kind so that finding a
// session's close entry is one index probe, not a walk over all its
// statements. The kind index carries time_ns so "sessions since T" is a
// range scan already in time order.
var schemaDDL = []string{
	`CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value NOT NULL)`,
	`CREATE TABLE entries (
		seq     INTEGER PRIMARY KEY,
		time_ns INTEGER NOT NULL,
		kind    TEXT NOT NULL,
		session TEXT NOT NULL,
		body    BLOB NOT NULL,
		hash    BLOB NOT NULL
	)`,
	`CREATE INDEX entries_session ON entries (session, kind)`,
	`CREATE INDEX entries_kind ON entries (kind, time_ns)`,
}

// OpenData is the data of entry 1, kind model.KindJournalOpen.
type OpenData struct {
	// JournalID is 16 random bytes in hex; it tells journals apart when
	// bundles are exported and checkpoints signed.
	JournalID string `json:"journal_id"`
	Encoding  int    `json:"encoding"`
}

// dsn builds a go-sqlite3 URI for path. The path is escaped because
// go-sqlite3 splits the DSN at the first '?' and SQLite decodes %XX.
func dsn(path string, params url.Values) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("journal: resolve %s: %w", path, err)
	}
	return "file:" + (&url.URL{Path: abs}).EscapedPath() + "?" + params.Encode(), nil
}

func writerDSN(path string, busy time.Duration) (string, error) {
	return dsn(path, url.Values{
		// rw, not rwc: Open created the file with the right mode, and a
		// reconnect after the file vanished must fail, not start afresh.
		"mode":          {"rw"},
		"_busy_timeout": {strconv.FormatInt(busy.Milliseconds(), 10)},
	})
}

func readerDSN(path string) (string, error) {
	return dsn(path, url.Values{
		"mode":          {"ro"},
		"_query_only":   {"1"},
		"_busy_timeout": {strconv.FormatInt(DefaultBusyTimeout.Milliseconds(), 10)},
	})
}

// checkVersion reads the schema version; ok is false when there is no meta
// table at all.
func checkVersion(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}) (ok bool, err error) {
	var n int
	if err := q.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'`).Scan(&n); err != nil {
		return false, fmt.Errorf("journal: read schema: %w", err)
	}
	if n == 0 {
		return false, nil
	}
	var v any
	err = q.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = 'schema_version'`).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return true, errors.New("journal: meta table has no schema_version: not an interlock journal")
	}
	if err != nil {
		return true, fmt.Errorf("journal: read schema version: %w", err)
	}
	if iv, isInt := v.(int64); !isInt || iv != SchemaVersion {
		return true, fmt.Errorf("journal: unsupported schema version %v (this interlock knows version %d)", v, SchemaVersion)
	}
	return true, nil
}

// initSchema creates a fresh journal, or checks an existing one, inside one
// write transaction so that two processes opening a new file at once
// cannot both write entry 1.
func (w *writer) initSchema(ctx context.Context) (id string, head uint64, created bool, err error) {
	c := w.conn
	if _, err := c.ExecContext(ctx, `BEGIN IMMEDIATE`); err != nil {
		return "", 0, false, fmt.Errorf("journal: lock %s: %w", w.opts.Path, err)
	}
	defer func() {
		if err != nil {
			_, _ = c.ExecContext(context.Background(), `ROLLBACK`)
		}
	}()
	hasMeta, err := checkVersion(ctx, c)
	if err != nil {
		return "", 0, false, err
	}
	if !hasMeta {
		var n int
		if err := c.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master`).Scan(&n); err != nil {
			return "", 0, false, fmt.Errorf("journal: read schema: %w", err)
		}
		if n > 0 {
			return "", 0, false, fmt.Errorf("journal: %s is an SQLite database but not an interlock journal", w.opts.Path)
		}
		if id, err = w.create(ctx); err != nil {
			return "", 0, false, err
		}
		head, created = 1, true
	} else {
		var s int64
		err := c.QueryRowContext(ctx, `SELECT seq FROM entries ORDER BY seq DESC LIMIT 1`).Scan(&s)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return "", 0, false, fmt.Errorf("journal: read head: %w", err)
		}
		head = uint64(s)
		var v any
		err = c.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = 'journal_id'`).Scan(&v)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return "", 0, false, fmt.Errorf("journal: read journal id: %w", err)
		}
		if s, ok := v.(string); ok {
			id = s
		}
	}
	if _, err := c.ExecContext(ctx, `COMMIT`); err != nil {
		return "", 0, false, fmt.Errorf("journal: commit schema: %w", err)
	}
	return id, head, created, nil
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
	if _, err := c.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES ('schema_version', ?), ('journal_id', ?)`, SchemaVersion, id); err != nil {
		return "", fmt.Errorf("journal: write meta: %w", err)
	}
	enc, err := encodeRecord(model.Record{
		Kind: model.KindJournalOpen,
		Data: OpenData{JournalID: id, Encoding: EncodingVersion},
	})
	if err != nil {
		return "", err
	}
	t := time.Now().UnixNano()
	b := appendBody(nil, 1, t, enc.tail)
	h := chainHash(w.h, nil, make([]byte, HashSize), b)
	if _, err := c.ExecContext(ctx, `INSERT INTO entries (seq, time_ns, kind, session, body, hash) VALUES (1, ?, ?, ?, ?, ?)`,
		t, enc.kind, enc.session, b, h); err != nil {
		return "", fmt.Errorf("journal: write entry 1: %w", err)
	}
	return id, nil
}

// openReader opens path read-only and starts a read transaction, so a
// whole walk sees one snapshot while writers go on appending.
func openReader(ctx context.Context, path string) (*sql.DB, *sql.Tx, error) {
	// Without this check SQLite's error for a missing file is the opaque
	// "unable to open database file".
	if _, err := os.Stat(path); err != nil {
		return nil, nil, fmt.Errorf("journal: %w", err)
	}
	d, err := readerDSN(path)
	if err != nil {
		return nil, nil, err
	}
	db, err := sql.Open("sqlite3", d)
	if err != nil {
		return nil, nil, fmt.Errorf("journal: open %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	tx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("journal: open %s: %w", path, err)
	}
	ok, err := checkVersion(ctx, tx)
	if err == nil && !ok {
		err = fmt.Errorf("journal: %s is not an interlock journal (no meta table)", path)
	}
	if err != nil {
		tx.Rollback()
		db.Close()
		return nil, nil, err
	}
	return db, tx, nil
}
