package redirector

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
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

func (c *identLRU[K, V]) add(k K, v V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n, ok := c.items[k]; ok {
		n.val = v
		c.unlink(n)
		c.pushFront(n)
		return
	}
	var n *identLRUNode[K, V]
	if len(c.items) >= c.max {
		// recycle the least recently used node
		n = c.root.prev
		c.unlink(n)
		delete(c.items, n.key)
	} else {
		n = new(identLRUNode[K, V])
	}
	n.key, n.val = k, v
	c.items[k] = n
	c.pushFront(n)
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
// still valid as long as none of these changed.
type identFileKey struct {
	dev, ino            uint64
	size                int64
	mtimeSec, mtimeNsec int64
	ctimeSec, ctimeNsec int64
}

func identFileKeyOf(st *unix.Statx_t) identFileKey {
	return identFileKey{
		dev: unix.Mkdev(st.Dev_major, st.Dev_minor), ino: st.Ino, size: int64(st.Size),
		mtimeSec: st.Mtime.Sec, mtimeNsec: int64(st.Mtime.Nsec),
		ctimeSec: st.Ctime.Sec, ctimeNsec: int64(st.Ctime.Nsec),
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

const (
	identHashCacheSize = 4096
	// identMaxHashBytes bounds the work one executable can cost.
	identMaxHashBytes = 2 << 30
	identHashChunk    = 256 << 10
	// identHashSlots executables are hashed at most at once; a hash
	// waits at most identHashWait for a slot or for another caller
	// hashing the same file.
	identHashSlots = 8
	identHashWait  = 2 * time.Second
)

var (
	errIdentFileChanged = errors.New("file changed while it was hashed")
	errIdentHashBusy    = errors.New("no hashing slot free in time")
	errIdentHashAborted = errors.New("hashing aborted")
)

// identHashCache maps file versions to their SHA-256, hashing each version
// once even when many connections ask for it at the same time.
type identHashCache struct {
	lru      *identLRU[identFileKey, string]
	slots    chan struct{}
	mu       sync.Mutex
	inflight map[identFileKey]*identHashCall
	computed atomic.Int64 // hashes actually computed (for tests and metrics)
	bufs     sync.Pool    // *[]byte of identHashChunk bytes
}

type identHashCall struct {
	done chan struct{}
	sum  string
	err  error
}

func newIdentHashCache(size int) *identHashCache {
	return &identHashCache{
		lru:      newIdentLRU[identFileKey, string](size),
		slots:    make(chan struct{}, identHashSlots),
		inflight: make(map[identFileKey]*identHashCall),
	}
}

// sum returns the SHA-256 (hex) of the file version key. On a miss it
// opens the file with open (which must return the file key names) and
// hashes it; concurrent callers for the same key share one computation.
func (c *identHashCache) sum(ctx context.Context, key identFileKey, open func() (int, error)) (string, error) {
	if s, ok := c.lru.get(key); ok {
		return s, nil
	}
	c.mu.Lock()
	if call, ok := c.inflight[key]; ok {
		c.mu.Unlock()
		select {
		case <-call.done:
			return call.sum, call.err
		default:
		}
		t := time.NewTimer(identHashWait)
		defer t.Stop()
		select {
		case <-call.done:
			return call.sum, call.err
		case <-ctx.Done():
			return "", ctx.Err()
		case <-t.C:
			return "", errIdentHashBusy
		}
	}
	// The leader stores its result before leaving inflight: look again.
	if s, ok := c.lru.get(key); ok {
		c.mu.Unlock()
		return s, nil
	}
	call := &identHashCall{done: make(chan struct{})}
	c.inflight[key] = call
	c.mu.Unlock()

	// deferred, so that followers are released even if compute panics
	s, err := "", errIdentHashAborted
	defer func() {
		if err == nil {
			c.lru.add(key, s)
		}
		c.mu.Lock()
		delete(c.inflight, key)
		c.mu.Unlock()
		call.sum, call.err = s, err
		close(call.done)
	}()
	s, err = c.compute(ctx, key, open)
	return s, err
}

func (c *identHashCache) compute(ctx context.Context, key identFileKey, open func() (int, error)) (string, error) {
	if key.size > identMaxHashBytes {
		return "", fmt.Errorf("executable too large to hash (%d bytes)", key.size)
	}
	if !identAcquire(ctx, c.slots, identHashWait) {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		return "", errIdentHashBusy
	}
	defer func() { <-c.slots }()
	fd, err := open()
	if err != nil {
		return "", err
	}
	defer unix.Close(fd)
	c.computed.Add(1)
	bp, _ := c.bufs.Get().(*[]byte)
	if bp == nil {
		b := make([]byte, identHashChunk)
		bp = &b
	}
	defer c.bufs.Put(bp)
	return identHashFD(ctx, fd, key, *bp)
}

// identHashFD hashes the file behind fd from offset 0 with pread, and
// checks that it is the version key names, before and after.
func identHashFD(ctx context.Context, fd int, key identFileKey, buf []byte) (string, error) {
	var st unix.Statx_t
	if err := identStatx(fd, "", &st); err != nil {
		return "", err
	}
	if identFileKeyOf(&st) != key {
		return "", errIdentFileChanged
	}
	h := sha256.New()
	var off int64
	for i := 0; ; i++ {
		if i%16 == 15 {
			if err := ctx.Err(); err != nil {
				return "", err
			}
		}
		n, err := unix.Pread(fd, buf, off)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return "", err
		}
		if n <= 0 {
			break
		}
		h.Write(buf[:n])
		off += int64(n)
		if off > identMaxHashBytes {
			return "", errIdentFileChanged
		}
	}
	if err := identStatx(fd, "", &st); err != nil {
		return "", err
	}
	if identFileKeyOf(&st) != key || off != key.size {
		return "", errIdentFileChanged
	}
	var sum [sha256.Size]byte
	return hex.EncodeToString(h.Sum(sum[:0])), nil
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
