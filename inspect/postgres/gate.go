package postgres

import (
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/interlock/interlock/model"
)

// The gate: a transaction that is not provably read-only commits only
// after interlock has read from the server what it did and judged that.
//
// In autocommit, interlock holds the statements in a transaction of its
// own: a simple query gets wrapSuffix, an extended-protocol segment gets a
// BEGIN before its Sync. The server answers with the transaction still
// open; what it sent the client meanwhile waits in the hold. Interlock
// then reads the effects (effects.go), decides, and sends COMMIT (the
// client gets the held answer) or ROLLBACK (the client gets an error
// naming the rule in place of it). In the client's own transaction block,
// its COMMIT waits for the same reading and decision.

// Interlock's own transaction control.
const (
	commitSQL   = "/* interlock: commit */COMMIT"
	rollbackSQL = "/* interlock: rollback */ROLLBACK; SELECT pg_catalog.pg_stat_force_next_flush()"
	flushSQL    = "/* interlock: flush */SELECT pg_catalog.pg_stat_force_next_flush()"
	beginSQL    = "/* interlock: wrap */BEGIN"
)

// maxHeld bounds what the hold keeps in memory: beyond it the answer is
// let through as it comes (a denial then follows what the client already
// got, as an error would after a row of a failing query).
const maxHeld = 32 << 20

var errSkipped = errors.New("the server skipped interlock's message after an earlier error")

// needGate says whether a transaction must go through the gate before
// it commits: effects are checked on the target, and an effects rule may
// apply to this session, or a statement whose effects the text does not
// show ran in it (interlock's own check on roles then needs them).
func (s *session) needGate(opaque bool) bool {
	if !s.t.checkEffects {
		return false
	}
	if opaque {
		return true
	}
	return s.h.policy != nil && s.h.policy.EffectsRules(s.origin)
}

// commitNeedsGate says whether the client's COMMIT of its block must go
// through the gate.
func (s *session) commitNeedsGate() bool {
	s.mu.Lock()
	dirty, opaque := s.tx.dirty, s.tx.opaque
	s.mu.Unlock()
	return dirty && s.needGate(opaque)
}

func (s *session) txDirty() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tx.dirty
}

// queue pushes it; when the server will skip it (an earlier error in the
// pipeline), its runs are recorded as not run at once, and a hidden
// exchange is told so.
func (s *session) queue(it *item) bool {
	if s.q.push(it) {
		return true
	}
	// The server skips it: the name change it made never happens.
	s.settleSkipped(it)
	for _, r := range it.runs {
		if r != nil && r.deny == nil && !r.done {
			r.done = true
			s.h.journal.Post(resultRecord(s, r, model.PGResult{Statement: r.stmtSeq(), NotRun: true,
				Error: "not run: an earlier message of the pipeline failed"}))
		}
	}
	if it.hidden != nil {
		it.hidden.err = errorResponse("ERROR", "XX000", errSkipped.Error())
		it.hidden.finish()
	}
	if it.ready != nil {
		it.ready <- 'E'
	}
	return false
}

// noteForwarded records what the statements about to be forwarded do to
// the server's transaction: a write or opaque statement makes it dirty (its
// COMMIT goes through a gate), a catalog-changing one holds the target's
// catalog trust until it ends. inBlock: they run in the client's block.
func (s *session) noteForwarded(runs []*run, f pieceFacts, inBlock bool) {
	if !f.writes && !f.catalog {
		return
	}
	s.mu.Lock()
	if f.writes && inBlock {
		s.tx.dirty = true
	}
	s.tx.opaque = s.tx.opaque || f.opaque
	if f.catalog {
		s.tx.catalog = true
		for _, c := range f.classes {
			if c.Catalog {
				s.tx.overlay.note(c)
			}
		}
	}
	for _, r := range runs {
		if r != nil && r.deny == nil && !r.class.ReadOnly {
			s.tx.stmts = append(s.tx.stmts, r.stmtSeq())
		}
	}
	s.mu.Unlock()
	if f.catalog && !inBlock {
		// An autocommit statement that changes the catalog commits as it
		// ends.
		s.startCommitting()
	}
}

// startCommitting tells the target's trust that this session's
// catalog-changing transaction is ending: other sessions wait for its
// answer before they resolve names again.
func (s *session) startCommitting() {
	s.mu.Lock()
	start := s.tx.catalog && !s.tx.committing
	if start {
		s.tx.committing = true
	}
	s.mu.Unlock()
	if start {
		s.trust.committingStart()
	}
}

// awaitReady waits for the ReadyForQuery of an item the server goroutine
// hands to this goroutine. A COPY FROM STDIN in it needs the client's
// rows meanwhile: they are forwarded as they come, up to CopyDone or
// CopyFail, each time the server asks for them.
func (s *session) awaitReady(it *item) (byte, error) {
	if err := s.uw.Flush(); err != nil {
		return 0, err
	}
	for {
		select {
		case st := <-it.ready:
			return st, nil
		case <-it.copyIn:
			if err := s.forwardCopy(); err != nil {
				return 0, err
			}
		case <-s.done:
			return 0, net.ErrClosed
		}
	}
}

// forwardCopy relays the client's COPY data until CopyDone or CopyFail.
func (s *session) forwardCopy() error {
	for {
		m, err := s.cr.next()
		if err != nil {
			return err
		}
		if m.stream {
			s.bytesUp.Add(int64(m.n) + 5)
		} else {
			s.bytesUp.Add(int64(len(m.raw)))
		}
		switch m.typ {
		case 'd', 'H', 'S':
			// Flush and Sync are ignored by the server during COPY.
			if err := s.forward(m); err != nil {
				return err
			}
		case 'c', 'f':
			if err := s.forward(m); err != nil {
				return err
			}
			return s.uw.Flush()
		default:
			return clientErr("message %q during COPY FROM STDIN", printable(m.typ))
		}
		if s.cr.buffered() == 0 {
			if err := s.uw.Flush(); err != nil {
				return err
			}
		}
	}
}

// hiddenQuery runs a simple query of interlock's own at a point where the
// server is between segments, and returns what it answered.
func (s *session) hiddenQuery(sql string) (*hidden, error) {
	h := &hidden{query: true, done: make(chan struct{}), flushes: strings.Contains(sql, "pg_stat_force_next_flush")}
	it := &item{kind: iHidden, hidden: h, seg: s.nextSeg()}
	if !s.queue(it) {
		return h, nil
	}
	if err := s.sendQuery(sql); err != nil {
		return nil, err
	}
	if err := s.uw.Flush(); err != nil {
		return nil, err
	}
	select {
	case <-h.done:
		return h, nil
	case <-s.done:
		return nil, net.ErrClosed
	}
}

// hiddenPrepared runs interlock's own statement name (prepared from sql
// the first time; *prepared says it is) in a segment of its own, where
// the server is between segments, and returns what its Execute got: the
// planning is done once per session.
func (s *session) hiddenPrepared(name, sql string, prepared *bool) (*hidden, error) {
	s.mu.Lock()
	isPrepared := *prepared
	s.mu.Unlock()
	portal := name + "_p"
	var msgs []pgproto3.FrontendMessage
	var items []*item
	if !isPrepared {
		msgs = append(msgs, &pgproto3.Parse{Name: name, Query: sql})
		items = append(items, &item{kind: iHidden, hidden: &hidden{expect: '1', prepares: prepared}})
	}
	exec := &hidden{expect: 'C'}
	// The Sync is queued as one: the server's skip after an error ends
	// there, and its ReadyForQuery answers it.
	end := &hidden{done: make(chan struct{})}
	msgs = append(msgs, &pgproto3.Bind{DestinationPortal: portal, PreparedStatement: name},
		&pgproto3.Execute{Portal: portal}, &pgproto3.Sync{})
	items = append(items, &item{kind: iHidden, hidden: &hidden{expect: '2'}}, &item{kind: iHidden, hidden: exec})
	for _, it := range items {
		if !s.queue(it) {
			return nil, errSkipped
		}
	}
	if !s.queue(&item{kind: iSync, hidden: end, seg: s.nextSeg()}) {
		return nil, errSkipped
	}
	for _, m := range msgs {
		if err := s.send(m); err != nil {
			return nil, err
		}
	}
	if err := s.uw.Flush(); err != nil {
		return nil, err
	}
	select {
	case <-end.done:
	case <-s.done:
		return nil, net.ErrClosed
	}
	if exec.err == nil && end.err != nil {
		exec.err = end.err
	}
	if exec.err == nil && len(exec.tags) == 0 {
		exec.err = errorResponse("ERROR", "XX000", "interlock's statement did not complete")
	}
	return exec, nil
}

// setHold starts keeping what goes to the client.
func (s *session) setHold() {
	s.cwMu.Lock()
	s.hold, s.held, s.heldOver = true, s.held[:0], false
	s.cwMu.Unlock()
}

// releaseHeld lets the held answer go to the client, then ReadyForQuery
// with status st (0: none).
func (s *session) releaseHeld(extra ...pgproto3.BackendMessage) error {
	s.cwMu.Lock()
	defer s.cwMu.Unlock()
	s.hold = false
	if _, err := s.cw.Write(s.held); err != nil {
		return err
	}
	s.held = s.held[:0]
	return s.writeLocked(extra...)
}

// discardHeld drops the held answer and sends msgs in its place.
func (s *session) discardHeld(msgs ...pgproto3.BackendMessage) error {
	s.cwMu.Lock()
	defer s.cwMu.Unlock()
	s.hold = false
	s.held = s.held[:0]
	return s.writeLocked(msgs...)
}

func (s *session) writeLocked(msgs ...pgproto3.BackendMessage) error {
	var buf []byte
	for _, m := range msgs {
		var err error
		if buf, err = m.Encode(buf); err != nil {
			return err
		}
	}
	if _, err := s.cw.Write(buf); err != nil {
		return err
	}
	return s.cw.Flush()
}

// readyToClient sends ReadyForQuery in place of one interlock kept.
func (s *session) readyToClient(st byte) error {
	s.cwMu.Lock()
	defer s.cwMu.Unlock()
	return s.writeLocked(&pgproto3.ReadyForQuery{TxStatus: st})
}

// wrapQuery runs a simple query in a transaction interlock holds.
func (s *session) wrapQuery(it *item, text string, f pieceFacts) error {
	if err := s.flushStats(); err != nil {
		return err
	}
	s.noteForwarded(it.runs, f, true)
	s.mu.Lock()
	s.tx.wrapped = true
	s.tx.dirty = true
	s.mu.Unlock()
	s.setHold()
	it.wrapped = true
	it.ready = make(chan byte, 1)
	it.copyIn = make(chan struct{}, 1)
	it.seg = s.nextSeg()
	if !s.queue(it) {
		return s.releaseHeld()
	}
	if err := s.sendQuery(text + wrapSuffix); err != nil {
		return err
	}
	st, err := s.awaitReady(it)
	if err != nil {
		return err
	}
	return s.afterWrap(st, 0)
}

// afterWrap finishes a transaction interlock held, once the server
// answered its last client message with status st.
func (s *session) afterWrap(st byte, commit uint64) error {
	switch st {
	case 'T':
		return s.commitWrapped(commit)
	case 'E':
		// A statement failed: the transaction is rolled back, as its
		// implicit one would have been; the client has the error.
		h, err := s.hiddenQuery(rollbackSQL)
		if err != nil {
			return err
		}
		s.endTx()
		return s.releaseHeld(&pgproto3.ReadyForQuery{TxStatus: readyStatus(h, 'I')})
	case 0:
		return net.ErrClosed
	default:
		// The server ended the transaction before interlock's BEGIN took
		// (the segment failed first): nothing was committed.
		s.endTx()
		return s.releaseHeld(&pgproto3.ReadyForQuery{TxStatus: st})
	}
}

func readyStatus(h *hidden, def byte) byte {
	if h != nil && h.status != 0 {
		return h.status
	}
	return def
}

// commitWrapped runs the gate on a transaction interlock holds and ends it.
func (s *session) commitWrapped(commit uint64) error {
	d, err := s.gate(commit)
	if err != nil {
		s.hiddenQuery(rollbackSQL)
		return err
	}
	if d.Action != model.Allow {
		h, err := s.hiddenQuery(rollbackSQL)
		if err != nil {
			return err
		}
		s.endTx()
		return s.discardHeld(denyError(d), &pgproto3.ReadyForQuery{TxStatus: readyStatus(h, 'I')})
	}
	s.startCommitting()
	h, err := s.hiddenQuery(commitSQL)
	if err != nil {
		return err
	}
	s.endTx()
	if h.err != nil {
		// A deferred constraint failed at COMMIT: the client gets the
		// error its implicit commit would have got.
		return s.releaseHeld(h.err, &pgproto3.ReadyForQuery{TxStatus: readyStatus(h, 'I')})
	}
	return s.releaseHeld(&pgproto3.ReadyForQuery{TxStatus: readyStatus(h, 'I')})
}

// gateCommitQuery runs the gate before the client's COMMIT of a block that
// wrote, sent as a simple query.
func (s *session) gateCommitQuery(it *item, text string) error {
	commit := it.runs[0]
	d, err := s.gate(commit.seq)
	if err != nil {
		return err
	}
	if d.Action != model.Allow {
		h, err := s.hiddenQuery(rollbackSQL)
		if err != nil {
			return err
		}
		s.endTx()
		de := denyError(d)
		de.Detail = "The transaction was rolled back."
		// The COMMIT never reached the server: its result is written here
		// (the run is this goroutine's alone).
		commit.done = true
		s.h.journal.Post(resultRecord(s, commit, model.PGResult{Statement: commit.seq, NotRun: true,
			SQLState: de.Code, Error: de.Message}))
		return s.discardHeld(de, &pgproto3.ReadyForQuery{TxStatus: readyStatus(h, 'I')})
	}
	s.startCommitting()
	it.seg = s.nextSeg()
	s.barrier = it.seg
	s.queue(it)
	return s.sendQuery(text)
}

// endTx forgets the transaction interlock just ended itself (the server
// goroutine does so for the client's, on ReadyForQuery).
func (s *session) endTx() {
	s.mu.Lock()
	committing := s.tx.committing
	s.tx = txFacts{}
	s.mu.Unlock()
	if committing {
		s.trust.release()
	}
}

// flushStats makes the server flush the per-transaction counters of an
// earlier transaction that wrote and was rolled back, so they do not count
// as this one's effects. It is called where the server is between
// segments.
func (s *session) flushStats() error {
	s.mu.Lock()
	dirty := s.statsDirty
	s.statsDirty = false
	s.mu.Unlock()
	if !dirty {
		return nil
	}
	_, err := s.hiddenQuery(flushSQL)
	return err
}

// gate reads the effects of the open transaction, judges them (interlock's
// own checks, then effects rules), and journals them with the decision
// (synced) before anything commits. commit is the client's COMMIT
// statement, if any.
func (s *session) gate(commit uint64) (model.Decision, error) {
	eff := s.readEffects()
	return s.judgeEffects(eff, commit)
}

func (s *session) judgeEffects(eff model.PGEffects, commit uint64) (model.Decision, error) {
	s.mu.Lock()
	eff.Statements = append([]uint64(nil), s.tx.stmts...)
	eff.Rows = s.tx.rows
	opaque := s.tx.opaque
	s.mu.Unlock()
	d := model.Decision{Action: model.Allow, Rule: "policy.effects"}
	if b := heldRoleEffect(eff, opaque); b != nil {
		d = *b
	} else if eff.Error != "" && (s.h.policy == nil || !s.h.policy.EffectsRules(s.origin)) {
		// Without an effects rule, unread effects only matter to
		// interlock's own check above; the transaction was allowed
		// statement by statement.
		s.log.Warn("the transaction's effects could not be read", "err", eff.Error)
	} else if s.h.policy != nil {
		op := model.Operation{Protocol: model.ProtoPostgres, Kind: "commit", Effects: &eff,
			Text: effectsSummary(eff), Kinds: []string{"commit"}}
		d = s.h.policy.DecideEffects(s.decisionCtx(), s.origin, op)
		if d.Action != model.Allow {
			if d.Reason == "" {
				d.Reason = "the transaction's effects were not approved"
			}
			d.Action = model.Deny
		}
	}
	rec := model.Record{Kind: model.KindPGEffects, Session: s.id, Data: model.PGEffectsEntry{PGEffects: eff, Decision: d, Commit: commit}}
	if _, err := s.h.journal.Append(s.ctx, rec, model.Synced); err != nil {
		return model.Decision{Action: model.Deny, Rule: "interlock.journal"}, &journalError{err}
	}
	return d, nil
}

// heldRoleEffect is interlock's own check on effects: a transaction whose
// statements include one the text does not show (DO, a function) must not
// change roles, memberships or role settings, because interlock cannot
// tell that it did not change the role it logs in as.
func heldRoleEffect(eff model.PGEffects, opaque bool) *model.Decision {
	if !opaque {
		return nil
	}
	if eff.Error != "" {
		return &model.Decision{Action: model.Deny, Rule: ruleHeldRole,
			Reason: "a statement whose effects its text does not show ran, and its effects could not be read (" + eff.Error + "); interlock cannot tell that the role it logs in as was not changed"}
	}
	for _, t := range eff.Tables {
		for _, rc := range model.AccessCatalogs {
			if t.Name == rc && t.Inserted+t.Updated+t.Deleted > 0 {
				return &model.Decision{Action: model.Deny, Rule: ruleHeldRole,
					Reason: fmt.Sprintf("a statement whose effects its text does not show changed %s (roles, memberships or role settings); interlock cannot tell that the role it logs in as was not changed", t.Name)}
			}
		}
	}
	return nil
}
