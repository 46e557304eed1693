package approvals

import (
	"fmt"
	"strings"
	"time"

	"github.com/interlock/interlock/internal/textview"
	"github.com/interlock/interlock/model"
)

// maxNoticeField bounds each line of a notice: a rule's reason or an
// approver's may be long, and a notice is read in a terminal.
const maxNoticeField = 400

// ConsoleLink is where an approver decides request id in the console
// whose base URL is base ("": no console, no link).
func ConsoleLink(base, id string) string {
	if base == "" {
		return ""
	}
	return strings.TrimRight(base, "/") + "/approvals/" + id
}

// heldNotice is what the requester is told when their operation is held:
// the request, the rule, who may approve and where, and the deadline.
// Every field the config, the client or an approver wrote is escaped.
func (b *Broker) heldNotice(p *pending) model.ApprovalNotice {
	r := p.req
	rule := "rule " + quoted(r.Rule)
	if r.Reason != "" {
		rule += " (" + textview.Cut(r.Reason, maxNoticeField) + ")"
	}
	who := "nobody is named as approver"
	if len(r.Approvers) > 0 {
		names := make([]string, len(r.Approvers))
		for i, a := range r.Approvers {
			names[i] = textview.Escape(a)
		}
		who = fmt.Sprintf("approvers: %s (%d needed)", textview.Cut(strings.Join(names, ", "), maxNoticeField), r.Needed)
	}
	wait := p.deadline.Sub(p.created).Round(time.Second)
	detail := fmt.Sprintf("%s; %s; denied at %s (in %s) unless approved", rule, who, p.deadline.UTC().Format(time.RFC3339), wait)
	hint := "an approver runs: interlock approvals approve " + r.ID
	if host := b.opts.Host; host != "" {
		hint += " (on " + textview.Escape(host) + ")"
	}
	if link := ConsoleLink(b.ConsoleURL(), r.ID); link != "" {
		hint += ", or decides at " + textview.Escape(link)
	}
	return model.ApprovalNotice{
		Request: r.ID,
		Message: "interlock: " + what(r.Operation) + " held for approval, request " + r.ID,
		Detail:  detail,
		Hint:    hint,
	}
}

// outcomeNotice is what the requester is told when the request is
// decided, with the decision d the operation gets.
func outcomeNotice(p *pending, verdict string, d model.Decision) model.ApprovalNotice {
	n := model.ApprovalNotice{Request: p.req.ID, Verdict: verdict}
	op := what(p.req.Operation)
	switch verdict {
	case model.VerdictApprove:
		n.Message = "interlock: " + op + " approved, request " + p.req.ID
	case model.VerdictTimeout:
		n.Message = "interlock: " + op + " not approved in time, request " + p.req.ID
	default:
		n.Message = "interlock: " + op + " denied, request " + p.req.ID
	}
	if d.Reason != "" {
		n.Detail = textview.Cut(d.Reason, maxNoticeField)
	}
	return n
}

// what names the held operation's kind for a notice.
func what(op model.Operation) string {
	switch op.Kind {
	case "":
		return "operation"
	case "connect":
		return "connection"
	case "commit":
		return "commit"
	}
	if op.Protocol == model.ProtoPostgres {
		return "statement"
	}
	return textview.Escape(op.Kind)
}

func quoted(s string) string { return `"` + textview.Escape(s) + `"` }

// tell tells the requester n, when the handler gave a way to.
func tell(t model.Teller, n model.ApprovalNotice) {
	if t != nil {
		t(n)
	}
}

// SetConsoleURL sets the base URL of the console where approvers decide
// ("": none), on a reload.
func (b *Broker) SetConsoleURL(u string) { b.console.Store(&u) }

// ConsoleURL is the console's base URL held clients are told ("": none).
func (b *Broker) ConsoleURL() string {
	if u := b.console.Load(); u != nil {
		return *u
	}
	return ""
}
