package journal

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/interlock/interlock/model"
)

func TestContextCancel(t *testing.T) {
	path := tempPath(t)
	g := newGate()
	j := openT(t, Options{Path: path, beforeBatch: g.hook})

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := j.Append(ctx, model.Record{Kind: "never"}, model.Synced); !errors.Is(err, context.Canceled) {
		t.Fatalf("Append with a cancelled ctx: %v", err)
	}

	// A record the writer already holds is still written, and its caller
	// learns the outcome even though its ctx ends meanwhile.
	first := make(chan result, 1)
	go func() {
		seq, err := j.Append(context.Background(), model.Record{Kind: "first"}, model.Committed)
		first <- result{seq, err}
	}()
	ctx2, cancel2 := context.WithCancel(context.Background())
	second := make(chan result, 1)
	<-g.entered
	go func() {
		seq, err := j.Append(ctx2, model.Record{Kind: "second"}, model.Committed)
		second <- result{seq, err}
	}()
	waitFor(t, func() bool { return len(j.reqs) == 1 })
	cancel2()
	close(g.release)
	r1, r2 := <-first, <-second
	if r1.err != nil || r2.err != nil || r1.seq != 2 || r2.seq != 3 {
		t.Fatalf("appends = %+v %+v, want seqs 2 and 3", r1, r2)
	}
	j.Close()
	verifyOK(t, path, 3)
}

func TestCloseDrainsQueue(t *testing.T) {
	path := tempPath(t)
	g := newGate()
	j := openT(t, Options{Path: path, SyncInterval: time.Hour, beforeBatch: g.hook})

	const n = 50
	results := make(chan error, n)
	for i := range n {
		go func() {
			_, err := j.Append(context.Background(), model.Record{Kind: "queued", Data: i}, model.Committed)
			results <- err
		}()
	}
	// One record is held by the blocked writer, the rest wait in the queue.
	<-g.entered
	waitFor(t, func() bool { return len(j.reqs) == n-1 })
	closed := make(chan error)
	go func() { closed <- j.Close() }()
	// Close must not return before the queue is written.
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while the writer was blocked", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(g.release)
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	for range n {
		if err := <-results; err != nil {
			t.Errorf("queued Append: %v", err)
		}
	}
	st := j.Stats()
	if st.Appends != n || st.FsyncBatches+st.IdleSyncs == 0 {
		t.Errorf("after Close: %+v (want %d appends and a final sync)", st, n)
	}
	if _, err := j.Append(context.Background(), model.Record{Kind: "late"}, model.Committed); !errors.Is(err, ErrClosed) {
		t.Errorf("Append after Close: %v", err)
	}
	if err := j.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	verifyOK(t, path, n+1)
}

// Appends racing Close either land or get ErrClosed; none hangs and none
// is reported written without being in the file.
func TestCloseRace(t *testing.T) {
	path := tempPath(t)
	j := openT(t, Options{Path: path})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var ok uint64
	for range 16 {
		wg.Go(func() {
			for {
				_, err := j.Append(context.Background(), model.Record{Kind: "race"}, model.Committed)
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				ok++
				mu.Unlock()
			}
		})
	}
	time.Sleep(20 * time.Millisecond)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	verifyOK(t, path, ok+1)
}

// gate blocks the writer at its first batch until released, so a test can
// line up requests behind it.
type gate struct {
	once             sync.Once
	entered, release chan struct{}
}

func newGate() *gate {
	return &gate{entered: make(chan struct{}), release: make(chan struct{})}
}

func (g *gate) hook() {
	g.once.Do(func() {
		close(g.entered)
		<-g.release
	})
}
