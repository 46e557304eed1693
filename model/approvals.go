package model

import "context"

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
	// KindApprovalRefused: a decision from the fleet hub that the host
	// refused (its signature, host, request, hash, expiry, scope or
	// approvers did not hold); it changed nothing.
	KindApprovalRefused = "approval.refused"
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
	// Hub is set when the decision came from the fleet hub: the approvers
	// as the company's identity provider named them, and the decision the
	// hub signed, whole (Approver is then empty: nobody on this host
	// decided).
	Hub *HubDecision `json:"hub,omitempty"`
	// IdP is set when a person signed in to this host's own console
	// decided (docs/console.md, "One host"): who they are as the
	// company's identity provider named them (Approver is then empty:
	// the decision came over the console's https, from no local process).
	IdP *IdPIdentity `json:"idp,omitempty"`
}

// HubDecision is a decision the fleet hub signed, as the host verified
// and journaled it (docs/hub.md, "Approvals from anywhere").
type HubDecision struct {
	// Approver decided (the last approval needed, or the deny);
	// Approvers are every approval that counted.
	Approver  IdPIdentity   `json:"approver"`
	Approvers []IdPIdentity `json:"approvers,omitempty"`
	// RequestSHA256 is the hash the decision names the request by: the
	// SHA-256 of the approval.request entry's data.
	RequestSHA256 string `json:"request_sha256"`
	DecidedNS     int64  `json:"decided_ns"`
	ExpiresNS     int64  `json:"expires_ns"`
	// Signed is the hub's signed note, whole: it verifies with the hub key
	// the host enrolled with (hub.pub).
	Signed string `json:"signed"`
}

// IdPIdentity is a person as the company's identity provider named them
// in the ID token the hub verified.
type IdPIdentity struct {
	Issuer   string   `json:"issuer"`
	Subject  string   `json:"subject"`
	Username string   `json:"username"`
	Email    string   `json:"email,omitempty"`
	Name     string   `json:"name,omitempty"`
	Groups   []string `json:"groups,omitempty"`
}

// ApprovalRefused is the data of an approval.refused entry: a decision
// the host did not act on, and why.
type ApprovalRefused struct {
	// ID is the request the decision names (it may be no request of this
	// host's).
	ID      string `json:"id"`
	Why     string `json:"why"`
	Verdict string `json:"verdict,omitempty"`
	// Approver is who the decision says decided, unverified when the
	// signature did not verify.
	Approver string `json:"approver,omitempty"`
	// Signed is the decision as it came, whole.
	Signed string `json:"signed"`
}

// GrantExpired is the data of a grant.expired entry.
type GrantExpired struct {
	// ID is the request whose grant ended.
	ID    string `json:"id"`
	Scope string `json:"scope,omitempty"`
}

// ApprovalNotice is what the requester of a held operation is told, on
// the connection that is held: once when the operation is held (Verdict
// ""), and once when it is decided. The handler shows Message, Detail and
// Hint as its protocol allows (a PostgreSQL NoticeResponse's fields, lines
// on an ssh channel's stderr). They are escaped, one line each: the
// operation's text and the rule's and approvers' words reach a client's
// terminal only through them.
type ApprovalNotice struct {
	Request string `json:"request"`
	// Verdict is "" while the operation is held, else approve, deny or
	// timeout.
	Verdict string `json:"verdict,omitempty"`
	Message string `json:"message"`
	Detail  string `json:"detail,omitempty"`
	Hint    string `json:"hint,omitempty"`
}

// Teller tells the requester of a held operation about it. It is called
// on the goroutine that waits for the decision, so it must not block for
// long: a client that does not read gets its notice dropped or its session
// ended, never a decision held up.
type Teller func(ApprovalNotice)

type tellerKey struct{}

// WithTeller returns ctx carrying t: a handler passes it with the
// operation it asks policy about, so a review can tell the client.
func WithTeller(ctx context.Context, t Teller) context.Context {
	return context.WithValue(ctx, tellerKey{}, t)
}

// TellerOf is the Teller ctx carries, or nil.
func TellerOf(ctx context.Context) Teller {
	t, _ := ctx.Value(tellerKey{}).(Teller)
	return t
}
