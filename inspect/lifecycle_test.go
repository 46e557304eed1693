package inspect

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"

	"github.com/interlock/interlock/model"
)

// recorder keeps what was appended, and can fail.
type recorder struct {
	mu   sync.Mutex
	recs []model.Record
	durs []model.Durability
	fail error
}

func (r *recorder) Append(_ context.Context, rec model.Record, d model.Durability) (uint64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return 0, r.fail
	}
	r.recs = append(r.recs, rec)
	r.durs = append(r.durs, d)
	return uint64(len(r.recs)), nil
}

func (r *recorder) Post(rec model.Record) { r.Append(context.Background(), rec, model.Committed) }

func (r *recorder) kinds() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, rec := range r.recs {
		out = append(out, rec.Kind)
	}
	return out
}

type handlerFunc func(ctx context.Context, client net.Conn, s *Session) Outcome

func (f handlerFunc) Serve(ctx context.Context, client net.Conn, s *Session) Outcome {
	return f(ctx, client, s)
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func session() *Session {
	return &Session{ID: "s1", Origin: model.Origin{Target: model.Target{Name: "db", Protocol: model.ProtoPostgres}}}
}

var allow = model.Decision{Action: model.Allow, Rule: "default"}

func TestLifecycleWritesCloseOnlyAfterOpen(t *testing.T) {
	for _, tc := range []struct {
		name  string
		serve handlerFunc
		want  []string
		err   string // session.close's error
	}{
		{"opened", func(ctx context.Context, _ net.Conn, s *Session) Outcome {
			if err := s.Open(ctx, allow, model.SessionOpen{}); err != nil {
				t.Error(err)
			}
			return Outcome{BytesUp: 3, BytesDown: 4}
		}, []string{model.KindSessionOpen, model.KindSessionClose}, ""},
		{"never opened", func(context.Context, net.Conn, *Session) Outcome {
			return Outcome{Refused: true, Err: errors.New("bad startup")}
		}, nil, ""},
		{"panics after open", func(ctx context.Context, _ net.Conn, s *Session) Outcome {
			s.Open(ctx, allow, model.SessionOpen{})
			panic("boom")
		}, []string{model.KindSessionOpen, model.KindSessionClose}, "internal error: boom"},
		{"panics before open", func(context.Context, net.Conn, *Session) Outcome {
			panic("boom")
		}, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := &recorder{}
			var counted []model.Protocol
			l := &Lifecycle{Journal: j, Logger: quiet(), Panicked: func(p model.Protocol) { counted = append(counted, p) }}
			client, peer := net.Pipe()
			defer peer.Close()
			out := l.Serve(context.Background(), tc.serve, client, session())
			got := j.kinds()
			if len(got) != len(tc.want) {
				t.Fatalf("records %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("records %v, want %v", got, tc.want)
				}
			}
			panicked := tc.name == "panics after open" || tc.name == "panics before open"
			if panicked != (l.Panics() == 1) || len(counted) != int(l.Panics()) {
				t.Fatalf("panics %d (heard %v), panicked %v", l.Panics(), counted, panicked)
			}
			if panicked && (out.Err == nil || out.Err.Error() != "internal error: boom") {
				t.Fatalf("outcome %+v", out)
			}
			if len(got) == 2 {
				if j.durs[0] != model.Synced || j.durs[1] != model.Committed {
					t.Fatalf("durabilities %v: open must be synced, close committed", j.durs)
				}
				c := j.recs[1].Data.(model.SessionClose)
				if c.Error != tc.err {
					t.Fatalf("close error %q, want %q", c.Error, tc.err)
				}
				if tc.err == "" && (c.BytesUp != 3 || c.BytesDown != 4) {
					t.Fatalf("close %+v", c)
				}
			}
			// The client connection is closed whatever happened.
			if panicked {
				if _, err := client.Write([]byte("x")); err == nil {
					t.Fatal("client still open after a panic")
				}
			}
		})
	}
}

func TestOpenFillsOriginOnceAndFailsClosed(t *testing.T) {
	s := session()
	s.Origin.Identity.Kernel.UID = 1234
	if err := s.Open(context.Background(), allow, model.SessionOpen{}); !errors.Is(err, ErrNotServed) {
		t.Fatalf("Open outside a Lifecycle: %v, want ErrNotServed", err)
	}

	j := &recorder{}
	l := &Lifecycle{Journal: j, Logger: quiet()}
	client, peer := net.Pipe()
	defer peer.Close()
	var second error
	l.Serve(context.Background(), handlerFunc(func(ctx context.Context, _ net.Conn, s *Session) Outcome {
		// A handler's own fields cannot override the origin.
		if err := s.Open(ctx, allow, model.SessionOpen{Target: model.Target{Name: "forged"}}); err != nil {
			t.Fatal(err)
		}
		second = s.Open(ctx, allow, model.SessionOpen{})
		return Outcome{}
	}), client, s)
	if second == nil {
		t.Fatal("a second Open succeeded")
	}
	open := j.recs[0].Data.(model.SessionOpen)
	if open.Target.Name != "db" || open.Identity.Kernel.UID != 1234 || open.Decision != allow {
		t.Fatalf("open record %+v", open)
	}

	// A journal that fails refuses the session, and no close follows.
	j = &recorder{fail: errors.New("disk full")}
	l = &Lifecycle{Journal: j, Logger: quiet()}
	client, peer = net.Pipe()
	defer peer.Close()
	l.Serve(context.Background(), handlerFunc(func(ctx context.Context, _ net.Conn, s *Session) Outcome {
		if err := s.Open(ctx, allow, model.SessionOpen{}); err == nil {
			t.Fatal("Open succeeded on a failing journal")
		}
		return Outcome{Refused: true}
	}), client, session())
	j.fail = nil
	if got := j.kinds(); len(got) != 0 {
		t.Fatalf("records after a failed open: %v", got)
	}
}

// TestOpenDuringShutdown: a cancelled context does not stop the records.
func TestOpenDuringShutdown(t *testing.T) {
	j := &cancelAware{}
	l := &Lifecycle{Journal: j, Logger: quiet()}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	client, peer := net.Pipe()
	defer peer.Close()
	l.Serve(ctx, handlerFunc(func(ctx context.Context, _ net.Conn, s *Session) Outcome {
		if err := s.Open(ctx, model.Decision{Action: model.Deny}, model.SessionOpen{}); err != nil {
			t.Fatal(err)
		}
		return Outcome{Refused: true}
	}), client, session())
	if j.n != 2 {
		t.Fatalf("%d records written under a cancelled context, want 2", j.n)
	}
}

// cancelAware fails an append whose context is done, as the journal does.
type cancelAware struct{ n int }

func (c *cancelAware) Append(ctx context.Context, _ model.Record, _ model.Durability) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	c.n++
	return uint64(c.n), nil
}

func (c *cancelAware) Post(model.Record) {}

func TestRecoveredCounts(t *testing.T) {
	l := &Lifecycle{Journal: &recorder{}, Logger: quiet()}
	client, peer := net.Pipe()
	defer peer.Close()
	out := l.Serve(context.Background(), handlerFunc(func(ctx context.Context, _ net.Conn, s *Session) Outcome {
		done := make(chan error)
		go func() {
			defer func() {
				if p := recover(); p != nil {
					done <- s.Recovered(p)
				}
			}()
			panic("on a goroutine")
		}()
		return Outcome{Err: <-done}
	}), client, session())
	if l.Panics() != 1 || out.Err == nil || out.Err.Error() != "internal error: on a goroutine" {
		t.Fatalf("panics %d, outcome %+v", l.Panics(), out)
	}
}
