package ssh

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"sync"

	gossh "golang.org/x/crypto/ssh"

	"github.com/interlock/interlock/identity/argvredact"
	"github.com/interlock/interlock/internal/textview"
	"github.com/interlock/interlock/model"
)

// sessionChan is one session channel: a shell, an exec or a subsystem.
type sessionChan struct {
	c   *conn
	id  uint32
	cch gossh.Channel // the client's side
	uch gossh.Channel // the target's side

	started bool
	// pty says the client asked for a terminal: an exec is then judged
	// as a shell too (execjudge.go).
	pty bool
	// command is the exec command or subsystem name, for the records.
	command    string
	tunnelOnce sync.Once
	mask       *outputMask
	// io journals the channel's data (iorec.go).
	io *chanIO
	// counts are the channel's requests that carry no operation (types
	// interlock does not support), journaled in aggregate as a
	// connection's global ones are. Owned by the channel's request loop.
	counts requestCounts
	pumps  sync.WaitGroup
	// upReqsDone is closed when the target's side of the channel closed
	// and all its requests (exit-status ...) were passed on.
	upReqsDone chan struct{}

	// transferSpec is the masking the program's decision gives the files
	// it sends (sftp_mask.go, scp_mask.go).
	transferSpec *model.MaskSpec
	// tellCtx is the session's context carrying tell, for decide.
	tellCtx context.Context
}

// session relays a session channel: requests are judged and journaled one
// by one, data is recorded once a shell, exec or subsystem started.
func (c *conn) session(nc gossh.NewChannel) {
	id := c.nextChannel()
	uch, ureqs, err := c.up.conn.OpenChannel("session", nc.ExtraData())
	if err != nil {
		d := model.Decision{Action: model.Deny, Rule: "open-failed", Reason: "the target refused the channel: " + err.Error()}
		c.record(model.KindSSHChannel, model.SSHChannel{Channel: id, Type: "session", Decision: d}, model.Committed)
		nc.Reject(gossh.ConnectionFailed, "interlock: the target refused the session channel")
		return
	}
	cch, creqs, err := nc.Accept()
	if err != nil {
		uch.Close()
		return
	}
	c.record(model.KindSSHChannel, model.SSHChannel{Channel: id, Type: "session", Decision: allowed}, model.Committed)
	s := &sessionChan{c: c, id: id, cch: cch, uch: uch, upReqsDone: make(chan struct{}), io: newChanIO(c, id)}
	s.tellCtx = c.ctx
	if s.tellCtx != nil {
		s.tellCtx = model.WithTeller(s.tellCtx, s.tell)
	}
	go func() {
		defer c.recoverGoroutine()
		defer close(s.upReqsDone)
		s.upstreamRequests(ureqs)
	}()
	s.counts = requestCounts{}
	for req := range creqs {
		s.clientRequest(req)
		if s.counts.due(c.offset()) {
			c.flushCounts(s.counts)
		}
	}
	c.flushCounts(s.counts)
	// The client closed the channel (or the connection ended).
	uch.Close()
	s.pumps.Wait()
	s.io.close()
	<-s.upReqsDone
}

func (s *sessionChan) request(typ string) model.SSHRequest {
	return model.SSHRequest{Channel: s.id, Type: typ, OffsetNS: s.c.offset()}
}

// allowed is the default allow decision.
var allowed = model.Decision{Action: model.Allow, Rule: "default"}

func (s *sessionChan) clientRequest(req *gossh.Request) {
	c := s.c
	rec := s.request(req.Type)
	switch req.Type {
	case "pty-req":
		var m struct {
			Term                      string
			Cols, Rows, Width, Height uint32
			Modes                     string
		}
		if err := gossh.Unmarshal(req.Payload, &m); err != nil {
			s.malformed(req, rec)
			return
		}
		rec.Term, rec.Cols, rec.Rows, rec.Decision = m.Term, m.Cols, m.Rows, allowed
		// Set whether or not the target grants it: what the client
		// asked for is what it may get.
		s.pty = true
		c.record(model.KindSSHRequest, rec, model.Committed)
		s.forward(req)
	case "env":
		var m struct{ Name, Value string }
		if err := gossh.Unmarshal(req.Payload, &m); err != nil {
			s.malformed(req, rec)
			return
		}
		rec.Env, rec.Decision = m.Name+"="+m.Value, allowed
		if c.t.allowlist {
			if why := envProblem(m.Name, m.Value); why != "" {
				rec.Decision = model.Decision{Action: model.Deny, Rule: "exec-allowlist", Reason: why}
				c.record(model.KindSSHRequest, rec, model.Synced)
				req.Reply(false, nil)
				return
			}
		}
		c.record(model.KindSSHRequest, rec, model.Committed)
		s.forward(req)
	case "window-change":
		var m struct{ Cols, Rows, Width, Height uint32 }
		if err := gossh.Unmarshal(req.Payload, &m); err != nil {
			s.malformed(req, rec)
			return
		}
		// After the output drawn at the old size, in a replay too.
		s.io.flush()
		c.record(model.KindSSHResize, model.SSHResize{Channel: s.id, Cols: m.Cols, Rows: m.Rows, OffsetNS: rec.OffsetNS}, model.Committed)
		s.forward(req)
	case "signal":
		var m struct{ Name string }
		if err := gossh.Unmarshal(req.Payload, &m); err != nil {
			s.malformed(req, rec)
			return
		}
		rec.Signal, rec.Decision = m.Name, allowed
		s.io.flush()
		c.record(model.KindSSHRequest, rec, model.Committed)
		s.forward(req)
	case "shell", "exec", "subsystem":
		s.startProgram(req, rec)
	case "x11-req", "auth-agent-req@openssh.com":
		kind := "x11"
		if req.Type != "x11-req" {
			kind = "agent_forwarding"
		}
		rec.Decision = s.decide(model.Operation{Kind: kind, Text: req.Type})
		if err := c.record(model.KindSSHRequest, rec, durability(rec.Decision)); err != nil || !permits(rec.Decision) {
			req.Reply(false, nil)
			return
		}
		s.forward(req)
	default:
		// Refused and counted: a flood of made-up requests costs the
		// journal one entry per type and minute, not one per request.
		s.counts.add(rec, unknownRequest)
		req.Reply(false, nil)
	}
}

func (s *sessionChan) malformed(req *gossh.Request, rec model.SSHRequest) {
	rec.Decision = model.Decision{Action: model.Deny, Rule: "malformed", Reason: "the request's payload does not parse"}
	s.c.record(model.KindSSHRequest, rec, model.Committed)
	req.Reply(false, nil)
}

// forward passes a request on to the target and its answer back.
func (s *sessionChan) forward(req *gossh.Request) {
	ok, err := s.uch.SendRequest(req.Type, req.WantReply, req.Payload)
	if req.WantReply {
		req.Reply(ok && err == nil, nil)
	}
}

// startProgram judges a shell, exec or subsystem request. Its record is
// synced before the request reaches the target; a denied exec gets a
// message on stderr and exit status 126, a denied shell or subsystem a
// message and a refusal, and the target never sees either.
func (s *sessionChan) startProgram(req *gossh.Request, rec model.SSHRequest) {
	c := s.c
	op := model.Operation{Kind: req.Type}
	if req.Type != "shell" {
		var m struct{ Command string }
		if err := gossh.Unmarshal(req.Payload, &m); err != nil {
			s.malformed(req, rec)
			return
		}
		rec.Command, op.Text = m.Command, m.Command
		if req.Type == "subsystem" {
			op.Detail = m.Command
		}
	}
	if s.started {
		// Refused, and journaled with the command it carried: what a
		// session tried matters as much as what it ran.
		rec.Decision = model.Decision{Action: model.Deny, Rule: "already-started", Reason: "the channel already runs a program"}
		c.record(model.KindSSHRequest, rec, model.Synced)
		req.Reply(false, nil)
		return
	}
	// An sftp server started by exec is relayed as the subsystem is
	// (sftp_exec.go), after the exec rules allowed it.
	sftp := req.Type == "subsystem" && rec.Command == "sftp" || req.Type == "exec" && sftpServerCommand(rec.Command)
	rec.Decision = s.decide(op)
	if req.Type == "exec" && !sftp && permits(rec.Decision) {
		if why := s.shellReason(rec.Command); why != "" {
			rec.Decision = s.judgeAsShell(rec.Command, why, rec.Decision)
		}
	}
	s.command = rec.Command
	if permits(rec.Decision) && !sftp {
		m, err := newOutputMask(c.h.masker, rec.Decision.Mask)
		if err != nil {
			// Output that must be masked and cannot be: fail closed.
			rec.Decision = model.Decision{Action: model.Deny, Rule: "masking", Reason: err.Error()}
		}
		if m != nil {
			m.post = func(d model.MaskDecision) { c.postMask(s.id, d) }
			if c.h.maskRelease > 0 {
				m.delay = c.h.maskRelease
			}
		}
		s.mask = m
	}
	rec.Decision = s.transfers(req.Type, rec.Command, sftp, rec.Decision)
	if err := c.record(model.KindSSHRequest, rec, model.Synced); err != nil && permits(rec.Decision) {
		rec.Decision = model.Decision{Action: model.Deny, Rule: "journal", Reason: "the journal cannot record it"}
	}
	if !permits(rec.Decision) {
		s.refuse(req, rec)
		return
	}
	ok, err := s.uch.SendRequest(req.Type, true, req.Payload)
	if err != nil || !ok {
		req.Reply(false, nil)
		return
	}
	s.started = true
	s.startPumps(sftp, !sftp && !c.t.tunnelsAllowed)
	req.Reply(true, nil)
}

func (s *sessionChan) refuse(req *gossh.Request, rec model.SSHRequest) {
	what := "shell"
	if rec.Command != "" {
		// The message is journaled as the client's stderr: the command
		// in it redacted, as in the ssh.request.
		red, _ := argvredact.Line(rec.Command)
		what = strconv.Quote(red)
	}
	why := rec.Decision.Reason
	if rec.Decision.Request != "" {
		why += " (approval request " + rec.Decision.Request + ")"
	}
	// The reason may hold an approver's words: escaped, as the command is.
	msg := fmt.Sprintf("interlock: %s refused by policy (%s): %s\r\n", what, textview.Escape(rec.Decision.Rule), textview.Escape(why))
	if req.Type == "exec" {
		// The client sees the command start and fail with status 126,
		// as a shell reports a command it cannot execute.
		req.Reply(true, nil)
	}
	// Recorded as what the client saw, so a replay shows the refusal.
	s.io.post("e", []byte(msg))
	s.cch.Stderr().Write([]byte(msg))
	if req.Type != "exec" {
		req.Reply(false, nil)
	}
	status := 126
	s.c.record(model.KindSSHExit, model.SSHExit{Channel: s.id, ExitStatus: &status, OffsetNS: s.c.offset()}, model.Committed)
	s.cch.SendRequest("exit-status", false, gossh.Marshal(struct{ Status uint32 }{uint32(status)}))
	s.cch.CloseWrite()
	s.cch.Close()
	s.uch.Close()
}

// startPumps relays and records the channel's data. sftp is parsed into
// operations instead of being recorded byte for byte; the other data is
// scanned for tunnels (tunnel.go) when scan is set.
func (s *sessionChan) startPumps(sftp, scan bool) {
	s.pumps.Add(3)
	outputs := make(chan struct{}, 2)
	if sftp {
		f := newSFTPRelay(s)
		go s.run(func() { f.clientToTarget() })
		go s.run(func() { f.targetToClient(); outputs <- struct{}{} })
	} else {
		go s.run(func() { s.pump(s.uch, s.cch, "i", true, scanner(scan, true)) })
		go s.run(func() { s.pump(s.cch, s.uch, "o", false, scanner(scan, false)); outputs <- struct{}{} })
	}
	go s.run(func() {
		s.pump(s.cch.Stderr(), s.uch.Stderr(), "e", false, scanner(scan, false))
		outputs <- struct{}{}
	})
	go func() {
		defer s.c.recoverGoroutine()
		<-outputs
		<-outputs
		s.mask.finish()
		s.cch.CloseWrite()
		<-s.upReqsDone
		s.cch.Close()
	}()
}

func (s *sessionChan) run(f func()) {
	defer s.pumps.Done()
	defer s.c.recoverGoroutine()
	f()
}

// pump copies src to dst, recording what it reads (iorec.go). up is the
// client-to-target direction: at its end the target's side gets EOF. A
// chunk in which tun finds a tunnel is recorded, not passed on, and ends
// the channel.
func (s *sessionChan) pump(dst io.Writer, src io.Reader, stream string, up bool, tun *tunnelScan) {
	if !up && s.mask != nil {
		s.pumpMasked(dst, src, stream, tun)
		return
	}
	rec := s.io.stream(stream)
	for {
		buf := rec.next()
		n, err := src.Read(buf)
		if n > 0 {
			rec.add(n)
			var pass io.Writer
			if !up {
				pass = dst
			}
			if s.tunnelIn(tun, buf[:n], stream, pass) {
				break
			}
			if up {
				s.c.bytesUp.Add(int64(n))
			} else {
				s.c.bytesDown.Add(int64(n))
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	// What the stream ended with goes before the channel's exit.
	s.io.flush()
	if up {
		s.uch.CloseWrite()
	}
}

// pumpMasked copies an output stream of a masked channel: the recorded
// copy is masked, and what the client sees too when the rules say live.
// Bytes that may begin a secret are held back a little (see outputMask);
// the stream's end releases them.
func (s *sessionChan) pumpMasked(dst io.Writer, src io.Reader, stream string, tun *tunnelScan) {
	mo := s.mask.stream(
		func(p []byte) error { _, err := dst.Write(p); return err },
		func(p []byte) { s.io.post(stream, p) },
		s.c.recoverGoroutine,
	)
	buf := make([]byte, ioBufSize)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			s.c.bytesDown.Add(int64(n))
			// Masked output is held back by the mask, so what comes
			// ahead of a tunnel in the same read is not passed on.
			if s.tunnelIn(tun, buf[:n], stream, nil) {
				// The chunk is recorded (masked) for the evidence; the
				// channel is closed, so nothing more reaches the client.
				mo.write(buf[:n])
				break
			}
			if mo.write(buf[:n]) != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	// Not deferred: after a panic (which ends the session) nothing more
	// is released.
	mo.close()
}

// upstreamRequests passes the target's channel requests on to the client,
// journaling exit statuses and signals.
func (s *sessionChan) upstreamRequests(reqs <-chan *gossh.Request) {
	for req := range reqs {
		switch req.Type {
		case "exit-status":
			var m struct{ Status uint32 }
			// After the output: the status ends the channel's story.
			s.io.flush()
			if gossh.Unmarshal(req.Payload, &m) == nil {
				st := int(m.Status)
				s.c.record(model.KindSSHExit, model.SSHExit{Channel: s.id, ExitStatus: &st, OffsetNS: s.c.offset()}, model.Committed)
			}
			s.cch.SendRequest(req.Type, false, req.Payload)
		case "exit-signal":
			var m struct {
				Signal     string
				CoreDumped bool
				Msg, Lang  string
			}
			s.io.flush()
			if gossh.Unmarshal(req.Payload, &m) == nil {
				s.c.record(model.KindSSHExit, model.SSHExit{Channel: s.id, ExitSignal: m.Signal, OffsetNS: s.c.offset()}, model.Committed)
			}
			s.cch.SendRequest(req.Type, false, req.Payload)
		case "eow@openssh.com":
			s.cch.SendRequest(req.Type, false, req.Payload)
		default:
			if req.WantReply {
				req.Reply(false, nil)
			}
		}
	}
}
