package export

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/interlock/interlock/journal/evidence"
	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/sessionview"
)

// What each session did, for summary.html: one row per operation (a SQL
// statement, an exec, a shell, a subsystem, an sftp operation, a refused
// request or channel), completed by the entries that follow it (the
// statement's result and masking, the channel's exit, bytes and
// masking), and the files the session transferred. Kubernetes requests
// are in summary_k8s.go.
//
// The action shown is the one the operation got, read from its decision
// and from what masking recorded: policy decides mask for every operation
// a mask rule covers (the rule may mask what it returns), so a decision of
// mask alone does not say anything was masked. An operation is shown as
// mask only when a pg.mask or ssh.mask entry says values were; otherwise
// allow. One that an approver released or refused says so.

// opRow is one operation of a session.
type opRow struct {
	Seq        uint64
	Time, Kind string
	What       string // the client's text, escaped when rendered
	// Esc: What and Result are escaped already (a kubernetes request's,
	// by sessionview, with its names quoted).
	Esc          bool
	Rule, Reason string
	d            model.Decision
	Result       []string
	Masked       int
	MaskNotes    []string
	up, down     int64
	channel      uint32
	scp          *transferRow // an scp exec's transfer, sized by its channel's bytes
}

// transferRow is one file a session sent or received. Op is the
// operation whose decision let it through (an sftp open, an scp exec).
type transferRow struct {
	Seq                  uint64
	Time, How, Direction string
	Path                 string
	Bytes                int64
	Note                 string
	Op                   *opRow
}

// Action is the operation's action as it happened: allow, deny, mask,
// or review: approved / review: denied (with mask when an approved
// operation's output was masked).
func (o *opRow) Action() string {
	d := o.d
	allowed := d.Action == model.Allow || d.Action == model.Mask
	var a string
	switch {
	case d.Request != "" && allowed:
		a = "review: approved"
	case d.Request != "":
		a = "review: denied"
	case d.Grant != "" && allowed:
		a = "review: approved (grant)"
	case allowed:
		a = "allow"
	default:
		a = string(d.Action)
	}
	if allowed && o.Masked > 0 {
		if a == "allow" {
			return "mask"
		}
		return a + ", mask"
	}
	return a
}

// Covered names the mask rules of an operation that was allowed under
// mask rules but had nothing masked ("" otherwise): the decision says
// mask, what happened is allow.
func (o *opRow) Covered() string {
	if o.Masked > 0 || o.d.Mask == nil || (o.d.Action != model.Mask && o.d.Action != model.Allow) {
		return ""
	}
	var names []string
	for _, r := range o.d.Mask.Rules {
		names = append(names, r.Rule)
	}
	return strings.Join(names, ", ")
}

// ActionKind is the action's class in the page: deny, review, mask or
// allow.
func (o *opRow) ActionKind() string { return actionKind(o.Action()) }

func actionKind(a string) string {
	switch {
	case a == "deny" || a == "review: denied" || a == "timeout":
		return "deny"
	case strings.HasPrefix(a, "review"):
		return "review"
	case a == "mask":
		return "mask"
	case a == "allow":
		return "allow"
	}
	return "other"
}

// activity is what summary.add keeps of each session's operations.
type activity struct {
	rows    int // operations kept, all sessions
	dropped int
	bySeq   map[uint64]*opRow
	// program is the latest exec, shell or subsystem of each channel,
	// which its exit, bytes and masking complete.
	program map[string]*opRow
	// byRequest names the operation each approval request held.
	byRequest map[string]uint64
	// opened is the latest sftp open of each session's path, which the
	// file's close and masking complete.
	opened map[string]*opRow
	// k8sReq is each kubernetes request's row, by session and the
	// request's k8s seq, which its response and streams complete.
	k8sReq map[string]*opRow
}

func chanKey(session string, ch uint32) string {
	return session + "\x00" + strconv.FormatUint(uint64(ch), 10)
}

// addOp keeps an operation row in its session, up to maxRows in all.
func (s *summary) addOp(r *sessionRow, o *opRow) {
	a := &s.act
	if a.bySeq == nil {
		a.bySeq, a.program, a.byRequest, a.opened = map[uint64]*opRow{}, map[string]*opRow{}, map[string]uint64{}, map[string]*opRow{}
	}
	r.OpCount++
	if a.rows >= maxRows {
		a.dropped++
		return
	}
	a.rows++
	r.Ops = append(r.Ops, o)
	a.bySeq[o.Seq] = o
	if o.d.Request != "" {
		a.byRequest[o.d.Request] = o.Seq
	}
}

// activityEntry takes the entries that are operations or complete one.
func (s *summary) activityEntry(seq uint64, p evidence.Body, ev eventRow) {
	op := func(kind, what string, d model.Decision) *opRow {
		return &opRow{Seq: seq, Time: ev.Time, Kind: kind, What: what, Rule: d.Rule, Reason: d.Reason, d: d}
	}
	switch p.Kind {
	case model.KindPGStatement:
		var st model.PGStatement
		if json.Unmarshal(p.Data, &st) == nil {
			o := op("sql", st.SQL, st.Decision)
			if st.Redacted > 0 {
				o.Result = append(o.Result, fmt.Sprintf("%d password literal(s) redacted", st.Redacted))
			}
			s.addOp(s.session(p.Session), o)
		}
	case model.KindPGResult:
		var r model.PGResult
		if json.Unmarshal(p.Data, &r) == nil {
			if o := s.act.bySeq[r.Statement]; o != nil {
				o.Result = append(o.Result, pgResultText(r))
			}
		}
	case model.KindPGMask:
		var m model.PGMask
		if json.Unmarshal(p.Data, &m) == nil {
			if o := s.act.bySeq[m.Statement]; o != nil && m.Count > 0 {
				o.Masked += m.Count
				o.MaskNotes = append(o.MaskNotes, maskNote(m.Rule, m.Column, m.Detector, m.Count))
			}
		}
	case model.KindSSHRequest:
		var rq model.SSHRequest
		if json.Unmarshal(p.Data, &rq) != nil {
			return
		}
		switch {
		case rq.Type == "exec" || rq.Type == "shell" || rq.Type == "subsystem":
			o := op(rq.Type, rq.Command, rq.Decision)
			o.channel = rq.Channel
			if t := scpTransfer(rq.Command); t != nil && (rq.Decision.Action == model.Allow || rq.Decision.Action == model.Mask) {
				t.Seq, t.Time, t.Op = seq, ev.Time, o
				o.scp = t
				s.session(p.Session).Transfers = append(s.session(p.Session).Transfers, t)
			}
			s.addOp(s.session(p.Session), o)
			if s.act.program != nil {
				s.act.program[chanKey(p.Session, rq.Channel)] = o
			}
		case rq.Decision.Action == model.Deny || rq.Global || rq.Type == "x11-req" || rq.Type == "auth-agent-req@openssh.com":
			what := rq.Type
			if rq.Env != "" {
				what += " " + rq.Env
			}
			s.addOp(s.session(p.Session), op("request", what, rq.Decision))
		}
	case model.KindSSHChannel:
		var ch model.SSHChannel
		if json.Unmarshal(p.Data, &ch) == nil && (ch.Type != "session" || ch.Decision.Action == model.Deny) {
			s.addOp(s.session(p.Session), op("channel", strings.TrimSpace(ch.Type+" "+ch.Detail), ch.Decision))
		}
	case model.KindSSHSFTP:
		var f model.SSHSFTP
		if json.Unmarshal(p.Data, &f) != nil {
			return
		}
		what := f.Op + " " + f.Path
		if f.Target != "" {
			what += " → " + f.Target
		}
		o := op("sftp", what, f.Decision)
		if len(f.Flags) > 0 {
			o.Result = append(o.Result, "flags "+strings.Join(f.Flags, ","))
		}
		if f.Status != "" {
			o.Result = append(o.Result, "status "+f.Status)
		}
		r := s.session(p.Session)
		s.addOp(r, o)
		key := p.Session + "\x00" + f.Path
		by := o
		if f.Op == "open" && s.act.opened != nil {
			s.act.opened[key] = o
		} else if open := s.act.opened[key]; open != nil {
			by = open
		}
		for _, x := range []struct {
			n   int64
			dir string
		}{{f.BytesRead, "download"}, {f.BytesWritten, "upload"}} {
			if x.n > 0 {
				o.Result = append(o.Result, fmt.Sprintf("%s %d bytes", x.dir, x.n))
				r.Transfers = append(r.Transfers, &transferRow{Seq: seq, Time: ev.Time, How: "sftp", Direction: x.dir, Path: f.Path, Bytes: x.n,
					Note: "bytes counted at the handle's close", Op: by})
			}
		}
	case model.KindSSHIO, model.KindK8sIO: // k8s.io carries an ssh.io's data
		var io model.SSHIO
		if json.Unmarshal(p.Data, &io) == nil {
			if o := s.act.program[chanKey(p.Session, io.Channel)]; o != nil {
				if io.Stream == "i" {
					o.up += int64(io.Bytes)
				} else {
					o.down += int64(io.Bytes)
				}
			}
		}
	case model.KindSSHExit, model.KindK8sExit:
		var x model.SSHExit
		if json.Unmarshal(p.Data, &x) == nil {
			if o := s.act.program[chanKey(p.Session, x.Channel)]; o != nil {
				switch {
				case x.ExitStatus != nil:
					o.Result = append(o.Result, fmt.Sprintf("exit status %d", *x.ExitStatus))
				case x.ExitSignal != "":
					o.Result = append(o.Result, "killed by signal "+sessionview.Quote(x.ExitSignal))
				default:
					o.Result = append(o.Result, "ended without an exit status")
				}
			}
		}
	case model.KindSSHMask:
		var m model.MaskDecision
		var ch uint32
		if json.Unmarshal(p.Data, &m) != nil || m.Count <= 0 {
			return
		}
		if _, err := fmt.Sscanf(m.Column, "channel %d", &ch); err != nil {
			return
		}
		// "channel N sftp PATH" is a masked download: its open's; other
		// columns are the channel's program output.
		o := s.act.program[chanKey(p.Session, ch)]
		if _, path, ok := strings.Cut(m.Column, " sftp "); ok && s.act.opened[p.Session+"\x00"+path] != nil {
			o = s.act.opened[p.Session+"\x00"+path]
		}
		if o != nil {
			o.Masked += m.Count
			o.MaskNotes = append(o.MaskNotes, maskNote(m.Rule, m.Column, m.Detector, m.Count))
		}
	}
}

// finishActivity completes what only the whole range tells: the bytes an
// exec moved, and the links from events to the operations they concern.
func (s *summary) finishActivity() {
	for _, r := range s.sessions {
		for _, o := range r.Ops {
			if o.up > 0 || o.down > 0 {
				o.Result = append(o.Result, fmt.Sprintf("%d bytes in, %d bytes out", o.up, o.down))
			}
			if t := o.scp; t != nil {
				t.Bytes = o.down
				if t.Direction == "upload" {
					t.Bytes = o.up
				}
			}
		}
	}
	link := func(list []eventRow) {
		for i := range list {
			e := &list[i]
			switch {
			case e.Req != "" && s.act.byRequest[e.Req] != 0:
				e.Link = s.act.byRequest[e.Req]
			case e.Link != 0 && s.act.bySeq[e.Link] == nil:
				e.Link = 0
			case e.Link == 0 && s.act.bySeq[e.Seq] != nil:
				e.Link = e.Seq
			}
		}
	}
	link(s.denials)
	link(s.approvals)
	link(s.masks)
}

// scpTransfer is the transfer an scp command line makes on the target:
// `scp -t PATH` receives a file (an upload), `scp -f PATH` sends one.
func scpTransfer(cmd string) *transferRow {
	f := strings.Fields(cmd)
	if len(f) < 2 || f[0] != "scp" {
		return nil
	}
	t := &transferRow{How: "scp", Note: "bytes of the scp stream, its headers included"}
	for _, a := range f[1:] {
		switch {
		case a == "--":
		case strings.HasPrefix(a, "-"):
			if strings.Contains(a, "t") {
				t.Direction = "upload"
			}
			if strings.Contains(a, "f") {
				t.Direction = "download"
			}
		default:
			t.Path = a
		}
	}
	if t.Direction == "" {
		return nil
	}
	return t
}

func pgResultText(r model.PGResult) string {
	switch {
	case r.NotRun:
		return "not run"
	case r.Error != "":
		return "error " + r.SQLState + ": " + r.Error
	case r.Tag != "":
		return fmt.Sprintf("%s (%s)", r.Tag, rows(r.Rows))
	}
	return rows(r.Rows)
}

func maskNote(rule, column, detector string, n int) string {
	s := fmt.Sprintf("%d masked by %s", n, rule)
	if column != "" {
		s += " in " + column
	}
	if detector != "" {
		s += " (" + detector + ")"
	}
	return s
}

func rows(n int64) string {
	if n == 1 {
		return "1 row"
	}
	return fmt.Sprintf("%d rows", n)
}
