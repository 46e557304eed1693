package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/mod/sumdb/tlog"
)

// Entries returns a host's entries from seq from through to, in order.
func (s *Store) Entries(ctx context.Context, hostID string, from, to int64) ([]Entry, error) {
	rows, err := s.pool.Query(ctx, `SELECT seq, time_ns, kind, session, body, hash, leaf, salt, payload
		FROM entries WHERE host_id = $1 AND seq BETWEEN $2 AND $3 ORDER BY seq`, hostID, from, to)
	if err != nil {
		return nil, fmt.Errorf("hub store: read entries of %s: %w", hostID, err)
	}
	defer rows.Close()
	var out []Entry
	for rows.Next() {
		var e Entry
		if err := rows.Scan(&e.Seq, &e.TimeNS, &e.Kind, &e.Session, &e.Body, &e.Hash, &e.Leaf, &e.Salt, &e.Payload); err != nil {
			return nil, fmt.Errorf("hub store: read entries of %s: %w", hostID, err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("hub store: read entries of %s: %w", hostID, err)
	}
	return out, nil
}

// Checkpoint is a host checkpoint the hub accepted.
type Checkpoint struct {
	HostID     string
	Size       int64
	Root       []byte
	Note       []byte
	Cosigned   []byte
	CosignedAt time.Time
	// FleetIndex is its leaf index in the fleet log.
	FleetIndex int64
}

// Checkpoints lists a host's accepted checkpoints, smallest first.
func (s *Store) Checkpoints(ctx context.Context, hostID string) ([]Checkpoint, error) {
	rows, err := s.pool.Query(ctx, `SELECT host_id, size, root, note, cosigned, cosigned_at, fleet_index
		FROM checkpoints WHERE host_id = $1 ORDER BY size`, hostID)
	if err != nil {
		return nil, fmt.Errorf("hub store: read checkpoints of %s: %w", hostID, err)
	}
	defer rows.Close()
	var out []Checkpoint
	for rows.Next() {
		var c Checkpoint
		if err := rows.Scan(&c.HostID, &c.Size, &c.Root, &c.Note, &c.Cosigned, &c.CosignedAt, &c.FleetIndex); err != nil {
			return nil, fmt.Errorf("hub store: read checkpoints of %s: %w", hostID, err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("hub store: read checkpoints of %s: %w", hostID, err)
	}
	return out, nil
}

// StoredRefusal is a refusal as kept.
type StoredRefusal struct {
	Refusal
	ID     int64
	HostID string
	At     time.Time
}

// Refusals lists a host's refused batches, oldest first.
func (s *Store) Refusals(ctx context.Context, hostID string) ([]StoredRefusal, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, host_id, at, code, message, batch_from, batch_entries, checkpoint,
		coalesce(bad_seq, 0), bad_body, bodies FROM refusals WHERE host_id = $1 ORDER BY id`, hostID)
	if err != nil {
		return nil, fmt.Errorf("hub store: read refusals of %s: %w", hostID, err)
	}
	defer rows.Close()
	var out []StoredRefusal
	for rows.Next() {
		var r StoredRefusal
		var bodies []byte
		if err := rows.Scan(&r.ID, &r.HostID, &r.At, &r.Code, &r.Message, &r.From, &r.Entries, &r.Checkpoint,
			&r.BadSeq, &r.BadBody, &bodies); err != nil {
			return nil, fmt.Errorf("hub store: read refusals of %s: %w", hostID, err)
		}
		if bodies != nil {
			if err := json.Unmarshal(bodies, &r.Bodies); err != nil {
				return nil, fmt.Errorf("hub store: refusal %d: bodies: %w", r.ID, err)
			}
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("hub store: read refusals of %s: %w", hostID, err)
	}
	return out, nil
}

// FleetHead is the fleet log's size and root.
func (s *Store) FleetHead(ctx context.Context) (int64, tlog.Hash, error) {
	var n int64
	var root []byte
	if err := s.pool.QueryRow(ctx, `SELECT size, root FROM fleet_state WHERE id = 1`).Scan(&n, &root); err != nil {
		return 0, tlog.Hash{}, fmt.Errorf("hub store: read the fleet log's head: %w", err)
	}
	if len(root) != tlog.HashSize {
		return 0, tlog.Hash{}, fmt.Errorf("hub store: the fleet log's root is %d bytes", len(root))
	}
	return n, tlog.Hash(root), nil
}

// FleetLeaf is one leaf of the fleet log.
type FleetLeaf struct {
	Index    int64
	HostID   string
	Size     int64
	Cosigned []byte
}

// FleetLeaves returns the fleet log's leaves from index from (0-based)
// through to.
func (s *Store) FleetLeaves(ctx context.Context, from, to int64) ([]FleetLeaf, error) {
	rows, err := s.pool.Query(ctx, `SELECT idx, host_id, size, cosigned FROM fleet_leaves WHERE idx BETWEEN $1 AND $2 ORDER BY idx`, from, to)
	if err != nil {
		return nil, fmt.Errorf("hub store: read fleet leaves: %w", err)
	}
	defer rows.Close()
	var out []FleetLeaf
	for rows.Next() {
		var l FleetLeaf
		if err := rows.Scan(&l.Index, &l.HostID, &l.Size, &l.Cosigned); err != nil {
			return nil, fmt.Errorf("hub store: read fleet leaves: %w", err)
		}
		out = append(out, l)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("hub store: read fleet leaves: %w", err)
	}
	return out, nil
}

// FleetCheckpoint is a signed fleet checkpoint.
type FleetCheckpoint struct {
	Size        int64
	Note        []byte
	SignedAt    time.Time
	PublishedAt time.Time
}

// ErrNoFleetCheckpoint: none was signed yet.
var ErrNoFleetCheckpoint = errors.New("hub store: no fleet checkpoint yet")

// LatestFleetCheckpoint returns the fleet checkpoint of the largest tree.
func (s *Store) LatestFleetCheckpoint(ctx context.Context) (FleetCheckpoint, error) {
	var c FleetCheckpoint
	var pub *time.Time
	err := s.pool.QueryRow(ctx, `SELECT size, note, signed_at, published_at FROM fleet_checkpoints ORDER BY size DESC LIMIT 1`).
		Scan(&c.Size, &c.Note, &c.SignedAt, &pub)
	if errors.Is(err, pgx.ErrNoRows) {
		return c, ErrNoFleetCheckpoint
	}
	if err != nil {
		return c, fmt.Errorf("hub store: read the fleet checkpoint: %w", err)
	}
	c.PublishedAt = timeOrZero(pub)
	return c, nil
}

// ErrNoSuchFleetCheckpoint: the hub signed no fleet checkpoint of the
// size asked for.
var ErrNoSuchFleetCheckpoint = errors.New("hub store: the hub signed no fleet checkpoint of that size")

// FleetCheckpointOfSize returns the fleet checkpoint of the tree of size
// leaves.
func (s *Store) FleetCheckpointOfSize(ctx context.Context, size int64) (FleetCheckpoint, error) {
	var c FleetCheckpoint
	var pub *time.Time
	err := s.pool.QueryRow(ctx, `SELECT size, note, signed_at, published_at FROM fleet_checkpoints WHERE size = $1`, size).
		Scan(&c.Size, &c.Note, &c.SignedAt, &pub)
	if errors.Is(err, pgx.ErrNoRows) {
		return c, fmt.Errorf("%w (%d)", ErrNoSuchFleetCheckpoint, size)
	}
	if err != nil {
		return c, fmt.Errorf("hub store: read fleet checkpoint %d: %w", size, err)
	}
	c.PublishedAt = timeOrZero(pub)
	return c, nil
}

// AddFleetCheckpoint keeps a signed fleet checkpoint. One for a size
// already kept is left as it was: the first signed stays the evidence.
func (s *Store) AddFleetCheckpoint(ctx context.Context, size int64, note []byte, at time.Time) error {
	if _, err := s.pool.Exec(ctx, `INSERT INTO fleet_checkpoints (size, note, signed_at) VALUES ($1, $2, $3)
		ON CONFLICT (size) DO NOTHING`, size, note, at); err != nil {
		return fmt.Errorf("hub store: keep fleet checkpoint %d: %w", size, err)
	}
	return nil
}

// Unpublished lists the fleet checkpoints not yet published, smallest
// first.
func (s *Store) Unpublished(ctx context.Context) ([]FleetCheckpoint, error) {
	rows, err := s.pool.Query(ctx, `SELECT size, note, signed_at FROM fleet_checkpoints WHERE published_at IS NULL ORDER BY size`)
	if err != nil {
		return nil, fmt.Errorf("hub store: read unpublished fleet checkpoints: %w", err)
	}
	defer rows.Close()
	var out []FleetCheckpoint
	for rows.Next() {
		var c FleetCheckpoint
		if err := rows.Scan(&c.Size, &c.Note, &c.SignedAt); err != nil {
			return nil, fmt.Errorf("hub store: read unpublished fleet checkpoints: %w", err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// MarkPublished records that a fleet checkpoint reached the bucket.
func (s *Store) MarkPublished(ctx context.Context, size int64, at time.Time) error {
	if _, err := s.pool.Exec(ctx, `UPDATE fleet_checkpoints SET published_at = $2 WHERE size = $1`, size, at); err != nil {
		return fmt.Errorf("hub store: mark fleet checkpoint %d published: %w", size, err)
	}
	return nil
}

// SessionFilter narrows a session search; zero fields match all.
type SessionFilter struct {
	HostID string
	// Since and Until bound the open time (Until exclusive).
	Since, Until time.Time
	// User matches the process's user or the human's login user.
	User   string
	Target string
	// Limit caps the result to the newest; Search caps it at 1000.
	Limit int
}

// Session is a session.open entry a search found.
type Session struct {
	HostID   string `json:"host_id"`
	HostName string `json:"host_name"`
	Seq      int64  `json:"seq"`
	TimeNS   int64  `json:"time_ns"`
	Session  string `json:"session"`
	// Body is the entry's body, which the host's tree vouches for.
	Body []byte `json:"-"`
}

// MaxSessions bounds one search.
const MaxSessions = 1000

// timeRange is a search's bounds in nanoseconds: a zero time leaves
// that side open.
func timeRange(since, until time.Time) (int64, int64) {
	lo, hi := int64(-1<<63), int64(1<<63-1)
	if !since.IsZero() {
		lo = since.UnixNano()
	}
	if !until.IsZero() {
		hi = until.UnixNano()
	}
	return lo, hi
}

// Sessions searches the session.open entries of all hosts, newest first.
func (s *Store) Sessions(ctx context.Context, f SessionFilter) ([]Session, error) {
	limit := f.Limit
	if limit <= 0 || limit > MaxSessions {
		limit = MaxSessions
	}
	since, until := timeRange(f.Since, f.Until)
	rows, err := s.pool.Query(ctx, `SELECT o.host_id, h.name, o.seq, o.time_ns, o.session, e.body
		FROM sessions o JOIN hosts h ON h.id = o.host_id JOIN entries e ON e.host_id = o.host_id AND e.seq = o.seq
		WHERE o.time_ns >= $1 AND o.time_ns < $2
		AND ($3 = '' OR o.host_id = $3)
		AND ($4 = '' OR o.proc_user = $4 OR o.login_user = $4)
		AND ($5 = '' OR o.target = $5)
		ORDER BY o.time_ns DESC, o.host_id, o.seq DESC LIMIT $6`,
		since, until, f.HostID, f.User, f.Target, limit)
	if err != nil {
		return nil, fmt.Errorf("hub store: search sessions: %w", err)
	}
	defer rows.Close()
	out := []Session{}
	for rows.Next() {
		var x Session
		if err := rows.Scan(&x.HostID, &x.HostName, &x.Seq, &x.TimeNS, &x.Session, &x.Body); err != nil {
			return nil, fmt.Errorf("hub store: search sessions: %w", err)
		}
		out = append(out, x)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("hub store: search sessions: %w", err)
	}
	return out, nil
}
