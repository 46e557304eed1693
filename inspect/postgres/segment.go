package postgres

import (
	"fmt"
	"net"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/interlock/interlock/inspect/postgres/sqlclass"
	"github.com/interlock/interlock/model"
)

// The messages that end a segment of their own accord: Sync (with the gate
// of a segment interlock holds) and the fastpath FunctionCall.

// onSync ends a segment. A segment interlock holds in a transaction gets
// its BEGIN first, and its gate once the server answered.
func (s *session) onSync(m msg) error {
	if !s.segWrap {
		s.queue(&item{kind: iSync, seg: s.nextSeg()})
		return s.forward(m)
	}
	// BEGIN after the segment's statements makes the server keep their
	// transaction open at Sync.
	s.mu.Lock()
	prepared := s.beginPrepared
	s.mu.Unlock()
	name, portal := s.fxName+"_begin", s.fxName+"_begin_p"
	if !prepared {
		s.queue(&item{kind: iHidden, hidden: &hidden{expect: '1', prepares: &s.beginPrepared}})
		if err := s.send(&pgproto3.Parse{Name: name, Query: beginSQL}); err != nil {
			return err
		}
	}
	s.queue(&item{kind: iHidden, hidden: &hidden{expect: '2'}})
	if err := s.send(&pgproto3.Bind{DestinationPortal: portal, PreparedStatement: name}); err != nil {
		return err
	}
	s.queue(&item{kind: iHidden, hidden: &hidden{expect: 'C'}})
	if err := s.send(&pgproto3.Execute{Portal: portal}); err != nil {
		return err
	}
	it := &item{kind: iSync, seg: s.nextSeg(), ready: make(chan byte, 1)}
	s.queue(it)
	if err := s.forward(m); err != nil {
		return err
	}
	st, err := s.awaitReady(it)
	if err != nil {
		return err
	}
	return s.afterWrap(st, 0)
}

// gateInSegment runs the gate in the middle of a segment, before the
// client's COMMIT is bound: once the server answered everything before it
// (a Close of a portal that does not exist marks the point), interlock
// reads the effects with its own prepared statement. A segment that
// already failed needs no gate: its COMMIT will roll back.
func (s *session) gateInSegment() (model.Decision, error) {
	marker := &hidden{expect: '3', done: make(chan struct{})}
	if !s.queue(&item{kind: iHidden, hidden: marker}) {
		return model.Decision{Action: model.Allow}, nil
	}
	if err := s.send(&pgproto3.Close{ObjectType: 'P', Name: s.fxName + "_marker"}); err != nil {
		return model.Decision{}, err
	}
	if err := s.send(&pgproto3.Flush{}); err != nil {
		return model.Decision{}, err
	}
	if err := s.uw.Flush(); err != nil {
		return model.Decision{}, err
	}
	select {
	case <-marker.done:
	case <-s.done:
		return model.Decision{}, net.ErrClosed
	}
	if marker.err != nil {
		return model.Decision{Action: model.Allow}, nil
	}
	return s.judgeEffects(s.readEffectsInSegment(), 0)
}

// onFunctionCall handles the fastpath FunctionCall (libpq's large object
// functions use it): it runs a function by OID, so it is judged and
// journaled like a statement whose effects the text does not show.
func (s *session) onFunctionCall(m msg) error {
	var (
		in  src
		b   *body
		cur cursor
	)
	if err := s.waitAll(); err != nil {
		return err
	}
	if m.stream {
		b = &body{src: s.cr.br, left: m.n, side: "client"}
		in = b
	} else {
		cur = cursor{b: m.body, side: "client"}
		in = &cur
	}
	oid, err := in.int32()
	if err != nil {
		return err
	}
	text := fmt.Sprintf("-- fastpath function call: function oid %d", uint32(oid))
	cl := &sqlclass.Class{Kind: "function_call", Kinds: []string{"function_call", model.SQLKindOpaque}, Opaque: true, Catalog: true,
		Defines: sqlclass.Defines{All: true}}
	d := s.decide(text, cl)
	allowed := d.Action == model.Allow
	tx := s.txAtSegment()
	wrap := allowed && tx == 'I' && s.needGate(true)
	if wrap {
		if err := s.flushStats(); err != nil {
			return err
		}
		h, err := s.hiddenQuery(beginSQL)
		if err != nil {
			return err
		}
		if h.err != nil || h.status != 'T' {
			return &contradiction{msg: "the server did not open the transaction interlock holds a function call in"}
		}
		s.setHold()
		s.mu.Lock()
		s.tx.wrapped, s.tx.dirty = true, true
		s.mu.Unlock()
	}
	if allowed && b != nil {
		var pre []byte
		pre = header(pre, 'F', m.n)
		pre = append(pre, byte(oid>>24), byte(oid>>16), byte(oid>>8), byte(oid))
		if _, err := s.uw.Write(pre); err != nil {
			return err
		}
		b.dst, b.hold = s.uw, true
	}
	params, err := readValues(in, nil)
	if err != nil {
		return err
	}
	if _, err := in.int16(); err != nil {
		return err
	}
	if b != nil && b.left != 0 || b == nil && len(cur.b) != 0 {
		return clientErr("FunctionCall message has trailing data")
	}
	sc := scopeNow
	switch {
	case wrap:
		sc = scopeWrap
	case tx == 'T':
		sc = scopeBlock
	}
	r, err := s.record(text, cl, d, "fastpath", "", "", params, nil, sc)
	if err != nil {
		return err
	}
	it := (&item{kind: iFunc, seg: s.nextSeg()}).only(r)
	s.barrier = it.seg
	if r.deny != nil {
		s.queue(it)
		// A failing query answers like a failed function call: an error,
		// then ReadyForQuery.
		return s.sendQuery(probeSQL)
	}
	f := pieceFacts{}
	f.add(cl, text)
	s.noteForwarded([]*run{r}, f, tx == 'T' || wrap)
	if wrap {
		it.ready = make(chan byte, 1)
	}
	s.queue(it)
	if b != nil {
		err = b.release()
	} else {
		_, err = s.uw.Write(m.raw)
	}
	if err != nil || !wrap {
		return err
	}
	st, err := s.awaitReady(it)
	if err != nil {
		return err
	}
	return s.afterWrap(st, 0)
}
