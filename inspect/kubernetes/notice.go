package kubernetes

import (
	"net/http"
	"strings"
	"sync"

	"github.com/interlock/interlock/internal/textview"
	"github.com/interlock/interlock/model"
)

// A held request cannot write to its client before its response: an
// HTTP request has one answer, and kubectl shows nothing while it waits.
// What kubectl does show is used instead: a Warning header on the final
// response (kubectl prints each on stderr, for requests made through its
// REST client), the message of a 403 Status, and, for an exec or attach
// (whose upgrade response kubectl does not read warnings from), a line on
// the client's stream before the command's output.

// notices collects what approvals tell one request's client while policy
// decides it.
type notices struct {
	mu   sync.Mutex
	held *model.ApprovalNotice
	done *model.ApprovalNotice
}

// tell is the request's model.Teller: it only keeps the notice, so it
// never blocks the broker.
func (n *notices) tell(an model.ApprovalNotice) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if an.Verdict == "" {
		n.held = &an
	} else {
		n.done = &an
	}
}

// outcome is the one line the client is told of the decided request
// ("": it was not held), naming the request, the rule and the outcome.
func (n *notices) outcome(rule string) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.done == nil {
		return ""
	}
	s := n.done.Message
	if rule != "" {
		s += ", rule \"" + textview.Escape(rule) + "\""
	}
	if n.done.Detail != "" {
		s += ": " + n.done.Detail
	}
	return s
}

// warningValue is text as a Warning header's value (RFC 7234: code 299,
// no agent, a quoted string): escaped to one printable line, its quotes
// and backslashes as quoted pairs, so no client-chosen text ends the
// string or the header.
func warningValue(text string) string {
	text = textview.Escape(text)
	text = strings.ReplaceAll(text, `\`, `\\`)
	text = strings.ReplaceAll(text, `"`, `\"`)
	return `299 - "` + text + `"`
}

// setWarning adds the notice, if any, to the response's headers.
func setWarning(h http.Header, notice string) {
	if notice != "" {
		h.Add("Warning", warningValue(notice))
	}
}
