package postgres

import (
	"fmt"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/interlock/interlock/inspect/postgres/sqlclass"
	"github.com/interlock/interlock/model"
)

// The extended query protocol: Parse, Bind, Describe, Execute, Close,
// Sync, and the fastpath FunctionCall.

// nextSeg ends the segment being sent (a Query, Sync or FunctionCall) and
// returns its number.
func (s *session) nextSeg() uint64 {
	n := s.seg
	s.seg++
	s.segBegin, s.segEnd, s.segWrap = false, false, false
	return n
}

// awaitName waits until the server answered segment seg, when a name
// being resolved was last changed by a message of that earlier segment.
func (s *session) awaitName(seg uint64) error {
	if seg == 0 {
		return nil
	}
	return s.waitAnswered(seg)
}

func (s *session) onParse(m msg) error {
	var p pgproto3.Parse
	if err := p.Decode(m.body); err != nil {
		return clientErr("%v", err)
	}
	if err := s.waitBarrier(); err != nil {
		return err
	}
	// The server parses the text now, under the settings in force now.
	if r := s.guard(p.Query); r != "" {
		d := denied(ruleParser, r)
		cl := sqlclass.Merged(s.h.cls.Parse(p.Query))
		rr, err := s.record(p.Query, cl, d, "extended", p.Name, "", nil, nil, scopeNow)
		if err != nil {
			return err
		}
		s.queue((&item{kind: iProbe, deny: rr.deny, closed: true}).only(rr))
		return s.send(&pgproto3.Parse{Name: s.probe, Query: probeSQL})
	}
	ps := &prepared{text: p.Query, class: sqlclass.Merged(s.h.cls.Parse(p.Query)), paramOIDs: p.ParameterOIDs}
	pend := &pendingName{seg: s.seg, stmt: ps}
	s.mu.Lock()
	s.stmts.add(p.Name, pend)
	s.mu.Unlock()
	s.queue(&item{kind: iParse, name: p.Name, pend: pend})
	return s.forward(m)
}

// statement resolves what a Bind or Describe names, waiting for the
// server when the name was changed in an earlier segment it has not
// answered yet.
func (s *session) statement(name string) (*prepared, error) {
	var waited uint64
	for {
		s.mu.Lock()
		ps, wait := s.lookupStmt(name, s.seg)
		s.mu.Unlock()
		if wait == 0 {
			return ps, nil
		}
		if wait == waited {
			// Answered, yet still pending: the model lost track of the
			// name, which then names nothing interlock judged.
			return nil, nil
		}
		waited = wait
		if err := s.awaitName(wait); err != nil {
			return nil, err
		}
	}
}

// src is a message body being parsed, in memory or streamed.
type src interface {
	int16() (int, error)
	int32() (int, error)
	value(n, keep int) ([]byte, error)
}

func (c *cursor) value(n, keep int) ([]byte, error) {
	v, err := c.bytes(n)
	if err != nil {
		return nil, err
	}
	return v[:min(n, keep)], nil
}

func (b *body) value(n, keep int) ([]byte, error) { return b.bytes(n, keep) }

// count reads a count field: PostgreSQL reads the Int16 counts of Bind
// and FunctionCall as unsigned, so pgx sends up to 65,535 parameters.
func count(in src) (int, error) {
	n, err := in.int16()
	if err != nil {
		return 0, err
	}
	return int(uint16(int16(n))), nil
}

// readValues parses format codes and values (Bind, FunctionCall) and
// renders the values for the journal.
func readValues(in src, oids []uint32) ([]model.PGParam, error) {
	fmts, err := readFormats(in)
	if err != nil {
		return nil, err
	}
	np, err := count(in)
	if err != nil {
		return nil, err
	}
	params := make([]model.PGParam, np)
	for i := range params {
		f := formatAt(fmts, i)
		var oid uint32
		if i < len(oids) {
			oid = oids[i]
		}
		p := model.PGParam{Type: typeName(oid), Format: "text"}
		if f == 1 {
			p.Format = "binary"
		}
		l, err := in.int32()
		if err != nil {
			return nil, err
		}
		switch {
		case l == -1:
		case l < 0:
			return nil, clientErr("invalid value length %d", l)
		default:
			v, err := in.value(l, maxValue+1)
			if err != nil {
				return nil, err
			}
			str, _ := render(oid, f == 1, v, l)
			p.Value = &str
		}
		params[i] = p
	}
	return params, nil
}

func readFormats(in src) ([]int16, error) {
	n, err := count(in)
	if err != nil {
		return nil, err
	}
	out := make([]int16, n)
	for i := range out {
		v, err := in.int16()
		if err != nil {
			return nil, err
		}
		out[i] = int16(v)
	}
	return out, nil
}

// formatAt is the format code of value i under a list of format codes:
// none means text for all, one applies to all, more give one each.
func formatAt(formats []int16, i int) int16 {
	switch {
	case len(formats) == 1:
		return formats[0]
	case i < len(formats):
		return formats[i]
	}
	return 0
}

// onBind judges and journals the statement a Bind is about to run, with
// its parameters, before the Bind reaches the server: planning at Bind can
// already run functions. A large Bind is streamed, its last byte held back
// until the record is committed.
func (s *session) onBind(m msg) error {
	var (
		in      src
		b       *body
		portal  string
		stmtNm  string
		err     error
		curBody cursor
	)
	if m.stream {
		b = &body{src: s.cr.br, left: m.n, side: "client"}
		if portal, err = b.cstring(maxName); err != nil {
			return err
		}
		if stmtNm, err = b.cstring(maxName); err != nil {
			return err
		}
		in = b
	} else {
		curBody = cursor{b: m.body, side: "client"}
		if portal, err = curBody.cstring(); err != nil {
			return err
		}
		if stmtNm, err = curBody.cstring(); err != nil {
			return err
		}
		in = &curBody
	}
	if err := s.waitBarrier(); err != nil {
		return err
	}
	ps, err := s.statement(stmtNm)
	if err != nil {
		return err
	}
	var (
		text   string
		cl     *sqlclass.Class
		oids   []uint32
		fields []field
	)
	if ps != nil {
		s.mu.Lock()
		text, cl, oids, fields = ps.text, ps.class, ps.paramOIDs, ps.fields
		s.mu.Unlock()
		if ps.sql {
			text = "EXECUTE " + stmtNm
		}
	} else {
		cl = sqlclass.Unknown("no prepared statement " + quoteName(stmtNm) + " is known to interlock")
	}
	cl = s.resolve(cl)
	if !plain(cl) {
		// Everything before this segment must be answered: the
		// transaction's status is then known, and no earlier statement
		// can still change what this one means.
		if err := s.waitAll(); err != nil {
			return err
		}
		cl = s.resolve(cl)
	}
	var early []model.PGParam
	if len(cl.Signals) > 0 && b == nil {
		// A signal's pid may be a parameter: read them first (a copy of
		// the cursor, so that the message is read again below).
		pre := curBody
		early, _ = readValues(&pre, oids)
	}
	d := s.decideWith(text, cl, early)
	if portal != "" && d.allowed() {
		s.mu.Lock()
		_, known := s.portals.confirmed[portal]
		open := len(s.portals.confirmed) + len(s.portals.pending)
		s.mu.Unlock()
		if !known && open >= maxPortals {
			// Rows of a portal interlock does not track could not be
			// attributed to a judged statement.
			d = denied(rulePortal, fmt.Sprintf("the session has %d open portals, the most interlock tracks; close some first", open))
		}
	}
	allowed := d.Action == model.Allow || d.Action == model.Mask
	tx := s.txAtSegment()
	if allowed && s.segWrap && cl.TxControl() {
		d = denied(ruleParser, "interlock holds this segment's earlier statements in a transaction to read their effects before they commit; send BEGIN, COMMIT and ROLLBACK after a Sync, in a segment of their own")
		allowed = false
	}
	if allowed && cl.Commits() && tx == 'T' && s.commitNeedsGate() {
		// The COMMIT of a block that wrote: read the effects first.
		gd, gerr := s.gateInSegment()
		if gerr != nil {
			return gerr
		}
		if gd.Action != model.Allow {
			d, allowed = verdict{Decision: gd}, false
		} else {
			s.startCommitting()
		}
	}
	wrap := allowed && !cl.ReadOnly && tx == 'I' && wrappable(cl, text) && s.needGate(cl.Opaque)
	if wrap && cl.Kind == "copy_from" {
		// The server ignores Sync during COPY FROM STDIN: the BEGIN
		// interlock puts before Sync would come too early.
		d = denied(ruleParser, "COPY FROM STDIN in autocommit runs in a transaction interlock holds to read its effects, which the extended protocol's Sync cannot carry; send it as a simple query, or inside BEGIN ... COMMIT")
		allowed, wrap = false, false
	}
	if wrap && !s.segWrap {
		s.segWrap = true
		s.setHold()
		s.mu.Lock()
		s.tx.wrapped, s.tx.dirty = true, true
		s.mu.Unlock()
	}
	sc := scopeNow
	switch {
	case s.segWrap:
		sc = scopeWrap
	case tx == 'T':
		sc = scopeBlock
	}
	if allowed && b != nil {
		var pre []byte
		pre = header(pre, 'B', m.n)
		pre = append(append(append(append(pre, portal...), 0), stmtNm...), 0)
		if _, err := s.uw.Write(pre); err != nil {
			return err
		}
		b.dst, b.hold = s.uw, true
	}
	params, err := readValues(in, oids)
	if err != nil {
		return err
	}
	formats, err := readFormats(in)
	if err != nil {
		return err
	}
	if b != nil && b.left != 0 || b == nil && len(curBody.b) != 0 {
		return clientErr("Bind message has trailing data")
	}
	r, err := s.record(text, cl, d, "extended", stmtNm, portal, params, ps, sc)
	if err != nil {
		return err
	}
	if r.deny != nil {
		// Close the portal the Bind would have replaced, then make the
		// server fail so that it skips the rest until Sync.
		s.queue((&item{kind: iProbe, deny: r.deny}).only(r))
		if err := s.send(&pgproto3.Close{ObjectType: 'P', Name: portal}); err != nil {
			return err
		}
		return s.send(&pgproto3.Parse{Name: s.probe, Query: probeSQL})
	}
	if !plain(cl) {
		s.barrier = s.seg
		s.uncertain = s.seg
		f := pieceFacts{}
		f.add(cl, text)
		s.noteForwarded([]*run{r}, f, tx == 'T' || s.segWrap)
	}
	switch {
	case cl.Kind == "begin":
		s.segBegin, s.segEnd = true, false
	case cl.Ends():
		s.segBegin, s.segEnd = false, true
	}
	r.formats = formats
	r.fields = applyFormats(fields, formats)
	r.described = len(r.fields) > 0
	pend := &pendingName{seg: s.seg, run: r}
	s.mu.Lock()
	s.portals.add(portal, pend)
	s.mu.Unlock()
	s.queue((&item{kind: iBind, name: portal, pend: pend}).only(r))
	if b != nil {
		return b.release()
	}
	_, err = s.uw.Write(m.raw)
	return err
}

func quoteName(n string) string {
	if n == "" {
		return "(unnamed)"
	}
	return fmt.Sprintf("%q", n)
}

// applyFormats gives result columns the formats a Bind asked for: the
// same list when they have them already (a field list is never changed
// once made, so runs share it), else a copy.
func applyFormats(fields []field, formats []int16) []field {
	if len(fields) == 0 {
		return nil
	}
	same := true
	for i := range fields {
		same = same && fields[i].format == formatAt(formats, i)
	}
	if same {
		return fields
	}
	out := make([]field, len(fields))
	copy(out, fields)
	for i := range out {
		out[i].format = formatAt(formats, i)
	}
	return out
}

func (s *session) onDescribe(m msg) error {
	var d pgproto3.Describe
	if err := d.Decode(m.body); err != nil {
		return clientErr("%v", err)
	}
	switch d.ObjectType {
	case 'S':
		ps, err := s.statement(d.Name)
		if err != nil {
			return err
		}
		s.queue(&item{kind: iDescribeS, stmt: ps})
	case 'P':
		r, cursor, err := s.portal(d.Name)
		if err != nil {
			return err
		}
		if r != nil && !cursor {
			r.described = true
		}
		s.queue((&item{kind: iDescribeP}).only(r))
	default:
		return clientErr("Describe of unknown object type %q", printable(d.ObjectType))
	}
	return s.forward(m)
}

// portal resolves what an Execute or Describe names, waiting for the
// server as statement does.
func (s *session) portal(name string) (*run, bool, error) {
	var waited uint64
	for {
		s.mu.Lock()
		r, cursor, wait := s.lookupPortal(name, s.seg)
		s.mu.Unlock()
		if wait == 0 {
			return r, cursor, nil
		}
		if wait == waited {
			return nil, false, nil // as in statement
		}
		waited = wait
		if err := s.awaitName(wait); err != nil {
			return nil, false, err
		}
	}
}

func (s *session) onExecute(m msg) error {
	var e pgproto3.Execute
	if err := e.Decode(m.body); err != nil {
		return clientErr("%v", err)
	}
	r, cursor, err := s.portal(e.Portal)
	if err != nil {
		return err
	}
	if cursor {
		// A SQL cursor read through the protocol: the server runs its
		// DECLARE's query again from where it stands, and logs it as
		// that; so does the journal, judged again.
		cl := r.class
		d := s.decide(r.text, cl)
		nr, err := s.record(r.text, cl, d, "extended", "", e.Portal, nil, nil, scopeNow)
		if err != nil {
			return err
		}
		if nr.deny != nil {
			s.queue((&item{kind: iProbe, deny: nr.deny, closed: true}).only(nr))
			return s.send(&pgproto3.Parse{Name: s.probe, Query: probeSQL})
		}
		nr.flow = r.flow
		r = nr
	}
	if r == nil {
		// A portal interlock did not see bound (or whose Bind it saw
		// refused): its rows cannot be attributed to a judged statement.
		d := denied(rulePortal, fmt.Sprintf("portal %s was not bound by a statement interlock judged", quoteName(e.Portal)))
		cl := sqlclass.Unknown("execute of an unknown portal")
		rr, err := s.record("-- execute portal "+quoteName(e.Portal), cl, d, "extended", "", e.Portal, nil, nil, scopeNow)
		if err != nil {
			return err
		}
		s.queue((&item{kind: iProbe, deny: rr.deny, closed: true}).only(rr))
		return s.send(&pgproto3.Parse{Name: s.probe, Query: probeSQL})
	}
	if r.mask != nil && !r.described {
		// Rows to mask need their columns: ask the server to describe
		// them first, out of the client's sight.
		r.described = true
		s.queue(&item{kind: iHidden, hidden: &hidden{describes: r}})
		if err := s.send(&pgproto3.Describe{ObjectType: 'P', Name: e.Portal}); err != nil {
			return err
		}
	}
	s.queue((&item{kind: iExecute}).only(r))
	return s.forward(m)
}

func (s *session) onClose(m msg) error {
	var c pgproto3.Close
	if err := c.Decode(m.body); err != nil {
		return clientErr("%v", err)
	}
	pend := &pendingName{seg: s.seg}
	s.mu.Lock()
	switch c.ObjectType {
	case 'S':
		s.stmts.add(c.Name, pend)
	case 'P':
		s.portals.add(c.Name, pend)
	default:
		s.mu.Unlock()
		return clientErr("Close of unknown object type %q", printable(c.ObjectType))
	}
	s.mu.Unlock()
	s.queue(&item{kind: iClose, name: c.Name, pend: pend, closeKind: c.ObjectType})
	return s.forward(m)
}
