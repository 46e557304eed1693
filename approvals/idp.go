package approvals

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/interlock/interlock/hub/decision"
	"github.com/interlock/interlock/model"
)

// IdPApprover is a person signed in to the host's own console through the
// company's identity provider (docs/console.md, "One host"): the broker
// holds them to the hub's rules, by their IdP username and groups.
type IdPApprover struct {
	Issuer, Subject, Username string
	Email, Name               string
	Groups                    []string
}

func (a IdPApprover) key() string { return a.Issuer + "\x00" + a.Subject }

// ErrRequesterUnnamed: nothing names the requester (no login user,
// process user or CI actor), so an IdP approver cannot be told apart from
// them; nobody decides from the console, as at the hub.
var ErrRequesterUnnamed = errors.New("nothing names the requester (no login user, process user or CI actor), so you cannot be told apart from them: decide with interlock approvals on the host")

// ErrIdPSelfApproval: the approver's IdP username is one of the
// requester's names (decision.RequesterNames).
var ErrIdPSelfApproval = errors.New("you are the requester (your username is the requester's login user, a user of its sudo chain, its process user or its CI actor): a requester never decides their own request")

// mayDecideIdP is nil when who may vote on p (approve says which vote),
// with the hub's rules: a username, never the requester by human
// identity, named by the rule (by username or @group), once.
func mayDecideIdP(p *pending, who IdPApprover, approve bool) error {
	if who.Username == "" || who.Issuer == "" || who.Subject == "" {
		return ErrNotApprover
	}
	names := decision.RequesterNames(p.req.Requester)
	if len(names) == 0 {
		return ErrRequesterUnnamed
	}
	if decision.IsRequester(names, who.Username) {
		return ErrIdPSelfApproval
	}
	if !(account{name: who.Username, groups: who.Groups}).mayApprove(p.req.Approvers) {
		return ErrNotApprover
	}
	if approve && (p.idp[who.key()] || p.names[who.Username]) {
		return ErrAlreadyVoted
	}
	return nil
}

// MayDecideIdP says whether who may approve request id now, and if not
// why (for the console's queue: the decision checks again).
func (b *Broker) MayDecideIdP(id string, who IdPApprover) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	p, ok := b.pending[id]
	if !ok {
		return ErrNotFound
	}
	return mayDecideIdP(p, who, true)
}

// DecideIdP is Decide for a person signed in to the host's console: the
// rule's approvers name them by IdP username or group, they are none of
// the requester's names, and an approval names the SHA-256 of the text
// they read (expect, required). The decision is journaled with their IdP
// identity (ApprovalDecision.IdP) before the operation goes ahead or
// fails.
func (b *Broker) DecideIdP(ctx context.Context, id string, who IdPApprover, approve bool, reason, expect string) (model.ApprovalDecision, error) {
	b.mu.Lock()
	p, ok := b.pending[id]
	if !ok {
		b.mu.Unlock()
		return model.ApprovalDecision{}, ErrNotFound
	}
	if err := mayDecideIdP(p, who, approve); err != nil {
		b.mu.Unlock()
		return model.ApprovalDecision{}, err
	}
	if approve && !strings.EqualFold(strings.TrimPrefix(expect, "sha256:"), p.req.TextSHA256) {
		b.mu.Unlock()
		b.log.Warn("approval refused: the approver expected another text", "request", id, "username", who.Username,
			"expected", expect, "text_sha256", p.req.TextSHA256)
		return model.ApprovalDecision{}, ErrTextMismatch
	}
	final := true
	if approve {
		p.idp[who.key()] = true
		p.names[who.Username] = true
		final = p.approvals() >= p.req.Needed
	}
	return b.conclude(ctx, p, id, approve, final, reason, func(dec *model.ApprovalDecision) {
		dec.IdP = &model.IdPIdentity{Issuer: who.Issuer, Subject: who.Subject, Username: who.Username, Email: who.Email,
			Name: who.Name, Groups: slices.Clone(who.Groups)}
	}, "username", who.Username, "issuer", who.Issuer)
}
