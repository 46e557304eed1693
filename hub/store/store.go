// Package store keeps the fleet hub's evidence in PostgreSQL: the hosts
// it enrolled and their join tokens, every entry each host shipped with
// the tree hashes over them, the host checkpoints it accepted and
// cosigned, the fleet log of those checkpoints and its signed
// checkpoints, and the evidence of every batch it refused (docs/hub.md).
//
// It checks nothing itself: hub/server decides what to accept and hands
// the store what to keep, and the store keeps each batch in one
// transaction under the host's row lock.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/mod/sumdb/tlog"
)

// SchemaVersion is the version of the tables below. Open creates them,
// upgrades older versions, and refuses a newer one: a hub must not write
// evidence into a layout it does not know.
const SchemaVersion = 4

// migrationLock is the advisory lock that serializes schema changes when
// several hubs start on one database at once.
const migrationLock = 0x6875627631 // "hubv1"

// migrations[i] upgrades the schema from version i to i+1.
var migrations = []string{`
CREATE TABLE hosts (
	id text PRIMARY KEY,
	name text NOT NULL,
	journal_id text NOT NULL UNIQUE,
	journal_key text NOT NULL,
	cert_fingerprint text NOT NULL,
	enrolled_at timestamptz NOT NULL,
	-- What the hub holds: entries 1..size, the chain hash of entry size
	-- (32 zero bytes before entry 1), the tree root over them, and the
	-- largest checkpoint it cosigned.
	size bigint NOT NULL DEFAULT 0,
	chain_hash bytea NOT NULL,
	root bytea,
	cosigned_size bigint NOT NULL DEFAULT 0,
	last_batch_at timestamptz
);
CREATE TABLE join_tokens (
	hash bytea PRIMARY KEY,
	created_at timestamptz NOT NULL,
	expires_at timestamptz NOT NULL,
	used_at timestamptz,
	used_by text
);
CREATE TABLE entries (
	host_id text NOT NULL REFERENCES hosts,
	seq bigint NOT NULL,
	time_ns bigint NOT NULL,
	kind text NOT NULL,
	session text NOT NULL,
	body bytea NOT NULL,
	hash bytea NOT NULL,
	salt bytea,
	payload bytea,
	leaf bytea NOT NULL,
	PRIMARY KEY (host_id, seq)
);
-- tlog stored hashes of each host's tree (tlog.StoredHashIndex): what
-- roots and proofs are computed from.
CREATE TABLE tree_hashes (
	host_id text NOT NULL REFERENCES hosts,
	idx bigint NOT NULL,
	hash bytea NOT NULL,
	PRIMARY KEY (host_id, idx)
);
CREATE TABLE checkpoints (
	host_id text NOT NULL REFERENCES hosts,
	size bigint NOT NULL,
	root bytea NOT NULL,
	note bytea NOT NULL,
	cosigned bytea NOT NULL,
	cosigned_at timestamptz NOT NULL,
	fleet_index bigint NOT NULL UNIQUE,
	PRIMARY KEY (host_id, size)
);
-- The session.open entries, with what searches filter on, so that a
-- search never parses bodies in SQL.
CREATE TABLE sessions (
	host_id text NOT NULL REFERENCES hosts,
	seq bigint NOT NULL,
	time_ns bigint NOT NULL,
	session text NOT NULL,
	target text NOT NULL,
	proc_user text NOT NULL,
	login_user text NOT NULL,
	PRIMARY KEY (host_id, seq)
);
CREATE INDEX sessions_time ON sessions (time_ns);
CREATE TABLE fleet_state (
	id int PRIMARY KEY CHECK (id = 1),
	size bigint NOT NULL,
	root bytea NOT NULL
);
CREATE TABLE fleet_leaves (
	idx bigint PRIMARY KEY,
	host_id text NOT NULL REFERENCES hosts,
	size bigint NOT NULL,
	cosigned bytea NOT NULL,
	leaf bytea NOT NULL
);
CREATE TABLE fleet_hashes (
	idx bigint PRIMARY KEY,
	hash bytea NOT NULL
);
CREATE TABLE fleet_checkpoints (
	size bigint PRIMARY KEY,
	note bytea NOT NULL,
	signed_at timestamptz NOT NULL,
	published_at timestamptz
);
CREATE TABLE refusals (
	id bigserial PRIMARY KEY,
	host_id text NOT NULL REFERENCES hosts,
	at timestamptz NOT NULL,
	code text NOT NULL,
	message text NOT NULL,
	batch_from bigint NOT NULL,
	batch_entries bigint NOT NULL,
	checkpoint bytea,
	bad_seq bigint,
	bad_body bytea,
	-- The refused batch's bodies (never payloads), as JSON, when its tree
	-- was forked or an entry bad: the evidence of what the host presented.
	bodies bytea
);
`,
	// Version 2: no foreign key from entries and tree_hashes to hosts. A
	// foreign key is checked by a trigger per row, a query and a row
	// lock on the host, about three per shipped entry: half of
	// PostgreSQL's CPU per entry (docs/benchmarks.md, "Fleet hub"). Both
	// tables are written only by Batch, under the host's row lock, in
	// the transaction that read the host, and hosts are never deleted.
	`
ALTER TABLE entries DROP CONSTRAINT entries_host_id_fkey;
ALTER TABLE tree_hashes DROP CONSTRAINT tree_hashes_host_id_fkey;
`,
	// Version 3: the operations (pg.statement, and ssh.request that run
	// something) with what statement searches filter on, filled at
	// acceptance, and from the stored entries by the upgrade
	// (indexOperations). A search joins an operation to its session's
	// open by (host_id, session), hence that index.
	`
CREATE TABLE operations (
	host_id text NOT NULL,
	seq bigint NOT NULL,
	time_ns bigint NOT NULL,
	session text NOT NULL,
	kind text NOT NULL,
	op_kinds text[] NOT NULL,
	tables text[] NOT NULL,
	text text NOT NULL,
	action text NOT NULL,
	rule text NOT NULL,
	PRIMARY KEY (host_id, seq)
);
CREATE INDEX operations_time ON operations (time_ns);
CREATE INDEX sessions_session ON sessions (host_id, session);
`,
	// Version 4: the approvals loop (approvals.go).
	approvalsSchema}

// Store is the hub's PostgreSQL store. It is safe for concurrent use.
type Store struct {
	pool *pgxpool.Pool
}

// Open connects to the database conn names (a PostgreSQL connection
// string) and brings its schema to SchemaVersion.
func Open(ctx context.Context, conn string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(conn)
	if err != nil {
		// pgx's error quotes the string, password and all.
		return nil, errors.New("hub store: the database connection string does not parse")
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("hub store: connect: %w", err)
	}
	s := &Store{pool: pool}
	if err := s.migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// Close closes the pool.
func (s *Store) Close() { s.pool.Close() }

func (s *Store) migrate(ctx context.Context) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(migrationLock)); err != nil {
			return fmt.Errorf("hub store: lock the schema: %w", err)
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS hub_schema (version int NOT NULL)`); err != nil {
			return fmt.Errorf("hub store: create hub_schema: %w", err)
		}
		var v int
		err := tx.QueryRow(ctx, `SELECT version FROM hub_schema`).Scan(&v)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			if _, err := tx.Exec(ctx, `INSERT INTO hub_schema VALUES (0)`); err != nil {
				return fmt.Errorf("hub store: init hub_schema: %w", err)
			}
		case err != nil:
			return fmt.Errorf("hub store: read the schema version: %w", err)
		}
		if v > SchemaVersion {
			return fmt.Errorf("hub store: the database has schema version %d, newer than this hub's %d: upgrade the hub", v, SchemaVersion)
		}
		for ; v < SchemaVersion; v++ {
			if _, err := tx.Exec(ctx, migrations[v]); err != nil {
				return fmt.Errorf("hub store: migrate schema %d to %d: %w", v, v+1, err)
			}
			if v == 2 {
				if err := indexOperations(ctx, tx); err != nil {
					return err
				}
			}
			if v == 0 {
				empty, _ := tlog.TreeHash(0, nil)
				if _, err := tx.Exec(ctx, `INSERT INTO fleet_state VALUES (1, 0, $1)`, empty[:]); err != nil {
					return fmt.Errorf("hub store: init the fleet log: %w", err)
				}
			}
		}
		if _, err := tx.Exec(ctx, `UPDATE hub_schema SET version = $1`, SchemaVersion); err != nil {
			return fmt.Errorf("hub store: set the schema version: %w", err)
		}
		return nil
	})
}

// hashReader reads stored hashes of one tree (a host's, or the fleet
// log's when host is "") for tlog's proofs.
type hashReader struct {
	ctx  context.Context
	q    querier
	host string
}

type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func (r hashReader) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	var rows pgx.Rows
	var err error
	if r.host == "" {
		rows, err = r.q.Query(r.ctx, `SELECT idx, hash FROM fleet_hashes WHERE idx = ANY($1)`, indexes)
	} else {
		rows, err = r.q.Query(r.ctx, `SELECT idx, hash FROM tree_hashes WHERE host_id = $1 AND idx = ANY($2)`, r.host, indexes)
	}
	if err != nil {
		return nil, fmt.Errorf("hub store: read tree hashes: %w", err)
	}
	got := map[int64]tlog.Hash{}
	for rows.Next() {
		var idx int64
		var b []byte
		if err := rows.Scan(&idx, &b); err != nil {
			return nil, fmt.Errorf("hub store: read tree hashes: %w", err)
		}
		if len(b) != tlog.HashSize {
			return nil, fmt.Errorf("hub store: tree hash %d is %d bytes", idx, len(b))
		}
		got[idx] = tlog.Hash(b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("hub store: read tree hashes: %w", err)
	}
	out := make([]tlog.Hash, len(indexes))
	for i, idx := range indexes {
		h, ok := got[idx]
		if !ok {
			return nil, fmt.Errorf("hub store: tree hash %d is missing", idx)
		}
		out[i] = h
	}
	return out, nil
}

// TreeHashes reads a host's stored tree hashes, for tlog's TreeHash,
// ProveRecord and ProveTree.
func (s *Store) TreeHashes(ctx context.Context, hostID string) tlog.HashReader {
	return hashReader{ctx: ctx, q: s.pool, host: hostID}
}

// FleetHashes reads the fleet log's stored hashes.
func (s *Store) FleetHashes(ctx context.Context) tlog.HashReader {
	return hashReader{ctx: ctx, q: s.pool}
}

func timeOrZero(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return *t
}
