package journal

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// alive reports whether thread tid of this process is still there.
func alive(tid int) bool {
	_, err := os.Stat(fmt.Sprintf("/proc/self/task/%d", tid))
	return err == nil
}

func TestSyncThreadSyncsAndStops(t *testing.T) {
	st, err := newSyncThread()
	if err != nil {
		t.Fatal(err)
	}
	// The thread says who it is once it runs.
	deadline := time.Now().Add(5 * time.Second)
	for st.t.tid == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the sync thread did not start")
		}
		time.Sleep(time.Millisecond)
	}
	tid := int(st.t.tid)
	if !alive(tid) || tid == os.Getpid() {
		t.Fatalf("thread %d: not a thread of its own in this process", tid)
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
	if err := st.fdatasync(w); !errors.Is(err, syscall.EINVAL) || errors.Is(err, errSyncThreadFailed) {
		t.Fatalf("fdatasync of a pipe on the thread: %v, want EINVAL", err)
	}
	if err := st.fdatasync(f); err != nil {
		t.Fatalf("a sync after a failed one: %v", err)
	}

	st.close()
	st.close() // twice is harmless
	if err := st.fdatasync(f); !errors.Is(err, errSyncThreadClosed) {
		t.Fatalf("fdatasync after close: %v, want errSyncThreadClosed", err)
	}
	// The thread exits once it has answered the stop.
	deadline = time.Now().Add(5 * time.Second)
	for alive(tid) {
		if time.Now().After(deadline) {
			t.Fatalf("thread %d still runs after close", tid)
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
