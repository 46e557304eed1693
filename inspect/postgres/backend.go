package postgres

import (
	"io"

	"github.com/jackc/pgx/v5/pgproto3"
)

// serverLoop handles what the server sends until it ends: each answer is
// matched to the item that asked for it, recorded, and forwarded. The
// client writer is flushed whenever no more input is waiting, so pipelined
// answers go out together and notifications go out at once while the
// client is idle; the pg.result entries of completed statements are posted
// right after that flush, off the client's critical path.
func (s *session) serverLoop() error {
	for {
		m, err := s.ur.next()
		if err != nil {
			return err
		}
		if m.stream {
			s.bytesDown.Add(int64(m.n) + 5)
			err = s.serverStream(m)
		} else {
			s.bytesDown.Add(int64(len(m.raw)))
			err = s.serverMsg(m)
		}
		if err != nil {
			return err
		}
		if s.ur.buffered() == 0 {
			s.cwMu.Lock()
			err := s.cw.Flush()
			s.cwMu.Unlock()
			if err != nil {
				return err
			}
			s.postResults()
		}
	}
}

func (s *session) toClient(b []byte) error {
	s.cwMu.Lock()
	_, err := s.cw.Write(b)
	s.cwMu.Unlock()
	return err
}

func (s *session) postResults() {
	for i, r := range s.results {
		s.h.journal.Post(r)
		s.results[i] = recordZero
	}
	s.results = s.results[:0]
}

func (s *session) serverMsg(m msg) error {
	switch m.typ {
	case 'N', 'A':
		return s.toClient(m.raw)
	case 'S':
		var ps pgproto3.ParameterStatus
		if err := ps.Decode(m.body); err != nil {
			return serverErr("%v", err)
		}
		s.paramStatus(ps.Name, ps.Value)
		return s.toClient(m.raw)
	case 'E':
		return s.onError(m)
	case 'Z':
		return s.onReady(m)
	}
	it := s.q.first()
	if it == nil {
		return serverErr("unexpected message %q with nothing outstanding", printable(m.typ))
	}
	bad := func() error {
		return serverErr("unexpected message %q in answer to %s", printable(m.typ), kindName(it.kind))
	}
	switch it.kind {
	case iParse:
		if m.typ != '1' {
			return bad()
		}
		s.q.pop()
	case iBind:
		if m.typ != '2' {
			return bad()
		}
		if r := it.run(); r != nil {
			s.open[r] = struct{}{}
		}
		s.q.pop()
	case iDescribeS:
		switch m.typ {
		case 't':
			var pd pgproto3.ParameterDescription
			if err := pd.Decode(m.body); err != nil {
				return serverErr("%v", err)
			}
			if it.stmt != nil {
				s.mu.Lock()
				it.stmt.paramOIDs = pd.ParameterOIDs
				s.mu.Unlock()
			}
		case 'T', 'n':
			if m.typ == 'T' && it.stmt != nil {
				fs, err := decodeFields(m.body)
				if err != nil {
					return err
				}
				s.mu.Lock()
				it.stmt.fields = fs
				s.mu.Unlock()
			}
			s.q.pop()
		default:
			return bad()
		}
	case iDescribeP:
		switch m.typ {
		case 'T':
			if r := it.run(); r != nil {
				fs, err := decodeFields(m.body)
				if err != nil {
					return err
				}
				r.fields = fs
			}
			s.q.pop()
		case 'n':
			s.q.pop()
		default:
			return bad()
		}
	case iExecute:
		r := it.run()
		if r != nil && !r.executed {
			r.executed = true
			s.open[r] = struct{}{}
		}
		switch m.typ {
		case 'D':
			if r != nil {
				return s.dataRow(r, m.raw, m.body)
			}
		case 'C':
			s.complete(r, m.body)
			s.q.pop()
		case 'I':
			s.complete(r, nil)
			s.q.pop()
		case 's':
			s.q.pop()
		case 'G', 'H', 'c':
		case 'd':
			if r != nil {
				s.copyRow(r, m.body)
			}
		default:
			return bad()
		}
	case iQuery:
		r := it.run()
		if r != nil {
			r.executed = true
		}
		switch m.typ {
		case 'T':
			if r != nil {
				fs, err := decodeFields(m.body)
				if err != nil {
					return err
				}
				r.fields = fs
			}
		case 'D':
			if r != nil {
				return s.dataRow(r, m.raw, m.body)
			}
		case 'C':
			s.complete(r, m.body)
			if it.idx < len(it.runs)-1 {
				it.idx++
			}
		case 'I', 'G', 'H', 'c':
		case 'd':
			if r != nil {
				s.copyRow(r, m.body)
			}
		default:
			return bad()
		}
	case iClose:
		if m.typ != '3' {
			return bad()
		}
		s.q.pop()
	case iFunc:
		if m.typ != 'V' {
			return bad()
		}
		if r := it.run(); r != nil {
			r.executed = true
			s.complete(r, nil)
		}
	case iProbe:
		// The Close in front of the probe is interlock's own: its answer
		// does not go to the client.
		if m.typ == '3' && !it.closed {
			it.closed = true
			return nil
		}
		s.log.Error("the server did not refuse interlock's probe for a denied statement; closing the session")
		return serverErr("unexpected answer %q to a denied statement's probe", printable(m.typ))
	default:
		return bad()
	}
	return s.toClient(m.raw)
}

func kindName(k itemKind) string {
	return [...]string{"Query", "Parse", "Bind", "Describe", "Describe", "Execute", "Close", "Sync", "FunctionCall", "a denied Bind"}[k]
}

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
	it := s.q.first()
	switch {
	case it == nil, it.kind == iSync:
		// An error outside any statement (a FATAL shutdown), or at the
		// end of an implicit transaction.
	case it.kind == iQuery || it.kind == iFunc:
		if r := it.run(); r != nil {
			if r.deny != nil {
				substitute(r.deny)
				r.done = true
			} else {
				s.fail(r, &e)
			}
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
		case iParse:
			s.mu.Lock()
			if s.stmts[it.name] == it.stmt {
				if it.prev != nil && it.name != "" {
					s.stmts[it.name] = it.prev
				} else {
					delete(s.stmts, it.name)
				}
			}
			s.mu.Unlock()
		}
		for _, sk := range s.q.skipToSync() {
			for _, r := range sk.runs {
				if r != nil && !r.done && r.deny == nil && (sk.kind == iBind || sk.kind == iQuery || sk.kind == iFunc) {
					s.notRun(r, "not run: an earlier message of the pipeline failed")
				}
			}
		}
	}
	return s.toClient(out)
}

// onReady ends a Query, FunctionCall or Sync. When the server is idle
// outside a transaction block, every portal is gone: their runs end.
func (s *session) onReady(m msg) error {
	var z pgproto3.ReadyForQuery
	if err := z.Decode(m.body); err != nil {
		return serverErr("%v", err)
	}
	it := s.q.first()
	if it == nil {
		return serverErr("ReadyForQuery with nothing outstanding")
	}
	switch it.kind {
	case iSync, iQuery, iFunc:
		// The status first: the client goroutine reads it once the item
		// is gone.
		s.txStatus.Store(uint32(z.TxStatus))
		s.q.pop()
	default:
		return serverErr("ReadyForQuery in answer to %s", kindName(it.kind))
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
	return s.toClient(m.raw)
}

// paramStatus follows the settings that change how statements read.
func (s *session) paramStatus(name, value string) {
	switch name {
	case "standard_conforming_strings":
		s.scsOff.Store(value != "on")
	case "client_encoding":
		s.badEncoding.Store(unsafeEncoding(value))
	}
}

func decodeFields(body []byte) ([]field, error) {
	var rd pgproto3.RowDescription
	if err := rd.Decode(body); err != nil {
		return nil, serverErr("%v", err)
	}
	out := make([]field, len(rd.Fields))
	for i, f := range rd.Fields {
		out[i] = field{name: string(f.Name), oid: f.DataTypeOID, format: f.Format, table: f.TableOID, attnum: int16(f.TableAttributeNumber)}
	}
	return out, nil
}

// serverStream forwards a large DataRow, CopyData or FunctionCallResponse
// as it arrives, recording at most the first bytes of each value.
func (s *session) serverStream(m msg) error {
	var r *run
	if it := s.q.first(); it != nil && (it.kind == iQuery || it.kind == iExecute || it.kind == iFunc) {
		r = it.run()
	}
	if m.typ == 'D' && r != nil && r.mask != nil {
		// A row to mask is masked whole: read it (bounded), then as any
		// other row.
		if m.n > maxMaskedRow {
			return serverErr("a %d-byte row of a masked result is larger than interlock masks (%d); refusing to send it unmasked", m.n, maxMaskedRow)
		}
		raw := make([]byte, 5+m.n)
		header(raw[:0], m.typ, m.n)
		if _, err := io.ReadFull(s.ur.br, raw[5:]); err != nil {
			return serverErr("truncated message")
		}
		r.executed = true
		return s.dataRow(r, raw, raw[5:])
	}
	s.cwMu.Lock()
	defer s.cwMu.Unlock()
	var hdr [5]byte
	if _, err := s.cw.Write(header(hdr[:0], m.typ, m.n)); err != nil {
		return err
	}
	b := &body{src: s.ur.br, dst: s.cw, left: m.n, side: "server"}
	var err error
	switch {
	case m.typ == 'D' && r != nil:
		r.executed = true
		err = s.streamRow(r, b)
	case m.typ == 'V' && r != nil:
		r.executed = true
		s.complete(r, nil)
		err = b.rest()
	default:
		if m.typ == 'd' && r != nil {
			r.rows++
		}
		err = b.rest()
	}
	if err != nil {
		return err
	}
	if b.werr != nil {
		return b.werr
	}
	if b.left != 0 {
		return serverErr("message has trailing data")
	}
	return nil
}
