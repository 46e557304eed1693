package journal

// Upgrades of older journal layouts, run by Open inside its schema
// transaction. Entries keep their bytes and hashes: only where they are
// stored, and what is stored beside them, changes.

import (
	"context"
	"fmt"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/interlock/interlock/journal/evidence"
)

// migrateV1 turns the first layout (no tree, payloads or checkpoints) into
// version 2. The tree column is filled in by backfillTree.
var migrateV1 = []string{
	`ALTER TABLE entries ADD COLUMN tree BLOB NOT NULL DEFAULT x''`,
	`CREATE TABLE payloads (seq INTEGER PRIMARY KEY, salt BLOB NOT NULL, data BLOB NOT NULL)`,
	`CREATE TABLE checkpoints (id INTEGER PRIMARY KEY, tree_size INTEGER NOT NULL, time_ns INTEGER NOT NULL, note BLOB NOT NULL)`,
	`CREATE INDEX checkpoints_size ON checkpoints (tree_size, time_ns)`,
}

// migrateV2 turns version 2 into version 3: payloads move into their
// entries' rows, and the two indexes over every entry give way to the
// partial ones. The orphan check runs first.
var migrateV2 = append([]string{
	`ALTER TABLE entries ADD COLUMN salt BLOB`,
	`ALTER TABLE entries ADD COLUMN payload BLOB`,
	`UPDATE entries SET (salt, payload) = (SELECT p.salt, p.data FROM payloads AS p WHERE p.seq = entries.seq)
		WHERE seq IN (SELECT seq FROM payloads)`,
	`DROP TABLE payloads`,
	`DROP INDEX IF EXISTS entries_session`,
	`DROP INDEX IF EXISTS entries_kind`,
}, entryIndexes...)

// migrate upgrades a journal of schema version from to SchemaVersion in
// place.
func (w *writer) migrate(ctx context.Context, from int64) error {
	c := w.conn
	if from == 1 {
		for _, stmt := range migrateV1 {
			if _, err := c.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("journal: upgrade schema 1 to 2: %w", err)
			}
		}
		if err := w.backfillTree(ctx); err != nil {
			return err
		}
	}
	// A payload row whose entry is gone is evidence of an edit (Verify of
	// a version 2 journal reports it); moving the payloads into the rows
	// would drop it without a trace.
	var orphans int64
	if err := c.QueryRowContext(ctx, `SELECT count(*) FROM payloads WHERE seq NOT IN (SELECT seq FROM entries)`).Scan(&orphans); err != nil {
		return fmt.Errorf("journal: upgrade schema 2 to 3: %w", err)
	}
	if orphans > 0 {
		return fmt.Errorf("journal: upgrade schema 2 to 3: %d payload rows belong to no entry; "+
			"run `interlock journal verify` on this version 2 journal with the interlock that wrote it", orphans)
	}
	for _, stmt := range migrateV2 {
		if _, err := c.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("journal: upgrade schema 2 to 3: %w", err)
		}
	}
	if _, err := c.ExecContext(ctx, `UPDATE meta SET value = ? WHERE key = 'schema_version'`, SchemaVersion); err != nil {
		return fmt.Errorf("journal: upgrade: %w", err)
	}
	var n int64
	if err := c.QueryRowContext(ctx, `SELECT count(*) FROM entries`).Scan(&n); err != nil {
		return fmt.Errorf("journal: upgrade: %w", err)
	}
	w.log.Info("journal upgraded", "from_schema", from, "to_schema", SchemaVersion, "entries", n)
	return nil
}

// backfillTree computes the tree column of a version 1 journal's entries.
func (w *writer) backfillTree(ctx context.Context) error {
	c := w.conn
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
	return nil
}
