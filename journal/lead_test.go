package journal

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/interlock/interlock/model"
)

// TestLeadersKeepSessionOrder: sessions that commit their own records
// (the writer idle), that leave them for the writer (its token busy), or
// that leave started records for CommitStarted or their waiter, all find
// their records in the journal in the order they made them: a Post before
// the session's next Start or Append, Starts and Appends in the order
// made. The writer takes what leaders leave; nothing is lost or reordered.
func TestLeadersKeepSessionOrder(t *testing.T) {
	path := tempPath(t)
	j := openT(t, Options{Path: path})
	ctx := context.Background()
	const sessions, rounds = 8, 300
	var wg sync.WaitGroup
	errs := make(chan error, sessions)
	want := make([][]string, sessions)
	for s := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sess := fmt.Sprintf("s%d", s)
			rec := func(kind string) model.Record {
				want[s] = append(want[s], kind)
				return model.Record{Kind: kind, Session: sess}
			}
			var waits []func() (uint64, error)
			for i := range rounds {
				stmt := rec(fmt.Sprintf("stmt.%d", i))
				switch (s + i) % 4 {
				case 0: // started, committed by CommitStarted
					waits = append(waits, j.Start(ctx, stmt, model.Committed))
					j.CommitStarted()
				case 1: // started, committed by its waiter
					w := j.Start(ctx, stmt, model.Committed)
					if _, err := w(); err != nil {
						errs <- err
						return
					}
				case 2: // started, left queued for the Append that follows
					waits = append(waits, j.Start(ctx, stmt, model.Committed))
					if _, err := j.Append(ctx, rec(fmt.Sprintf("after.%d", i)), model.Committed); err != nil {
						errs <- err
						return
					}
				default:
					if _, err := j.Append(ctx, stmt, model.Committed); err != nil {
						errs <- err
						return
					}
				}
				// A Post comes after its statement's record is in (as
				// the data path posts a result after its answer).
				for _, w := range waits {
					if _, err := w(); err != nil {
						errs <- err
						return
					}
				}
				waits = waits[:0]
				j.Post(rec(fmt.Sprintf("post.%d", i)))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	next := make([]int, sessions)
	total := 0
	err := Entries(ctx, path, 1, func(e Entry) error {
		if e.Session == "" {
			return nil
		}
		var s int
		fmt.Sscanf(e.Session, "s%d", &s)
		if n := next[s]; n >= len(want[s]) || e.Kind != want[s][n] {
			return fmt.Errorf("entry %d of session %s is %s, want #%d of %v", e.Seq, e.Session, e.Kind, n, want[s][n:min(n+3, len(want[s]))])
		}
		next[s]++
		total++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for s := range sessions {
		if next[s] != len(want[s]) {
			t.Errorf("session s%d has %d entries, want %d", s, next[s], len(want[s]))
		}
	}
	verifyOK(t, path, uint64(1+total))
}

// TestStartedRecordNotForgotten: a started record nobody commits
// explicitly is committed by its waiter even while the writer's token is
// busy (the waiter kicks the writer), and CommitStarted on an empty queue
// does nothing.
func TestStartedRecordNotForgotten(t *testing.T) {
	path := tempPath(t)
	j := openT(t, Options{Path: path})
	ctx := context.Background()
	j.CommitStarted()
	before := j.Stats().Batches
	wait := j.Start(ctx, model.Record{Kind: "stmt", Session: "a"}, model.Committed)
	// The token is held as by a writer busy with a flush.
	j.w.tok.Lock()
	done := make(chan result, 1)
	go func() {
		seq, err := wait()
		done <- result{seq, err}
	}()
	select {
	case r := <-done:
		t.Fatalf("the record was committed while the token was held: %+v", r)
	case <-time.After(20 * time.Millisecond):
	}
	j.w.tok.Unlock()
	r := <-done
	if r.err != nil || r.seq != 2 {
		t.Fatalf("wait = %+v, want seq 2", r)
	}
	if n := j.Stats().Batches - before; n != 1 {
		t.Fatalf("%d batches, want 1", n)
	}
}
