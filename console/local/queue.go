package local

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/interlock/interlock/approvals"
	"github.com/interlock/interlock/hub/console"
	"github.com/interlock/interlock/hub/hubapi"
)

// ErrReadOnly refuses a decision on a host's read-only console.
var ErrReadOnly = errors.New("this host's console is read-only: decide with interlock approvals on the host")

// Queue is the local broker's held requests as the console shows them:
// read-only, so nobody may decide from it (the console refuses the POST
// first; DecideApproval refuses again).
type Queue struct {
	// List is the broker's pending requests, all of them
	// (approvals.Broker.List as root).
	List             func() []approvals.Pending
	HostID, HostName string
}

// Broker is the Queue of a broker.
func Broker(b *approvals.Broker, hostID, hostName string) Queue {
	return Queue{List: func() []approvals.Pending { return b.List(approvals.Approver{UID: 0}) }, HostID: hostID, HostName: hostName}
}

var _ console.Approvals = Queue{}

// PendingApprovals lists what who may see: every request to an auditor
// (who reads everything), and to an approver only the requests whose
// rule names them, by IdP username or @group, as the hub shows them.
func (q Queue) PendingApprovals(_ context.Context, who hubapi.Principal) ([]hubapi.PendingApproval, error) {
	out := []hubapi.PendingApproval{}
	for _, p := range q.List() {
		if !who.Has(hubapi.RoleAuditor) && !(who.Has(hubapi.RoleApprover) && names(p.Request.Approvers, who)) {
			continue
		}
		out = append(out, hubapi.PendingApproval{HostID: q.HostID, HostName: q.HostName, Approvals: p.Approvals,
			Held:   hubapi.HeldRequest{Request: p.Request, Deadline: p.Deadline},
			WhyNot: "this host's console is read-only: decide with interlock approvals on the host"})
	}
	return out, nil
}

// names says whether a rule's approvers name who: a username, or an
// @group among their IdP groups.
func names(approvers []string, who hubapi.Principal) bool {
	for _, a := range approvers {
		if g, ok := strings.CutPrefix(a, "@"); ok {
			if slices.Contains(who.Groups, g) {
				return true
			}
		} else if a == who.Username && a != "" {
			return true
		}
	}
	return false
}

// DecideApproval refuses: the console is read-only.
func (q Queue) DecideApproval(context.Context, hubapi.Principal, string, hubapi.DecideRequest) (hubapi.SignedDecision, error) {
	return hubapi.SignedDecision{}, console.StatusError{Err: ErrReadOnly, Status: http.StatusForbidden}
}
