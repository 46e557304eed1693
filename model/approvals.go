package model

// Approval records: a review rule holds an operation until enough approvers
// decide. The broker that writes them comes later; the journal's exporters
// (approvals.csv, the bundle summary, OCSF) already read them. Field names
// are part of the evidence format: add fields, never rename them. Times are
// integer nanoseconds.

// Entry kinds of the approvals broker.
const (
	// KindApprovalRequest: an operation is held for approval.
	KindApprovalRequest = "approval.request"
	// KindApprovalDecision: an approver decided, or the request timed out.
	KindApprovalDecision = "approval.decision"
	// KindGrantExpired: a grant that covered more than one operation (a
	// session, a time window) ended.
	KindGrantExpired = "grant.expired"
)

// Verdicts of an ApprovalDecision.
const (
	VerdictApprove = "approve"
	VerdictDeny    = "deny"
	VerdictTimeout = "timeout"
)

// ApprovalRequest is the data of an approval.request entry.
type ApprovalRequest struct {
	// ID names the request in its decisions.
	ID        string    `json:"id"`
	Requester Identity  `json:"requester"`
	Target    string    `json:"target"`
	Operation Operation `json:"operation"`
	// Rule is the policy rule that asked for review; Reason why it
	// applies (for an effects rule, the effect that matched).
	Rule   string `json:"rule"`
	Reason string `json:"reason,omitempty"`
	// Approvers are who may decide (names or groups); Needed how many
	// approvals release the operation.
	Approvers []string `json:"approvers,omitempty"`
	Needed    int      `json:"needed"`
	// Scope is what an approval grants: "operation", "session", or a
	// rule-defined scope.
	Scope string `json:"scope,omitempty"`
	// TimeoutNS is how long the request waits before it is denied.
	TimeoutNS int64 `json:"timeout_ns"`
	// Session is the session the held operation belongs to.
	Session string `json:"session,omitempty"`
	// TextSHA256 is the hex SHA-256 of Operation.Text's exact bytes: an
	// approver passes it to `approvals approve --expect` so the approval
	// holds only for the text they read.
	TextSHA256 string `json:"text_sha256,omitempty"`
	// TextBytes carries Operation.Text's exact bytes when they are not
	// valid UTF-8: JSON would replace those bytes with U+FFFD, and the
	// approver would hash and read a different text than the one held.
	TextBytes []byte `json:"text_bytes,omitempty"`
	// RequireExpect: an approval counts only with TextSHA256 named
	// (approve --expect).
	RequireExpect bool `json:"require_expect,omitempty"`
}

// ApprovalDecision is the data of an approval.decision entry.
type ApprovalDecision struct {
	// ID is the request's.
	ID       string   `json:"id"`
	Approver Identity `json:"approver"`
	// Verdict is approve, deny or timeout.
	Verdict string `json:"verdict"`
	Reason  string `json:"reason,omitempty"`
	// Scope is what the approval grants; ExpiresNS when that grant ends
	// (unix nanoseconds; 0 for a single operation).
	Scope     string `json:"scope,omitempty"`
	ExpiresNS int64  `json:"expires_ns,omitempty"`
}

// GrantExpired is the data of a grant.expired entry.
type GrantExpired struct {
	// ID is the request whose grant ended.
	ID    string `json:"id"`
	Scope string `json:"scope,omitempty"`
}
