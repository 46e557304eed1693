package journal

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// threads is how many threads this process has.
func threads(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func TestSyncThreadSyncsAndStops(t *testing.T) {
	before := threads(t)
	st, err := newSyncThread()
	if err != nil {
		t.Fatal(err)
	}
	if n := threads(t); n != before+1 {
		t.Fatalf("threads: %d after starting the sync thread, want %d", n, before+1)
	}
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// Concurrent callers take turns, each answered for its own round.
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 40 {
		wg.Go(func() {
			if _, err := f.WriteAt([]byte{byte(i)}, int64(i)); err != nil {
				errs <- err
				return
			}
			errs <- st.fdatasync(f)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}

	// The thread says what fdatasync(2) said: a pipe cannot be synced.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if err := st.fdatasync(w); !errors.Is(err, syscall.EINVAL) || errors.Is(err, errSyncThreadStopped) {
		t.Fatalf("fdatasync of a pipe on the thread: %v, want EINVAL", err)
	}
	if err := st.fdatasync(f); err != nil {
		t.Fatalf("a sync after a failed one: %v", err)
	}

	st.close()
	st.close() // twice is harmless
	if err := st.fdatasync(f); !errors.Is(err, errSyncThreadStopped) {
		t.Fatalf("fdatasync after close: %v, want errSyncThreadStopped", err)
	}
	// The thread exits once it has answered the stop.
	deadline := time.Now().Add(5 * time.Second)
	for threads(t) > before {
		if time.Now().After(deadline) {
			t.Fatalf("threads: %d after close, want %d: the sync thread did not exit", threads(t), before)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestSyncerFallsBackWithoutThread: a syncer whose thread stopped (closed,
// or a round failed) still syncs, in its own goroutine.
func TestSyncerFallsBackWithoutThread(t *testing.T) {
	s := newSyncer(slog.New(slog.DiscardHandler), filepath.Join(t.TempDir(), "j.db"), 10*time.Millisecond)
	if s.thread == nil {
		t.Fatal("no sync thread")
	}
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := s.fdatasync(f); err != nil {
		t.Fatal(err)
	}
	s.closeThread()
	if err := s.fdatasync(f); err != nil {
		t.Fatalf("fdatasync after the thread stopped: %v", err)
	}
	if s.threadLost.Load() {
		t.Fatal("a closed thread was reported as failed")
	}
	// A thread that ended on its own (its eventfd unreadable: here it is
	// told to end behind the syncer's back) is not asked again: nothing
	// would answer, and the round would wait forever.
	s3 := newSyncer(slog.New(slog.DiscardHandler), filepath.Join(t.TempDir(), "j.db"), 10*time.Millisecond)
	s3.thread.t.fd = -1
	if err := s3.thread.ask(); err != nil {
		t.Fatal(err)
	}
	if err := s3.fdatasync(f); err != nil {
		t.Fatalf("fdatasync after the thread ended: %v", err)
	}
	if !s3.threadLost.Load() || !s3.thread.broken {
		t.Fatal("a thread that ended was not reported")
	}
	s3.closeThread() // frees what it used, without asking it

	// A failed round: the thread is marked broken, the sync is made here.
	s2 := newSyncer(slog.New(slog.DiscardHandler), filepath.Join(t.TempDir(), "j.db"), 10*time.Millisecond)
	s2.thread.broken = true
	defer func() {
		// Stop the thread for real: a broken one is left running.
		s2.thread.broken = false
		s2.closeThread()
	}()
	if err := s2.fdatasync(f); err != nil {
		t.Fatalf("fdatasync with a broken thread: %v", err)
	}
	if !s2.threadLost.Load() {
		t.Fatal("a broken thread was not reported")
	}
}
