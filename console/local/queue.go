package local

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/interlock/interlock/approvals"
	"github.com/interlock/interlock/hub/console"
	"github.com/interlock/interlock/hub/decision"
	"github.com/interlock/interlock/hub/hubapi"
	"github.com/interlock/interlock/model"
)

// ErrReadOnly refuses a decision on a host's read-only console.
var ErrReadOnly = errors.New("this host's console is read-only: decide with interlock approvals on the host")

// Decider takes a decision of someone signed in to the console
// (approvals.Broker), with the hub's rules.
type Decider interface {
	MayDecideIdP(id string, who approvals.IdPApprover) error
	DecideIdP(ctx context.Context, id string, who approvals.IdPApprover, approve bool, reason, expect string) (model.ApprovalDecision, error)
}

// Queue is the local broker's held requests as the console shows them.
// Without a Decider it is read-only: nobody may decide from it (the
// console refuses the POST first; DecideApproval refuses again).
type Queue struct {
	// List is the broker's pending requests, all of them
	// (approvals.Broker.List as root).
	List func() []approvals.Pending
	// Decider, when set (console.decide), takes approvers' decisions.
	Decider          Decider
	HostID, HostName string
}

// Broker is the Queue of a broker; decide lets approvers decide through
// it.
func Broker(b *approvals.Broker, hostID, hostName string, decide bool) Queue {
	q := Queue{List: func() []approvals.Pending { return b.List(approvals.Approver{UID: 0}) }, HostID: hostID, HostName: hostName}
	if decide {
		q.Decider = b
	}
	return q
}

var _ console.Approvals = Queue{}

// PendingApprovals lists what who may see: every request to an auditor
// (who reads everything), and to an approver only the requests whose
// rule names them, by IdP username or @group, as the hub shows them.
func (q Queue) PendingApprovals(_ context.Context, who hubapi.Principal) ([]hubapi.PendingApproval, error) {
	out := []hubapi.PendingApproval{}
	for _, p := range q.List() {
		if !who.Has(hubapi.RoleAuditor) && !(who.Has(hubapi.RoleApprover) && decision.NamesApprover(who.Username, who.Groups, p.Request.Approvers)) {
			continue
		}
		v := hubapi.PendingApproval{HostID: q.HostID, HostName: q.HostName, Approvals: p.Approvals,
			Held: hubapi.HeldRequest{Request: p.Request, Deadline: p.Deadline}}
		switch {
		case q.Decider == nil:
			v.WhyNot = "this host's console is read-only: decide with interlock approvals on the host"
		case !who.Has(hubapi.RoleApprover):
			v.WhyNot = "you are not an approver"
		default:
			if err := q.Decider.MayDecideIdP(p.Request.ID, idpApprover(who)); err != nil {
				v.WhyNot = err.Error()
			} else {
				v.MayDecide = true
			}
		}
		out = append(out, v)
	}
	return out, nil
}

func idpApprover(who hubapi.Principal) approvals.IdPApprover {
	a := who.Approver
	return approvals.IdPApprover{Issuer: a.Issuer, Subject: a.Subject, Username: a.Username, Email: a.Email, Name: a.Name,
		Groups: slices.Clone(a.Groups)}
}

// DecideApproval takes who's decision through the broker, which checks
// it with the hub's rules and journals it with who's IdP identity; on a
// read-only console it refuses.
func (q Queue) DecideApproval(ctx context.Context, who hubapi.Principal, id string, d hubapi.DecideRequest) (hubapi.SignedDecision, error) {
	if q.Decider == nil {
		return hubapi.SignedDecision{}, console.StatusError{Err: ErrReadOnly, Status: http.StatusForbidden}
	}
	if !who.Has(hubapi.RoleApprover) {
		return hubapi.SignedDecision{}, console.StatusError{Err: approvals.ErrNotApprover, Status: http.StatusForbidden}
	}
	dec, err := q.Decider.DecideIdP(ctx, id, idpApprover(who), d.Approve, d.Reason, d.ExpectSHA256)
	if err != nil {
		return hubapi.SignedDecision{}, console.StatusError{Err: err, Status: decideStatus(err)}
	}
	out := hubapi.SignedDecision{RequestID: id, HostID: q.HostID, Verdict: dec.Verdict, Reason: dec.Reason, Scope: dec.Scope,
		Approver: who.Approver, DecidedAt: time.Now()}
	if dec.ExpiresNS != 0 {
		out.ExpiresAt = time.Unix(0, dec.ExpiresNS)
	}
	// An approval that did not decide: the request is still held.
	for _, p := range q.List() {
		if p.Request.ID == id {
			out.StillNeeded = max(p.Request.Needed-p.Approvals, 1)
		}
	}
	return out, nil
}

func decideStatus(err error) int {
	switch {
	case errors.Is(err, approvals.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, approvals.ErrNotApprover), errors.Is(err, approvals.ErrIdPSelfApproval), errors.Is(err, approvals.ErrRequesterUnnamed):
		return http.StatusForbidden
	case errors.Is(err, approvals.ErrAlreadyVoted), errors.Is(err, approvals.ErrTextMismatch):
		return http.StatusConflict
	}
	return http.StatusServiceUnavailable
}
