package evidence

import (
	"fmt"
	"math/bits"

	"golang.org/x/mod/sumdb/tlog"
)

// The entries are the leaves of an RFC 6962 Merkle tree, leaf i being the
// body of entry i+1, so a tree of size N covers entries 1..N. tlog's
// stored hash indexes name its nodes: StoredHashIndex(level, k) is the root
// of the subtree of leaves k<<level .. (k+1)<<level - 1, which the leaf of
// entry (k+1)<<level completes.

// LeafHash is the RFC 6962 leaf hash of an entry body.
func LeafHash(body []byte) tlog.Hash { return tlog.RecordHash(body) }

// CompactRange is the right edge of a tree being built leaf by leaf: the
// roots of its maximal complete subtrees, largest first. It holds log2(N)
// hashes whatever N is, so verifiers and the writer can follow a journal
// of any length. The zero value is the empty tree.
type CompactRange struct {
	size    int64
	nodes   []tlog.Hash
	scratch []tlog.Hash
}

// NewCompactRange starts from a tree of size n given its frontier hashes
// (largest subtree first, as Frontier returns them and FrontierIndexes
// names them); NewCompactRange(0, nil) is the empty tree.
func NewCompactRange(n int64, frontier []tlog.Hash) (CompactRange, error) {
	if len(frontier) != bits.OnesCount64(uint64(n)) {
		return CompactRange{}, fmt.Errorf("a tree of size %d has %d frontier hashes, not %d", n, bits.OnesCount64(uint64(n)), len(frontier))
	}
	return CompactRange{size: n, nodes: append([]tlog.Hash(nil), frontier...)}, nil
}

// AddStored appends a leaf and returns the hashes tlog.StoredHashes would
// return for it (the leaf hash, then each completed subtree's root),
// appended to dst[:0]. It is the same computation without a HashReader
// round trip; the tests check it against tlog.
func (c *CompactRange) AddStored(leaf tlog.Hash, dst []tlog.Hash) []tlog.Hash {
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

// Add appends a leaf hash.
func (c *CompactRange) Add(leaf tlog.Hash) { c.scratch = c.AddStored(leaf, c.scratch) }

// Size is the number of leaves.
func (c *CompactRange) Size() int64 { return c.size }

// Root is the tree hash of the leaves added so far.
func (c *CompactRange) Root() tlog.Hash {
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

// Frontier returns the frontier hashes, largest subtree first.
func (c *CompactRange) Frontier() []tlog.Hash { return append([]tlog.Hash(nil), c.nodes...) }

// Clone returns a copy that shares nothing with c.
func (c *CompactRange) Clone() CompactRange {
	return CompactRange{size: c.size, nodes: append([]tlog.Hash(nil), c.nodes...)}
}

// FrontierIndexes lists, largest subtree first, the stored hash indexes of
// the maximal complete subtrees of a tree of size n: the compact range.
func FrontierIndexes(n int64) []int64 {
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
