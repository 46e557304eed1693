package hubapi

import (
	"time"

	"github.com/interlock/interlock/model"
)

// Paths of the approvals loop through the hub (docs/hub.md, "Approvals
// from anywhere"). The host paths need the host's client certificate; the
// approver paths an approver signed in through the hub's OIDC provider
// (the console's session cookie, or its bearer token for the API).
const (
	// PathHostApprovals: a host posts each held operation here (POST,
	// HeldRequest) as soon as it is journaled, and withdraws it (DELETE
	// PathHostApprovals/{id}) when the host decided it itself (timeout,
	// local approval, the session ended).
	PathHostApprovals = "/v1/host/approvals"
	// PathHostDecisions: the host long-polls here (GET, ?wait=30s) for the
	// signed decisions on its pending requests ([]SignedDecision).
	PathHostDecisions = "/v1/host/decisions"
	// PathApprovals lists the pending requests an approver may see (GET,
	// []PendingApproval); PathApprovals/{id} is one; POST
	// PathApprovals/{id}/decision decides it (DecideRequest →
	// SignedDecision).
	PathApprovals = "/v1/approvals"
)

// HeldRequest is an operation a host holds for review, as the host
// journaled it.
type HeldRequest struct {
	Request model.ApprovalRequest `json:"request"`
	// Deadline is when the host denies the request if no decision came.
	Deadline time.Time `json:"deadline"`
	// RequestSHA256 is the hex SHA-256 of the request's journaled data
	// (the approval.request entry's JSON): a decision names it, so it
	// cannot be applied to any other request.
	RequestSHA256 string `json:"request_sha256"`
	// Seq is the approval.request entry's seq in the host's journal.
	Seq int64 `json:"seq"`
}

// PendingApproval is a held request as an approver sees it.
type PendingApproval struct {
	HostID   string      `json:"host_id"`
	HostName string      `json:"host_name"`
	Held     HeldRequest `json:"held"`
	// Approvals so far; MayDecide says whether the caller may decide
	// (an approver of its rule, and not its requester).
	Approvals int  `json:"approvals"`
	MayDecide bool `json:"may_decide"`
	// WhyNot says why the caller may not decide, when MayDecide is false.
	WhyNot string `json:"why_not,omitempty"`
}

// Approver is who decided, as the company's identity provider said at
// sign-in (an ID token the hub verified).
type Approver struct {
	Issuer  string `json:"issuer"`
	Subject string `json:"subject"`
	// Username is the claim the hub compares with the requester's login
	// user and CI actor (oidc.username_claim: preferred_username by
	// default); Email and Name are for people to read.
	Username string   `json:"username"`
	Email    string   `json:"email,omitempty"`
	Name     string   `json:"name,omitempty"`
	Groups   []string `json:"groups,omitempty"`
}

// DecideRequest is an approver's verdict.
type DecideRequest struct {
	Approve bool   `json:"approve"`
	Reason  string `json:"reason,omitempty"`
	// ExpectSHA256, when set, must be the held text's SHA-256: the
	// approver approves exactly what they read.
	ExpectSHA256 string `json:"expect_sha256,omitempty"`
}

// SignedDecision is a decision the hub signed. The host releases or
// refuses the held operation only on a decision whose signature verifies
// with the hub key from enrolment, that names the host, the request and
// its RequestSHA256, and that has not expired; it journals the decision
// whole first.
type SignedDecision struct {
	RequestID     string   `json:"request_id"`
	RequestSHA256 string   `json:"request_sha256"`
	HostID        string   `json:"host_id"`
	Verdict       string   `json:"verdict"` // model.VerdictApprove or model.VerdictDeny
	Reason        string   `json:"reason,omitempty"`
	Scope         string   `json:"scope,omitempty"`
	Approver      Approver `json:"approver"`
	// Approvers are every approver whose approval counted, Approver (the
	// last) among them: the rule's needed count of distinct people. A
	// deny names its one approver.
	Approvers []Approver `json:"approvers,omitempty"`
	DecidedAt time.Time  `json:"decided_at"`
	ExpiresAt time.Time  `json:"expires_at"`
	// Signed is the signed note (golang.org/x/mod/sumdb/note) whose text
	// states every field above; the fields are what the host reads only
	// after the note verifies and its text matches them.
	Signed string `json:"signed"`
	// StillNeeded, in the answer to an approval that is not the last one
	// needed, is how many more approvals the request needs; such an
	// answer is not a decision and Signed is empty. It is never signed.
	StillNeeded int `json:"still_needed,omitempty"`
}

// Roles of a person signed in to the hub (the console and the approver
// API), given by the hub's role mapping from their IdP groups.
const (
	RoleApprover = "approver"
	RoleAuditor  = "auditor" // read-only
	RoleAdmin    = "admin"
)

// Principal is a person signed in to the hub: who the IdP said they are,
// and the roles the hub gives them.
type Principal struct {
	Approver
	Roles []string `json:"roles"`
}

// Has says whether p holds role; an admin holds every role.
func (p Principal) Has(role string) bool {
	for _, r := range p.Roles {
		if r == role || r == RoleAdmin {
			return true
		}
	}
	return false
}

// Refusal codes of the approver API (besides CodeUnauthorized,
// CodeNotFound and CodeBadRequest).
const (
	// CodeForbidden: the caller may not decide this request (not its
	// approver, or its requester).
	CodeForbidden = "forbidden"
	// CodeConflict: the request is no longer pending, the caller already
	// approved it, or the text's hash is not the one expected.
	CodeConflict = "conflict"
)
