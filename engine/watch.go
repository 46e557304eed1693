package engine

// Live sessions and the watches runs keep on their cgroups.

import (
	"strings"
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
