package postgres

import (
	"bytes"
	"io"

	"github.com/jackc/pgx/v5/pgproto3"
)

// serverLoop handles what the server sends until it ends: each answer is
// matched to the item that asked for it, recorded, applied to the
// session's model, and forwarded (or handed to the client goroutine, for
// interlock's own messages). The client writer is flushed whenever no
// more input is waiting, so pipelined answers go out together and
// notifications go out at once while the client is idle; the pg.result
// entries of completed statements are posted right after that flush, off
// the client's critical path.
func (s *session) serverLoop() error {
	for {
		m, err := s.ur.next()
		if err != nil {
			return err
		}
		// Whatever this is, it may answer a statement whose record is
		// still being committed: nothing passes before it is.
		if err := s.awaitPending(); err != nil {
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

// toClient writes what the server answered to the client, or to the hold.
func (s *session) toClient(b []byte) error {
	s.cwMu.Lock()
	defer s.cwMu.Unlock()
	if s.hold && !s.heldOver {
		if len(s.held)+len(b) <= maxHeld {
			s.held = append(s.held, b...)
			return nil
		}
		// Too much to hold: let it through as it comes.
		s.heldOver = true
		if _, err := s.cw.Write(s.held); err != nil {
			return err
		}
		s.held = s.held[:0]
	}
	_, err := s.cw.Write(b)
	return err
}

// letHeldGo sends what the hold keeps and stops holding what follows.
func (s *session) letHeldGo() {
	s.cwMu.Lock()
	defer s.cwMu.Unlock()
	if s.hold && !s.heldOver {
		s.heldOver = true
		s.cw.Write(s.held)
		s.held = s.held[:0]
		s.cw.Flush()
	}
}

// toClientNow writes an asynchronous message past the hold: a
// notification or a setting belongs to no statement.
func (s *session) toClientNow(b []byte) error {
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
	case 'A':
		out, err := s.scrubNotification(m.raw, m.body)
		if err != nil {
			return err
		}
		return s.toClientNow(out)
	case 'S':
		var ps pgproto3.ParameterStatus
		if err := ps.Decode(m.body); err != nil {
			return serverErr("%v", err)
		}
		if err := s.paramStatus(ps.Name, ps.Value); err != nil {
			return err
		}
		out, err := s.scrubParameterStatus(m.raw, ps)
		if err != nil {
			return err
		}
		return s.toClientNow(out)
	case 'N':
		if it := s.q.first(); it != nil && it.kind == iHidden {
			return nil
		}
		out, err := s.scrubNotice(m.raw, m.body)
		if err != nil {
			return err
		}
		return s.toClient(out)
	case 'T':
		raw, body, err := s.scrubRowDescription(m.raw, m.body)
		if err != nil {
			return err
		}
		m.raw, m.body = raw, body
	case 'G', 'H', 'W':
		// The client must answer a COPY's start: what is held goes now,
		// and the rest of the answer streams (a denial at the gate then
		// follows it, as an error follows rows already sent).
		s.letHeldGo()
		if it := s.q.first(); m.typ == 'G' && it != nil && it.copyIn != nil {
			defer func() {
				select {
				case it.copyIn <- struct{}{}:
				default:
				}
			}()
		}
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
	case iHidden:
		return s.hiddenMsg(it, m)
	case iParse:
		if m.typ != '1' {
			return bad()
		}
		s.mu.Lock()
		s.stmts.confirmed[it.name] = it.pend.stmt
		s.stmts.settle(it.name, it.pend)
		s.mu.Unlock()
		s.q.pop()
	case iBind:
		if m.typ != '2' {
			return bad()
		}
		r := it.run()
		if r != nil {
			s.open[r] = struct{}{}
		}
		s.mu.Lock()
		s.portals.confirmed[it.name] = r
		s.portals.settle(it.name, it.pend)
		s.mu.Unlock()
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
				fs, err := s.fieldsOf(m.body)
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
				fs, err := s.fieldsOf(m.body)
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
			if err := s.complete(r, m.body); err != nil {
				return err
			}
			s.q.pop()
		case 'I':
			if err := s.complete(r, nil); err != nil {
				return err
			}
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
				fs, err := s.fieldsOf(m.body)
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
			if it.wrapped && (r == nil || r.done) {
				// The BEGIN interlock appended: not the client's.
				return nil
			}
			if err := s.complete(r, m.body); err != nil {
				return err
			}
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
		s.mu.Lock()
		if it.closeKind == 'S' {
			delete(s.stmts.confirmed, it.name)
			s.stmts.settle(it.name, it.pend)
		} else {
			delete(s.portals.confirmed, it.name)
			s.portals.settle(it.name, it.pend)
		}
		s.mu.Unlock()
		s.q.pop()
	case iFunc:
		if m.typ != 'V' {
			return bad()
		}
		if r := it.run(); r != nil {
			r.executed = true
			if err := s.complete(r, nil); err != nil {
				return err
			}
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

// hiddenMsg keeps what the server answered to one of interlock's own
// messages; none of it reaches the client.
func (s *session) hiddenMsg(it *item, m msg) error {
	h := it.hidden
	if h.describes != nil {
		switch m.typ {
		case 'T':
			fs, err := s.fieldsOf(m.body)
			if err != nil {
				return err
			}
			h.describes.fields = fs
		case 'n':
		default:
			return serverErr("unexpected message %q in answer to interlock's own Describe", printable(m.typ))
		}
		s.q.pop()
		h.finish()
		return nil
	}
	switch m.typ {
	case 'T', 'n', 't', 's':
	case 'D':
		var row pgproto3.DataRow
		if err := row.Decode(m.body); err != nil {
			return serverErr("%v", err)
		}
		vals := make([][]byte, len(row.Values))
		for i, v := range row.Values {
			if v != nil {
				vals[i] = append([]byte{}, v...)
			}
		}
		h.rows = append(h.rows, vals)
	case 'C', 'I':
		if m.typ == 'C' {
			var cc pgproto3.CommandComplete
			if err := cc.Decode(m.body); err != nil {
				return serverErr("%v", err)
			}
			h.tags = append(h.tags, string(cc.CommandTag))
		}
		if !h.query {
			if h.expect != 'C' {
				return serverErr("unexpected message %q in answer to interlock's own message", printable(m.typ))
			}
			s.q.pop()
			h.finish()
		}
	case '1', '2', '3':
		if h.query || m.typ != h.expect {
			return serverErr("unexpected message %q in answer to interlock's own message", printable(m.typ))
		}
		if h.prepares != nil {
			s.mu.Lock()
			*h.prepares = true
			s.mu.Unlock()
		}
		s.q.pop()
		h.finish()
	default:
		return serverErr("unexpected message %q in answer to interlock's own message", printable(m.typ))
	}
	return nil
}

func kindName(k itemKind) string {
	return [...]string{"Query", "Parse", "Bind", "Describe", "Describe", "Execute", "Close", "Sync", "FunctionCall", "a denied message", "interlock's own message"}[k]
}

// maxDescMemo bounds the RowDescription the server goroutine keeps to
// compare the next one with.
const maxDescMemo = 4 << 10

// fieldsOf decodes a RowDescription, reusing the fields of the previous
// one when the server sent the same bytes again: a client that describes
// its prepared statement at every execution (pgbench, pgx) gets the same
// description each time. The fields depend on nothing but the bytes, and
// a field list is never changed once made (runs and statements share it).
// Only the server goroutine calls it.
func (s *session) fieldsOf(body []byte) ([]field, error) {
	if s.descFields != nil && bytes.Equal(body, s.descBody) {
		return s.descFields, nil
	}
	fs, err := decodeFields(body)
	if err != nil {
		return nil, err
	}
	if len(body) <= maxDescMemo {
		s.descBody = append(s.descBody[:0], body...)
		s.descFields = fs
	}
	return fs, nil
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
