package export

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/interlock/interlock/internal/textview"
	"github.com/interlock/interlock/journal/evidence"
	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/sessionview"
)

// What a kubernetes session did, for summary.html: one row per API
// request (verb, resource, namespace and name, API group, who it was
// made as, the decision), completed by its response (status code, size,
// the Secret values masked), an exec's exit and stream bytes, and each
// port-forward stream's port and bytes. A session's identity (who
// interlock impersonates, whose each bearer token is) is a line of its
// own above the rows.
//
// The text is sessionview's, escaped there with every name quoted (the
// rows are marked Esc, so the page does not escape them twice): a name
// holding a newline stays on its line and cannot forge the next.

// k8sKey names a request of a session by its k8s.request seq.
func k8sKey(session string, seq uint64) string {
	return session + "\x00" + strconv.FormatUint(seq, 10)
}

// k8sVerbs are the verbs shown as the row's kind; any other word the
// request parsed to is shown in its text only.
var k8sVerbs = map[string]bool{"get": true, "list": true, "watch": true, "create": true, "update": true, "patch": true,
	"delete": true, "deletecollection": true, "exec": true, "attach": true, "portforward": true, "proxy": true}

// k8sEntry takes a kubernetes entry; it reports true when the entry is
// the session's first terminal (an exec or attach with a tty), which the
// bundle gives a cast.
func (s *summary) k8sEntry(seq uint64, p evidence.Body, ev eventRow) (pty bool) {
	a := &s.act
	if a.k8sReq == nil {
		a.k8sReq = map[string]*opRow{}
	}
	if a.program == nil {
		a.program = map[string]*opRow{}
	}
	switch p.Kind {
	case model.KindK8sRequest:
		var m model.K8sRequest
		if json.Unmarshal(p.Data, &m) != nil {
			return false
		}
		kind := "k8s"
		if k8sVerbs[m.Verb] {
			kind += " " + m.Verb
		}
		lines := sessionview.K8sRequestLines(m)
		o := &opRow{Seq: seq, Time: ev.Time, Kind: kind, What: strings.Join(lines, "\n"), Esc: true, Rule: m.Decision.Rule, Reason: m.Decision.Reason, d: m.Decision}
		r := s.session(p.Session)
		r.Operations++
		s.addOp(r, o)
		a.k8sReq[k8sKey(p.Session, m.Seq)] = o
		if m.Decision.Action == model.Deny {
			ev.What, ev.Esc, ev.Action, ev.Rule, ev.Reason = sessionview.K8sRequestText(m), true, string(m.Decision.Action), m.Decision.Rule, m.Decision.Reason
			s.event(&s.denials, &s.counts.Denials, ev)
			r.Denials++
		}
	case model.KindK8sResponse:
		var m model.K8sResponse
		if json.Unmarshal(p.Data, &m) != nil {
			return false
		}
		o := a.k8sReq[k8sKey(p.Session, m.Seq)]
		if o == nil {
			return false
		}
		o.Result = append(o.Result, "response "+sessionview.K8sResponseText(m))
		if m.Masked > 0 {
			o.Masked += m.Masked
			o.MaskNotes = append(o.MaskNotes, fmt.Sprintf("%d Secret values masked in the response", m.Masked))
			ev.What, ev.Action, ev.Rule, ev.Link = fmt.Sprintf("the response to entry %d", o.Seq), string(model.Mask), o.Rule, o.Seq
			ev.Reason = fmt.Sprintf("%d Secret values masked", m.Masked)
			s.event(&s.masks, &s.counts.Masks, ev)
		}
	case model.KindK8sExec:
		var m model.K8sExec
		if json.Unmarshal(p.Data, &m) != nil {
			return false
		}
		if o := a.k8sReq[k8sKey(p.Session, m.Seq)]; o != nil {
			// Its stream's bytes and exit complete the request's row.
			a.program[chanKey(p.Session, m.Channel)] = o
			note := fmt.Sprintf("stream opened as channel %d", m.Channel)
			if m.Container != "" {
				note += " in container " + sessionview.Quote(m.Container)
			}
			if m.TTY {
				note += " with a terminal"
			}
			o.Result = append(o.Result, note)
		}
		if m.TTY && p.Session != "" && !s.ptys[p.Session] {
			s.ptys[p.Session] = true
			return true
		}
	case model.KindK8sPortFwd:
		var m model.K8sPortForward
		if json.Unmarshal(p.Data, &m) == nil {
			if o := a.k8sReq[k8sKey(p.Session, m.Seq)]; o != nil {
				o.Result = append(o.Result, sessionview.K8sPortForwardText(m))
			}
		}
	case model.KindK8sIdentity:
		var m model.K8sIdentity
		if json.Unmarshal(p.Data, &m) == nil {
			r := s.session(p.Session)
			r.K8s = append(r.K8s, sessionview.K8sIdentityText(m))
		}
	}
	return false
}

// esc is text for a cell: as is when a view escaped it already, escaped
// line by line otherwise.
func esc(pre bool, s string) string {
	if pre {
		return s
	}
	return textview.EscapeMultiline(s)
}
