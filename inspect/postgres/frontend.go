package postgres

import (
	"io"

	"github.com/jackc/pgx/v5/pgproto3"
)

const (
	maxName    = 64 << 10
	maxPortals = 4096
)

// clientLoop handles what the client sends until it ends.
func (s *session) clientLoop() error {
	for {
		if !s.cr.whole() {
			// About to wait for the client, perhaps behind half a
			// message it never finishes: what was forwarded must not
			// wait with it for its records.
			s.commitStarted()
		}
		s.idle.waiting(s.cr.buffered())
		m, err := s.cr.next()
		s.idle.busy()
		if err != nil {
			return err
		}
		if m.stream {
			s.bytesUp.Add(int64(m.n) + 5)
		} else {
			s.bytesUp.Add(int64(len(m.raw)))
		}
		switch m.typ {
		case 'Q':
			err = s.onQuery(m)
		case 'P':
			err = s.onParse(m)
		case 'B':
			err = s.onBind(m)
		case 'D':
			err = s.onDescribe(m)
		case 'E':
			err = s.onExecute(m)
		case 'C':
			err = s.onClose(m)
		case 'S':
			err = s.onSync(m)
		case 'H':
			if s.segWrap {
				// The client waits for what it sent so far before its
				// Sync: the answer cannot wait for the gate (a denial
				// then follows it).
				s.letHeldGo()
			}
			if err = s.forward(m); err == nil {
				err = s.uw.Flush()
			}
		case 'd', 'c', 'f':
			err = s.forward(m)
		case 'F':
			err = s.onFunctionCall(m)
		case 'X':
			s.forward(m)
			s.uw.Flush()
			return errTerminate
		default:
			return clientErr("unexpected message type %q", printable(m.typ))
		}
		if err != nil {
			return err
		}
		if s.cr.buffered() == 0 {
			if err := s.uw.Flush(); err != nil {
				return err
			}
		}
	}
}

// forward passes a message on unchanged (streaming it when it is large).
func (s *session) forward(m msg) error {
	if !m.stream {
		_, err := s.uw.Write(m.raw)
		return err
	}
	var hdr [5]byte
	if _, err := s.uw.Write(header(hdr[:0], m.typ, m.n)); err != nil {
		return err
	}
	n, err := io.CopyN(s.uw, s.cr.br, int64(m.n))
	if err != nil && n < int64(m.n) {
		return clientErr("truncated message")
	}
	return err
}

func (s *session) send(msg pgproto3.FrontendMessage) error {
	b, err := msg.Encode(nil)
	if err != nil {
		return err
	}
	_, err = s.uw.Write(b)
	return err
}
