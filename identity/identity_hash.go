package identity

import (
	"context"
	"crypto/sha256"
	"encoding"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

const (
	identHashCacheSize = 4096
	// identMaxHashBytes bounds the work one executable can cost when no
	// limits were set (SetHashLimits).
	identMaxHashBytes = 2 << 30
	identHashChunk    = 256 << 10
	// identHashSlots executables are hashed at most at once; a hash
	// waits at most identHashWait for a slot or for another caller
	// hashing the same file.
	identHashSlots = 8
	identHashWait  = 2 * time.Second
	// Runs of zeros (holes) at least identZeroMemoMin long are hashed
	// once per (hash state, length): identZeroMemoSize of them are kept.
	identZeroMemoMin  = 4 << 20
	identZeroMemoSize = 256
	// identBudgetOwners bounds the owners whose budget is tracked; full
	// buckets are forgotten first.
	identBudgetOwners = 4096
)

var (
	errIdentFileChanged = errors.New("file changed while it was hashed")
	errIdentHashBusy    = errors.New("no hashing slot free in time")
	errIdentHashAborted = errors.New("hashing aborted")
	errIdentHashBudget  = errors.New("hash budget spent")
)

// HashLimits bound the work of hashing executables. An executable left
// unhashed has an empty ExeSHA256, which policy takes as unknown (an allow
// rule on hashes does not apply to it, a deny rule does).
type HashLimits struct {
	// MaxBytes is the largest executable hashed (0: 2 GiB).
	MaxBytes int64
	// BudgetBytes is how many bytes of executables one connecting uid
	// may have hashed per Interval: a token bucket holding at most
	// BudgetBytes (0: no budget). The uid whose connect needs the hash
	// pays (a version already hashed costs nothing, so a system binary
	// is hashed once however many users run it); a user who rewrites a
	// file another user runs does not spend that user's budget.
	BudgetBytes int64
	Interval    time.Duration
	// Refused, when set, hears of each executable these limits left
	// unhashed: the connecting uid that wanted it, its size, and which
	// limit ("hash_max_size", "hash_budget"). It runs in the resolving
	// goroutine.
	Refused func(uid uint32, size int64, limit string)
}

// SetHashLimits bounds the hashing of executables from now on.
func (r *Resolver) SetHashLimits(l HashLimits) {
	r.hashes.setLimits(l)
}

// HashStats are how many executables this resolver hashed (cache misses
// that were read) and how many bytes that fed to SHA-256.
func (r *Resolver) HashStats() (files, bytes int64) {
	return r.hashes.computed.Load(), r.hashes.hashed.Load()
}

// identHashCache maps file versions to their SHA-256, hashing each version
// once even when many connections ask for it at the same time.
type identHashCache struct {
	lru      *identLRU[identFileKey, string]
	slots    chan struct{}
	mu       sync.Mutex
	inflight map[identFileKey]*identHashCall
	computed atomic.Int64 // hashes actually computed (for tests and metrics)
	hashed   atomic.Int64 // bytes fed to SHA-256 by those (zero runs from memory not counted)
	bufs     sync.Pool    // *[]byte of identHashChunk bytes
	// zeros is identHashChunk zero bytes, never written: what a hole
	// hashes as, without reading it.
	zeros []byte
	// zeroRuns maps a hash state and a run of zeros to the state after
	// it: a sparse file touched again (a new version, the same bytes)
	// costs the hashing of its data only.
	zeroRuns *identLRU[string, []byte]
	limits   atomic.Pointer[HashLimits]
	budget   identBudget
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
		zeros:    make([]byte, identHashChunk),
		zeroRuns: newIdentLRU[string, []byte](identZeroMemoSize),
	}
}

func (c *identHashCache) setLimits(l HashLimits) {
	c.limits.Store(&l)
}

// sum returns the SHA-256 (hex) of the file version key. On a miss it
// opens the file with open (which must return the file key names) and
// hashes it; concurrent callers for the same key share one computation.
// payer is the connecting uid charged for the work.
func (c *identHashCache) sum(ctx context.Context, key identFileKey, payer uint32, open func() (int, error)) (string, error) {
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
	s, err = c.compute(ctx, key, payer, open)
	return s, err
}

func (c *identHashCache) compute(ctx context.Context, key identFileKey, payer uint32, open func() (int, error)) (string, error) {
	lim := c.limits.Load()
	if lim == nil {
		lim = &HashLimits{}
	}
	maxBytes := lim.MaxBytes
	if maxBytes <= 0 {
		maxBytes = identMaxHashBytes
	}
	if key.size > maxBytes {
		c.refused(lim, key, payer, "hash_max_size")
		return "", fmt.Errorf("executable too large to hash (%d bytes, the limit is %d)", key.size, maxBytes)
	}
	// The budget is taken before the work: for the whole file when the
	// owner's bucket holds it, else (below) for the file's data only, its
	// zero runs being paid for as they are hashed. What the work did not
	// cost (zero runs hashed from memory, an early failure) is given back.
	budget := lim.BudgetBytes > 0
	var reserved, work int64
	var charge func(int64) bool
	if budget {
		if c.budget.take(payer, key.size, lim, time.Now()) {
			reserved = key.size
		}
		defer func() { c.budget.settle(payer, reserved-work) }()
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
	if budget && reserved == 0 {
		// A sparse file touched again costs its data only (its zero runs
		// come from memory): it is not refused for its size.
		var st unix.Statx_t
		alloc := key.size
		if identStatx(fd, "", &st) == nil {
			alloc = min(key.size, int64(st.Blocks)*512)
		}
		if alloc >= key.size || !c.budget.take(payer, alloc, lim, time.Now()) {
			c.refused(lim, key, payer, "hash_budget")
			return "", c.budgetErr(payer)
		}
		reserved = alloc
		charge = func(n int64) bool {
			if !c.budget.take(payer, n, lim, time.Now()) {
				return false
			}
			reserved += n
			return true
		}
	}
	c.computed.Add(1)
	bp, _ := c.bufs.Get().(*[]byte)
	if bp == nil {
		b := make([]byte, identHashChunk)
		bp = &b
	}
	defer c.bufs.Put(bp)
	var sum string
	sum, work, err = c.hashFD(ctx, fd, key, *bp, charge)
	c.hashed.Add(work)
	if errors.Is(err, errIdentHashBudget) {
		c.refused(lim, key, payer, "hash_budget")
		return "", c.budgetErr(payer)
	}
	return sum, err
}

func (c *identHashCache) budgetErr(payer uint32) error {
	return fmt.Errorf("the hash budget of uid %d, whose connect needed the hash, is spent (limits.hash.budget_mib): not hashed", payer)
}

func (c *identHashCache) refused(lim *HashLimits, key identFileKey, payer uint32, limit string) {
	if lim.Refused != nil {
		lim.Refused(payer, key.size, limit)
	}
}

// hashFD hashes the file behind fd from offset 0 and checks that it is
// the version key names, before and after. It reads only the file's data:
// holes (SEEK_HOLE) are hashed as zeros without reading them, so a sparse
// file costs the CPU of hashing its zeros, not the copying of them.
// work is the bytes actually hashed (zero runs found in zeroRuns cost
// nothing).
// charge, when set, pays for each zero run hashed (not from memory); when
// it refuses, hashFD stops with errIdentHashBudget.
func (c *identHashCache) hashFD(ctx context.Context, fd int, key identFileKey, buf []byte, charge func(int64) bool) (sum string, work int64, err error) {
	var st unix.Statx_t
	if err := identStatx(fd, "", &st); err != nil {
		return "", 0, err
	}
	if identFileKeyOf(&st) != key {
		return "", 0, errIdentFileChanged
	}
	h := sha256.New()
	var off int64
	reads := 0
	for off < key.size {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		switch {
		case err == unix.ENXIO:
			data = key.size // a hole up to the end
		case err != nil:
			data = off // no hole information: read the rest
		}
		data = min(data, key.size)
		if data > off {
			n, err := c.hashZeros(ctx, h, data-off, charge)
			work += n
			if err != nil {
				return "", work, err
			}
			off = data
			continue
		}
		end, err := unix.Seek(fd, off, unix.SEEK_HOLE)
		if err != nil || end <= off || end > key.size {
			end = key.size
		}
		for off < end {
			if reads++; reads%16 == 0 {
				if err := ctx.Err(); err != nil {
					return "", work, err
				}
			}
			n, err := unix.Pread(fd, buf[:min(int64(len(buf)), end-off)], off)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				return "", work, err
			}
			if n <= 0 {
				// Shorter than its size: it changed.
				return "", work, errIdentFileChanged
			}
			h.Write(buf[:n])
			off += int64(n)
			work += int64(n)
		}
	}
	// Nothing past the size either.
	if n, err := unix.Pread(fd, buf[:1], off); err != nil || n != 0 {
		return "", work, errIdentFileChanged
	}
	if err := identStatx(fd, "", &st); err != nil {
		return "", work, err
	}
	if identFileKeyOf(&st) != key {
		return "", work, errIdentFileChanged
	}
	var out [sha256.Size]byte
	return hex.EncodeToString(h.Sum(out[:0])), work, nil
}

// hashZeros writes n zero bytes into h, or, for a long run already seen
// from the same hash state, sets h to the state that followed. SHA-256
// has no shortcut for zeros, but its state after a run depends only on
// the state before and the run's length. It returns the bytes hashed.
func (c *identHashCache) hashZeros(ctx context.Context, h hash.Hash, n int64, charge func(int64) bool) (int64, error) {
	m, mok := h.(encoding.BinaryMarshaler)
	u, uok := h.(encoding.BinaryUnmarshaler)
	var memo string
	if n >= identZeroMemoMin && mok && uok {
		if state, err := m.MarshalBinary(); err == nil {
			memo = string(binary.BigEndian.AppendUint64(state, uint64(n)))
			if after, ok := c.zeroRuns.get(memo); ok && u.UnmarshalBinary(after) == nil {
				return 0, nil
			}
		}
	}
	if charge != nil && !charge(n) {
		return 0, errIdentHashBudget
	}
	done, err := c.writeZeros(ctx, h, n)
	if err != nil || memo == "" {
		return done, err
	}
	if after, err := m.MarshalBinary(); err == nil {
		c.zeroRuns.add(memo, after)
	}
	return done, nil
}

func (c *identHashCache) writeZeros(ctx context.Context, h hash.Hash, n int64) (int64, error) {
	var done int64
	for i := 0; done < n; i++ {
		if i%16 == 15 {
			if err := ctx.Err(); err != nil {
				return done, err
			}
		}
		k := min(int64(len(c.zeros)), n-done)
		h.Write(c.zeros[:k])
		done += k
	}
	return done, nil
}

// identBudget is one token bucket of bytes per file owner.
type identBudget struct {
	mu      sync.Mutex
	buckets map[uint32]*identBucket
}

type identBucket struct {
	tokens float64
	last   time.Time
	// capacity is the budget the bucket was last filled under.
	capacity float64
}

// take takes n bytes from owner's bucket if it holds them.
func (b *identBudget) take(owner uint32, n int64, lim *HashLimits, now time.Time) bool {
	capacity := float64(lim.BudgetBytes)
	rate := capacity / max(lim.Interval.Seconds(), 1e-3)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buckets == nil {
		b.buckets = map[uint32]*identBucket{}
	}
	bk := b.buckets[owner]
	if bk == nil {
		if len(b.buckets) >= identBudgetOwners {
			b.forgetFull(now, rate)
		}
		bk = &identBucket{tokens: capacity, last: now}
		b.buckets[owner] = bk
	}
	bk.tokens = min(capacity, bk.tokens+now.Sub(bk.last).Seconds()*rate)
	bk.last, bk.capacity = now, capacity
	if bk.tokens < float64(n) {
		return false
	}
	bk.tokens -= float64(n)
	return true
}

// settle gives back n bytes a take did not use, or, when n is negative,
// takes what the work cost beyond it (the bucket may go below zero: the
// owner waits longer for the next hash).
func (b *identBudget) settle(owner uint32, n int64) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if bk := b.buckets[owner]; bk != nil {
		bk.tokens = min(bk.capacity, bk.tokens+float64(n))
	}
}

// forgetFull drops the buckets that have refilled: a new bucket starts
// full anyway. If none has, the map is cleared, which errs on the side of
// hashing (the map must stay bounded).
func (b *identBudget) forgetFull(now time.Time, rate float64) {
	for o, bk := range b.buckets {
		if bk.tokens+now.Sub(bk.last).Seconds()*rate >= bk.capacity {
			delete(b.buckets, o)
		}
	}
	if len(b.buckets) >= identBudgetOwners {
		clear(b.buckets)
	}
}
