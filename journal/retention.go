package journal

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/interlock/interlock/model"
)

// KindRetention is the entry a retention job writes when it deletes
// payloads. Verify accepts a missing payload only when such an entry,
// later in the chain, covers it.
const KindRetention = "journal.retention"

// RetentionData is the data of a journal.retention entry: the payloads of
// entries up to ThroughSeq whose time is before BeforeNS were deleted.
type RetentionData struct {
	BeforeNS   int64  `json:"before_ns"`
	ThroughSeq uint64 `json:"through_seq"`
	Deleted    int64  `json:"deleted"`
}

// PruneResult says what PrunePayloads did.
type PruneResult struct {
	// Deleted counts the payloads removed; Seq is the journal.retention
	// entry that records it (0 when there was nothing to delete).
	Deleted int64
	Seq     uint64
}

// PrunePayloads deletes the payloads of entries older than before, for a
// retention policy: the entries and their commitments stay, so the chain,
// the tree and every checkpoint still verify, but the content (result rows,
// terminal output) is gone. In the same transaction it appends a
// journal.retention entry saying what was deleted, so Verify can tell a
// deletion on purpose from tampering. Deleted pages are overwritten
// (secure_delete) and the WAL is truncated afterwards, so the content does
// not linger in the file.
func (j *Journal) PrunePayloads(ctx context.Context, before time.Time) (PruneResult, error) {
	var res PruneResult
	err := j.control(ctx, func(w *writer) error {
		var err error
		res, err = w.prune(before)
		return err
	})
	return res, err
}

func (w *writer) prune(before time.Time) (res PruneResult, err error) {
	saved, savedSize, savedHead := w.tree.Clone(), w.size, append([]byte(nil), w.headHash...)
	var seq uint64
	var hash []byte
	err = w.inTx(func(rc *rawConn) error {
		// Compiled afresh: the pragma takes effect when it is compiled.
		if _, err := rc.sc.Exec(`PRAGMA secure_delete = ON`, nil); err != nil {
			return fmt.Errorf("secure_delete: %w", err)
		}
		if err := w.syncHead(rc); err != nil {
			return err
		}
		through := w.size
		if w.opts.HoldForHub {
			held, err := w.holdForHub(rc, through)
			if err != nil {
				return err
			}
			through = held
		}
		if _, err := rc.queryRow(`SELECT count(*) FROM entries `+pruneSel, 1, through, before.UnixNano()); err != nil {
			return fmt.Errorf("count: %w", err)
		}
		res.Deleted, _ = rc.dest[0].(int64)
		if res.Deleted == 0 {
			return nil
		}
		if err := rc.exec(`UPDATE entries SET salt = NULL, payload = NULL `+pruneSel, through, before.UnixNano()); err != nil {
			return fmt.Errorf("delete: %w", err)
		}
		enc, err := encodeRecord(model.Record{Kind: KindRetention, Data: RetentionData{
			BeforeNS: before.UnixNano(), ThroughSeq: uint64(through), Deleted: res.Deleted,
		}})
		if err != nil {
			return err
		}
		// The same insert path as a batch, inside this transaction.
		seq = uint64(w.size) + 1
		if err := w.insertNow(rc, []*encodedRecord{&enc}, seq); err != nil {
			return fmt.Errorf("retention entry: %w", err)
		}
		hash = append([]byte(nil), w.last...)
		return nil
	})
	if w.conn != nil {
		if offErr := w.withRaw(func(rc *rawConn) error {
			_, err := rc.sc.Exec(`PRAGMA secure_delete = OFF`, nil)
			return err
		}); offErr != nil {
			w.log.Warn("journal: secure_delete left on", "err", offErr)
		}
	}
	if err != nil {
		w.tree, w.size, w.headHash = saved, savedSize, savedHead
		return PruneResult{}, fmt.Errorf("journal: prune payloads: %w", err)
	}
	if res.Deleted == 0 {
		return res, nil
	}
	w.size, w.headHash = int64(seq), hash
	w.j.lastSeq.Store(seq)
	w.j.appends.Add(1)
	res.Seq = seq
	// What is deleted is no longer evidence: the entry that says so is
	// synced before the caller hears of it (in log mode the WAL too, as the
	// commit log does not hold it: inTx marked it).
	if err := w.syncNow(); err != nil {
		return res, fmt.Errorf("journal: prune payloads: retention entry %d committed but not synced: %w", seq, err)
	}
	// The deleted payloads are still in WAL frames until a checkpoint
	// copies the pages back and the WAL is reset.
	if _, err := w.conn.ExecContext(context.Background(), `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		w.log.Warn("journal: WAL not truncated after pruning payloads; old frames keep them until the next checkpoint", "err", err)
	}
	w.log.Info("journal payloads pruned", "before", before, "deleted", res.Deleted, "retention_seq", seq)
	return res, nil
}

// holdForHub lowers a retention run's reach to the size the fleet hub's
// newest journaled cosignature covers: what the hub has not witnessed is
// held here, whole, until it has (docs/hub.md, "Nothing lost").
func (w *writer) holdForHub(rc *rawConn, through int64) (int64, error) {
	found, err := rc.queryRow(sqlLastCosignature, 2)
	if err != nil {
		return 0, fmt.Errorf("find the newest %s: %w", model.KindHubCosignature, err)
	}
	if !found {
		return 0, nil
	}
	body, _ := rc.dest[1].([]byte)
	size, err := cosignedSize(body)
	if err != nil {
		return 0, fmt.Errorf("entry %v (%s): %w", rc.dest[0], model.KindHubCosignature, err)
	}
	return min(through, size), nil
}

// pruneSel selects the entries whose payloads a retention run deletes:
// those up to the head (?1) older than the cut (?2) that still have one.
const pruneSel = `WHERE seq <= ? AND time_ns < ? AND (payload IS NOT NULL OR salt IS NOT NULL)`

// readOptional reads a file that may not exist (nil, nil then).
func readOptional(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	return b, nil
}
