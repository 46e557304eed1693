package identity

import (
	"context"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/interlock/interlock/model"
)

// identLRU is a small mutex-guarded least-recently-used cache.
type identLRU[K comparable, V any] struct {
	mu    sync.Mutex
	max   int
	items map[K]*identLRUNode[K, V]
	root  identLRUNode[K, V] // sentinel: root.next is the most recent
}

type identLRUNode[K comparable, V any] struct {
	key        K
	val        V
	prev, next *identLRUNode[K, V]
}

func newIdentLRU[K comparable, V any](max int) *identLRU[K, V] {
	if max < 1 {
		max = 1
	}
	c := &identLRU[K, V]{max: max, items: make(map[K]*identLRUNode[K, V])}
	c.root.next, c.root.prev = &c.root, &c.root
	return c
}

func (c *identLRU[K, V]) unlink(n *identLRUNode[K, V]) {
	n.prev.next, n.next.prev = n.next, n.prev
}

func (c *identLRU[K, V]) pushFront(n *identLRUNode[K, V]) {
	n.prev, n.next = &c.root, c.root.next
	c.root.next.prev = n
	c.root.next = n
}

func (c *identLRU[K, V]) get(k K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, ok := c.items[k]
	if !ok {
		var zero V
		return zero, false
	}
	if c.root.next != n {
		c.unlink(n)
		c.pushFront(n)
	}
	return n.val, true
}

// add stores v under k. It returns the value it displaced, if any: the
// one k held before, or the least recently used one it evicted.
func (c *identLRU[K, V]) add(k K, v V) (displaced V, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n, found := c.items[k]; found {
		displaced, ok = n.val, true
		n.val = v
		c.unlink(n)
		c.pushFront(n)
		return displaced, ok
	}
	var n *identLRUNode[K, V]
	if len(c.items) >= c.max {
		// recycle the least recently used node
		n = c.root.prev
		c.unlink(n)
		delete(c.items, n.key)
		displaced, ok = n.val, true
	} else {
		n = new(identLRUNode[K, V])
	}
	n.key, n.val = k, v
	c.items[k] = n
	c.pushFront(n)
	return displaced, ok
}

// removeIf removes k if drop says its value should go.
func (c *identLRU[K, V]) removeIf(k K, drop func(V) bool) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n, ok := c.items[k]; ok && drop(n.val) {
		c.unlink(n)
		delete(c.items, k)
		return n.val, true
	}
	var zero V
	return zero, false
}

// drain removes every entry and returns their values.
func (c *identLRU[K, V]) drain() []V {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]V, 0, len(c.items))
	for _, n := range c.items {
		out = append(out, n.val)
	}
	clear(c.items)
	c.root.next, c.root.prev = &c.root, &c.root
	return out
}

func (c *identLRU[K, V]) remove(k K) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n, ok := c.items[k]; ok {
		c.unlink(n)
		delete(c.items, k)
	}
}

func (c *identLRU[K, V]) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.items)
}

// identFileKey identifies one version of a file: a hash cached under it is
// still valid as long as none of these changed. The ctime is part of it
// although the mtime is: the owner can set the mtime back after a write
// (utimensat), nobody but the clock sets the ctime. So a touch makes a new
// version, which costs a hash; the owner's hash budget bounds that work,
// and the zero runs of a sparse file are hashed from memory (see hashZeros).
type identFileKey struct {
	dev, ino            uint64
	size                int64
	mtimeSec, mtimeNsec int64
	ctimeSec, ctimeNsec int64
	// owner is the file's uid: whose hash budget its hashing is charged to.
	owner uint32
}

func identFileKeyOf(st *unix.Statx_t) identFileKey {
	return identFileKey{
		dev: unix.Mkdev(st.Dev_major, st.Dev_minor), ino: st.Ino, size: int64(st.Size),
		mtimeSec: st.Mtime.Sec, mtimeNsec: int64(st.Mtime.Nsec),
		ctimeSec: st.Ctime.Sec, ctimeNsec: int64(st.Ctime.Nsec),
		owner: st.Uid,
	}
}

// identStatx is statx with the flags the resolver uses: follow the link
// (for /proc/PID/exe: the file that runs) and trust cached attributes, so
// a network or FUSE file system is not asked (and cannot stall us).
func identStatx(dirfd int, name string, st *unix.Statx_t) error {
	flags := unix.AT_STATX_DONT_SYNC
	if name == "" {
		flags |= unix.AT_EMPTY_PATH
	}
	return unix.Statx(dirfd, name, flags, unix.STATX_BASIC_STATS, st)
}

// identAcquire takes a slot of sem, waiting at most maxWait (and not past
// ctx). The slots bound how many threads a hostile process can park in
// syscalls that may block on it (its memory for cmdline/environ, its
// executable on a FUSE file system for hashing).
func identAcquire(ctx context.Context, sem chan struct{}, maxWait time.Duration) bool {
	select {
	case sem <- struct{}{}:
		return true
	default:
	}
	t := time.NewTimer(maxWait)
	defer t.Stop()
	select {
	case sem <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	case <-t.C:
		return false
	}
}

// identAncestor is what is cached about one ancestor process. It is reused
// only for the same pid, start time and comm, and only for a short while:
// the uid (from /proc/PID/status, the costliest read) may change.
type identAncestor struct {
	startTicks uint64
	comm       string
	exe        string
	uid        uint32
	expires    time.Time
}

// identChainKey names a parent process; identChain is what lies above it.
type identChainKey struct {
	pid        uint32
	startTicks uint64
}

type identChain struct {
	next    uint32 // the parent's ppid when cached
	refs    []model.ProcessRef
	expires time.Time
}

const (
	identAncestorCacheSize = 4096
	identAncestorTTL       = 2 * time.Second
	identChainTTL          = time.Second
	identMaxParents        = 64
)
