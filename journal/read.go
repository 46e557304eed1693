package journal

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"net/netip"
	"strconv"
	"time"

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
}

// Entries calls fn for every entry with seq >= fromSeq, in order, from one
// read snapshot, holding only the current entry in memory. It stops at the
// first error from fn and returns that error unchanged.
func Entries(ctx context.Context, path string, fromSeq uint64, fn func(Entry) error) error {
	db, tx, err := openReader(ctx, path)
	if err != nil {
		return err
	}
	defer db.Close()
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, `SELECT seq, time_ns, kind, session, body, hash FROM entries WHERE seq >= ? ORDER BY seq`, int64(min(fromSeq, 1<<63-1)))
	if err != nil {
		return fmt.Errorf("journal: read entries of %s: %w", path, err)
	}
	defer rows.Close()
	for rows.Next() {
		var e Entry
		var seq int64
		if err := rows.Scan(&seq, &e.TimeNS, &e.Kind, &e.Session, &e.Body, &e.Hash); err != nil {
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

// VerifyReport is the outcome of Verify.
type VerifyReport struct {
	// Entries is how many entries were checked and found good.
	Entries uint64 `json:"entries"`
	// HeadSeq and HeadHash are the last good entry: the journal's head
	// when OK.
	HeadSeq  uint64 `json:"head_seq"`
	HeadHash string `json:"head_hash"`
	OK       bool   `json:"ok"`
	// FirstBadSeq and Reason name the first entry that failed.
	FirstBadSeq uint64 `json:"first_bad_seq,omitempty"`
	Reason      string `json:"reason,omitempty"`
}

// progressEvery is how many entries Verify checks between progress calls.
const progressEvery = 1 << 14

// Verify walks the journal at path and checks every entry: sequence numbers
// contiguous from 1, the body well-formed in the canonical encoding and
// agreeing with its row (seq, time_ns, kind, session: those columns are
// query helpers, so editing them must be caught too), and the hash chain.
// It stops at the first bad entry. It opens the file read-only and reads
// one snapshot, so it can run while writers append.
//
// progress, if not nil, is called now and then with the entries done and
// the head seq of the snapshot.
//
// Limitation: the chain alone cannot show that entries were cut off the
// end, nor that the whole chain was rewritten from some entry on with
// hashes recomputed. Both are caught only once signed checkpoints exist:
// until then a report of OK means "internally consistent", not "complete".
func Verify(ctx context.Context, path string, progress func(done, total uint64)) (VerifyReport, error) {
	db, tx, err := openReader(ctx, path)
	if err != nil {
		return VerifyReport{}, err
	}
	defer db.Close()
	defer tx.Rollback()

	var total int64
	if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(seq), 0) FROM entries`).Scan(&total); err != nil {
		return VerifyReport{}, fmt.Errorf("journal: read head of %s: %w", path, err)
	}
	rows, err := tx.QueryContext(ctx, `SELECT seq, time_ns, kind, session, body, hash FROM entries ORDER BY seq`)
	if err != nil {
		return VerifyReport{}, fmt.Errorf("journal: read entries of %s: %w", path, err)
	}
	defer rows.Close()

	v := verifier{prev: make([]byte, HashSize), h: sha256.New()}
	var r row
	for rows.Next() {
		if err := r.scan(rows); err != nil {
			return VerifyReport{}, fmt.Errorf("journal: read entry %d of %s: %w", v.rep.HeadSeq+1, path, err)
		}
		want := v.rep.HeadSeq + 1
		if r.seq > 0 && uint64(r.seq) > want {
			// Name the missing entry itself, not its successor.
			v.fail(want, fmt.Sprintf("entry %d missing", want))
			return v.rep, rows.Close()
		}
		reason, hashBad := v.check(&r)
		if hashBad {
			reason = v.blameHash(rows, &r)
		}
		if reason != "" {
			bad := uint64(r.seq)
			if r.seq < 1 {
				bad = want // a row that cannot be in the chain breaks it here
			}
			v.fail(bad, reason)
			return v.rep, rows.Close()
		}
		if v.rep.Entries%progressEvery == 0 {
			if err := ctx.Err(); err != nil {
				return VerifyReport{}, err
			}
			if progress != nil {
				progress(v.rep.Entries, uint64(total))
			}
		}
	}
	if err := rows.Err(); err != nil {
		return VerifyReport{}, fmt.Errorf("journal: read entries of %s: %w", path, err)
	}
	if v.rep.Entries == 0 {
		v.fail(1, "entry 1 missing (the journal has no entries)")
		return v.rep, nil
	}
	if progress != nil {
		progress(v.rep.Entries, uint64(total))
	}
	v.rep.OK = true
	return v.rep, nil
}

// row is reused for every entry and its RawBytes are only valid until the
// next Scan: Verify holds one entry at a time (two when it blames a hash
// break), however long the journal is.
type row struct {
	seq                               int64
	timeNS, kind, session, body, hash sql.RawBytes
	computed                          []byte // reused across rows
}

func (r *row) scan(rows *sql.Rows) error {
	return rows.Scan(&r.seq, &r.timeNS, &r.kind, &r.session, &r.body, &r.hash)
}

type verifier struct {
	rep  VerifyReport
	prev []byte // hash of the last good entry (zeros before entry 1)
	h    hash.Hash
}

func (v *verifier) fail(seq uint64, reason string) {
	v.rep.FirstBadSeq = seq
	v.rep.Reason = reason
}

// check returns why r is bad. hashBad means the chain breaks at r; the
// caller then looks at the next entry to tell which of body and stored
// hash was edited.
func (v *verifier) check(r *row) (reason string, hashBad bool) {
	if want := v.rep.HeadSeq + 1; r.seq < 1 || uint64(r.seq) != want {
		return fmt.Sprintf("unexpected entry seq %d (expected %d)", r.seq, want), false
	}
	p, err := parseBody(r.body)
	if err != nil {
		return err.Error(), false
	}
	if *p.Seq != uint64(r.seq) {
		return fmt.Sprintf("body seq %d does not match row seq %d", *p.Seq, r.seq), false
	}
	r.computed = chainHash(v.h, r.computed, v.prev, r.body)
	if !bytes.Equal(r.computed, r.hash) {
		return "", true
	}
	if err := p.canonical(r.body); err != nil {
		return err.Error(), false
	}
	switch {
	case string(r.timeNS) != strconv.FormatInt(*p.Time, 10):
		return "time_ns column does not match body", false
	case string(r.kind) != *p.Kind:
		return "kind column does not match body", false
	case string(r.session) != *p.Session:
		return "session column does not match body", false
	case r.seq == 1 && *p.Kind != model.KindJournalOpen:
		return fmt.Sprintf("entry 1 is %q, not %q", *p.Kind, model.KindJournalOpen), false
	}
	v.prev = append(v.prev[:0], r.hash...)
	v.rep.Entries++
	v.rep.HeadSeq = uint64(r.seq)
	v.rep.HeadHash = hex.EncodeToString(r.hash)
	return "", false
}

// blameHash explains a chain break at r using the next entry, which was
// chained from r's original hash: if it chains from the hash recomputed
// over r's body, the body is intact and the stored hash was edited; if it
// chains from the stored hash, the stored hash is original and the body
// was edited.
func (v *verifier) blameHash(rows *sql.Rows, r *row) string {
	if len(r.hash) != HashSize {
		return fmt.Sprintf("stored hash changed (%d bytes, want %d)", len(r.hash), HashSize)
	}
	computed := append([]byte(nil), r.computed...)
	stored := append([]byte(nil), r.hash...)
	const unsure = "hash mismatch: body or stored hash was changed"
	if !rows.Next() {
		return unsure
	}
	var next row
	if err := next.scan(rows); err != nil || next.seq != r.seq+1 {
		return unsure
	}
	switch {
	case bytes.Equal(chainHash(v.h, nil, computed, next.body), next.hash):
		return "stored hash changed"
	case bytes.Equal(chainHash(v.h, nil, stored, next.body), next.hash):
		if r.seq > 1 {
			return fmt.Sprintf("hash mismatch: body was changed (or entry %d was rewritten together with its hash)", r.seq-1)
		}
		return "hash mismatch: body was changed"
	}
	return unsure
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
}

// The open entries come from a range scan of the kind index in time order;
// each close entry is one probe of the (session, kind) index. Bodies of
// other entries are never read.
const sessionsQuery = `
SELECT o.seq, o.time_ns, o.session, o.body, c.time_ns, c.body
FROM entries AS o
LEFT JOIN entries AS c ON c.seq = (
	SELECT min(x.seq) FROM entries AS x WHERE x.session = o.session AND x.kind = ?2)
WHERE o.kind = ?1 AND o.time_ns >= ?3
ORDER BY o.time_ns DESC, o.seq DESC`

// ListSessions lists the sessions recorded in the journal at path, newest
// first. It reads the session.open and session.close entries only, and
// does not verify them: that is Verify's job.
func ListSessions(ctx context.Context, path string, f SessionFilter) ([]SessionSummary, error) {
	db, tx, err := openReader(ctx, path)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	defer tx.Rollback()
	since := int64(-1 << 63)
	if !f.Since.IsZero() {
		since = f.Since.UnixNano()
	}
	rows, err := tx.QueryContext(ctx, sessionsQuery, model.KindSessionOpen, model.KindSessionClose, since)
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
	p, err := parseBody(b)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(p.Data, v); err != nil {
		return fmt.Errorf("decode data: %w", err)
	}
	return nil
}
