package postgres

import "github.com/interlock/interlock/model"

// Read-only statements are forwarded while their records commit. The rule
// that keeps the evidence whole: nothing the server sends reaches the
// client before the record of every statement forwarded ahead of it is
// committed. The server can only answer what it was sent, so the server
// loop waits for every record still pending before it handles the next
// message; a record that fails ends the session before its answer (or
// anything after it) is sent.

// addPending notes a record the server loop must see committed before it
// lets anything more through. It is called before the statement is
// forwarded.
func (s *session) addPending(wait func() (uint64, error)) {
	s.started = true
	s.pendMu.Lock()
	s.pending = append(s.pending, wait)
	s.npending.Add(1)
	s.pendMu.Unlock()
}

// awaitPending waits for the records noted so far. Only the server loop
// calls it.
func (s *session) awaitPending() error {
	if s.npending.Load() == 0 {
		return nil
	}
	s.pendMu.Lock()
	waits := s.pending
	s.pending = s.spare[:0]
	s.npending.Store(0)
	s.pendMu.Unlock()
	var failed error
	for i, wait := range waits {
		if _, err := wait(); err != nil && failed == nil {
			failed = &journalError{err}
		}
		waits[i] = nil
	}
	s.spare = waits[:0]
	return failed
}

// stmtSeq is the run's statement entry, waiting for it if it is still
// being committed (0 if that failed: the session is ending).
func (r *run) stmtSeq() uint64 {
	if r.pend != nil {
		seq, _ := r.pend()
		return seq
	}
	return r.seq
}

// commitStarted tells the journal that the statements whose records the
// client loop started were forwarded: their records commit now, while the
// server works, in this goroutine if the journal's writer is idle. The
// client loop calls it before any read that may wait for the client.
func (s *session) commitStarted() {
	if s.started {
		s.started = false
		model.CommitStarted(s.h.journal)
	}
}
