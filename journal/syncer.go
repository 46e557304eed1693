package journal

// The WAL's fsync, off the writer goroutine. The writer commits every batch
// with synchronous=NORMAL (the WAL written, not synced) and hands what must
// be durable to the syncer, which fdatasyncs the WAL file and then answers
// the appends that waited for it. Meanwhile the writer commits the next
// batch: the fsync of one batch overlaps the work of the next, Committed
// appends never wait behind another caller's fsync, and one fsync covers
// every batch committed before it started.
//
// In WAL mode the only difference SQLite makes between synchronous=FULL and
// NORMAL is that FULL fsyncs the WAL at every commit; NORMAL still syncs it
// before each checkpoint copies it into the database (and the database
// after), and the WAL header when the file is reused. So an fdatasync of
// the WAL file after a NORMAL commit makes that commit exactly as durable as
// FULL would have, without holding the write lock (and every other process
// appending to the file) through the fsync.

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/interlock/interlock/journal/evidence"
)

// syncJob asks for the WAL to be synced with everything committed up to
// size.
type syncJob struct {
	size int64
	// tree is the tree of that size: a checkpoint signs only synced trees.
	tree evidence.CompactRange
	// since is when the oldest record the job is the first to cover was
	// handed over.
	since time.Time
	// waiters are the appends to answer once synced.
	waiters []waiter
	// idle marks a job made because records waited for their interval,
	// not for a batch.
	idle bool
	// wal asks for the WAL to be synced too: in log mode, batches heavy
	// with payloads are committed to SQLite directly (logmode.go).
	wal bool
}

// waiter is an append committed as entry seq that waits for its fsync.
type waiter struct {
	r   *request
	seq uint64
}

// syncResult is a finished job, as the writer learns of it.
type syncResult struct {
	*syncJob
	err error
}

// syncer runs the fsyncs of one writer.
type syncer struct {
	log *slog.Logger
	j   *Journal // nil during Open

	mu      sync.Mutex
	pending []*syncJob
	// waiting counts the appends in pending; answered is how many the
	// last fsync answered (group commit, in run).
	waiting, answered int
	done              []syncResult
	busy              bool // a job is between pending and done
	stop              bool
	idle              sync.Cond // signalled when pending is empty and nothing is busy
	// wake tells the syncer goroutine that pending has jobs; note tells the
	// writer that done has results. Both hold at most one token.
	wake, note chan struct{}
	exited     chan struct{}

	// wal is the WAL file of the database at path; the writer replaces it
	// only while the syncer is idle (after waitIdle).
	path string
	wal  *os.File
	// logFile, when set, is the commit log, synced instead of the WAL: in log
	// mode batches are committed there (logmode.go). The writer sets it
	// only while the syncer is idle.
	logFile *os.File
	// maxLinger bounds the group commit's wait.
	maxLinger time.Duration
	// thread runs the fdatasyncs (syncthread.go); nil if it could not be
	// started, and then this goroutine runs them.
	thread     *syncThread
	threadLost atomic.Bool // its failure was logged
}

func newSyncer(log *slog.Logger, path string, syncInterval time.Duration) *syncer {
	s := &syncer{log: log, path: path, maxLinger: syncInterval / 10,
		wake: make(chan struct{}, 1), note: make(chan struct{}, 1), exited: make(chan struct{})}
	s.idle.L = &s.mu
	t, err := newSyncThread()
	if err != nil {
		log.Warn("journal: fsyncs run on the syncer goroutine, holding a P while they wait", "err", err)
	}
	s.thread = t
	return s
}

// fdatasync syncs f on the sync thread, or in this goroutine if there is
// none or it stopped.
func (s *syncer) fdatasync(f *os.File) error {
	if s.thread != nil {
		err := s.thread.fdatasync(f)
		switch {
		case errors.Is(err, errSyncThreadFailed):
			if !s.threadLost.Swap(true) {
				s.log.Warn("journal: the sync thread failed; fsyncs run on the syncer goroutine", "err", err)
			}
		case !errors.Is(err, errSyncThreadClosed):
			return err
		}
	}
	return fdatasync(f)
}

// closeThread stops the sync thread (the writer's close calls it: a syncer
// whose goroutine never started has one too). Syncs after it run in the
// caller's goroutine.
func (s *syncer) closeThread() {
	if s.thread != nil {
		s.thread.close()
	}
}

// openWAL opens the WAL file of the database at path for fdatasync, and
// syncs the directory once so that the file itself is found after a power
// loss (SQLite would do that at its first sync of the file, which under
// NORMAL can be long after the first commit).
func openWAL(path string) (*os.File, error) {
	f, err := os.Open(path + "-wal")
	if err != nil {
		return nil, fmt.Errorf("journal: open the WAL of %s for syncing: %w", path, err)
	}
	d, err := os.Open(filepath.Dir(path))
	if err == nil {
		err = d.Sync()
		if cerr := d.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("journal: sync the directory of %s: %w", path, err)
	}
	return f, nil
}

// fsync makes everything written to the WAL so far durable. The file is
// opened at the first sync if the writer's connect found none yet (a new
// database gets its WAL at its first transaction).
func (s *syncer) fsync() error {
	if s.logFile != nil {
		return s.fdatasync(s.logFile)
	}
	return s.fsyncWAL()
}

// fsyncWAL syncs the WAL whatever the mode.
func (s *syncer) fsyncWAL() error {
	if s.wal == nil {
		f, err := openWAL(s.path)
		if err != nil {
			return err
		}
		s.wal = f
	}
	return s.fdatasync(s.wal)
}

// submit queues a job for the syncer goroutine.
func (s *syncer) submit(job *syncJob) {
	s.mu.Lock()
	s.pending = append(s.pending, job)
	s.waiting += len(job.waiters)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// run is the syncer goroutine: each fsync covers every job pending when it
// starts.
//
// Group commit: the appends one fsync answers come back with their next
// records while the others, answered by the fsync before, are already
// pending; starting the next fsync at once would split the callers into
// two cohorts that take turns, each waiting two fsyncs. So while fewer
// appends are pending than the last fsync answered, it waits for them a
// little (half the last fsync's time, at most a tenth of the sync
// interval): on tmpfs not at all, on a disk long enough for a caller that
// was just answered to commit again.
func (s *syncer) run() {
	defer close(s.exited)
	var jobs []*syncJob
	var took time.Duration
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		s.mu.Lock()
		for len(s.pending) == 0 && !s.stop {
			s.idle.Broadcast()
			s.mu.Unlock()
			<-s.wake
			s.mu.Lock()
		}
		if len(s.pending) == 0 {
			s.idle.Broadcast()
			s.mu.Unlock()
			return
		}
		if linger := min(took/2, s.maxLinger); linger > 0 && s.waiting < s.answered && !s.stop {
			timer.Reset(linger)
			s.lingerLocked(timer)
		}
		jobs = append(jobs[:0], s.pending...)
		clear(s.pending)
		s.pending = s.pending[:0]
		s.answered, s.waiting = s.waiting, 0
		s.busy = true
		s.mu.Unlock()

		start := time.Now()
		err := s.fsync()
		if err == nil && s.logFile != nil && slices.ContainsFunc(jobs, func(j *syncJob) bool { return j.wal }) {
			err = s.fsyncWAL()
		}
		took = time.Since(start)
		// The results are handed to the writer before the waiters are
		// answered: a caller whose Synced append returned may ask for a
		// checkpoint of it next, and the writer must know it is synced.
		s.mu.Lock()
		for _, job := range jobs {
			s.done = append(s.done, syncResult{job, err})
		}
		s.mu.Unlock()
		s.answer(jobs, err)
		s.mu.Lock()
		s.busy = false
		s.mu.Unlock()
		clear(jobs)
		select {
		case s.note <- struct{}{}:
		default:
		}
	}
}

// lingerLocked waits, with mu held on entry and on return, until as many
// appends are pending as the last fsync answered, or the timer fires.
func (s *syncer) lingerLocked(timer *time.Timer) {
	defer timer.Stop()
	for s.waiting < s.answered && !s.stop {
		s.mu.Unlock()
		select {
		case <-s.wake:
			s.mu.Lock()
		case <-timer.C:
			s.mu.Lock()
			return
		}
	}
}

// answer counts the syncs and answers the appends that waited for them.
func (s *syncer) answer(jobs []*syncJob, err error) {
	if j := s.j; j != nil && err == nil {
		j.fsyncs.Add(1)
		for _, job := range jobs {
			if job.idle {
				j.idleSyncs.Add(1)
			} else {
				j.fsyncBatches.Add(1)
			}
		}
	}
	if err != nil {
		s.log.Error("journal: fsync of the WAL failed; the records that waited for it were refused", "err", err)
		err = fmt.Errorf("journal: record committed but not synced: %w", err)
	}
	for _, job := range jobs {
		for _, wt := range job.waiters {
			if err != nil {
				wt.r.res <- result{err: err}
			} else {
				wt.r.res <- result{seq: wt.seq}
			}
		}
	}
}

// results returns the jobs finished since the last call.
func (s *syncer) results(dst []syncResult) []syncResult {
	s.mu.Lock()
	dst = append(dst, s.done...)
	clear(s.done)
	s.done = s.done[:0]
	s.mu.Unlock()
	return dst
}

// waitIdle waits until every submitted job is finished.
func (s *syncer) waitIdle() {
	s.mu.Lock()
	for len(s.pending) > 0 || s.busy {
		s.idle.Wait()
	}
	s.mu.Unlock()
}

// close stops the syncer goroutine after the jobs already submitted.
func (s *syncer) close() {
	s.mu.Lock()
	s.stop = true
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	<-s.exited
}
