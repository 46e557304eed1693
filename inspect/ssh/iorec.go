package ssh

import (
	"cmp"
	"slices"
	"sync"
	"time"

	"github.com/interlock/interlock/model"
)

// A channel's data is journaled as ssh.io entries. Each entry costs the
// journal a row, its index entries and a leaf of the tree whatever its
// size, so bytes that arrive back to back (a bulk transfer comes in
// packets of 32 KiB) are joined into one entry of up to ioBufSize: a
// stream reads straight into the free end of its buffer, so joining copies
// nothing. An entry is posted when its buffer has no room for another
// read, ioHold after its first byte arrived (what a replay's timing may be
// off by), and before any other entry of the channel and any bytes of
// another stream, so that the entries keep the order the bytes came in.
const (
	// ioBufSize is a stream's buffer: the largest read and the largest
	// ssh.io entry.
	ioBufSize = 128 << 10
	// ioMinRead is the least free space a read is given; with less, the
	// pending bytes are posted and the buffer starts over.
	ioMinRead = 16 << 10
	// ioHold bounds how long bytes wait for more before they are posted.
	ioHold = 5 * time.Millisecond
)

// chanIO journals one session channel's data. Its streams' pumps, the
// timer that posts what waited ioHold, and the channel's other records
// (which post the pending data first) share mu.
type chanIO struct {
	c  *conn
	ch uint32
	// hold is ioHold (tests change it).
	hold time.Duration

	mu      sync.Mutex
	streams []*ioStream
	// timer posts pending data that waited ioHold; armed says it is set
	// (or its function is about to run).
	timer  *time.Timer
	armed  bool
	closed bool
}

// ioStream is one direction of a channel's data ("i", "o" or "e"): the
// bytes buf[start:end] wait to be posted as one entry; one pump goroutine
// reads into buf[end:].
type ioStream struct {
	io     *chanIO
	stream string
	buf    []byte
	// start and end are guarded by io.mu; only the pump moves end or
	// starts the buffer over, a post moves start to end.
	start, end int
	// offset and at are when the pending bytes' first read returned;
	// entries are posted in the order of their offsets.
	offset int64
	at     time.Time
}

func newChanIO(c *conn, ch uint32) *chanIO { return &chanIO{c: c, ch: ch, hold: ioHold} }

// stream returns a pump's stream; each stream has one pump.
func (r *chanIO) stream(name string) *ioStream {
	s := &ioStream{io: r, stream: name}
	r.mu.Lock()
	r.streams = append(r.streams, s)
	r.mu.Unlock()
	return s
}

// next returns where the pump reads next: the buffer's free end, at least
// ioMinRead long (the pending bytes are posted first when it is not).
func (s *ioStream) next() []byte {
	r := s.io
	r.mu.Lock()
	defer r.mu.Unlock()
	if s.buf == nil {
		s.buf = make([]byte, ioBufSize)
	}
	if len(s.buf)-s.end < ioMinRead {
		// Posting copies the bytes: the buffer is free again.
		r.flushLocked()
		s.start, s.end = 0, 0
	}
	return s.buf[s.end:]
}

// add takes the n bytes a read put at the buffer's free end. Bytes that
// come ioHold or more after the pending ones start an entry of their own,
// and so do bytes that come after another stream's: what was typed stays
// between the output before and after it.
func (s *ioStream) add(n int) {
	r := s.io
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if s.start != s.end && now.Sub(s.at) >= r.hold || r.othersPending(s) {
		r.flushLocked()
	}
	if s.start == s.end {
		s.offset, s.at = r.c.offset(), now
		if !r.armed && !r.closed {
			r.arm(r.hold)
		}
	}
	s.end += n
}

// othersPending says whether a stream other than s has bytes pending.
func (r *chanIO) othersPending(s *ioStream) bool {
	for _, o := range r.streams {
		if o != s && o.start != o.end {
			return true
		}
	}
	return false
}

// arm sets the timer to post pending data after d. The caller holds mu.
func (r *chanIO) arm(d time.Duration) {
	r.armed = true
	if r.timer == nil {
		r.timer = time.AfterFunc(d, r.expire)
		return
	}
	r.timer.Reset(d)
}

// expire posts what waited ioHold; data that came later is left for
// another turn.
func (r *chanIO) expire() {
	defer r.c.recoverGoroutine()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.armed = false
	if r.closed {
		return
	}
	oldest := time.Time{}
	for _, s := range r.streams {
		if s.start != s.end && (oldest.IsZero() || s.at.Before(oldest)) {
			oldest = s.at
		}
	}
	if oldest.IsZero() {
		return
	}
	if wait := r.hold - time.Since(oldest); wait > 0 {
		r.arm(wait)
		return
	}
	r.flushLocked()
}

// flush posts the channel's pending data; the channel's other records
// call it first, so that the journal has its entries in order.
func (r *chanIO) flush() {
	r.mu.Lock()
	r.flushLocked()
	r.mu.Unlock()
}

// post journals p of stream at once, after the pending data: a message
// interlock shows the client, or a masked stream's recorded copy.
func (r *chanIO) post(stream string, p []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.flushLocked()
	r.c.postIO(r.ch, stream, r.c.offset(), time.Now(), p)
}

// flushLocked posts each stream's pending bytes, oldest first, as one
// entry each. The caller holds mu; Post may wait for the journal (the
// session's share of its queue), and the pumps wait with it.
func (r *chanIO) flushLocked() {
	var pending []*ioStream
	for _, s := range r.streams {
		if s.start != s.end {
			pending = append(pending, s)
		}
	}
	if len(pending) > 1 {
		slices.SortFunc(pending, func(a, b *ioStream) int { return cmp.Compare(a.offset, b.offset) })
	}
	for _, s := range pending {
		r.c.postIO(r.ch, s.stream, s.offset, s.at, s.buf[s.start:s.end])
		s.start = s.end
	}
	if r.armed && r.timer.Stop() {
		r.armed = false
	}
}

// close posts what is pending and stops the timer, once the pumps ended.
func (r *chanIO) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.flushLocked()
	r.closed = true
	if r.timer != nil {
		r.timer.Stop()
	}
}

// postIO posts one ssh.io entry. The journal copies p before Post
// returns (model.Recorder), so the stream's buffer is free again.
func (c *conn) postIO(ch uint32, stream string, offset int64, at time.Time, p []byte) {
	c.h.journal.Post(model.Record{
		Kind: model.KindSSHIO, Session: c.s.ID, Time: at,
		Data:    model.SSHIO{Channel: ch, Stream: stream, OffsetNS: offset, Bytes: len(p)},
		Payload: p,
	})
}
