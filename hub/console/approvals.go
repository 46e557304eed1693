package console

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/interlock/interlock/hub/hubapi"
	"github.com/interlock/interlock/internal/textview"
	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/sessionview"
)

// heldView is a held request as the queue shows it: every part a client
// controls escaped, the operation's text whole, line by line.
type heldView struct {
	ID, HostName, HostID string
	Target, Rule         string
	Requester            []field
	Operation            string
	Lines                []string
	Bytes, LineCount     int
	SHA256               string
	// Altered: the text does not hash to what the host said it held; no
	// one may approve it from this view.
	Altered      bool
	Effects      []string
	Approvals    int
	Needed       int
	Approvers    string
	Scope        string
	Session      string
	Deadline     time.Time
	Left         string
	MayDecide    bool
	WhyNot       string
	RequireMatch bool
}

// field is a labelled line of a view.
type field struct{ Label, Value string }

// requestText is the held operation's exact text: the request carries the
// raw bytes when JSON could not (invalid UTF-8).
func requestText(r model.ApprovalRequest) string {
	if len(r.TextBytes) > 0 {
		return string(r.TextBytes)
	}
	return r.Operation.Text
}

// IdentityView names who is behind a process, one line per principal
// with its provenance: the person (and their changes of user), the CI
// job, the agent, and the process itself.
func IdentityView(id model.Identity) []field {
	var out []field
	if h := id.Human; h != nil {
		out = append(out, field{"human", sessionview.HumanText(h) + " (" + sessionview.ProvenanceText(h.Provenance) + ")"})
	}
	if w := id.Workload; w != nil {
		out = append(out, field{"job", sessionview.WorkloadText(w, 0)})
	}
	if a := id.Agent; a != nil {
		out = append(out, field{"agent", sessionview.AgentText(a) + ", " + sessionview.AgentDetail(a)})
	} else if id.AgentError != "" {
		out = append(out, field{"agent", "unknown: " + textview.Escape(id.AgentError)})
	}
	proc := fmt.Sprintf("pid %d uid %d comm %s", id.Kernel.TGID, id.Kernel.UID, sessionview.Quote(id.Kernel.Comm))
	if p := id.Proc; p != nil {
		proc = fmt.Sprintf("%s (uid %d) pid %d %s", textview.Escape(p.User), id.Kernel.UID, id.Kernel.TGID, textview.Escape(p.Exe))
	} else if id.ProcError != "" {
		proc += ", process not read: " + textview.Escape(id.ProcError)
	}
	out = append(out, field{"process", proc})
	return out
}

func (c *Console) heldView(p hubapi.PendingApproval) heldView {
	r := p.Held.Request
	text := requestText(r)
	op := textview.Escape(string(r.Operation.Protocol) + " " + r.Operation.Kind)
	for _, x := range []string{r.Operation.Path, r.Operation.Detail} {
		if x != "" {
			op += " " + textview.Escape(x)
		}
	}
	rule := textview.Escape(r.Rule)
	if r.Reason != "" {
		rule += " (" + textview.Escape(r.Reason) + ")"
	}
	sum := textview.Hash(text)
	v := heldView{
		ID: r.ID, HostName: p.HostName, HostID: p.HostID, Target: textview.Escape(r.Target), Rule: rule,
		Requester: IdentityView(r.Requester), Operation: op, Lines: textview.Lines(text),
		Bytes: len(text), LineCount: strings.Count(text, "\n") + 1, SHA256: sum,
		Altered:   r.TextSHA256 != "" && r.TextSHA256 != sum,
		Approvals: p.Approvals, Needed: r.Needed, Approvers: textview.Escape(strings.Join(r.Approvers, ", ")),
		Scope: textview.Escape(r.Scope), Session: r.Session, Deadline: p.Held.Deadline.UTC(),
		Left: time.Until(p.Held.Deadline).Round(time.Second).String(), MayDecide: p.MayDecide, WhyNot: p.WhyNot,
		RequireMatch: r.RequireExpect,
	}
	if e := r.Operation.Effects; e != nil {
		v.Effects = effectLines(e)
	}
	return v
}

// effectLines is what a transaction held at COMMIT did, as the server
// reported it.
func effectLines(e *model.PGEffects) []string {
	var out []string
	if e.Error != "" {
		out = append(out, "INCOMPLETE: the effects could not be read in full: "+textview.Escape(e.Error))
	}
	for _, t := range e.Tables {
		name := textview.Escape(t.Name)
		if len(t.Also) > 0 {
			name += " (also " + textview.Escape(strings.Join(t.Also, ", ")) + ")"
		}
		changed := t.Changes()
		s := fmt.Sprintf("%s: %d inserted, %d updated, %d deleted", name, t.Inserted, t.Updated, t.Deleted)
		if t.Lock != "" {
			s += ", lock " + textview.Escape(t.Lock)
		}
		if len(changed) > 0 {
			s += ", " + strings.Join(changed, ", ")
		}
		out = append(out, s)
	}
	if len(e.Tables) == 0 {
		out = append(out, "no relation changed or locked beyond reading")
	}
	out = append(out, fmt.Sprintf("%d rows reported by its statements", e.Rows))
	return out
}

type queueData struct {
	// IDs are the requests shown, sorted, space-separated: the page's
	// script compares them with the hub's list.
	IDs      string
	Held     []heldView
	One      bool
	Missing  string
	Disabled bool
}

// queue is the approvals queue, or one request of it (/approvals/{id},
// the link a requester and the webhook are given).
func (c *Console) queue(w http.ResponseWriter, r *http.Request, s *session) {
	d := queueData{}
	id := r.PathValue("id")
	if c.opts.Approvals == nil {
		d.Disabled = true
		c.render(w, r, http.StatusOK, "queue", "Approvals", s, d)
		return
	}
	list, err := c.opts.Approvals.PendingApprovals(r.Context(), s.who)
	if err != nil {
		c.log.Error("console: pending approvals", "err", err)
		c.fail(w, r, s, http.StatusServiceUnavailable, "The queue cannot be read", "The hub failed to read the pending requests.", "Try again; the hub's log says why.")
		return
	}
	slices.SortStableFunc(list, func(a, b hubapi.PendingApproval) int { return a.Held.Deadline.Compare(b.Held.Deadline) })
	for _, p := range list {
		if id != "" && p.Held.Request.ID != id {
			continue
		}
		v := c.heldView(p)
		if c.opts.ReadOnly {
			v.MayDecide, v.WhyNot = false, readOnlyWhy
		}
		d.Held = append(d.Held, v)
	}
	ids := make([]string, 0, len(d.Held))
	for _, h := range d.Held {
		ids = append(ids, h.ID)
	}
	slices.Sort(ids)
	d.IDs = strings.Join(ids, " ")
	if id != "" {
		d.One = true
		if len(d.Held) == 0 {
			d.Missing = textview.Escape(id)
		}
	}
	c.render(w, r, http.StatusOK, "queue", "Approvals", s, d)
}

// readOnlyWhy is what a read-only console says to an approver.
const readOnlyWhy = "this console is read-only: it shows the queue and takes no decision"

// maxReason bounds a decision's reason (the hub's bound).
const maxReason = 1000

// decide sends an approver's verdict to the hub. An approval names the
// SHA-256 of the text the page showed, so it holds only for that text;
// the hub checks the approver may decide (not the requester, one of the
// rule's approvers) whatever the page showed.
func (c *Console) decide(w http.ResponseWriter, r *http.Request, s *session) {
	if c.opts.ReadOnly {
		// Refused before the form is read: no decision reaches the
		// approvals, whatever the page or a forged POST says.
		c.log.Warn("console: decision refused: read-only", "request", r.PathValue("id"), "username", s.who.Username)
		c.fail(w, r, s, http.StatusForbidden, "Decision refused", readOnlyWhy+".", "Decide with interlock approvals on the host.")
		return
	}
	id := r.PathValue("id")
	verdict := r.PostFormValue("verdict")
	req := hubapi.DecideRequest{Reason: r.PostFormValue("reason"), ExpectSHA256: r.PostFormValue("expect_sha256")}
	switch verdict {
	case "approve":
		req.Approve = true
		if len(req.ExpectSHA256) != 64 || strings.Trim(req.ExpectSHA256, "0123456789abcdef") != "" {
			c.fail(w, r, s, http.StatusBadRequest, "Not approved", "An approval from the console names the SHA-256 of the text you read; this one names none.", "Approve from the request's page.")
			return
		}
	case "deny":
	default:
		c.fail(w, r, s, http.StatusBadRequest, "No verdict", "Choose approve or deny.", "")
		return
	}
	if len(req.Reason) > maxReason {
		c.fail(w, r, s, http.StatusBadRequest, "Reason refused", fmt.Sprintf("A reason is at most %d bytes of text.", maxReason), "")
		return
	}
	if c.opts.Approvals == nil {
		c.fail(w, r, s, http.StatusServiceUnavailable, "Approvals are not served", "This hub does not take decisions.", "")
		return
	}
	dec, err := c.opts.Approvals.DecideApproval(r.Context(), s.who, id, req)
	if err != nil {
		c.log.Warn("console: decision refused", "request", id, "username", s.who.Username, "err", err)
		status := http.StatusConflict
		var se interface{ HTTPStatus() int }
		if errors.As(err, &se) {
			status = se.HTTPStatus()
		}
		c.fail(w, r, s, status, "Decision refused", "The hub refused this decision: "+textview.Escape(err.Error()), "Nothing was decided. Reload the queue.")
		return
	}
	c.log.Info("console: decided", "request", id, "verdict", dec.Verdict, "still_needed", dec.StillNeeded, "username", s.who.Username)
	c.render(w, r, http.StatusOK, "decided", "Decided", s, decidedView{
		ID: dec.RequestID, Verdict: dec.Verdict, HostID: dec.HostID, Approver: textview.Escape(dec.Approver.Username),
		Reason: textview.Escape(dec.Reason), Expires: dec.ExpiresAt.UTC(), SHA256: dec.RequestSHA256, StillNeeded: dec.StillNeeded,
		Approvers: approversText(dec.Approvers),
	})
}

// StatusError is an error of the hub's approvals with the HTTP status
// the console answers it with (the hub's wiring wraps its errors so).
type StatusError struct {
	Err    error
	Status int
}

func (e StatusError) Error() string   { return e.Err.Error() }
func (e StatusError) Unwrap() error   { return e.Err }
func (e StatusError) HTTPStatus() int { return e.Status }

type decidedView struct {
	ID, Verdict, HostID, Approver, Reason, SHA256 string
	Approvers                                     string
	Expires                                       time.Time
	// StillNeeded: the approval counted, and the request needs this
	// many more before the hub signs a decision.
	StillNeeded int
}

func approversText(as []hubapi.Approver) string {
	var names []string
	for _, a := range as {
		names = append(names, textview.Escape(a.Username))
	}
	return strings.Join(names, ", ")
}
