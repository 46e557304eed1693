package journal

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/interlock/interlock/journal/evidence"
	"github.com/interlock/interlock/model"
)

// Snapshot is a read-only view of a journal at one moment, for exporters:
// everything read through it belongs to the same state of the file, while
// writers go on appending.
type Snapshot struct {
	ctx  context.Context
	r    *reader
	Path string
	// JournalID and SigningKey are from the meta table; Head is the last
	// entry's seq.
	JournalID  string
	SigningKey string
	Head       int64
}

// OpenSnapshot opens path read-only; Close releases it.
func OpenSnapshot(ctx context.Context, path string) (*Snapshot, error) {
	r, err := openReader(ctx, path)
	if err != nil {
		return nil, err
	}
	s := &Snapshot{ctx: ctx, r: r, Path: path}
	if s.JournalID, err = metaString(ctx, r.conn, "journal_id"); err == nil {
		s.SigningKey, err = metaString(ctx, r.conn, "signing_key")
	}
	if err == nil {
		err = r.conn.QueryRowContext(ctx, `SELECT coalesce(max(seq), 0) FROM entries`).Scan(&s.Head)
	}
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("journal: read %s: %w", path, err)
	}
	return s, nil
}

// Close ends the snapshot.
func (s *Snapshot) Close() error {
	s.r.close()
	return nil
}

// Checkpoints returns every stored checkpoint, each verified with v, sorted
// by tree size then time. One that does not verify is an error: an
// exporter must not pass on a checkpoint it cannot vouch for.
func (s *Snapshot) Checkpoints(v note.Verifier) ([]evidence.Checkpoint, error) {
	rows, err := s.r.conn.QueryContext(s.ctx, `SELECT id, note FROM checkpoints ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("journal: read checkpoints: %w", err)
	}
	defer rows.Close()
	var out []evidence.Checkpoint
	for rows.Next() {
		var id int64
		var msg []byte
		if err := rows.Scan(&id, &msg); err != nil {
			return nil, fmt.Errorf("journal: read checkpoints: %w", err)
		}
		cp, err := evidence.ParseCheckpoint(msg, v)
		if err != nil {
			return nil, fmt.Errorf("journal: stored checkpoint %d: %w", id, err)
		}
		if cp.Origin != evidence.Origin(s.JournalID) {
			return nil, fmt.Errorf("journal: stored checkpoint %d is for journal %s", id, cp.JournalID())
		}
		out = append(out, cp)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("journal: read checkpoints: %w", err)
	}
	sort.SliceStable(out, func(i, k int) bool {
		if out[i].Size != out[k].Size {
			return out[i].Size < out[k].Size
		}
		return out[i].TimeNS < out[k].TimeNS
	})
	return out, nil
}

// Entries calls fn for each entry with first <= seq <= last, in order, with
// its payload and salt when present. fn must not keep the slices.
func (s *Snapshot) Entries(first, last int64, fn func(Entry) error) error {
	rows, err := s.r.conn.QueryContext(s.ctx, `SELECT seq, time_ns, kind, session, body, hash, salt, payload
		FROM entries WHERE seq BETWEEN ? AND ? ORDER BY seq`, first, last)
	if err != nil {
		return fmt.Errorf("journal: read entries: %w", err)
	}
	defer rows.Close()
	var raw struct{ body, hash, salt, pay sql.RawBytes }
	for rows.Next() {
		var e Entry
		var seq int64
		if err := rows.Scan(&seq, &e.TimeNS, &e.Kind, &e.Session, &raw.body, &raw.hash, &raw.salt, &raw.pay); err != nil {
			return fmt.Errorf("journal: read entry: %w", err)
		}
		e.Seq, e.Body, e.Hash, e.Salt, e.Payload = uint64(seq), raw.body, raw.hash, raw.salt, raw.pay
		if err := fn(e); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("journal: read entries: %w", err)
	}
	return nil
}

// SessionEntries calls fn for each entry of one session, in order: from
// its session.open to its session.close, or up to last while it has none
// (nor an open: then from entry 1). The two are found by entries_bounds and
// the walk reads the entries between them: there is no index over every
// entry's session, which would cost every commit a page. A record of the
// session written after its close (a summarised limit hit) is not visited;
// SelectRange, which an export's selection rests on, finds those too.
func (s *Snapshot) SessionEntries(session string, last int64, fn func(Entry) error) error {
	from, to, err := s.sessionBounds(session, last)
	if err != nil {
		return err
	}
	rows, err := s.r.conn.QueryContext(s.ctx, `SELECT seq, time_ns, kind, body, payload
		FROM entries WHERE session = ? AND seq BETWEEN ? AND ? ORDER BY seq`, session, from, to)
	if err != nil {
		return fmt.Errorf("journal: read session %s: %w", session, err)
	}
	defer rows.Close()
	for rows.Next() {
		e := Entry{Session: session}
		var seq int64
		if err := rows.Scan(&seq, &e.TimeNS, &e.Kind, &e.Body, &e.Payload); err != nil {
			return fmt.Errorf("journal: read session %s: %w", session, err)
		}
		e.Seq = uint64(seq)
		if err := fn(e); err != nil {
			return err
		}
	}
	return rows.Err()
}

// sqlSessionBounds is two probes of entries_bounds.
const sqlSessionBounds = `SELECT
	(SELECT min(seq) FROM entries WHERE session = ?1 AND kind = '` + model.KindSessionOpen + `'),
	(SELECT min(seq) FROM entries WHERE session = ?1 AND kind = '` + model.KindSessionClose + `' AND seq <= ?2)`

// sessionBounds returns the seqs of the session's first session.open (1
// when it has none: a session's records follow its open, which inspect
// writes first) and of its first session.close at or before last (last
// when it has none).
func (s *Snapshot) sessionBounds(session string, last int64) (from, to int64, err error) {
	var open, closed sql.NullInt64
	err = s.r.conn.QueryRowContext(s.ctx, sqlSessionBounds, session, last).Scan(&open, &closed)
	if err != nil {
		return 0, 0, fmt.Errorf("journal: find session %s: %w", session, err)
	}
	from, to = max(open.Int64, 1), last
	if closed.Valid {
		to = closed.Int64
	}
	return from, to, nil
}

// Selection narrows an export.
type Selection struct {
	// Since and Until bound the entries' times (inclusive); zero is open.
	Since, Until time.Time
	// Session keeps one session's entries; "" keeps all.
	Session string
}

// Matches reports whether an entry is selected.
func (sel Selection) Matches(timeNS int64, session string) bool {
	return (sel.Since.IsZero() || timeNS >= sel.Since.UnixNano()) &&
		(sel.Until.IsZero() || timeNS <= sel.Until.UnixNano()) &&
		(sel.Session == "" || session == sel.Session)
}

// SelectRange returns the smallest and largest seq, up to last, of the
// entries sel keeps; found is false when none matches.
func (s *Snapshot) SelectRange(sel Selection, last int64) (first, end int64, found bool, err error) {
	since, until := int64(-1<<63), int64(1<<63-1)
	if !sel.Since.IsZero() {
		since = sel.Since.UnixNano()
	}
	if !sel.Until.IsZero() {
		until = sel.Until.UnixNano()
	}
	q := `SELECT min(seq), max(seq) FROM entries WHERE seq BETWEEN ? AND ? AND time_ns BETWEEN ? AND ?`
	args := []any{1, last, since, until}
	if sel.Session != "" {
		// Records of the session may follow its close (a summarised
		// limit hit): only the start is bounded.
		from, _, err := s.sessionBounds(sel.Session, last)
		if err != nil {
			return 0, 0, false, err
		}
		q += ` AND session = ?`
		args = append(args, sel.Session)
		args[0] = from
	}
	var lo, hi sql.NullInt64
	if err := s.r.conn.QueryRowContext(s.ctx, q, args...).Scan(&lo, &hi); err != nil {
		return 0, 0, false, fmt.Errorf("journal: select entries: %w", err)
	}
	return lo.Int64, hi.Int64, lo.Valid, nil
}

// HashReader reads the stored tree hashes, for tlog's proofs.
func (s *Snapshot) HashReader() tlog.HashReader { return hashReader{sqlTrees(s.ctx, s.r.conn)} }

// Frontier returns the frontier hashes of the tree of size n.
func (s *Snapshot) Frontier(n int64) ([]tlog.Hash, error) {
	cr, err := loadRange(sqlTrees(s.ctx, s.r.conn), n)
	if err != nil {
		return nil, err
	}
	return cr.Frontier(), nil
}

// ErrNoCheckpoint means the journal has no checkpoint yet.
var ErrNoCheckpoint = errors.New("journal: no checkpoint yet")
