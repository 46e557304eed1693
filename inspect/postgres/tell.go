package postgres

import (
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/interlock/interlock/model"
)

// tellWait bounds how long a notice may wait for a client that does not
// read: the decision must not wait on the client.
const tellWait = 5 * time.Second

// tellClient sends the client whose statement is held what policy's
// review tells it, as a NoticeResponse: the protocol lets the server send
// one at any time, between any two messages, so it goes ahead of the
// answers the session holds back, never inside one (what goes to the
// client is written a whole message at a time under cwMu). The notice's
// fields come escaped from the broker.
//
// A client that does not take it within tellWait has its session ended:
// a write cut short leaves the client's stream mid-message.
func (s *session) tellClient(n model.ApprovalNotice) {
	msg := &pgproto3.NoticeResponse{Severity: "NOTICE", SeverityUnlocalized: "NOTICE", Code: "00000",
		Message: n.Message, Detail: n.Detail, Hint: n.Hint}
	b, err := msg.Encode(nil)
	if err != nil {
		return
	}
	s.cwMu.Lock()
	defer s.cwMu.Unlock()
	s.client.SetWriteDeadline(time.Now().Add(tellWait))
	defer s.client.SetWriteDeadline(time.Time{})
	if _, err := s.cw.Write(b); err == nil {
		err = s.cw.Flush()
	}
	if err != nil {
		s.log.Warn("could not tell the client of its held statement; ending the session", "request", n.Request, "err", err)
		s.client.Close()
	}
}
