package journal

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/bits"

	"golang.org/x/mod/sumdb/tlog"
)

// The entries are the leaves of an RFC 6962 Merkle tree, leaf i being the
// body of entry i+1, so a tree of size N covers entries 1..N. Each entry row
// stores, in its tree column, the hashes tlog.StoredHashes gives for its
// leaf: the leaf hash and the roots of the subtrees the leaf completes. The
// tree hash with stored index StoredHashIndex(level, k) is therefore at
// offset level*32 in the tree column of entry (k+1)<<level. That is all
// tlog needs to make inclusion and consistency proofs.

// LeafHash is the RFC 6962 leaf hash of an entry body.
func LeafHash(body []byte) tlog.Hash { return tlog.RecordHash(body) }

// compactRange is the right edge of a tree being built leaf by leaf: the
// roots of its maximal complete subtrees, largest first. It holds log2(N)
// hashes whatever N is, so Verify and the writer can follow a journal of
// any length.
type compactRange struct {
	size    int64
	nodes   []tlog.Hash
	scratch []tlog.Hash
}

// add appends a leaf and returns the hashes tlog.StoredHashes would return
// for it (the leaf hash, then each completed subtree's root), appended to
// dst[:0]. It is the same computation without a HashReader round trip; the
// tests check it against tlog.
func (c *compactRange) add(leaf tlog.Hash, dst []tlog.Hash) []tlog.Hash {
	dst = append(dst[:0], leaf)
	h := leaf
	for n := c.size; n&1 == 1; n >>= 1 {
		h = tlog.NodeHash(c.nodes[len(c.nodes)-1], h)
		c.nodes = c.nodes[:len(c.nodes)-1]
		dst = append(dst, h)
	}
	c.nodes = append(c.nodes, h)
	c.size++
	return dst
}

// root is the tree hash of the leaves added so far.
func (c *compactRange) root() tlog.Hash {
	if len(c.nodes) == 0 {
		h, _ := tlog.TreeHash(0, nil)
		return h
	}
	h := c.nodes[len(c.nodes)-1]
	for i := len(c.nodes) - 2; i >= 0; i-- {
		h = tlog.NodeHash(c.nodes[i], h)
	}
	return h
}

// CompactRange is the right edge of an RFC 6962 tree: enough to add leaves
// and compute the root, in log2(N) hashes. Bundle verifiers use it to
// rebuild the tree of an exported range.
type CompactRange = compactRange

// NewCompactRange starts from a tree of size n given its frontier hashes
// (largest subtree first, as Frontier returns them); NewCompactRange(0,
// nil) is the empty tree.
func NewCompactRange(n int64, frontier []tlog.Hash) (CompactRange, error) {
	return rangeFromHashes(n, frontier)
}

// Add appends a leaf hash.
func (c *compactRange) Add(leaf tlog.Hash) { c.scratch = c.add(leaf, c.scratch) }

// Size is the number of leaves.
func (c *compactRange) Size() int64 { return c.size }

// Root is the tree hash.
func (c *compactRange) Root() tlog.Hash { return c.root() }

// Frontier returns the frontier hashes, largest subtree first.
func (c *compactRange) Frontier() []tlog.Hash { return append([]tlog.Hash(nil), c.nodes...) }

func (c *compactRange) clone() compactRange {
	return compactRange{size: c.size, nodes: append([]tlog.Hash(nil), c.nodes...)}
}

// frontierIndexes lists, largest subtree first, the stored hash indexes of
// the maximal complete subtrees of a tree of size n: the compact range.
func frontierIndexes(n int64) []int64 {
	var out []int64
	var start int64
	for level := 62; level >= 0; level-- {
		if n&(1<<level) == 0 {
			continue
		}
		out = append(out, tlog.StoredHashIndex(level, start>>level))
		start += 1 << level
	}
	return out
}

// rangeFromHashes builds the compact range of size n from its frontier
// hashes (in frontierIndexes order).
func rangeFromHashes(n int64, hashes []tlog.Hash) (compactRange, error) {
	if len(hashes) != bits.OnesCount64(uint64(n)) {
		return compactRange{}, fmt.Errorf("a tree of size %d has %d frontier hashes, not %d", n, bits.OnesCount64(uint64(n)), len(hashes))
	}
	return compactRange{size: n, nodes: append([]tlog.Hash(nil), hashes...)}, nil
}

// queryer is what both *sql.Conn and *sql.Tx offer.
type queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// dbHashReader reads stored tree hashes out of the entries' tree columns.
type dbHashReader struct {
	ctx context.Context
	q   queryer
}

func (r dbHashReader) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, idx := range indexes {
		level, k := tlog.SplitStoredHashIndex(idx)
		seq := (k + 1) << level
		var tree []byte
		err := r.q.QueryRowContext(r.ctx, `SELECT tree FROM entries WHERE seq = ?`, seq).Scan(&tree)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("tree hash (level %d, %d) should be in entry %d, which is missing", level, k, seq)
		}
		if err != nil {
			return nil, fmt.Errorf("read tree hashes of entry %d: %w", seq, err)
		}
		if len(tree) < (level+1)*HashSize || len(tree)%HashSize != 0 {
			return nil, fmt.Errorf("entry %d has a %d-byte tree column, too short for level %d", seq, len(tree), level)
		}
		copy(out[i][:], tree[level*HashSize:])
	}
	return out, nil
}

// loadRange reads the compact range of the tree of size n from the
// database.
func loadRange(ctx context.Context, q queryer, n int64) (compactRange, error) {
	idx := frontierIndexes(n)
	hashes, err := dbHashReader{ctx, q}.ReadHashes(idx)
	if err != nil {
		return compactRange{}, err
	}
	return rangeFromHashes(n, hashes)
}

// treeColumn packs stored hashes into an entry's tree column.
func treeColumn(dst []byte, hashes []tlog.Hash) []byte {
	dst = dst[:0]
	for _, h := range hashes {
		dst = append(dst, h[:]...)
	}
	return dst
}
