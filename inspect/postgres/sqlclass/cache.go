package sqlclass

import (
	"strings"
	"sync"

	"google.golang.org/protobuf/proto"
)

// The classifier's caches hold parse trees (the flow analysis walks them),
// which weigh far more than their text: "SELECT a+a+...+1" of 4 kB holds
// about 1 MB of tree. So each cache is bounded by the bytes its entries
// are estimated to hold, not by their number, and drops the least
// recently used first; an entry larger than a sixteenth of its cache, or
// a text longer than cacheMaxText, is parsed every time instead.
const (
	exactCacheBytes = 24 << 20
	shapeCacheBytes = 8 << 20
	cacheMaxText    = 16 << 10
	// treeFactor turns a tree's wire size into the memory its Go structs
	// hold (measured 16–20 for pg_query's trees).
	treeFactor = 24
	// entryOverhead is what an entry costs besides its text and tree
	// (the Class, its slices, the list links).
	entryOverhead = 512
)

// lru maps keys to values, bounded by the estimated bytes of its entries;
// a get makes an entry the most recently used. Safe for concurrent use.
type lru[V any] struct {
	mu    sync.Mutex
	max   int
	bytes int
	m     map[string]*lruEntry[V]
	// root.next is the most recently used entry, root.prev the least.
	root lruEntry[V]
}

type lruEntry[V any] struct {
	key        string
	val        V
	size       int
	prev, next *lruEntry[V]
}

func newLRU[V any](max int) *lru[V] {
	c := &lru[V]{max: max, m: map[string]*lruEntry[V]{}}
	c.root.prev, c.root.next = &c.root, &c.root
	return c
}

// get looks key up; key may be a string(bytes) conversion, which the map
// index does not copy.
func (c *lru[V]) get(key string) (V, bool) {
	c.mu.Lock()
	e, ok := c.m[key]
	if !ok {
		c.mu.Unlock()
		var zero V
		return zero, false
	}
	c.unlink(e)
	c.pushFront(e)
	v := e.val
	c.mu.Unlock()
	return v, true
}

func (c *lru[V]) getBytes(key []byte) (V, bool) {
	c.mu.Lock()
	e, ok := c.m[string(key)]
	if !ok {
		c.mu.Unlock()
		var zero V
		return zero, false
	}
	c.unlink(e)
	c.pushFront(e)
	v := e.val
	c.mu.Unlock()
	return v, true
}

// put stores v under key, weighing size bytes (the key included), and
// drops the least recently used entries beyond the bound.
func (c *lru[V]) put(key string, v V, size int) {
	size += len(key)
	if size > c.max/16 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[key]; ok {
		c.bytes += size - e.size
		e.val, e.size = v, size
		c.unlink(e)
		c.pushFront(e)
	} else {
		e := &lruEntry[V]{key: key, val: v, size: size}
		c.m[key] = e
		c.bytes += size
		c.pushFront(e)
	}
	for c.bytes > c.max && c.root.prev != &c.root {
		old := c.root.prev
		c.unlink(old)
		delete(c.m, old.key)
		c.bytes -= old.size
	}
}

func (c *lru[V]) unlink(e *lruEntry[V]) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

func (c *lru[V]) pushFront(e *lruEntry[V]) {
	e.prev, e.next = &c.root, c.root.next
	c.root.next.prev = e
	c.root.next = e
}

// stats returns the number of entries and their estimated bytes.
func (c *lru[V]) stats() (entries, bytes int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m), c.bytes
}

// parsedBytes estimates the memory a parsed text holds.
func parsedBytes(text string, p *Parsed) int {
	n := len(text) + entryOverhead
	for _, st := range p.Stmts {
		n += classBytes(st.Class)
	}
	return n
}

func classBytes(c *Class) int {
	n := entryOverhead
	if c.tree != nil {
		n += treeFactor * proto.Size(c.tree)
	}
	for _, t := range c.Tables {
		n += len(t) + 16
	}
	return n
}

// shape is a cached class shared by the texts of one shape, with where
// the statement starts and how far from the text's end it ends (neither
// moves with the literals, which are all inside the statement).
type shape struct {
	*Class
	head, tail int
}

// fromShape is the one-statement parse of text under a cached shape.
func fromShape(text string, sh shape) (*Parsed, bool) {
	end := len(text) - sh.tail
	if sh.head > end {
		return nil, false
	}
	return &Parsed{Stmts: []Statement{{Text: strings.TrimSpace(text[sh.head:end]), Head: sh.head, End: end, Class: sh.Class}}}, true
}

// shareable says whether the parse of a text of this shape may serve
// every text of the shape: one statement that parsed, whose class does
// not depend on literal values, and whose literals are all plain
// constants inside it.
func shareable(p *Parsed, lits []shapeLit, text string) bool {
	if len(p.Stmts) != 1 {
		return false
	}
	st := p.Stmts[0]
	if st.Err != "" || st.literal || st.Secrets || st.ConnSecrets || st.tree == nil {
		return false
	}
	for _, l := range lits {
		if l.start < st.Head || l.end > st.End {
			return false
		}
	}
	return literalsAreConsts(st.tree, lits, text)
}
