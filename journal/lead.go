package journal

import (
	"fmt"
	"runtime/debug"
	"time"
)

// A record's own goroutine commits it when the writer is idle: handing it
// to the writer goroutine and back cost two wake-ups per statement of a
// session running alone (6.5 context switches per select at pgbench -c 1,
// 4.9 without them). The one who
// holds the writer's token (writer.tok) commits; requests leave the queues
// only in the holder's hands, so a record posted before an Append of the
// same session is committed before it whoever commits them. Flushes to the
// database, syncs answered by the syncer and lingering for company stay
// with the writer goroutine: a leader commits what is queued now and
// leaves.

// tryLead commits what is queued, then r (if not nil), in the caller's
// goroutine if the writer's token is free; it reports whether it did. The
// caller holds j.mu for reading (the journal is open).
func (j *Journal) tryLead(r *request) bool {
	w := j.w
	// A test's beforeBatch hook stands for a writer busy in its own
	// goroutine; its tests expect the writer goroutine to commit.
	if w.opts.beforeBatch != nil || !w.tok.TryLock() {
		return false
	}
	// A panic in the writer goroutine stops the daemon; one here would
	// be recovered by the session's handler, leaving the token held and
	// the writer's state half changed: it must stop the daemon too.
	defer func() {
		if p := recover(); p != nil {
			go panic(fmt.Sprintf("journal: panic while committing in a session's goroutine: %v\n%s", p, debug.Stack()))
			select {}
		}
	}()
	w.inline = true
	for {
		// What is queued was queued first: it goes into the batch
		// before r.
		batch := drain(j.reqs, j.posts, w.leadBatch[:0], false)
		if r != nil && len(batch) < maxBatch {
			batch = append(batch, r)
			r = nil
		}
		if len(batch) == 0 {
			break
		}
		w.process(batch)
		clear(batch)
		w.leadBatch = batch[:0]
		if r == nil && len(j.reqs) == 0 {
			break
		}
	}
	w.inline = false
	wake := w.flushWanted || w.wakeEarlier() || len(j.reqs) > 0
	j.watchPosts.Store(w.postsDue.IsZero())
	w.tok.Unlock()
	if wake {
		j.wakeWriter()
	}
	return true
}

// wakeEarlier reports whether something falls due before the sleeping
// writer goroutine's timer.
func (w *writer) wakeEarlier() bool {
	at := w.wakeAt()
	return !at.IsZero() && (w.armed.IsZero() || at.Before(w.armed))
}

// wakeAt is when the writer goroutine must act on its own: nextWake, or
// the end of the posts' linger.
func (w *writer) wakeAt() time.Time {
	at := w.nextWake()
	if !w.postsDue.IsZero() && (at.IsZero() || w.postsDue.Before(at)) {
		at = w.postsDue
	}
	return at
}

// flushIfWanted does the flush a leader's batch asked for.
func (w *writer) flushIfWanted() {
	if w.flushWanted {
		w.flushWanted = false
		w.maybeFlush()
	}
}

// wakeWriter makes the writer goroutine look at the queues and its
// deadlines.
func (j *Journal) wakeWriter() {
	select {
	case j.wake <- struct{}{}:
	default:
	}
}
