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

// The session index leads with session and carries kind so that finding a
// session's close entry is one index probe, not a walk over all its
// statements. The kind index carries time_ns so "sessions since T" is a
// range scan already in time order.
//
// payloads is keyed by the entry's seq; a retention job deletes its rows
// (salt with them) and the entry's commitment stays. checkpoints keeps every
// signed tree head this journal issued, for verify and export.
var schemaDDL = []string{
	`CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value NOT NULL)`,
	`CREATE TABLE entries (
		seq     INTEGER PRIMARY KEY,
		time_ns INTEGER NOT NULL,
		kind    TEXT NOT NULL,
		session TEXT NOT NULL,
		body    BLOB NOT NULL,
		hash    BLOB NOT NULL,
		tree    BLOB NOT NULL
	)`,
	`CREATE INDEX entries_session ON entries (session, kind)`,
	`CREATE INDEX entries_kind ON entries (kind, time_ns)`,
	`CREATE TABLE payloads (seq INTEGER PRIMARY KEY, salt BLOB NOT NULL, data BLOB NOT NULL)`,
	`CREATE TABLE checkpoints (id INTEGER PRIMARY KEY, tree_size INTEGER NOT NULL, time_ns INTEGER NOT NULL, note BLOB NOT NULL)`,
	`CREATE INDEX checkpoints_size ON checkpoints (tree_size, time_ns)`,
}

// migrateV1 turns the first journal layout (no tree, payloads or
// checkpoints) into version 2. The tree column is filled in by backfillTree.
var migrateV1 = []string{
	`ALTER TABLE entries ADD COLUMN tree BLOB NOT NULL DEFAULT x''`,
	`CREATE TABLE payloads (seq INTEGER PRIMARY KEY, salt BLOB NOT NULL, data BLOB NOT NULL)`,
	`CREATE TABLE checkpoints (id INTEGER PRIMARY KEY, tree_size INTEGER NOT NULL, time_ns INTEGER NOT NULL, note BLOB NOT NULL)`,
	`CREATE INDEX checkpoints_size ON checkpoints (tree_size, time_ns)`,
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
	if !isInt || (iv != SchemaVersion && iv != 1) {
		return 0, true, fmt.Errorf("journal: unsupported schema version %v (this interlock knows versions 1 and %d)", v, SchemaVersion)
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
		if version == 1 {
			if err := w.migrate(ctx); err != nil {
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

// migrate upgrades a version 1 journal in place. Its entries keep their
// bytes and hashes; only the tree hashes are added.
func (w *writer) migrate(ctx context.Context) error {
	c := w.conn
	for _, stmt := range migrateV1 {
		if _, err := c.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("journal: upgrade schema 1 to %d: %w", SchemaVersion, err)
		}
	}
	rows, err := c.QueryContext(ctx, `SELECT seq, body FROM entries ORDER BY seq`)
	if err != nil {
		return fmt.Errorf("journal: upgrade: read entries: %w", err)
	}
	type upd struct {
		seq int64
		col []byte
	}
	var cr evidence.CompactRange
	var ups []upd
	var buf []tlog.Hash
	for rows.Next() {
		var seq int64
		var body []byte
		if err := rows.Scan(&seq, &body); err != nil {
			rows.Close()
			return fmt.Errorf("journal: upgrade: read entry: %w", err)
		}
		if seq != cr.Size()+1 {
			rows.Close()
			return fmt.Errorf("journal: upgrade: entry %d missing; run `interlock journal verify` on this version 1 journal with the interlock that wrote it", cr.Size()+1)
		}
		buf = cr.AddStored(tlog.RecordHash(body), buf)
		ups = append(ups, upd{seq, treeColumn(nil, buf)})
	}
	if err := rows.Err(); err != nil {
		rows.Close()
		return fmt.Errorf("journal: upgrade: read entries: %w", err)
	}
	rows.Close()
	for _, u := range ups {
		if _, err := c.ExecContext(ctx, `UPDATE entries SET tree = ? WHERE seq = ?`, u.col, u.seq); err != nil {
			return fmt.Errorf("journal: upgrade: write tree of entry %d: %w", u.seq, err)
		}
	}
	if _, err := c.ExecContext(ctx, `UPDATE meta SET value = ? WHERE key = 'schema_version'`, SchemaVersion); err != nil {
		return fmt.Errorf("journal: upgrade: %w", err)
	}
	w.log.Info("journal upgraded", "from_schema", 1, "to_schema", SchemaVersion, "entries", len(ups))
	return nil
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
	v, ok, err := checkVersion(ctx, tx)
	switch {
	case err != nil:
	case !ok:
		err = fmt.Errorf("journal: %s is not an interlock journal (no meta table)", path)
	case v == 1:
		err = fmt.Errorf("journal: %s has schema version 1; start interlock once (daemon or run) to upgrade it to version %d, then read it again", path, SchemaVersion)
	}
	if err != nil {
		tx.Rollback()
		db.Close()
		return nil, nil, err
	}
	return db, tx, nil
}
