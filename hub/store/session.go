package store

import (
	"context"
	"errors"
	"fmt"
	"iter"

	"github.com/jackc/pgx/v5"

	"github.com/interlock/interlock/model"
)

// ErrNoSession: the hub holds no session.open of that session.
var ErrNoSession = errors.New("hub store: no such session")

// SessionOf returns the session.open of one session of a host.
func (s *Store) SessionOf(ctx context.Context, hostID, session string) (Session, error) {
	var x Session
	err := s.pool.QueryRow(ctx, `SELECT o.host_id, h.name, o.seq, o.time_ns, o.session, e.body
		FROM sessions o JOIN hosts h ON h.id = o.host_id JOIN entries e ON e.host_id = o.host_id AND e.seq = o.seq
		WHERE o.host_id = $1 AND o.session = $2 ORDER BY o.seq LIMIT 1`, hostID, session).
		Scan(&x.HostID, &x.HostName, &x.Seq, &x.TimeNS, &x.Session, &x.Body)
	if errors.Is(err, pgx.ErrNoRows) {
		return x, ErrNoSession
	}
	if err != nil {
		return x, fmt.Errorf("hub store: read session %s of %s: %w", session, hostID, err)
	}
	return x, nil
}

// sessionPage is how many entries one read of a session takes.
const sessionPage = 512

// SessionEntries yields the entries of one session of a host in seq
// order, from its session.open through its session.close (to the host's
// last entry while it is open), a page at a time so that a long terminal
// session is never read into memory at once. The entries table has no
// index by session: the read walks the host's entries from the open on,
// which is where all of the session's are.
func (s *Store) SessionEntries(ctx context.Context, hostID string, open Session) iter.Seq2[Entry, error] {
	return func(yield func(Entry, error) bool) {
		from := open.Seq
		for {
			page, err := s.sessionPage(ctx, hostID, open.Session, from)
			if err != nil {
				yield(Entry{}, err)
				return
			}
			for _, e := range page.entries {
				if !yield(e, nil) {
					return
				}
				if e.Kind == model.KindSessionClose {
					return
				}
			}
			if page.scanned < sessionPage {
				return // the host's last entry
			}
			from = page.last + 1
		}
	}
}

type entryPage struct {
	entries []Entry
	// last is the highest seq the page covered; scanned how many of the
	// host's entries it walked.
	last    int64
	scanned int
}

func (s *Store) sessionPage(ctx context.Context, hostID, session string, from int64) (entryPage, error) {
	// The page is a range of the host's seqs (its primary key), filtered
	// by session: the scan is bounded however few are the session's.
	rows, err := s.pool.Query(ctx, `SELECT seq, time_ns, kind, session, body, hash, leaf, salt, payload
		FROM (SELECT * FROM entries WHERE host_id = $1 AND seq >= $2 ORDER BY seq LIMIT $3) p
		ORDER BY seq`, hostID, from, sessionPage)
	if err != nil {
		return entryPage{}, fmt.Errorf("hub store: read session %s of %s: %w", session, hostID, err)
	}
	defer rows.Close()
	var p entryPage
	for rows.Next() {
		var e Entry
		if err := rows.Scan(&e.Seq, &e.TimeNS, &e.Kind, &e.Session, &e.Body, &e.Hash, &e.Leaf, &e.Salt, &e.Payload); err != nil {
			return p, fmt.Errorf("hub store: read session %s of %s: %w", session, hostID, err)
		}
		p.scanned++
		p.last = e.Seq
		if e.Session == session {
			p.entries = append(p.entries, e)
		}
	}
	if err := rows.Err(); err != nil {
		return p, fmt.Errorf("hub store: read session %s of %s: %w", session, hostID, err)
	}
	return p, nil
}
