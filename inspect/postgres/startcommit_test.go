package postgres

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/test/e2e/pgtest"
)

// starter holds every record Start queues as uncommitted until
// CommitStarted or its waiter commits it, as the journal does.
type starter struct {
	model.Recorder
	mu        sync.Mutex
	queued    []chan struct{}
	committed atomic.Int32
}

func (s *starter) Start(ctx context.Context, rec model.Record, d model.Durability) func() (uint64, error) {
	seq, err := s.Append(ctx, rec, d)
	done := make(chan struct{})
	s.mu.Lock()
	s.queued = append(s.queued, done)
	s.mu.Unlock()
	return sync.OnceValues(func() (uint64, error) {
		s.CommitStarted()
		<-done
		return seq, err
	})
}

func (s *starter) CommitStarted() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, q := range s.queued {
		close(q)
		s.committed.Add(1)
	}
	s.queued = nil
}

// TestStartedRecordsCommitWhileClientStalls: a client that sends a
// read-only statement and, in the same write, the first bytes of a next
// message it never finishes must not keep the statement's record
// uncommitted while the server runs it: the client loop commits what it
// started before it waits for the client, whole message or not.
func TestStartedRecordsCommitWhileClientStalls(t *testing.T) {
	var st *starter
	p := startProxy(t, proxyOpts{tls: "disable", wrap: func(j model.Recorder) model.Recorder {
		st = &starter{Recorder: j}
		return st
	}})
	c := dialProxy(t, p)
	defer c.Close()
	c.Write(startupPacket(3<<16, "user", pgtest.AppUser, "database", pgtest.AppDB))
	if msgs := readMsgs(c); len(msgs) == 0 {
		t.Fatal("no session")
	} else if _, ok := msgs[len(msgs)-1].(*pgproto3.ReadyForQuery); !ok {
		t.Fatalf("login: %#v", msgs)
	}
	q, err := (&pgproto3.Query{String: "SELECT pg_sleep(1.5)"}).Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	// 'Q', then two of the four length bytes of a next message.
	c.Write(append(q, 'Q', 0, 0))
	deadline := time.Now().Add(time.Second)
	for st.committed.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := st.committed.Load(); n != 1 {
		t.Fatalf("%d records committed while the server ran the statement, want 1", n)
	}
}
