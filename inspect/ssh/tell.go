package ssh

import (
	"strings"
	"time"

	"github.com/interlock/interlock/model"
)

// decide asks policy about an operation of this channel: a review that
// holds it tells the client on the channel's stderr (tell).
func (s *sessionChan) decide(op model.Operation) model.Decision {
	return s.c.decideIn(s.tellCtx, op)
}

// tell writes what policy's review tells the client whose exec, shell,
// subsystem or sftp operation is held to the channel's stderr (extended
// data, which an ssh client prints as it arrives, whether or not the
// program started), and records it in the channel's stderr stream as the
// client saw it, so a replay shows it. The notice's fields come escaped
// from the broker; lines end in CRLF for a client whose terminal is raw.
func (s *sessionChan) tell(n model.ApprovalNotice) {
	var b strings.Builder
	b.WriteString(n.Message)
	b.WriteString("\r\n")
	for _, l := range []string{n.Detail, n.Hint} {
		if l != "" {
			b.WriteString("interlock:   ")
			b.WriteString(l)
			b.WriteString("\r\n")
		}
	}
	msg := []byte(b.String())
	s.io.post("e", msg)
	// The write waits for the client's channel window: a client that
	// does not read must not hold up the decision (the review's timeout
	// starts after the notice), so after tellWait the channel is closed,
	// which ends the write and the held operation with it.
	done := make(chan error, 1)
	go func() {
		_, err := s.cch.Stderr().Write(msg)
		done <- err
	}()
	t := time.NewTimer(tellWait)
	defer t.Stop()
	select {
	case err := <-done:
		if err != nil {
			s.c.log.Debug("could not tell the client of its held operation", "request", n.Request, "err", err)
		}
	case <-t.C:
		s.c.log.Warn("the client does not take the notice of its held operation; closing the channel", "request", n.Request, "channel", s.id)
		s.cch.Close()
	}
}

// tellWait bounds how long a notice may wait for the client.
const tellWait = 5 * time.Second
