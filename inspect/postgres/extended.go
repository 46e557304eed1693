package postgres

import (
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/interlock/interlock/model"
)

// The extended query protocol: Parse, Bind, Describe, Execute, Close, and
// the fastpath FunctionCall.

// merged judges a Parse's text as one statement (a prepared statement
// holds one; the server refuses more).
func merged(p *parsed) *class {
	switch len(p.stmts) {
	case 0:
		return &class{kind: "empty", kinds: []string{"empty"}, readOnly: true}
	case 1:
		return p.stmts[0].class
	}
	out := &class{kind: p.stmts[0].kind, readOnly: true}
	seen := map[string]bool{}
	for _, st := range p.stmts {
		for _, k := range st.kinds {
			if !seen["k:"+k] {
				seen["k:"+k] = true
				out.kinds = append(out.kinds, k)
			}
		}
		for _, t := range st.tables {
			if !seen["t:"+t] {
				seen["t:"+t] = true
				out.tables = append(out.tables, t)
			}
		}
		out.readOnly = out.readOnly && st.readOnly
		out.noWhere = out.noWhere || st.noWhere
	}
	return out
}

func (s *session) onParse(m msg) error {
	var p pgproto3.Parse
	if err := p.Decode(m.body); err != nil {
		return clientErr("%v", err)
	}
	ps := &prepared{text: p.Query, class: merged(s.h.cls.parse(p.Query)), paramOIDs: p.ParameterOIDs}
	s.mu.Lock()
	prev := s.stmts[p.Name]
	s.stmts[p.Name] = ps
	s.mu.Unlock()
	s.queue(&item{kind: iParse, stmt: ps, prev: prev, name: p.Name})
	return s.forward(m)
}

// statement returns what a Bind or Describe names: a protocol-level
// prepared statement, or one made by SQL PREPARE.
func (s *session) statement(name string) (text string, cl *class, oids []uint32, fields []field) {
	s.mu.Lock()
	ps := s.stmts[name]
	if ps != nil {
		text, cl, oids, fields = ps.text, ps.class, ps.paramOIDs, ps.fields
	}
	s.mu.Unlock()
	if ps != nil {
		return
	}
	if inner := s.sqlPrepared[strings.ToLower(name)]; inner != nil {
		return "EXECUTE " + name, inner, nil, nil
	}
	return "", unknownClass("no such prepared statement: " + name), nil, nil
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

// readValues parses format codes and values (Bind, FunctionCall) and
// renders the values for the journal.
func readValues(in src, oids []uint32) ([]model.PGParam, error) {
	fmts, err := readFormats(in)
	if err != nil {
		return nil, err
	}
	np, err := in.int16()
	if err != nil {
		return nil, err
	}
	if np < 0 {
		return nil, clientErr("negative parameter count")
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
	n, err := in.int16()
	if err != nil {
		return nil, err
	}
	if n < 0 {
		return nil, clientErr("negative format count")
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
	text, cl, oids, fields := s.statement(stmtNm)
	cl = s.resolve(cl)
	d := s.decide(text, cl)
	if (d.Action == model.Allow || d.Action == model.Mask) && b != nil {
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
	r, err := s.record(text, cl, d, "extended", stmtNm, portal, params)
	if err != nil {
		return err
	}
	if r.deny != nil {
		// Close the portal the Bind would have replaced, then make the
		// server fail so that it skips the rest until Sync.
		delete(s.portals, portal)
		s.queue(&item{kind: iProbe, runs: []*run{r}, deny: r.deny})
		if err := s.send(&pgproto3.Close{ObjectType: 'P', Name: portal}); err != nil {
			return err
		}
		return s.send(&pgproto3.Parse{Name: s.probe, Query: probeSQL})
	}
	r.formats = formats
	r.fields = applyFormats(fields, formats)
	s.trackPrepare(cl)
	if len(s.portals) >= maxPortals {
		// The server drops portals at each transaction's end; a client
		// that names a new one every time must not grow this map
		// forever. Forgetting a portal only loses the match of a later
		// Execute to its run; the run's pg.result still comes at the
		// transaction's end.
		clear(s.portals)
	}
	s.portals[portal] = r
	s.queue(&item{kind: iBind, runs: []*run{r}})
	if b != nil {
		return b.release()
	}
	_, err = s.uw.Write(m.raw)
	return err
}

// applyFormats gives result columns the formats a Bind asked for.
func applyFormats(fields []field, formats []int16) []field {
	if len(fields) == 0 {
		return nil
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
		s.mu.Lock()
		ps := s.stmts[d.Name]
		s.mu.Unlock()
		s.queue(&item{kind: iDescribeS, stmt: ps})
	case 'P':
		s.queue(&item{kind: iDescribeP, runs: []*run{s.portals[d.Name]}})
	default:
		return clientErr("Describe of unknown object type %q", printable(d.ObjectType))
	}
	return s.forward(m)
}

func (s *session) onExecute(m msg) error {
	var e pgproto3.Execute
	if err := e.Decode(m.body); err != nil {
		return clientErr("%v", err)
	}
	s.queue(&item{kind: iExecute, runs: []*run{s.portals[e.Portal]}})
	return s.forward(m)
}

func (s *session) onClose(m msg) error {
	var c pgproto3.Close
	if err := c.Decode(m.body); err != nil {
		return clientErr("%v", err)
	}
	switch c.ObjectType {
	case 'S':
		s.mu.Lock()
		delete(s.stmts, c.Name)
		s.mu.Unlock()
	case 'P':
		delete(s.portals, c.Name)
	default:
		return clientErr("Close of unknown object type %q", printable(c.ObjectType))
	}
	s.queue(&item{kind: iClose})
	return s.forward(m)
}

// onFunctionCall handles the fastpath FunctionCall (libpq's large object
// functions use it): it runs a function by OID, so it is judged and
// journaled like a statement that may write.
func (s *session) onFunctionCall(m msg) error {
	var (
		in  src
		b   *body
		cur cursor
	)
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
	cl := &class{kind: "function_call", kinds: []string{"function_call"}}
	d := s.decide(text, cl)
	if d.Action == model.Allow && b != nil {
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
	r, err := s.record(text, cl, d, "fastpath", "", "", params)
	if err != nil {
		return err
	}
	s.queue(&item{kind: iFunc, runs: []*run{r}})
	if r.deny != nil {
		// A failing query answers like a failed function call: an error,
		// then ReadyForQuery.
		return s.send(&pgproto3.Query{String: probeSQL})
	}
	if b != nil {
		return b.release()
	}
	_, err = s.uw.Write(m.raw)
	return err
}
