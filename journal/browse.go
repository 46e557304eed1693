package journal

import (
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/interlock/interlock/model"
)

// The reads below serve a host's web console (console/local): newest
// first, stopping when fn says so, from the snapshot's state of the file.

// ErrStop, returned by fn, ends a walk early without error.
var ErrStop = errors.New("journal: stop")

// sqlSessionOpens walks entries_opens backwards by time.
const sqlSessionOpens = `SELECT seq, time_ns, session, body FROM entries
	WHERE kind = '` + model.KindSessionOpen + `' AND time_ns >= ? AND time_ns < ?
	ORDER BY time_ns DESC, seq DESC`

// SessionOpens calls fn for each session.open entry with since <= time <
// until, newest first.
func (s *Snapshot) SessionOpens(since, until int64, fn func(Entry) error) error {
	return s.walk(sqlSessionOpens, []any{since, until}, fn, func(rows *sql.Rows, e *Entry) error {
		return rows.Scan(&e.Seq, &e.TimeNS, &e.Session, &e.Body)
	}, model.KindSessionOpen)
}

// SessionOpen returns one session's first session.open entry (a probe of
// entries_bounds); found is false when the journal holds none.
func (s *Snapshot) SessionOpen(session string) (e Entry, found bool, err error) {
	var seq int64
	err = s.r.conn.QueryRowContext(s.ctx, `SELECT seq, time_ns, body FROM entries
		WHERE session = ? AND kind = '`+model.KindSessionOpen+`' ORDER BY seq LIMIT 1`, session).Scan(&seq, &e.TimeNS, &e.Body)
	if errors.Is(err, sql.ErrNoRows) {
		return Entry{}, false, nil
	}
	if err != nil {
		return Entry{}, false, fmt.Errorf("journal: find session %s: %w", session, err)
	}
	e.Seq, e.Kind, e.Session = uint64(seq), model.KindSessionOpen, session
	return e, true, nil
}

// EntriesOfKinds calls fn for each entry of one of kinds with since <=
// time < until, newest (highest seq) first. No index covers these kinds:
// it walks the table backwards, so fn should stop when it has enough.
func (s *Snapshot) EntriesOfKinds(kinds []string, since, until int64, fn func(Entry) error) error {
	if len(kinds) == 0 {
		return nil
	}
	args := []any{since, until}
	for _, k := range kinds {
		args = append(args, k)
	}
	q := `SELECT seq, time_ns, kind, session, body FROM entries WHERE time_ns >= ? AND time_ns < ? AND kind IN (?` +
		strings.Repeat(", ?", len(kinds)-1) + `) ORDER BY seq DESC`
	return s.walk(q, args, fn, func(rows *sql.Rows, e *Entry) error {
		return rows.Scan(&e.Seq, &e.TimeNS, &e.Kind, &e.Session, &e.Body)
	}, "")
}

// StoredCheckpoint is a checkpoint as the journal stored it, unverified:
// its reader checks it with the key it trusts.
type StoredCheckpoint struct {
	Size, TimeNS int64
	Note         []byte
}

// StoredCheckpoints returns every stored checkpoint, by size then time,
// without verifying them (Checkpoints verifies).
func (s *Snapshot) StoredCheckpoints() ([]StoredCheckpoint, error) {
	rows, err := s.r.conn.QueryContext(s.ctx, `SELECT tree_size, time_ns, note FROM checkpoints ORDER BY tree_size, time_ns`)
	if err != nil {
		return nil, fmt.Errorf("journal: read checkpoints: %w", err)
	}
	defer rows.Close()
	var out []StoredCheckpoint
	for rows.Next() {
		var c StoredCheckpoint
		if err := rows.Scan(&c.Size, &c.TimeNS, &c.Note); err != nil {
			return nil, fmt.Errorf("journal: read checkpoints: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("journal: read checkpoints: %w", err)
	}
	return out, nil
}

// walk runs q and calls fn per row; kind, when set, is every row's kind.
func (s *Snapshot) walk(q string, args []any, fn func(Entry) error, scan func(*sql.Rows, *Entry) error, kind string) error {
	rows, err := s.r.conn.QueryContext(s.ctx, q, args...)
	if err != nil {
		return fmt.Errorf("journal: read entries: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		e := Entry{Kind: kind}
		if err := scan(rows, &e); err != nil {
			return fmt.Errorf("journal: read entries: %w", err)
		}
		if err := fn(e); errors.Is(err, ErrStop) {
			return nil
		} else if err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("journal: read entries: %w", err)
	}
	return nil
}
