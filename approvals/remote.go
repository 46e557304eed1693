package approvals

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/interlock/interlock/hub/decision"
	"github.com/interlock/interlock/hub/hubapi"
	"github.com/interlock/interlock/model"
)

// Approvals from anywhere (docs/hub.md): with the host enrolled in a
// fleet hub, each held request is also sent to the hub, where approvers
// signed in through the company's identity provider decide it, and the
// hub's signed decision comes back here. The broker acts on such a
// decision only after it verified it, and journals it whole first; local
// approval and the local timeout work as before, whether or not the hub
// answers.

// HubLink connects a broker to the fleet hub (ship.Approvals carries the
// calls).
type HubLink struct {
	// HostID is this host's id at the hub: a decision must name it.
	HostID string
	// Verifier checks the hub's decision signatures: decision.NewVerifier
	// of the hub key from enrolment (hub.pub).
	Verifier note.Verifier
	// Held is called once a request is journaled, Withdrawn once the
	// host decided one itself (timeout, local approval, session gone).
	// Neither may block.
	Held      func(hubapi.HeldRequest)
	Withdrawn func(id string)
}

// AttachHub links the broker to the hub; requests held from now on are
// sent to it.
func (b *Broker) AttachHub(l *HubLink) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.hub = l
}

func (b *Broker) link() *HubLink {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.hub
}

// held sends a journaled request to the hub, with the hash decisions
// must name it by.
func (b *Broker) held(p *pending, seq int64) {
	l := b.link()
	if l == nil {
		return
	}
	sum, err := decision.RequestSHA256(p.req)
	if err != nil {
		b.log.Error("approval request not sent to the hub", "request", p.req.ID, "err", err)
		return
	}
	b.mu.Lock()
	p.sha = sum
	b.mu.Unlock()
	if l.Held != nil {
		l.Held(hubapi.HeldRequest{Request: p.req, Deadline: p.deadline, RequestSHA256: sum, Seq: seq})
	}
}

func (b *Broker) withdrawn(id string) {
	if l := b.link(); l != nil && l.Withdrawn != nil {
		l.Withdrawn(id)
	}
}

// RefusedError is a hub decision the broker did not act on.
type RefusedError struct {
	ID, Why string
}

func (e *RefusedError) Error() string {
	return "approvals: hub decision on request " + e.ID + " refused: " + e.Why
}

// ApplyHubDecision verifies a decision from the hub and, if it holds,
// journals it whole and releases or refuses the held operation. It holds
// when its note verifies with the hub's key, it names this host, a
// request pending here and that request's hash, it has not expired, its
// scope is the request's, and no approver is the requester (by login
// user, sudo chain, process user or CI actor); an approval also needs the
// rule's count of distinct approvers. A decision that does not hold is
// journaled as approval.refused, with why, and changes nothing: the
// request stays pending (local approval, the timeout) when it was.
func (b *Broker) ApplyHubDecision(ctx context.Context, in hubapi.SignedDecision) error {
	l := b.link()
	if l == nil {
		return b.refuseHub(ctx, in, "", "no hub is attached to this host's approvals")
	}
	d, err := decision.Open(in, l.Verifier)
	if err != nil {
		return b.refuseHub(ctx, in, "", err.Error())
	}
	now := b.opts.Now()
	b.mu.Lock()
	p, ok := b.pending[d.RequestID]
	why := checkHubDecision(l, d, p, ok, now)
	var g *grant
	if why == "" {
		delete(b.pending, d.RequestID)
		b.notifyChange()
		if d.Verdict == model.VerdictApprove {
			g = b.newGrant(p)
		}
	}
	b.mu.Unlock()
	if why != "" {
		session := ""
		if ok {
			session = p.req.Session
		}
		return b.refuseHub(ctx, d, session, why)
	}

	hd := &model.HubDecision{Approver: idpIdentity(d.Approver), RequestSHA256: d.RequestSHA256,
		DecidedNS: d.DecidedAt.UnixNano(), ExpiresNS: d.ExpiresAt.UnixNano(), Signed: d.Signed}
	for _, a := range d.Approvers {
		hd.Approvers = append(hd.Approvers, idpIdentity(a))
	}
	dec := model.ApprovalDecision{ID: d.RequestID, Verdict: d.Verdict, Reason: d.Reason, Scope: d.Scope, Hub: hd}
	if g != nil && !g.expires.IsZero() {
		dec.ExpiresNS = g.expires.UnixNano()
	}
	// The decision, signed note and IdP identities, is on disk before the
	// operation goes ahead or fails.
	if _, err := b.opts.Journal.Append(ctx, model.Record{Kind: model.KindApprovalDecision, Session: p.req.Session, Data: dec}, model.Synced); err != nil {
		b.log.Error("journal hub decision; refusing the operation", "request", d.RequestID, "err", err)
		p.result <- deny(p.review, d.RequestID, "the journal cannot record the decision")
		return fmt.Errorf("journal the hub decision: %w", err)
	}
	b.log.Info("approval decision from the hub", "request", d.RequestID, "verdict", d.Verdict,
		"approver", d.Approver.Username, "issuer", d.Approver.Issuer)
	if d.Verdict != model.VerdictApprove {
		r := d.Reason
		if r == "" {
			r = "denied by " + d.Approver.Username + " through the hub"
		}
		p.result <- deny(p.review, d.RequestID, r)
		return nil
	}
	b.armGrant(g)
	p.result <- b.allowed(p.review, model.Decision{Action: model.Allow, Rule: p.review.Rule, Request: d.RequestID,
		Reason: fmt.Sprintf("approved through the hub by %d approver(s), last %s", len(d.Approvers), d.Approver.Username)})
	return nil
}

// checkHubDecision says why a verified decision may not be applied, ""
// when it may. b.mu is held.
func checkHubDecision(l *HubLink, d hubapi.SignedDecision, p *pending, ok bool, now time.Time) string {
	switch {
	case d.HostID != l.HostID:
		return fmt.Sprintf("the decision is for host %q; this host is %q", d.HostID, l.HostID)
	case !ok:
		return "request " + d.RequestID + " is not pending on this host (decided, timed out, or never held here)"
	case p.sha == "" || d.RequestSHA256 != p.sha:
		return fmt.Sprintf("the decision names request hash %s; the request pending as %s has %s", d.RequestSHA256, d.RequestID, p.sha)
	case !now.Before(d.ExpiresAt):
		return "the decision expired at " + d.ExpiresAt.UTC().Format(time.RFC3339)
	case d.Scope != p.req.Scope:
		return fmt.Sprintf("the decision grants scope %q; the request asks for %q", d.Scope, p.req.Scope)
	}
	names := decision.RequesterNames(p.req.Requester)
	if len(names) == 0 {
		return "nothing names the requester (no login user, process user or CI actor): an approver cannot be told from them"
	}
	all := append([]hubapi.Approver{d.Approver}, d.Approvers...)
	for _, a := range all {
		if a.Username == "" || a.Issuer == "" || a.Subject == "" {
			return "an approver has no username, issuer or subject"
		}
		if decision.IsRequester(names, a.Username) {
			return "approver " + a.Username + " is the requester"
		}
	}
	if d.Verdict == model.VerdictApprove {
		if !slices.ContainsFunc(d.Approvers, func(a hubapi.Approver) bool { return a.Issuer == d.Approver.Issuer && a.Subject == d.Approver.Subject }) {
			return "the deciding approver is not among the approvals counted"
		}
		var distinct []hubapi.Approver
		for _, a := range d.Approvers {
			if !slices.ContainsFunc(distinct, func(x hubapi.Approver) bool { return x.Issuer == a.Issuer && x.Subject == a.Subject }) {
				distinct = append(distinct, a)
			}
		}
		if len(distinct) < max(p.req.Needed, 1) {
			return fmt.Sprintf("%d distinct approver(s); the rule needs %d", len(distinct), p.req.Needed)
		}
	}
	return ""
}

// refuseHub journals a decision the broker did not act on.
func (b *Broker) refuseHub(ctx context.Context, d hubapi.SignedDecision, session, why string) error {
	rec := model.ApprovalRefused{ID: d.RequestID, Why: why, Verdict: d.Verdict, Approver: d.Approver.Username, Signed: d.Signed}
	b.log.Warn("hub decision refused", "request", d.RequestID, "why", why)
	if _, err := b.opts.Journal.Append(ctx, model.Record{Kind: model.KindApprovalRefused, Session: session, Data: rec}, model.Synced); err != nil {
		b.log.Error("journal refused hub decision", "request", d.RequestID, "err", err)
	}
	return &RefusedError{ID: d.RequestID, Why: why}
}

// IsRefused says whether err is a refused hub decision.
func IsRefused(err error) bool {
	var re *RefusedError
	return errors.As(err, &re)
}

func idpIdentity(a hubapi.Approver) model.IdPIdentity {
	return model.IdPIdentity{Issuer: a.Issuer, Subject: a.Subject, Username: a.Username, Email: a.Email, Name: a.Name, Groups: a.Groups}
}
