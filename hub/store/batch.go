package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/interlock/interlock/journal/evidence"
)

// HostState is what the hub holds of a host when a batch arrives, read
// under the host's row lock: what the batch must continue.
type HostState struct {
	Host Host
	// Frontier is the compact range of the host's tree of Host.Size
	// leaves (evidence.FrontierIndexes), to extend with the batch.
	Frontier []tlog.Hash
}

// Entry is one entry as the hub keeps it.
type Entry struct {
	Seq     int64
	TimeNS  int64
	Kind    string
	Session string
	Body    []byte
	// Hash is the chain hash; Leaf the tree's leaf hash.
	Hash, Leaf    []byte
	Salt, Payload []byte
}

// SessionOpen is what searches filter a session.open entry on.
type SessionOpen struct {
	Seq       int64
	TimeNS    int64
	Session   string
	Target    string
	ProcUser  string
	LoginUser string
}

// IndexedHash is a stored tree hash at its tlog index.
type IndexedHash struct {
	Index int64
	Hash  tlog.Hash
}

// Accepted is an accepted batch: everything the store keeps of it.
type Accepted struct {
	Entries  []Entry
	Sessions []SessionOpen
	// Operations are the batch's operations (OperationOf), for statement
	// searches.
	Operations []Operation
	// Hashes are the host tree's new stored hashes.
	Hashes []IndexedHash
	// Size and Root are the checkpoint's; ChainHash the last entry's.
	Size      int64
	Root      tlog.Hash
	ChainHash []byte
	// Checkpoint is the host's signed note; Cosigned the same with the
	// hub's cosignature, which becomes a leaf of the fleet log.
	Checkpoint []byte
	Cosigned   []byte
	CosignedAt time.Time
}

// Refusal is a refused batch and the evidence kept of it. As an error,
// it is what Batch returns once the refusal is stored.
type Refusal struct {
	Code    string
	Message string
	// From and Entries say which range the batch claimed.
	From, Entries int64
	Checkpoint    []byte
	// BadSeq and BadBody are the first bad entry, when one is known.
	BadSeq  int64
	BadBody []byte
	// Bodies are the batch's entry bodies, kept for a fork or a bad
	// entry (not for a replay: the hub holds those bodies already).
	Bodies [][]byte
}

func (r *Refusal) Error() string { return r.Code + ": " + r.Message }

// Batch runs check on the host's state under its row lock, so that
// concurrent batches of one host are serialized, and keeps what check
// returns in the same transaction: an accepted batch (its entries, tree
// hashes, checkpoint and cosignature, and the cosigned checkpoint
// appended to the fleet log), or, when check's error is a *Refusal, the
// evidence of that refusal. Any other error from check keeps nothing. It
// returns the host as it is after the batch, and the *Refusal as its
// error when check refused it.
func (s *Store) Batch(ctx context.Context, hostID string, check func(HostState) (*Accepted, error)) (Host, error) {
	var out Host
	var refused *Refusal
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		refused = nil
		h, err := scanHost(tx.QueryRow(ctx, `SELECT `+hostColumns+` FROM hosts WHERE id = $1 FOR UPDATE`, hostID))
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNoHost
		}
		if err != nil {
			return fmt.Errorf("hub store: lock host %s: %w", hostID, err)
		}
		frontier, err := hashReader{ctx: ctx, q: tx, host: hostID}.ReadHashes(evidence.FrontierIndexes(h.Size))
		if err != nil {
			return err
		}
		acc, err := check(HostState{Host: h, Frontier: frontier})
		var ref *Refusal
		if errors.As(err, &ref) {
			refused = ref
			out = h
			return s.addRefusal(ctx, tx, hostID, ref)
		}
		if err != nil {
			return err
		}
		if acc == nil {
			return errors.New("hub store: batch check returned neither an accepted batch nor a refusal")
		}
		out, err = s.addBatch(ctx, tx, h, acc)
		return err
	})
	if err != nil {
		return Host{}, err
	}
	if refused != nil {
		return out, refused
	}
	return out, nil
}

func (s *Store) addRefusal(ctx context.Context, tx pgx.Tx, hostID string, r *Refusal) error {
	var bodies []byte
	if len(r.Bodies) > 0 {
		bodies, _ = json.Marshal(r.Bodies) // [][]byte always marshals
	}
	var badSeq *int64
	if r.BadSeq != 0 {
		badSeq = &r.BadSeq
	}
	_, err := tx.Exec(ctx, `INSERT INTO refusals (host_id, at, code, message, batch_from, batch_entries, checkpoint, bad_seq, bad_body, bodies)
		VALUES ($1, now(), $2, $3, $4, $5, $6, $7, $8, $9)`,
		hostID, r.Code, r.Message, r.From, r.Entries, r.Checkpoint, badSeq, r.BadBody, bodies)
	if err != nil {
		return fmt.Errorf("hub store: keep the refusal of a batch of %s: %w", hostID, err)
	}
	return nil
}

func (s *Store) addBatch(ctx context.Context, tx pgx.Tx, h Host, a *Accepted) (Host, error) {
	_, err := tx.CopyFrom(ctx, pgx.Identifier{"entries"},
		[]string{"host_id", "seq", "time_ns", "kind", "session", "body", "hash", "salt", "payload", "leaf"},
		pgx.CopyFromSlice(len(a.Entries), func(i int) ([]any, error) {
			e := &a.Entries[i]
			return []any{h.ID, e.Seq, e.TimeNS, e.Kind, e.Session, e.Body, e.Hash, e.Salt, e.Payload, e.Leaf}, nil
		}))
	if err != nil {
		return Host{}, fmt.Errorf("hub store: store entries of %s: %w", h.ID, err)
	}
	_, err = tx.CopyFrom(ctx, pgx.Identifier{"tree_hashes"}, []string{"host_id", "idx", "hash"},
		pgx.CopyFromSlice(len(a.Hashes), func(i int) ([]any, error) {
			return []any{h.ID, a.Hashes[i].Index, a.Hashes[i].Hash[:]}, nil
		}))
	if err != nil {
		return Host{}, fmt.Errorf("hub store: store tree hashes of %s: %w", h.ID, err)
	}
	if len(a.Sessions) > 0 {
		_, err = tx.CopyFrom(ctx, pgx.Identifier{"sessions"}, []string{"host_id", "seq", "time_ns", "session", "target", "proc_user", "login_user"},
			pgx.CopyFromSlice(len(a.Sessions), func(i int) ([]any, error) {
				o := &a.Sessions[i]
				return []any{h.ID, o.Seq, o.TimeNS, o.Session, o.Target, o.ProcUser, o.LoginUser}, nil
			}))
		if err != nil {
			return Host{}, fmt.Errorf("hub store: index sessions of %s: %w", h.ID, err)
		}
	}
	if err := addOperations(ctx, tx, h.ID, a.Operations); err != nil {
		return Host{}, err
	}
	fleetIndex, err := appendFleet(ctx, tx, h.ID, a.Size, a.Cosigned)
	if err != nil {
		return Host{}, err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO checkpoints (host_id, size, root, note, cosigned, cosigned_at, fleet_index)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`, h.ID, a.Size, a.Root[:], a.Checkpoint, a.Cosigned, a.CosignedAt, fleetIndex); err != nil {
		return Host{}, fmt.Errorf("hub store: store checkpoint %d of %s: %w", a.Size, h.ID, err)
	}
	h, err = scanHost(tx.QueryRow(ctx, `UPDATE hosts SET size = $2, chain_hash = $3, root = $4, cosigned_size = $2, last_batch_at = now()
		WHERE id = $1 RETURNING `+hostColumns, h.ID, a.Size, a.ChainHash, a.Root[:]))
	if err != nil {
		return Host{}, fmt.Errorf("hub store: advance host %s to %d: %w", h.ID, a.Size, err)
	}
	return h, nil
}

// appendFleet appends a cosigned checkpoint to the fleet log and returns
// its index. The fleet_state row lock serializes appends of all hosts; it
// is taken last, so batches of different hosts overlap until then.
func appendFleet(ctx context.Context, tx pgx.Tx, hostID string, size int64, cosigned []byte) (int64, error) {
	var n int64
	if err := tx.QueryRow(ctx, `SELECT size FROM fleet_state WHERE id = 1 FOR UPDATE`).Scan(&n); err != nil {
		return 0, fmt.Errorf("hub store: lock the fleet log: %w", err)
	}
	frontier, err := hashReader{ctx: ctx, q: tx}.ReadHashes(evidence.FrontierIndexes(n))
	if err != nil {
		return 0, err
	}
	cr, err := evidence.NewCompactRange(n, frontier)
	if err != nil {
		return 0, fmt.Errorf("hub store: fleet log: %w", err)
	}
	leaf := evidence.FleetLeaf(cosigned)
	stored := cr.AddStored(leaf, nil)
	base := tlog.StoredHashIndex(0, n)
	for i, hh := range stored {
		if _, err := tx.Exec(ctx, `INSERT INTO fleet_hashes (idx, hash) VALUES ($1, $2)`, base+int64(i), hh[:]); err != nil {
			return 0, fmt.Errorf("hub store: fleet log hash: %w", err)
		}
	}
	if _, err := tx.Exec(ctx, `INSERT INTO fleet_leaves (idx, host_id, size, cosigned, leaf) VALUES ($1, $2, $3, $4, $5)`,
		n, hostID, size, cosigned, leaf[:]); err != nil {
		return 0, fmt.Errorf("hub store: fleet log leaf: %w", err)
	}
	root := cr.Root()
	if _, err := tx.Exec(ctx, `UPDATE fleet_state SET size = $1, root = $2 WHERE id = 1`, n+1, root[:]); err != nil {
		return 0, fmt.Errorf("hub store: advance the fleet log: %w", err)
	}
	return n, nil
}
