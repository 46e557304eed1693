package journal

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"hash"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/interlock/interlock/journal/evidence"
)

// Each entry row stores, in its tree column, the hashes tlog.StoredHashes
// gives for its leaf: the leaf hash and the roots of the subtrees the leaf
// completes. The tree hash with stored index StoredHashIndex(level, k) is
// therefore at offset level*32 in the tree column of entry (k+1)<<level.
// That is all tlog needs to make inclusion and consistency proofs.

// queryer is what both *sql.Conn and *sql.Tx offer.
type queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// treeReader returns the tree column of entry seq; found is false when
// there is no such entry.
type treeReader func(seq int64) (tree []byte, found bool, err error)

const sqlTreeOf = `SELECT tree FROM entries WHERE seq = ?`

// sqlTrees reads tree columns through database/sql (readers, Open).
func sqlTrees(ctx context.Context, q queryer) treeReader {
	return func(seq int64) ([]byte, bool, error) {
		var tree []byte
		err := q.QueryRowContext(ctx, sqlTreeOf, seq).Scan(&tree)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, false, nil
		}
		return tree, err == nil, err
	}
}

// trees reads tree columns on the writer's driver connection.
func (rc *rawConn) trees() treeReader {
	return func(seq int64) ([]byte, bool, error) {
		found, err := rc.queryRow(sqlTreeOf, 1, seq)
		if !found || err != nil {
			return nil, false, err
		}
		tree, _ := rc.dest[0].([]byte)
		return tree, true, nil
	}
}

// hashReader reads stored tree hashes out of the entries' tree columns.
type hashReader struct{ read treeReader }

func (r hashReader) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, idx := range indexes {
		level, k := tlog.SplitStoredHashIndex(idx)
		seq := (k + 1) << level
		tree, found, err := r.read(seq)
		if err != nil {
			return nil, fmt.Errorf("read tree hashes of entry %d: %w", seq, err)
		}
		if !found {
			return nil, fmt.Errorf("tree hash (level %d, %d) should be in entry %d, which is missing", level, k, seq)
		}
		if len(tree) < (level+1)*evidence.HashSize || len(tree)%evidence.HashSize != 0 {
			return nil, fmt.Errorf("entry %d has a %d-byte tree column, too short for level %d", seq, len(tree), level)
		}
		copy(out[i][:], tree[level*evidence.HashSize:])
	}
	return out, nil
}

// loadRange reads the compact range of the tree of size n.
func loadRange(read treeReader, n int64) (evidence.CompactRange, error) {
	idx := evidence.FrontierIndexes(n)
	hashes, err := hashReader{read}.ReadHashes(idx)
	if err != nil {
		return evidence.CompactRange{}, err
	}
	return evidence.NewCompactRange(n, hashes)
}

// leafHasher computes RFC 6962 leaf hashes (tlog.RecordHash) with one
// reused SHA-256: the writer and Verify hash every entry's leaf, and a new
// hasher per call was a noticeable part of that.
type leafHasher struct {
	h   hash.Hash
	buf []byte
}

var leafPrefix = []byte{0}

func (l *leafHasher) sum(body []byte) tlog.Hash {
	if l.h == nil {
		l.h = sha256.New()
	}
	l.h.Reset()
	l.h.Write(leafPrefix)
	l.h.Write(body)
	l.buf = l.h.Sum(l.buf[:0])
	return tlog.Hash(l.buf)
}

// treeColumn packs stored hashes into an entry's tree column.
func treeColumn(dst []byte, hashes []tlog.Hash) []byte {
	dst = dst[:0]
	for _, h := range hashes {
		dst = append(dst, h[:]...)
	}
	return dst
}
