package journal

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/interlock/interlock/journal/evidence"
	"github.com/interlock/interlock/model"
)

// CheckpointAt returns a checkpoint of the tree of size min(atMost, the
// synced size), for a shipper that needs one ending exactly where its
// batch ends. The newest checkpoint is reused when it states that tree;
// otherwise one is signed now and stored in the database (not sent to the
// sinks: a smaller tree than the newest would only confuse a file sink).
// Only fsynced entries are ever vouched for, so the size may be less than
// asked; ErrNoCheckpoint means nothing is synced yet.
func (j *Journal) CheckpointAt(ctx context.Context, atMost int64) (evidence.Checkpoint, error) {
	var cp evidence.Checkpoint
	err := j.control(ctx, func(w *writer) error {
		var err error
		cp, err = w.checkpointAt(atMost)
		return err
	})
	return cp, err
}

func (w *writer) checkpointAt(atMost int64) (evidence.Checkpoint, error) {
	// Fsyncs that finished since the writer last looked count too.
	w.onSynced()
	size := min(atMost, w.synced)
	switch {
	case size < 1 || w.cps.signer == nil:
		return evidence.Checkpoint{}, ErrNoCheckpoint
	case w.cps.last.Size == size && len(w.cps.last.Note) > 0:
		return w.cps.last, nil
	case size == w.synced:
		// The regular path: stored, published, and the cadence restarts.
		w.checkpoint(time.Now())
		if w.cps.last.Size != size {
			return evidence.Checkpoint{}, fmt.Errorf("journal: checkpoint of size %d not signed (see the log)", size)
		}
		return w.cps.last, nil
	}
	var cp evidence.Checkpoint
	err := w.inTx(func(rc *rawConn) error {
		root, err := tlog.TreeHash(size, hashReader{rc.trees()})
		if err != nil {
			return fmt.Errorf("tree of size %d: %w", size, err)
		}
		if cp, err = evidence.SignCheckpoint(w.cps.signer, w.cps.origin, size, root, time.Now()); err != nil {
			return err
		}
		if err := rc.exec(sqlCheckpoint, cp.Size, cp.TimeNS, cp.Note); err != nil {
			return fmt.Errorf("insert checkpoint: %w", err)
		}
		return nil
	})
	if err != nil {
		return evidence.Checkpoint{}, fmt.Errorf("journal: checkpoint at %d: %w", size, err)
	}
	w.j.checkpoints.Add(1)
	return cp, nil
}

// sqlLastCosignature finds the newest hub.cosignature entry. There is no
// index on kind for it: the scan walks back from the head, and while
// shipping works the newest cosignature is a few entries away. Only
// retention and doctor ask, rarely.
const sqlLastCosignature = `SELECT seq, body FROM entries WHERE kind = '` + model.KindHubCosignature + `' ORDER BY seq DESC LIMIT 1`

// cosignedSize is the size of the tree the newest hub.cosignature entry
// covers; 0 when the hub has cosigned nothing yet.
func cosignedSize(body []byte) (int64, error) {
	var c model.HubCosignature
	if err := decodeData(body, &c); err != nil {
		return 0, err
	}
	return c.Size, nil
}

// ShipState is how far the fleet hub's cosignatures cover a journal, as
// the journal itself records it.
type ShipState struct {
	// Head is the last entry's seq.
	Head int64
	// Cosigned is the newest hub.cosignature entry's data (zero when there
	// is none) and CosignatureSeq that entry's seq.
	Cosigned       model.HubCosignature
	CosignatureSeq int64
	// Behind counts the entries above the cosigned size that are not
	// hub.cosignature entries themselves (the last of those is shipped
	// without a cosignature entry of its own, or every one would call for
	// another).
	Behind int64
}

// ReadShipState reads a journal's shipping state, for doctor.
func ReadShipState(ctx context.Context, path string) (ShipState, error) {
	r, err := openReader(ctx, path)
	if err != nil {
		return ShipState{}, err
	}
	defer r.close()
	var st ShipState
	if err := r.conn.QueryRowContext(ctx, `SELECT coalesce(max(seq), 0) FROM entries`).Scan(&st.Head); err != nil {
		return ShipState{}, fmt.Errorf("journal: read %s: %w", path, err)
	}
	var body []byte
	err = r.conn.QueryRowContext(ctx, sqlLastCosignature).Scan(&st.CosignatureSeq, &body)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return ShipState{}, fmt.Errorf("journal: read %s: %w", path, err)
	default:
		if err := decodeData(body, &st.Cosigned); err != nil {
			return ShipState{}, fmt.Errorf("journal: entry %d (%s): %w", st.CosignatureSeq, model.KindHubCosignature, err)
		}
	}
	err = r.conn.QueryRowContext(ctx, `SELECT count(*) FROM entries WHERE seq > ? AND kind != '`+model.KindHubCosignature+`'`,
		st.Cosigned.Size).Scan(&st.Behind)
	if err != nil {
		return ShipState{}, fmt.Errorf("journal: read %s: %w", path, err)
	}
	return st, nil
}
