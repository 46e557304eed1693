package journal

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/interlock/interlock/internal/testkit"
	"github.com/interlock/interlock/model"
)

// TestPipelinedRecords: a Committed record of Start from a session
// appending alone is committed at CommitStarted, nobody asking; while sessions
// append side by side, it waits for its waiter, the record another
// session starts meanwhile shares its transaction, and asking for it ends
// the wait (the linger here is a minute).
func TestPipelinedRecords(t *testing.T) {
	var hold atomic.Bool
	gate := make(chan struct{})
	opts := Options{Path: tempPath(t), PipelineLinger: time.Minute, PostLinger: -1}
	entered := make(chan struct{}, 1)
	opts.beforeBatch = func() {
		if hold.Load() {
			entered <- struct{}{}
			<-gate
		}
	}
	j := openT(t, opts)
	ctx := context.Background()
	rec := func(session string) model.Record {
		return model.Record{Kind: "pg.statement", Session: session, Data: map[string]any{"sql": "SELECT 1"}}
	}

	// Alone, it waits for CommitStarted, not for its waiter, and is
	// committed then (here by the writer: the hook keeps leaders out).
	before := j.Stats().Batches
	wait := j.Start(ctx, rec("a"), model.Committed)
	time.Sleep(20 * time.Millisecond)
	if n := j.Stats().Batches; n != before {
		t.Fatalf("a started record was committed before CommitStarted (%d batches)", n-before)
	}
	j.CommitStarted()
	waitFor(t, func() bool { return j.Stats().Batches > before })
	if _, err := wait(); err != nil {
		t.Fatal(err)
	}

	// One batch with two sessions' records: the writer expects company.
	hold.Store(true)
	wa := j.Start(ctx, rec("a"), model.Committed)
	j.CommitStarted()
	waitFor(t, func() bool { return len(j.reqs) == 0 }) // the writer holds it in beforeBatch
	wb := j.Start(ctx, rec("b"), model.Committed)
	hold.Store(false)
	close(gate)
	sa, err := wa()
	if err != nil {
		t.Fatal(err)
	}
	if sb, err := wb(); err != nil || sb != sa+1 {
		t.Fatalf("second session's record: seq %d, %v; want %d", sb, err, sa+1)
	}

	// A waiter that asked while its batch was being committed leaves a
	// kick, and a Start queued meanwhile a wake-up: the writer takes
	// them before the records below come.
	waitFor(t, func() bool { return len(j.kick) == 0 && len(j.wake) == 0 })
	before = j.Stats().Batches
	wa = j.Start(ctx, rec("a"), model.Committed)
	wb = j.Start(ctx, rec("b"), model.Committed)
	time.Sleep(50 * time.Millisecond)
	if n := j.Stats().Batches; n != before {
		t.Fatalf("pipelined records were committed before anybody asked (%d batches)", n-before)
	}
	start := time.Now()
	sa, err = wa()
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("asking for a pipelined record took %s: the linger did not end", d)
	}
	if sb, err := wb(); err != nil || sb != sa+1 {
		t.Fatalf("second session's record: seq %d, %v; want %d in the same batch", sb, err, sa+1)
	}
	if n := j.Stats().Batches; n != before+1 {
		t.Fatalf("%d batches for two records started side by side, want 1", n-before)
	}
	// A pipelined record that went with the posts keeps its place
	// before its session's next Append, however the writer drains its
	// two queues.
	select {
	case <-entered: // the hold above, if the writer took it with the hook
	default:
	}
	for i := range 20 {
		gate = make(chan struct{})
		hold.Store(true)
		held := make(chan uint64, 2)
		// Until the writer holds a batch of session c (a kick left by
		// an earlier waiter can make it take one without the hook).
		for holding := false; !holding; {
			go func() { held <- appendT(t, j, rec("c"), model.Committed) }()
			select {
			case <-entered:
				holding = true
			case <-held:
			}
		}
		wa := j.Start(ctx, rec("a"), model.Committed)
		go func() { held <- appendT(t, j, rec("a"), model.Committed) }()
		// Both queued behind the batch the writer holds, the pipelined
		// one with the posts while sessions append side by side.
		queued := func() bool { return len(j.reqs)+len(j.posts) == 2 }
		testkit.WaitFor(t, 5*time.Second, time.Millisecond, queued)
		hold.Store(false)
		close(gate)
		sa, err := wa()
		if err != nil {
			t.Fatal(err)
		}
		next := max(<-held, <-held)
		if sa > next {
			t.Fatalf("round %d: the pipelined record is entry %d, after its session's next Append (%d)", i, sa, next)
		}
	}
	// Append is never held back.
	start = time.Now()
	appendT(t, j, rec("c"), model.Committed)
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("Append waited %s", d)
	}
}
