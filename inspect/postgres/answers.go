package postgres

import (
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/interlock/interlock/inspect/postgres/sqlclass"
	"github.com/interlock/interlock/model"
)

// What the server's errors, ReadyForQuery and ParameterStatus do to the
// session: the pipeline skipped after an error, the transaction's end, and
// the settings the parser depends on.

// onError attributes an ErrorResponse, replaces a probe's error with the
// denial, and follows the server in skipping the rest of a failed
// extended-protocol pipeline.
func (s *session) onError(m msg) error {
	var e pgproto3.ErrorResponse
	if err := e.Decode(m.body); err != nil {
		return serverErr("%v", err)
	}
	out := m.raw
	substitute := func(d *pgproto3.ErrorResponse) {
		if b, err := d.Encode(nil); err == nil {
			out = b
		}
	}
	if s.scrubError(&e) {
		// What the client and the journal get of the error.
		substitute(&e)
	}
	if e.Severity == "FATAL" || e.Severity == "PANIC" || e.SeverityUnlocalized == "FATAL" || e.SeverityUnlocalized == "PANIC" {
		// The session ends: nothing is held back any more.
		s.letHeldGo()
	}
	it := s.q.first()
	switch {
	case it != nil && it.kind == iSync && it.hidden != nil:
		it.hidden.err = &e
		return nil
	case it == nil, it.kind == iSync:
		// An error outside any statement (a FATAL shutdown), or at the
		// end of an implicit transaction.
	case it.kind == iHidden:
		h := it.hidden
		h.err = &e
		if h.query {
			return nil // its ReadyForQuery ends it
		}
		s.q.pop()
		h.finish()
		s.skipRest()
		if h.describes != nil {
			return s.toClientNow(out)
		}
		return nil
	case it.kind == iQuery || it.kind == iFunc:
		it.failed = true
		if r := it.run(); r != nil {
			if r.deny != nil {
				substitute(r.deny)
				r.done = true
			} else {
				s.fail(r, &e)
			}
		}
		if it.posOffset > 0 && e.Position > 0 {
			e.Position += int32(it.posOffset)
			substitute(&e)
		}
	default:
		s.q.pop()
		switch it.kind {
		case iProbe:
			substitute(it.deny)
		case iBind, iExecute:
			if r := it.run(); r != nil {
				s.fail(r, &e)
			}
		}
		s.settleSkipped(it)
		s.skipRest()
	}
	return s.toClient(out)
}

// skipRest follows the server in skipping everything up to the next Sync.
func (s *session) skipRest() {
	for _, sk := range s.q.skipToSync() {
		s.settleSkipped(sk)
		if sk.hidden != nil {
			if sk.hidden.err == nil {
				sk.hidden.err = errorResponse("ERROR", "XX000", errSkipped.Error())
			}
			sk.hidden.finish()
		}
		for _, r := range sk.runs {
			if r != nil && !r.done && r.deny == nil && (sk.kind == iBind || sk.kind == iQuery || sk.kind == iFunc) {
				s.notRun(r, "not run: an earlier message of the pipeline failed")
			}
		}
	}
}

// settleSkipped drops the pending name change of a message the server
// refused or skipped: the model stays as the server has it.
func (s *session) settleSkipped(it *item) {
	if it.pend == nil {
		return
	}
	s.mu.Lock()
	switch {
	case it.kind == iParse || (it.kind == iClose && it.closeKind == 'S'):
		s.stmts.settle(it.name, it.pend)
	case it.kind == iBind || (it.kind == iClose && it.closeKind == 'P'):
		s.portals.settle(it.name, it.pend)
	}
	s.mu.Unlock()
}

// onReady ends a Query, FunctionCall, Sync or hidden query: the session's
// transaction status, and what ending a transaction removes, follow it.
func (s *session) onReady(m msg) error {
	var z pgproto3.ReadyForQuery
	if err := z.Decode(m.body); err != nil {
		return serverErr("%v", err)
	}
	it := s.q.first()
	if it == nil {
		return serverErr("ReadyForQuery with nothing outstanding")
	}
	if !it.ends() {
		return serverErr("ReadyForQuery in answer to %s", kindName(it.kind))
	}
	s.q.pop()
	release := false
	s.mu.Lock()
	s.txStatus = z.TxStatus
	s.answered++
	if z.TxStatus == 'I' {
		s.endTransaction()
		if s.tx.committing {
			release = true
		} else if s.tx.dirty && (it.hidden == nil || it.hidden.flushes == false) {
			// A transaction that wrote ended without a gate (the client
			// rolled it back, or it failed): its counters may linger.
			s.statsDirty = true
		}
		s.tx = txFacts{}
	}
	s.cond.Broadcast()
	s.mu.Unlock()
	if release {
		s.trust.release()
	}
	for _, r := range it.runs {
		if r != nil && !r.done && r.deny == nil {
			s.notRun(r, "not run: an earlier statement of the query failed")
		}
	}
	if z.TxStatus == 'I' {
		for r := range s.open {
			if !r.done {
				if r.executed {
					s.finish(r, "", nil, "")
				} else {
					s.notRun(r, "not run: the portal was never executed")
				}
			}
		}
		clear(s.open)
	}
	switch {
	case it.hidden != nil:
		it.hidden.status = z.TxStatus
		it.hidden.finish()
		return nil
	case it.ready != nil:
		it.ready <- z.TxStatus
		return nil
	}
	return s.toClient(m.raw)
}

// paramStatus follows the settings that change how statements read. A
// change to one interlock cannot parse under ends the session: the
// statements already judged were judged under the old setting.
func (s *session) paramStatus(name, value string) error {
	switch name {
	case "standard_conforming_strings":
		off := value != "on"
		s.scsOff.Store(off)
		if off && s.ctx != nil {
			return s.contradict("the server turned standard_conforming_strings off", "setting", name, "value", value)
		}
	case "client_encoding":
		bad := unsafeEncoding(value)
		s.badEncoding.Store(bad)
		if bad && s.ctx != nil {
			return s.contradict("the server switched client_encoding to "+value+", which interlock's parser cannot read safely", "setting", name, "value", value)
		}
	}
	return nil
}

// contradict journals the server contradicting what interlock judged (an
// anomaly record naming both) and returns the error that ends the
// session.
func (s *session) contradict(msg string, kv ...string) error {
	detail := map[string]any{"session": s.id}
	for i := 0; i+1 < len(kv); i += 2 {
		detail[kv[i]] = kv[i+1]
	}
	rec := model.Record{Kind: model.KindAnomaly, Session: s.id, Data: model.Anomaly{Reason: "postgres: " + msg, Detail: detail}}
	if _, err := s.h.journal.Append(s.ctx, rec, model.Synced); err != nil {
		s.log.Error("journal anomaly", "err", err)
	}
	s.log.Warn("ending session: the server contradicted what interlock judged", "why", msg)
	return &contradiction{msg: msg}
}

// checkTag ends the session when a statement's CommandComplete is not
// one its judged class can produce: the server ran something else than
// what interlock judged and journaled.
func (s *session) checkTag(r *run, tag string) error {
	if r.class == nil || sqlclass.TagFits(tag, r.class) {
		return nil
	}
	return s.contradict(fmt.Sprintf("the server reported %q for a statement interlock judged as %v", tag, r.class.Kinds),
		"tag", tag, "statement", strconv.FormatUint(r.stmtSeq(), 10))
}
