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
	"sort"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/interlock/interlock/journal/evidence"
	"github.com/interlock/interlock/model"
)

// VerifyOptions tune Verify.
type VerifyOptions struct {
	// PublicKey checks the checkpoints. Nil means the key the journal
	// itself records, which shows the checkpoints are intact but proves
	// nothing against someone who could rewrite the whole file: an auditor
	// passes the key they were given (journal.pub).
	PublicKey note.Verifier
	// External are checkpoints kept outside the journal (the file beside
	// it, sinks, one an auditor holds), with a name for the report. The
	// journal must contain each: a journal that ends before one was cut.
	External []evidence.ExternalCheckpoint
	// RequireSigned fails entries after the newest checkpoint: right for a
	// journal that was closed (Close signs everything), not for a live one.
	RequireSigned bool
	// Progress, if not nil, is called now and then with the entries done
	// and the head seq of the snapshot.
	Progress func(done, total uint64)
}

// VerifyReport is the outcome of Verify.
type VerifyReport struct {
	// Entries is how many entries were checked and found good.
	Entries uint64 `json:"entries"`
	// HeadSeq and HeadHash are the last good entry: the journal's head
	// when OK. TreeRoot is the Merkle tree hash of entries 1..HeadSeq.
	HeadSeq  uint64 `json:"head_seq"`
	HeadHash string `json:"head_hash"`
	TreeRoot string `json:"tree_root,omitempty"`
	OK       bool   `json:"ok"`
	// FirstBadSeq and Reason name the first entry that failed. FirstBadSeq
	// is 0 when what failed is not an entry (a checkpoint, a payload row
	// without an entry).
	FirstBadSeq uint64 `json:"first_bad_seq,omitempty"`
	Reason      string `json:"reason,omitempty"`
	// JournalID is from entry 1.
	JournalID string `json:"journal_id,omitempty"`
	// Key is the key checkpoints were checked with; KeyFromJournal says it
	// was the one the journal records rather than one given by the caller.
	Key            string `json:"key,omitempty"`
	KeyFromJournal bool   `json:"key_from_journal,omitempty"`
	// Checkpoints counts the stored and external checkpoints checked.
	Checkpoints int `json:"checkpoints"`
	// SignedSize is the largest tree a good checkpoint covers, signed at
	// SignedAt; Unsigned counts the entries after it.
	SignedSize uint64     `json:"signed_size"`
	SignedAt   *time.Time `json:"signed_at,omitempty"`
	Unsigned   uint64     `json:"unsigned"`
	// Payloads counts payloads checked against their commitments;
	// PayloadsDeleted those a retention entry removed.
	Payloads        uint64 `json:"payloads"`
	PayloadsDeleted uint64 `json:"payloads_deleted"`
}

// progressEvery is how many entries Verify checks between progress calls.
const progressEvery = 1 << 14

// Verify checks the journal at path with the default options: the key the
// journal records, and the checkpoint file beside it if there is one.
func Verify(ctx context.Context, path string, progress func(done, total uint64)) (VerifyReport, error) {
	opts := VerifyOptions{Progress: progress}
	if ext, err := besideCheckpoint(path); err != nil {
		return VerifyReport{}, err
	} else if ext != nil {
		opts.External = append(opts.External, *ext)
	}
	return VerifyWith(ctx, path, opts)
}

// VerifyWith walks the journal at path and checks everything it holds:
//   - sequence numbers contiguous from 1, each body in the canonical
//     encoding and agreeing with its row (seq, time_ns, kind, session:
//     those columns are query helpers, so editing them must be caught too);
//   - the hash chain, and the Merkle tree: each entry's stored tree hashes
//     recomputed from its body;
//   - each payload still present against its salted commitment, and each
//     missing one against a journal.retention entry that deleted it;
//   - every stored checkpoint and every external one: signature, origin,
//     and tree hash at its size; one that covers more entries than the
//     journal has shows the tail was cut.
//
// It stops at the first failure. It opens the file read-only and reads one
// snapshot, so it can run while writers append. The error is for failures
// to read; a journal that does not verify gives a report with OK false.
func VerifyWith(ctx context.Context, path string, opts VerifyOptions) (VerifyReport, error) {
	r, err := openReader(ctx, path)
	if err != nil {
		return VerifyReport{}, err
	}
	defer r.close()

	v := &verifier{h: sha256.New(), prev: make([]byte, evidence.HashSize)}
	rep := &v.rep
	if v.journalID, err = metaString(ctx, r.conn, "journal_id"); err != nil {
		return VerifyReport{}, err
	}
	key := opts.PublicKey
	if key == nil {
		vkey, err := metaString(ctx, r.conn, "signing_key")
		if err != nil {
			return VerifyReport{}, err
		}
		if key, err = note.NewVerifier(vkey); err != nil {
			rep.Reason = fmt.Sprintf("the journal's recorded signing key %q does not parse: %v (pass the public key)", vkey, err)
			return *rep, nil
		}
		rep.KeyFromJournal = true
	}
	rep.Key = fmt.Sprintf("%s+%08x", key.Name(), key.KeyHash())
	if reason := v.loadCheckpoints(ctx, r.conn, key, opts.External); reason != "" {
		rep.Reason = reason
		return *rep, nil
	}
	if err := v.loadRetention(ctx, r.conn); err != nil {
		return VerifyReport{}, err
	}
	var total int64
	if err := r.conn.QueryRowContext(ctx, `SELECT coalesce(max(seq), 0) FROM entries`).Scan(&total); err != nil {
		return VerifyReport{}, fmt.Errorf("journal: read head of %s: %w", path, err)
	}
	err = walkEntries(r.conn, func(next func(*row) (bool, error)) error {
		var e row
		for {
			ok, err := next(&e)
			if err != nil {
				return fmt.Errorf("journal: read entry %d of %s: %w", rep.HeadSeq+1, path, err)
			}
			if !ok {
				return nil
			}
			if v.walk(&e, next) {
				return nil
			}
			if rep.Entries%progressEvery == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
				if opts.Progress != nil {
					opts.Progress(rep.Entries, uint64(total))
				}
			}
		}
	})
	if err != nil {
		return VerifyReport{}, err
	}
	if rep.Reason != "" {
		return *rep, nil
	}
	if opts.Progress != nil {
		opts.Progress(rep.Entries, uint64(total))
	}
	v.finish(opts.RequireSigned)
	return *rep, nil
}

// walk checks one entry; it reports true when the walk must stop there
// (the report then says why).
func (v *verifier) walk(r *row, next func(*row) (bool, error)) (stop bool) {
	want := v.rep.HeadSeq + 1
	if r.seq > 0 && uint64(r.seq) > want {
		// Name the missing entry itself, not its successor.
		v.fail(want, fmt.Sprintf("entry %d missing", want))
		return true
	}
	reason, hashBad := v.check(r)
	if hashBad {
		reason = v.blameHash(next, r)
	}
	if reason != "" {
		bad := uint64(r.seq)
		if r.seq < 1 {
			bad = want // a row that cannot be in the chain breaks it here
		}
		v.fail(bad, reason)
		return true
	}
	return v.checkpointsAt() != ""
}

// besideCheckpoint reads the checkpoint file next to the database, if any.
func besideCheckpoint(path string) (*evidence.ExternalCheckpoint, error) {
	f := CheckpointPath(path)
	b, err := readOptional(f)
	if err != nil || b == nil {
		return nil, err
	}
	return &evidence.ExternalCheckpoint{Name: f, Note: b}, nil
}

// signedTree is a checkpoint to match against the tree during the walk.
type signedTree struct {
	cp   evidence.Checkpoint
	name string
}

// retention is the data of a journal.retention entry.
type retention struct {
	seq uint64
	RetentionData
}

type verifier struct {
	rep       VerifyReport
	journalID string
	prev      []byte // hash of the last good entry (zeros before entry 1)
	h         hash.Hash
	leaf      leafHasher
	tree      evidence.CompactRange
	stored    []tlog.Hash
	col       []byte
	// cps are the checkpoints sorted by size; next indexes the first not
	// yet reached by the walk. lastGood is the largest size checked good.
	cps      []signedTree
	next     int
	lastGood int64
	ret      []retention
}

func (v *verifier) fail(seq uint64, reason string) {
	v.rep.FirstBadSeq = seq
	v.rep.Reason = reason
}

// loadCheckpoints reads and verifies every stored checkpoint and the
// external ones. A checkpoint that does not verify fails the journal: its
// signature is the only thing that dates the tree.
func (v *verifier) loadCheckpoints(ctx context.Context, tx *sql.Conn, key note.Verifier, ext []evidence.ExternalCheckpoint) string {
	rows, err := tx.QueryContext(ctx, `SELECT id, tree_size, time_ns, note FROM checkpoints ORDER BY id`)
	if err != nil {
		return fmt.Sprintf("cannot read the checkpoints table: %v", err)
	}
	defer rows.Close()
	origin := evidence.Origin(v.journalID)
	add := func(name string, msg []byte, size, timeNS *int64) string {
		cp, err := evidence.ParseCheckpoint(msg, key)
		switch {
		case err != nil:
			return fmt.Sprintf("%s: %v", name, err)
		case cp.Origin != origin:
			return fmt.Sprintf("%s is for journal %s, not this journal (%s)", name, cp.JournalID(), v.journalID)
		case size != nil && (cp.Size != *size || cp.TimeNS != *timeNS):
			return fmt.Sprintf("%s: its tree_size/time_ns columns do not match its signed text", name)
		}
		v.cps = append(v.cps, signedTree{cp: cp, name: name})
		return ""
	}
	for rows.Next() {
		var id, size, timeNS int64
		var msg []byte
		if err := rows.Scan(&id, &size, &timeNS, &msg); err != nil {
			return fmt.Sprintf("cannot read the checkpoints table: %v", err)
		}
		if reason := add(fmt.Sprintf("stored checkpoint %d", id), msg, &size, &timeNS); reason != "" {
			return reason
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Sprintf("cannot read the checkpoints table: %v", err)
	}
	for _, e := range ext {
		if reason := add("checkpoint "+e.Name, e.Note, nil, nil); reason != "" {
			return reason
		}
	}
	sort.SliceStable(v.cps, func(i, k int) bool { return v.cps[i].cp.Size < v.cps[k].cp.Size })
	v.rep.Checkpoints = len(v.cps)
	return ""
}

// loadRetention reads the journal.retention entries first, so that the walk
// knows which missing payloads were deleted on purpose. They are verified
// like any entry when the walk reaches them.
func (v *verifier) loadRetention(ctx context.Context, tx *sql.Conn) error {
	rows, err := tx.QueryContext(ctx, `SELECT seq, body FROM entries WHERE kind = '`+KindRetention+`' ORDER BY seq`)
	if err != nil {
		return fmt.Errorf("journal: read retention entries: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var seq int64
		var b []byte
		if err := rows.Scan(&seq, &b); err != nil {
			return fmt.Errorf("journal: read retention entries: %w", err)
		}
		var d RetentionData
		if p, err := evidence.ParseBody(b); err == nil && json.Unmarshal(p.Data, &d) == nil {
			v.ret = append(v.ret, retention{uint64(seq), d})
		}
	}
	return rows.Err()
}

// deletedOnPurpose reports whether a retention entry after seq removed the
// payload of an entry with that seq and time.
func (v *verifier) deletedOnPurpose(seq uint64, timeNS int64) bool {
	for _, r := range v.ret {
		if r.seq > seq && r.ThroughSeq >= seq && timeNS < r.BeforeNS {
			return true
		}
	}
	return false
}

// check returns why r is bad. hashBad means the chain breaks at r; the
// caller then looks at the next entry to tell which of body and stored
// hash was edited.
func (v *verifier) check(r *row) (reason string, hashBad bool) {
	want := v.rep.HeadSeq + 1
	if r.seq < 1 || uint64(r.seq) != want {
		return fmt.Sprintf("unexpected entry seq %d (expected %d)", r.seq, want), false
	}
	p, perr := evidence.ParseBody(r.body)
	if perr != nil {
		if be, ok := perr.(*evidence.BodyError); !ok || !be.Parsed {
			return perr.Error(), false
		} else if be.Seq != uint64(r.seq) {
			return fmt.Sprintf("body seq %d does not match row seq %d", be.Seq, r.seq), false
		}
	} else if p.Seq != uint64(r.seq) {
		return fmt.Sprintf("body seq %d does not match row seq %d", p.Seq, r.seq), false
	}
	r.computed = evidence.AppendChainHash(v.h, r.computed, v.prev, r.body)
	if !bytes.Equal(r.computed, r.hash) {
		return "", true
	}
	if perr != nil {
		return perr.Error(), false
	}
	switch {
	case !sameInt(r.timeNS, p.Time):
		return "time_ns column does not match body", false
	case !sameText(r.kind, p.Kind):
		return "kind column does not match body", false
	case !sameText(r.session, p.Session):
		return "session column does not match body", false
	case r.seq == 1 && p.Kind != model.KindJournalOpen:
		return fmt.Sprintf("entry 1 is %q, not %q", p.Kind, model.KindJournalOpen), false
	case r.seq == 1:
		var od evidence.OpenData
		if err := json.Unmarshal(p.Data, &od); err != nil || od.JournalID != v.journalID {
			return fmt.Sprintf("entry 1 names journal %q but the database says %q", od.JournalID, v.journalID), false
		}
		v.rep.JournalID = od.JournalID
	}
	v.stored = v.tree.AddStored(v.leaf.sum(r.body), v.stored)
	if v.col = treeColumn(v.col, v.stored); !bytes.Equal(v.col, r.tree) {
		return "tree hashes stored with the entry do not match its body", false
	}
	switch {
	case p.Payload == nil && (r.salt != nil || r.pay != nil):
		return "a payload is stored for an entry that commits to none", false
	case p.Payload == nil:
	case r.pay == nil && r.salt == nil:
		if !v.deletedOnPurpose(uint64(r.seq), p.Time) {
			return "payload missing, and no journal.retention entry deleted it", false
		}
		v.rep.PayloadsDeleted++
	default:
		if c := evidence.PayloadCommitment(r.salt, r.pay); len(r.salt) != evidence.SaltSize || !bytes.Equal(c[:], p.Payload) {
			return "payload does not match its commitment (payload or salt changed)", false
		}
		v.rep.Payloads++
	}
	v.prev = append(v.prev[:0], r.hash...)
	v.rep.Entries++
	v.rep.HeadSeq = uint64(r.seq)
	return "", false
}

// checkpointsAt matches the checkpoints of the current tree size.
func (v *verifier) checkpointsAt() string {
	size := int64(v.rep.HeadSeq)
	for v.next < len(v.cps) && v.cps[v.next].cp.Size == size {
		st := v.cps[v.next]
		v.next++
		if root := v.tree.Root(); root != st.cp.Root {
			v.fail(uint64(v.lastGood)+1, fmt.Sprintf("entries %d to %d do not have the tree hash that %s (signed %s) states: "+
				"they were rewritten after it was signed", v.lastGood+1, size, st.name, st.cp.Time().Format(time.RFC3339Nano)))
			return v.rep.Reason
		}
		v.lastGood = size
		t := st.cp.Time()
		v.rep.SignedSize, v.rep.SignedAt = uint64(size), &t
	}
	return ""
}

// finish checks what only the end of the walk shows.
func (v *verifier) finish(requireSigned bool) {
	rep := &v.rep
	if rep.Entries == 0 {
		v.fail(1, "entry 1 missing (the journal has no entries)")
		return
	}
	rep.HeadHash = hex.EncodeToString(v.prev)
	root := v.tree.Root()
	rep.TreeRoot = hex.EncodeToString(root[:])
	if v.next < len(v.cps) {
		st := v.cps[len(v.cps)-1]
		v.fail(rep.HeadSeq+1, fmt.Sprintf("the journal ends at entry %d but %s (signed %s) covers %d entries: entries %d to %d were removed (tail truncated)",
			rep.HeadSeq, st.name, st.cp.Time().Format(time.RFC3339Nano), st.cp.Size, rep.HeadSeq+1, st.cp.Size))
		return
	}
	rep.Unsigned = rep.HeadSeq - rep.SignedSize
	if requireSigned && rep.Unsigned > 0 {
		v.fail(rep.SignedSize+1, fmt.Sprintf("entries %d to %d are not covered by any signed checkpoint", rep.SignedSize+1, rep.HeadSeq))
		return
	}
	rep.OK = true
}

// blameHash explains a chain break at r using the next entry, which was
// chained from r's original hash: if it chains from the hash recomputed
// over r's body, the body is intact and the stored hash was edited; if it
// chains from the stored hash, the stored hash is original and the body
// was edited.
func (v *verifier) blameHash(next func(*row) (bool, error), r *row) string {
	if len(r.hash) != evidence.HashSize {
		return fmt.Sprintf("stored hash changed (%d bytes, want %d)", len(r.hash), evidence.HashSize)
	}
	computed := append([]byte(nil), r.computed...)
	stored := append([]byte(nil), r.hash...)
	const unsure = "hash mismatch: body or stored hash was changed"
	var n row
	if ok, err := next(&n); !ok || err != nil || n.seq != r.seq+1 {
		return unsure
	}
	switch {
	case bytes.Equal(evidence.AppendChainHash(v.h, nil, computed, n.body), n.hash):
		return "stored hash changed"
	case bytes.Equal(evidence.AppendChainHash(v.h, nil, stored, n.body), n.hash):
		if r.seq > 1 {
			return fmt.Sprintf("hash mismatch: body was changed (or entry %d was rewritten together with its hash)", r.seq-1)
		}
		return "hash mismatch: body was changed"
	}
	return unsure
}
