package journal

import (
	"time"

	"github.com/interlock/interlock/model"
)

// Post queues a record for the batched path and returns at once, whatever
// the writer is doing: output streams must never wait on the disk. The
// writer commits posted records in its next batches (with Appends that
// come along) and syncs them within SyncInterval of the Post. When the
// queue (Options.PostQueue) is full, or the record cannot be encoded, the
// record is counted, logged, and written as part of a journal.gap entry
// (model.Gap) instead: never dropped silently.
func (j *Journal) Post(rec model.Record) {
	j.posted.Add(1)
	enc, err := encodeRecord(rec)
	if err != nil {
		j.log.Error("journal: posted record refused; it is counted in a journal.gap entry", "kind", rec.Kind, "session", rec.Session, "err", err)
		j.lose(rec.Kind, rec.Session)
		return
	}
	r := &request{rec: enc, postedAt: time.Now(), size: int64(len(enc.tail) + len(enc.payload) + len(enc.salt))}
	// The queue is bounded in records and in bytes: 16,384 chunks of
	// terminal output could otherwise hold gigabytes.
	if j.postBytes.Add(r.size) > MaxPostQueueBytes {
		j.postBytes.Add(-r.size)
		j.lose(rec.Kind, rec.Session)
		return
	}
	j.mu.RLock()
	defer j.mu.RUnlock()
	if j.closed {
		// Nothing can record the loss any more; say it at least.
		j.postBytes.Add(-r.size)
		j.postLost.Add(1)
		j.log.Error("journal: record posted after Close is lost", "kind", rec.Kind, "session", rec.Session)
		return
	}
	select {
	case j.posts <- r:
	default:
		j.postBytes.Add(-r.size)
		j.lose(rec.Kind, rec.Session)
	}
}

// maxGapSessions bounds the sessions one gap entry names.
const maxGapSessions = 256

// MaxPostQueueBytes bounds the memory posted records waiting for the
// writer may hold; beyond it, records are counted in a journal.gap entry.
const MaxPostQueueBytes = 64 << 20

// lose counts one posted record that will not be written; the next batch
// writes a journal.gap entry for all of them.
func (j *Journal) lose(kind, session string) {
	j.postLost.Add(1)
	j.gapMu.Lock()
	if j.gapLost == 0 {
		j.log.Warn("journal: post queue full or record refused; writing a gap marker", "kind", kind)
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
