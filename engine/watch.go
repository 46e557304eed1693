package engine

// Live sessions and the watches runs keep on their cgroups.

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/interlock/interlock/model"
)

// Live lists open sessions.
func (e *Engine) Live() []LiveSession {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]LiveSession, 0, len(e.live))
	for _, s := range e.live {
		out = append(out, *s)
	}
	return out
}

// Total is the tally of every session this engine finished.
func (e *Engine) Total() Tally {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.total
}

// Watch tallies the sessions of one cgroup subtree (an `interlock run`).
type Watch struct {
	path  string
	id    uint64
	tally Tally
}

func (w *Watch) covers(s *LiveSession) bool {
	if s.cgroupID == w.id {
		return true
	}
	return s.Cgroup != "" && (s.Cgroup == w.path || strings.HasPrefix(s.Cgroup, strings.TrimSuffix(w.path, "/")+"/"))
}

// WatchCgroup starts tallying sessions from a cgroup subtree.
func (e *Engine) WatchCgroup(path string, id uint64) *Watch {
	w := &Watch{path: path, id: id}
	e.mu.Lock()
	e.watches[w] = struct{}{}
	e.mu.Unlock()
	return w
}

// Unwatch stops a watch and returns its tally.
func (e *Engine) Unwatch(w *Watch) Tally {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.watches, w)
	return w.tally
}

// LiveIn counts the open sessions a watch covers.
func (e *Engine) LiveIn(w *Watch) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, s := range e.live {
		if w.covers(s) {
			n++
		}
	}
	return n
}

// EndRun ends a run's watch and journals its run.end: it waits up to two
// seconds for the run's sessions to close (their close records complete
// the tally), stops counting the cgroup, and appends run.end with the
// tally, synced. The daemon (for a run it serves) and an embedded run both
// end runs here, so run.end has one shape and one durability.
func (e *Engine) EndRun(ctx context.Context, id string, w *Watch, res model.RunEnd) (Tally, error) {
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) && e.LiveIn(w) > 0 {
		time.Sleep(10 * time.Millisecond)
	}
	t := e.Unwatch(w)
	res.Sessions, res.Refused, res.Anomalies = t.Sessions, t.Refused, t.Anomalies
	res.BytesUp, res.BytesDown = t.BytesUp, t.BytesDown
	_, err := e.journal.Append(context.WithoutCancel(ctx), model.Record{Kind: model.KindRunEnd, Session: id, Data: res}, model.Synced)
	if err != nil {
		err = fmt.Errorf("journal run.end of %s: %w", id, err)
	}
	return t, err
}
