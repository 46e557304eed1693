package journal

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/interlock/interlock/journal/evidence"
)

// ErrRolledBack is wrapped by Open's error when the database is behind, or
// differs from, a checkpoint kept outside it.
var ErrRolledBack = errors.New("journal: database does not match its external checkpoint")

// externalCheckpoints are the files Open compares the database with.
func (o Options) externalCheckpoints() []string {
	return append([]string{CheckpointPath(o.Path)}, fileSinks(o.CheckpointSinks)...)
}

// refuseMissingDatabase stops Open from starting a new, empty journal where
// a checkpoint says one with entries existed: deleting the database is the
// simplest rollback of all.
func refuseMissingDatabase(o Options, v note.Verifier) error {
	if fi, err := os.Stat(o.Path); err == nil && fi.Size() > 0 {
		return nil
	}
	for _, f := range o.externalCheckpoints() {
		b, err := os.ReadFile(f)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("journal: read checkpoint %s: %w", f, err)
		}
		desc := "a checkpoint"
		if cp, err := evidence.ParseCheckpoint(b, v); err == nil {
			desc = fmt.Sprintf("a checkpoint of journal %s with %d entries, signed %s,", cp.JournalID(), cp.Size, cp.Time().Format(time.RFC3339))
		}
		return fmt.Errorf("%w: %s is missing or empty but %s is in %s: the journal was deleted or replaced. "+
			"Restore it from a backup; to start a new journal on purpose, move %s away first",
			ErrRolledBack, o.Path, desc, f, f)
	}
	return nil
}

// startupChecks runs in Open before the writer starts. It compares the
// database with every checkpoint kept outside it, then re-checks the
// entries written after the newest checkpoint (what a crash may have left
// unsigned, and what someone could have edited while interlock was down)
// before this writer chains onto them and signs them. It leaves the
// writer's head, tree and checkpoint state ready.
func (w *writer) startupChecks(ctx context.Context, created bool) (err error) {
	v := w.cps.signer.Verifier()
	// One snapshot: another process may be appending meanwhile.
	if _, err := w.conn.ExecContext(ctx, `BEGIN`); err != nil {
		return fmt.Errorf("journal: read %s: %w", w.opts.Path, err)
	}
	defer func() {
		if _, cerr := w.conn.ExecContext(context.Background(), `COMMIT`); cerr != nil && err == nil {
			err = fmt.Errorf("journal: end read of %s: %w", w.opts.Path, cerr)
		}
	}()
	var head int64
	if err := w.conn.QueryRowContext(ctx, `SELECT coalesce(max(seq), 0) FROM entries`).Scan(&head); err != nil {
		return fmt.Errorf("journal: read head: %w", err)
	}
	base := evidence.Checkpoint{}
	if !created {
		last, err := newestStored(ctx, w.conn, v)
		if err != nil {
			return err
		}
		if last != nil {
			if err := w.matchTree(ctx, *last, head, "its newest stored checkpoint"); err != nil {
				return err
			}
			base = *last
		}
	}
	for _, f := range w.opts.externalCheckpoints() {
		cp, err := evidence.ReadCheckpointFile(f, v)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("%w: %v; if the key was replaced on purpose, move %s away", ErrRolledBack, err, f)
		}
		if cp.Origin != w.cps.origin {
			return fmt.Errorf("%w: %s is a checkpoint of journal %s, but %s is journal %s: the database was replaced. "+
				"Restore the original from a backup; to keep this one on purpose, move %s away",
				ErrRolledBack, f, cp.JournalID(), w.opts.Path, w.cps.origin[len(evidence.OriginPrefix):], f)
		}
		if err := w.matchTree(ctx, cp, head, f); err != nil {
			return err
		}
		if cp.Size > base.Size {
			base = cp
		}
	}
	if err := w.checkTail(ctx, base, head); err != nil {
		return err
	}
	w.cps.last = base
	if base.Size > 0 {
		w.cps.lastAt = base.Time()
		if now := time.Now(); w.cps.lastAt.After(now) {
			w.cps.lastAt = now
		}
	}
	return nil
}

// newestStored returns the newest checkpoint in the database (largest
// tree, then latest), verified, or nil when there is none.
func newestStored(ctx context.Context, q queryer, v note.Verifier) (*evidence.Checkpoint, error) {
	var msg []byte
	var id int64
	err := q.QueryRowContext(ctx, `SELECT id, note FROM checkpoints ORDER BY tree_size DESC, time_ns DESC LIMIT 1`).Scan(&id, &msg)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("journal: read checkpoints: %w", err)
	}
	cp, err := evidence.ParseCheckpoint(msg, v)
	if err != nil {
		return nil, fmt.Errorf("%w: stored checkpoint %d: %v", ErrRolledBack, id, err)
	}
	return &cp, nil
}

// matchTree checks that the database holds the tree cp signed.
func (w *writer) matchTree(ctx context.Context, cp evidence.Checkpoint, head int64, where string) error {
	if cp.Size > head {
		return fmt.Errorf("%w: %s has %d entries but %s (signed %s) covers %d: entries %d to %d are missing, "+
			"so the database was rolled back or truncated. Restore it from a backup, or run `interlock journal verify` "+
			"to see what is left; interlock will not append to it",
			ErrRolledBack, w.opts.Path, head, where, cp.Time().Format(time.RFC3339), cp.Size, head+1, cp.Size)
	}
	tree, err := loadRange(sqlTrees(ctx, w.conn), cp.Size)
	if err != nil {
		return fmt.Errorf("%w: %s: read the tree at %d: %v", ErrRolledBack, w.opts.Path, cp.Size, err)
	}
	if tree.Root() != cp.Root {
		return fmt.Errorf("%w: the first %d entries of %s do not have the tree hash %s signed (%s): "+
			"the journal was rewritten or replaced. Run `interlock journal verify`; interlock will not append to it",
			ErrRolledBack, cp.Size, w.opts.Path, where, cp.Time().Format(time.RFC3339))
	}
	return nil
}

// checkTail re-checks entries base.Size+1..head: each must chain from the
// one before, parse, and carry the tree hashes its leaf gives. It leaves
// the writer's head and tree at head.
func (w *writer) checkTail(ctx context.Context, base evidence.Checkpoint, head int64) error {
	tree, err := loadRange(sqlTrees(ctx, w.conn), base.Size)
	if err != nil {
		return fmt.Errorf("journal: read the tree at %d: %w", base.Size, err)
	}
	prev := make([]byte, evidence.HashSize)
	if base.Size > 0 {
		if err := w.conn.QueryRowContext(ctx, `SELECT hash FROM entries WHERE seq = ?`, base.Size).Scan(&prev); err != nil {
			return fmt.Errorf("journal: read entry %d: %w", base.Size, err)
		}
	}
	rows, err := w.conn.QueryContext(ctx, `SELECT seq, body, hash, tree FROM entries WHERE seq > ? ORDER BY seq`, base.Size)
	if err != nil {
		return fmt.Errorf("journal: read entries after %d: %w", base.Size, err)
	}
	defer rows.Close()
	var stored []tlog.Hash
	var col []byte
	want := base.Size
	for rows.Next() {
		var seq int64
		var body, hash, treeCol []byte
		if err := rows.Scan(&seq, &body, &hash, &treeCol); err != nil {
			return fmt.Errorf("journal: read entry %d: %w", want+1, err)
		}
		want++
		reason := ""
		switch p, perr := evidence.ParseBody(body); {
		case seq != want:
			reason = fmt.Sprintf("entry %d missing", want)
		case perr != nil:
			reason = perr.Error()
		case p.Seq != uint64(seq):
			reason = fmt.Sprintf("body seq %d does not match row seq %d", p.Seq, seq)
		case !bytes.Equal(evidence.AppendChainHash(w.h, nil, prev, body), hash):
			reason = "hash mismatch"
		default:
			stored = tree.AddStored(tlog.RecordHash(body), stored)
			if col = treeColumn(col, stored); !bytes.Equal(col, treeCol) {
				reason = "tree hashes do not match the body"
			}
		}
		if reason != "" {
			return fmt.Errorf("%w: entry %d of %s, written after its newest checkpoint (%d entries), is bad: %s. "+
				"It was changed while interlock was not running, or the disk is failing. Run `interlock journal verify`; "+
				"interlock will not append to it",
				ErrRolledBack, want, w.opts.Path, base.Size, reason)
		}
		prev = hash
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("journal: read entries after %d: %w", base.Size, err)
	}
	if want != head {
		return fmt.Errorf("journal: %s changed during Open (head %d, read up to %d)", w.opts.Path, head, want)
	}
	w.size, w.tree, w.headHash = head, tree, append([]byte(nil), prev...)
	return nil
}
