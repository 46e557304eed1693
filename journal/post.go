package journal

import (
	"sync"
	"time"

	"github.com/interlock/interlock/model"
)

// Post queues a record for the batched path. The writer commits posted
// records in its next batches (with Appends that come along) and syncs them
// within SyncInterval of the Post.
//
// Post returns at once while the record's session has room in its share of
// the queue (postShare records and bytes in flight), and waits for the
// writer to commit that session's earlier records when it has none: a
// session that produces records faster than the journal takes them is
// slowed where it reads from its client, and it cannot take room from
// other sessions, so no client can make the journal lose records, its own
// or anyone else's. The queue as a whole is bounded too (Options.PostQueue,
// MaxPostQueueBytes); there Post waits as well. It never waits on anything
// but the writer's progress, and a failing disk makes progress (its
// batches fail fast or after BusyTimeout).
//
// A record is counted and written as part of a journal.gap entry
// (model.Gap) only when it cannot be kept: its batch failed in storage, it
// cannot be encoded (a bug of the caller), or it came after Close.
func (j *Journal) Post(rec model.Record) {
	j.posted.Add(1)
	enc, err := encodeRecord(rec)
	if err != nil {
		j.log.Error("journal: posted record refused; it is counted in a journal.gap entry", "kind", rec.Kind, "session", rec.Session, "err", err)
		j.lose(rec.Kind, rec.Session)
		return
	}
	r := &request{rec: enc, postedAt: time.Now(), size: int64(len(enc.tail) + len(enc.payload) + len(enc.salt))}
	if j.shares.take(enc.session, r.size) {
		j.postWaits.Add(1)
		// The sync deadline counts from when the record could be queued:
		// the wait was the session's, not the writer's delay.
		r.postedAt = time.Now()
	}
	j.mu.RLock()
	defer j.mu.RUnlock()
	if j.closed {
		// Nothing can record the loss any more; say it at least.
		j.shares.give(enc.session, r.size)
		j.postLost.Add(1)
		j.log.Error("journal: record posted after Close is lost", "kind", rec.Kind, "session", rec.Session)
		return
	}
	// The session holds its credit, so this waits only when the queue is
	// full of many sessions' records; the writer drains it until Close,
	// which cannot take mu while we hold it.
	select {
	case j.posts <- r:
	default:
		j.postWaits.Add(1)
		j.kickWriter()
		j.posts <- r
	}
	if len(j.posts) >= cap(j.posts)/2 {
		j.kickWriter()
	} else if j.watchPosts.Load() {
		j.wakeWriter()
	}
}

// kickWriter makes the writer take the posted records now rather than at
// the end of its linger.
func (j *Journal) kickWriter() {
	select {
	case j.kick <- struct{}{}:
	default:
	}
}

// Each session's share of the post queue. Twice a batch lets a session
// fill the next transaction while the writer commits the current one, so a
// lone fast session keeps the writer busy; an eighth of the byte bound
// keeps a few bulk sessions from holding all of it.
const (
	postShareRecords = 2 * maxBatch
	postShareBytes   = MaxPostQueueBytes / 8
)

// MaxPostQueueBytes bounds the memory posted records waiting for the
// writer may hold; beyond it, Post waits.
const MaxPostQueueBytes = 64 << 20

// postShares is the credit of posted records in flight (queued or being
// committed), per session and in total. A session over its share waits in
// take until the writer gives credit back.
type postShares struct {
	mu   sync.Mutex
	cond sync.Cond
	// records bounds a session's count (from Options.PostQueue).
	records   int
	bySession map[string]*share
	bytes     int64
	waiting   int
	// beforeWait is called before a session waits for credit: the writer
	// may be lingering, and only its progress gives credit back.
	beforeWait func()
}

type share struct {
	n     int
	bytes int64
}

func (p *postShares) init(queue int, beforeWait func()) {
	p.cond.L = &p.mu
	p.beforeWait = beforeWait
	p.records = max(1, min(postShareRecords, queue/4))
	p.bySession = map[string]*share{}
}

// take reserves room for one record of session, waiting while the session
// is over its share or the queue over its byte bound. A session with
// nothing in flight always gets room, however big the record: it must
// progress. It reports whether it waited.
func (p *postShares) take(session string, size int64) (waited bool) {
	p.mu.Lock()
	var s *share
	for {
		// Looked up again after each wait: release drops the entry of a
		// session whose records were all written.
		if s = p.bySession[session]; s == nil {
			s = &share{}
			p.bySession[session] = s
		}
		if s.n == 0 || (s.n < p.records && s.bytes+size <= postShareBytes && p.bytes+size <= MaxPostQueueBytes) {
			break
		}
		waited = true
		p.waiting++
		if p.beforeWait != nil {
			p.beforeWait()
		}
		p.cond.Wait()
		p.waiting--
	}
	s.n++
	s.bytes += size
	p.bytes += size
	p.mu.Unlock()
	return waited
}

// give returns the credit of one record that left the queue.
func (p *postShares) give(session string, size int64) {
	p.mu.Lock()
	p.release(session, size)
	if p.waiting > 0 {
		p.cond.Broadcast()
	}
	p.mu.Unlock()
}

// giveBatch returns the credit of a batch's posted records, under one lock.
func (p *postShares) giveBatch(batch []*request) {
	p.mu.Lock()
	for _, r := range batch {
		if r.res == nil && r.gap == nil {
			p.release(r.rec.session, r.size)
		}
	}
	if p.waiting > 0 {
		p.cond.Broadcast()
	}
	p.mu.Unlock()
}

func (p *postShares) release(session string, size int64) {
	s := p.bySession[session]
	if s == nil {
		return
	}
	s.n--
	s.bytes -= size
	p.bytes -= size
	if s.n <= 0 {
		// A session's entry lives only while it has records in flight.
		delete(p.bySession, session)
	}
}

// inFlight is the bytes posted records hold until they are written.
func (p *postShares) inFlight() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.bytes
}

// maxGapSessions bounds the sessions one gap entry names.
const maxGapSessions = 256

// lose counts one posted record that will not be written; the next batch
// writes a journal.gap entry for all of them.
func (j *Journal) lose(kind, session string) {
	j.postLost.Add(1)
	j.gapMu.Lock()
	if j.gapLost == 0 {
		j.log.Warn("journal: posted record lost (storage failure or unencodable record); writing a gap marker", "kind", kind)
	}
	j.gapLost++
	j.gapKind[kind]++
	if session != "" && (j.gapSession[session] > 0 || len(j.gapSession) < maxGapSessions) {
		j.gapSession[session]++
	}
	j.gapMu.Unlock()
}

// takeGap returns the gap entry for what was lost since the last one, or
// nil.
func (j *Journal) takeGap() *request {
	j.gapMu.Lock()
	if j.gapLost == 0 {
		j.gapMu.Unlock()
		return nil
	}
	g := &model.Gap{Lost: j.gapLost, Kinds: j.gapKind}
	if len(j.gapSession) > 0 {
		g.Sessions = j.gapSession
	}
	j.gapLost, j.gapKind, j.gapSession = 0, map[string]uint64{}, map[string]uint64{}
	j.gapMu.Unlock()
	enc, err := encodeRecord(model.Record{Kind: model.KindGap, Data: g})
	if err != nil {
		// A Gap always encodes; if it ever did not, keep counting.
		j.restoreGap(g)
		j.log.Error("journal: gap marker does not encode", "err", err)
		return nil
	}
	return &request{rec: enc, gap: g, postedAt: time.Now()}
}

// restoreGap puts back the counts of a gap entry whose batch failed.
func (j *Journal) restoreGap(g *model.Gap) {
	j.gapMu.Lock()
	j.gapLost += g.Lost
	for k, n := range g.Kinds {
		j.gapKind[k] += n
	}
	for k, n := range g.Sessions {
		j.gapSession[k] += n
	}
	j.gapMu.Unlock()
}
