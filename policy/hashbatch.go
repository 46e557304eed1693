package policy

import (
	"slices"
	"sync"
)

// The keyed hashes of masked originals are computed off the row's path:
// Mask copies each original into a batch, and a full batch is hashed by a
// goroutine of its own while the rows go on (masking a value does not need
// its hash; only the journal's record, at the end of the result, does).
// The hashes are added to their accumulators in the order the originals
// came, as batches finish and, in Decisions, for all of them.

// batchValues is the number of originals hashed by one goroutine.
const batchValues = 1024

type hashBatch struct {
	// stats are the accumulators' indexes in hasher.stats (indexes, not
	// pointers: storing a pointer per value costs a write barrier).
	stats []int32
	ends  []int32 // where each original ends in vals
	vals  []byte
	sums  []byte // 16 bytes per original, once done is closed
	done  chan struct{}
}

// hasher batches the originals of one RowMasker.
type hasher struct {
	key   []byte
	pads  *macPads
	stats []*maskStat
	cur   *hashBatch
	queue []*hashBatch // launched, in order
	// inline hashes the last, partial batch.
	inline *mac
}

// note counts an original under st and queues its hash.
func (h *hasher) note(st *maskStat, v []byte) {
	st.d.Count++
	if st.idx < 0 {
		st.idx = int32(len(h.stats))
		h.stats = append(h.stats, st)
	}
	b := h.cur
	if b == nil {
		b = batchPool.Get().(*hashBatch)
		h.cur = b
	}
	b.stats = append(b.stats, st.idx)
	b.vals = append(b.vals, v...)
	b.ends = append(b.ends, int32(len(b.vals)))
	if len(b.stats) == batchValues {
		h.cur = nil
		b.done = make(chan struct{})
		h.queue = append(h.queue, b)
		go b.hash(newMac(h.key, h.pads))
		h.fold(false)
	}
}

// batchPool recycles batches once their hashes are added: a 100,000-row
// result would otherwise allocate (and collect) a batch per 1,024 values.
var batchPool = sync.Pool{New: func() any {
	return &hashBatch{stats: make([]int32, 0, batchValues), ends: make([]int32, 0, batchValues),
		vals: make([]byte, 0, 32*batchValues), sums: make([]byte, 0, 16*batchValues)}
}}

func (b *hashBatch) hash(m *mac) {
	b.sums = slices.Grow(b.sums[:0], 16*len(b.ends))[:16*len(b.ends)]
	start := int32(0)
	for i, end := range b.ends {
		copy(b.sums[16*i:], m.sum(b.vals[start:end]))
		start = end
	}
	if b.done != nil {
		close(b.done)
	}
}

// recycle returns a batch whose hashes were added to the pool.
func (b *hashBatch) recycle() {
	if cap(b.vals) > 1<<20 {
		// Held long values: let it go rather than keep it around.
		return
	}
	b.stats, b.ends, b.vals, b.sums, b.done = b.stats[:0], b.ends[:0], b.vals[:0], b.sums[:0], nil
	batchPool.Put(b)
}

// fold adds the hashes of the batches that are done, in order; with wait,
// of all of them.
func (h *hasher) fold(wait bool) {
	for len(h.queue) > 0 {
		b := h.queue[0]
		if wait {
			<-b.done
		} else {
			select {
			case <-b.done:
			default:
				return
			}
		}
		for i, st := range b.stats {
			h.stats[st].addHash(b.sums[16*i : 16*i+16])
		}
		b.recycle()
		h.queue[0] = nil
		h.queue = h.queue[1:]
	}
}

// finish hashes what is left and adds every hash.
func (h *hasher) finish() {
	h.fold(true)
	if b := h.cur; b != nil {
		h.cur = nil
		if h.inline == nil {
			h.inline = newMac(h.key, h.pads)
		}
		b.hash(h.inline)
		for i, st := range b.stats {
			h.stats[st].addHash(b.sums[16*i : 16*i+16])
		}
		b.recycle()
	}
}
