package postgres

import (
	"context"
	"fmt"
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
// The review waits for it: its timeout starts after the notice. A client
// that does not read can keep cwMu taken (the server goroutine blocked
// writing it an earlier answer) or the write itself waiting; after
// tellWait its connection is closed, which ends the session and, with it,
// the review (a write cut short would leave the client mid-message).
func (s *session) tellClient(n model.ApprovalNotice) {
	msg := &pgproto3.NoticeResponse{Severity: "NOTICE", SeverityUnlocalized: "NOTICE", Code: "00000",
		Message: n.Message, Detail: n.Detail, Hint: n.Hint}
	b, err := msg.Encode(nil)
	if err != nil {
		return
	}
	done := make(chan error, 1)
	go func() { done <- s.writeNotice(b) }()
	t := time.NewTimer(tellWait)
	defer t.Stop()
	select {
	case err = <-done:
	case <-t.C:
		err = fmt.Errorf("the client took nothing for %s", tellWait)
	}
	if err != nil {
		s.log.Warn("could not tell the client of its held statement; ending the session", "request", n.Request, "err", err)
		s.client.Close()
	}
}

func (s *session) writeNotice(b []byte) error {
	s.cwMu.Lock()
	defer s.cwMu.Unlock()
	s.client.SetWriteDeadline(time.Now().Add(tellWait))
	defer s.client.SetWriteDeadline(time.Time{})
	if _, err := s.cw.Write(b); err != nil {
		return err
	}
	return s.cw.Flush()
}

// decisionCtx is the context policy decides under (decideCtx; ctx in
// tests that build a session without serve).
func (s *session) decisionCtx() context.Context {
	if s.decideCtx != nil {
		return s.decideCtx
	}
	return s.ctx
}
