package journal

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/interlock/interlock/model"
)

// TestStartKeepsOrderAndReportsLikeAppend: a started record takes its
// place in the queue when Start returns (an Append after it gets a later
// entry), wait gives what Append would have, as often as it is called,
// and a journal that cannot take the record says so through wait.
func TestStartKeepsOrderAndReportsLikeAppend(t *testing.T) {
	j := openT(t, Options{Path: filepath.Join(t.TempDir(), "j.db")})
	ctx := context.Background()
	var _ model.Starter = j
	wait := j.Start(ctx, model.Record{Kind: "test.started", Session: "s"}, model.Committed)
	after, err := j.Append(ctx, model.Record{Kind: "test.after", Session: "s"}, model.Synced)
	if err != nil {
		t.Fatal(err)
	}
	seq, err := wait()
	if err != nil || seq == 0 || seq >= after {
		t.Fatalf("started record got %d (%v), the append after it %d", seq, err, after)
	}
	if again, err2 := wait(); again != seq || err2 != nil {
		t.Fatalf("wait again: %d %v", again, err2)
	}

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := j.Start(cctx, model.Record{Kind: "test.x"}, model.Committed)(); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Start: %v", err)
	}
	if _, err := j.Start(ctx, model.Record{Kind: "test.x"}, model.Durability(7))(); err == nil {
		t.Fatal("unknown durability accepted")
	}
	if _, err := j.Start(ctx, model.Record{Kind: "test.x", Data: func() {}}, model.Committed)(); err == nil {
		t.Fatal("a record that cannot be encoded was accepted")
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := j.Start(ctx, model.Record{Kind: "test.x"}, model.Committed)(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Start after Close: %v", err)
	}
}
