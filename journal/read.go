package journal

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/netip"
	"time"

	"github.com/interlock/interlock/journal/evidence"
	"github.com/interlock/interlock/model"
)

// Entry is one stored journal entry.
type Entry struct {
	Seq     uint64
	TimeNS  int64
	Kind    string
	Session string
	// Body is the exact bytes that were hashed.
	Body []byte
	// Hash is SHA-256(previous entry's Hash || Body).
	Hash []byte
	// Payload is the entry's payload, nil when it has none or a retention
	// job deleted it; Salt is the salt of its commitment.
	Payload, Salt []byte
}

// Entries calls fn for every entry with seq >= fromSeq, in order, from one
// read snapshot, holding only the current entry in memory. It stops at the
// first error from fn and returns that error unchanged.
func Entries(ctx context.Context, path string, fromSeq uint64, fn func(Entry) error) error {
	r, err := openReader(ctx, path)
	if err != nil {
		return err
	}
	defer r.close()
	rows, err := r.conn.QueryContext(ctx, `SELECT seq, time_ns, kind, session, body, hash, salt, payload
		FROM entries WHERE seq >= ? ORDER BY seq`, int64(min(fromSeq, 1<<63-1)))
	if err != nil {
		return fmt.Errorf("journal: read entries of %s: %w", path, err)
	}
	defer rows.Close()
	for rows.Next() {
		var e Entry
		var seq int64
		if err := rows.Scan(&seq, &e.TimeNS, &e.Kind, &e.Session, &e.Body, &e.Hash, &e.Salt, &e.Payload); err != nil {
			return fmt.Errorf("journal: read entry after %d: %w", e.Seq, err)
		}
		e.Seq = uint64(seq)
		if err := fn(e); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("journal: read entries of %s: %w", path, err)
	}
	return nil
}

// SessionFilter narrows ListSessions.
type SessionFilter struct {
	// Since keeps sessions opened at or after it; zero keeps all.
	Since time.Time
	// CgroupID keeps sessions whose client was in that cgroup; 0 keeps all.
	CgroupID uint64
	// Limit caps the result to the newest sessions; 0 means no cap.
	Limit int
}

// SessionSummary is one session as ListSessions shows it.
type SessionSummary struct {
	ID      string    `json:"id"`
	OpenSeq uint64    `json:"open_seq"`
	Open    time.Time `json:"open"`
	// Close is nil while the session is open (or if it never closed
	// cleanly).
	Close   *time.Time     `json:"close,omitempty"`
	Target  string         `json:"target"`
	OrigDst netip.AddrPort `json:"orig_dst"`
	Client  netip.AddrPort `json:"client"`
	// PID is the client's process id (the kernel's tgid).
	PID        uint32 `json:"pid"`
	UID        uint32 `json:"uid"`
	CgroupID   uint64 `json:"cgroup_id"`
	Exe        string `json:"exe,omitempty"`
	CgroupPath string `json:"cgroup_path,omitempty"`
	BytesUp    int64  `json:"bytes_up"`
	BytesDown  int64  `json:"bytes_down"`
	DurationNS int64  `json:"duration_ns"`
	Error      string `json:"error,omitempty"`
	// Human, Workload and Agent are the principals behind the client, as
	// its session.open recorded them (nil when none was found).
	Human    *model.Human    `json:"human,omitempty"`
	Workload *model.Workload `json:"workload,omitempty"`
	Agent    *model.Agent    `json:"agent,omitempty"`
}

// The open entries come from a range scan of entries_opens in time order;
// each close entry is one probe of entries_bounds. Bodies of other entries
// are never read. The kinds are literals because SQLite uses a partial
// index only for a WHERE it can see implies the index's.
const sessionsQuery = `
SELECT o.seq, o.time_ns, o.session, o.body, c.time_ns, c.body
FROM entries AS o
LEFT JOIN entries AS c ON c.seq = (
	SELECT min(x.seq) FROM entries AS x WHERE x.session = o.session AND x.kind = '` + model.KindSessionClose + `')
WHERE o.kind = '` + model.KindSessionOpen + `' AND o.time_ns >= ?
ORDER BY o.time_ns DESC, o.seq DESC`

// ListSessions lists the sessions recorded in the journal at path, newest
// first. It reads the session.open and session.close entries only, and
// does not verify them: that is Verify's job.
func ListSessions(ctx context.Context, path string, f SessionFilter) ([]SessionSummary, error) {
	r, err := openReader(ctx, path)
	if err != nil {
		return nil, err
	}
	defer r.close()
	since := int64(-1 << 63)
	if !f.Since.IsZero() {
		since = f.Since.UnixNano()
	}
	rows, err := r.conn.QueryContext(ctx, sessionsQuery, since)
	if err != nil {
		return nil, fmt.Errorf("journal: list sessions of %s: %w", path, err)
	}
	defer rows.Close()
	var out []SessionSummary
	for rows.Next() && (f.Limit <= 0 || len(out) < f.Limit) {
		var (
			seq, openNS int64
			id          string
			openBody    []byte
			closeNS     sql.NullInt64
			closeBody   []byte
		)
		if err := rows.Scan(&seq, &openNS, &id, &openBody, &closeNS, &closeBody); err != nil {
			return nil, fmt.Errorf("journal: list sessions of %s: %w", path, err)
		}
		var open model.SessionOpen
		if err := decodeData(openBody, &open); err != nil {
			return nil, fmt.Errorf("journal: entry %d (%s): %w", seq, model.KindSessionOpen, err)
		}
		if f.CgroupID != 0 && open.Identity.Kernel.CgroupID != f.CgroupID {
			continue
		}
		s := SessionSummary{
			ID:       id,
			OpenSeq:  uint64(seq),
			Open:     time.Unix(0, openNS).UTC(),
			Target:   open.Target.Name,
			OrigDst:  open.OrigDst,
			Client:   open.Client,
			PID:      open.Identity.Kernel.TGID,
			UID:      open.Identity.Kernel.UID,
			CgroupID: open.Identity.Kernel.CgroupID,
			Human:    open.Identity.Human,
			Workload: open.Identity.Workload,
			Agent:    open.Identity.Agent,
		}
		if p := open.Identity.Proc; p != nil {
			s.Exe, s.CgroupPath = p.Exe, p.CgroupPath
		}
		if closeNS.Valid {
			var c model.SessionClose
			if err := decodeData(closeBody, &c); err != nil {
				return nil, fmt.Errorf("journal: %s entry of session %s: %w", model.KindSessionClose, id, err)
			}
			t := time.Unix(0, closeNS.Int64).UTC()
			s.Close = &t
			s.BytesUp, s.BytesDown, s.DurationNS, s.Error = c.BytesUp, c.BytesDown, c.DurationNS, c.Error
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("journal: list sessions of %s: %w", path, err)
	}
	return out, nil
}

func decodeData(b []byte, v any) error {
	p, err := evidence.ParseBody(b)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(p.Data, v); err != nil {
		return fmt.Errorf("decode data: %w", err)
	}
	return nil
}
