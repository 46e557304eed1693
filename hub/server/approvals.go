package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/interlock/interlock/hub/decision"
	"github.com/interlock/interlock/hub/hubapi"
	"github.com/interlock/interlock/hub/store"
	"github.com/interlock/interlock/model"
)

// The approvals loop through the hub (docs/hub.md, "Approvals from
// anywhere"): hosts post the operations they hold and long-poll for
// decisions; approvers signed in through the identity provider list and
// decide them; the hub checks who may decide, counts distinct approvers,
// signs the decision and keeps who decided.

// Errors of the approver API; ApprovalStatus maps them to HTTP statuses.
var (
	ErrNoRequest    = errors.New("no held request with that id")
	ErrNotPending   = errors.New("the request is no longer pending: decided, withdrawn by its host, or past its deadline")
	ErrNotApprover  = errors.New("you are not an approver of this request: the hub's approver role and a name or @group of its rule are both needed")
	ErrSelfApproval = errors.New("the requester cannot decide their own request (the same person by login user, sudo chain, process user or CI actor)")
	ErrAlreadyVoted = errors.New("you already approved this request; another approver is needed")
	ErrTextMismatch = errors.New("the held operation's text does not have the SHA-256 you expected; nothing was approved: read it again")
	// ErrExpectRequired: the rule (review.require_expect) accepts only
	// approvals bound to the held text's hash.
	ErrExpectRequired = errors.New("this request's rule requires approving with the held text's SHA-256 (expect_sha256); nothing was approved")
	ErrBadReason      = errors.New("the reason must be valid UTF-8 of at most 1000 bytes")
)

// ApprovalStatus is the HTTP status of an error of PendingApprovals or
// DecideApproval.
func ApprovalStatus(err error) int {
	switch {
	case errors.Is(err, ErrNoRequest):
		return http.StatusNotFound
	case errors.Is(err, ErrNotApprover), errors.Is(err, ErrSelfApproval):
		return http.StatusForbidden
	case errors.Is(err, ErrNotPending), errors.Is(err, ErrAlreadyVoted), errors.Is(err, ErrTextMismatch):
		return http.StatusConflict
	case errors.Is(err, ErrExpectRequired), errors.Is(err, ErrBadReason):
		return http.StatusUnprocessableEntity
	}
	return http.StatusServiceUnavailable
}

// Bounds of the host side of the loop.
const (
	maxHeldBytes = 16 << 20 // an operation's whole text, and its identity
	maxPollWait  = time.Minute
	// decisionTTL bounds how long a signed decision stays good, below the
	// request's deadline: one that the host gets late is refused.
	defaultDecisionTTL = 5 * time.Minute
)

// postHeld keeps a request the host holds (PathHostApprovals).
func (s *Server) postHeld(w http.ResponseWriter, r *http.Request, h store.Host) {
	var held hubapi.HeldRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxHeldBytes)).Decode(&held); err != nil {
		s.refuse(w, http.StatusBadRequest, hubapi.CodeBadRequest, "the body is not JSON of hubapi.HeldRequest (at most 16 MiB): "+err.Error(), nil)
		return
	}
	if err := checkHeld(held); err != nil {
		s.refuse(w, http.StatusBadRequest, hubapi.CodeBadRequest, err.Error(), nil)
		return
	}
	err := s.opts.Store.PutHeld(r.Context(), h.ID, held, s.opts.Now().UTC())
	if errors.Is(err, store.ErrHeldConflict) {
		s.refuse(w, http.StatusConflict, hubapi.CodeBadRequest, "request "+held.Request.ID+" is already held with other contents or on another host", nil)
		return
	}
	if err != nil {
		s.unavailable(w, "keeping the held request", err)
		return
	}
	s.log.Info("hub: operation held for approval", "host", h.ID, "request", held.Request.ID, "rule", held.Request.Rule, "deadline", held.Deadline)
	s.reply(w, struct{}{})
}

func checkHeld(h hubapi.HeldRequest) error {
	id := h.Request.ID
	if id == "" || len(id) > 64 || strings.IndexFunc(id, func(r rune) bool { return r <= ' ' || r == '/' || r >= 0x7f }) >= 0 {
		return errors.New("request.id: want 1 to 64 printable ASCII characters without / or spaces")
	}
	sum, err := decision.RequestSHA256(h.Request)
	if err != nil {
		return err
	}
	if sum != h.RequestSHA256 {
		return fmt.Errorf("request_sha256 %q is not the SHA-256 of the request's JSON (%s)", h.RequestSHA256, sum)
	}
	if h.Deadline.IsZero() {
		return errors.New("deadline: missing")
	}
	return nil
}

// deleteHeld withdraws a request (PathHostApprovals/{id}): the host
// decided it itself, or took the hub's decision.
func (s *Server) deleteHeld(w http.ResponseWriter, r *http.Request, h store.Host) {
	id := r.PathValue("id")
	state, err := s.opts.Store.WithdrawHeld(r.Context(), h.ID, id, s.opts.Now().UTC())
	if errors.Is(err, store.ErrNoHeld) {
		s.refuse(w, http.StatusNotFound, hubapi.CodeBadRequest, "this host holds no request "+id+" on the hub", nil)
		return
	}
	if err != nil {
		s.unavailable(w, "withdrawing the held request", err)
		return
	}
	s.reply(w, map[string]string{"state": state})
}

// hostDecisions answers the host's long poll (PathHostDecisions?wait=D):
// the decisions it has not taken yet, as soon as there is one, or none
// after D.
func (s *Server) hostDecisions(w http.ResponseWriter, r *http.Request, h store.Host) {
	var wait time.Duration
	if q := r.URL.Query().Get("wait"); q != "" {
		d, err := time.ParseDuration(q)
		if err != nil || d < 0 {
			s.refuse(w, http.StatusBadRequest, hubapi.CodeBadRequest, "wait: not a duration", nil)
			return
		}
		wait = min(d, maxPollWait)
	}
	end := time.Now().Add(wait)
	for {
		wake := s.decisionWake(h.ID)
		ds, err := s.opts.Store.DecisionsFor(r.Context(), h.ID)
		if err != nil {
			s.unavailable(w, "reading decisions", err)
			return
		}
		left := time.Until(end)
		if len(ds) > 0 || left <= 0 {
			if ds == nil {
				ds = []hubapi.SignedDecision{}
			}
			s.reply(w, ds)
			return
		}
		// Another hub on the same database may have decided: look again
		// every second as well as when this one decides.
		t := time.NewTimer(min(left, time.Second))
		select {
		case <-wake:
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
		t.Stop()
	}
}

// decisionWake is a channel closed at the next decision for hostID.
func (s *Server) decisionWake(hostID string) <-chan struct{} {
	s.wakeMu.Lock()
	defer s.wakeMu.Unlock()
	if s.wake == nil {
		s.wake = map[string]chan struct{}{}
	}
	c, ok := s.wake[hostID]
	if !ok {
		c = make(chan struct{})
		s.wake[hostID] = c
	}
	return c
}

func (s *Server) wakeHost(hostID string) {
	s.wakeMu.Lock()
	defer s.wakeMu.Unlock()
	if c, ok := s.wake[hostID]; ok {
		close(c)
		delete(s.wake, hostID)
	}
}

// isRequester says whether who is the requester of req; an error when
// nothing names the requester, who is then unknown and may be anyone.
func isRequester(who hubapi.Principal, req model.ApprovalRequest) (bool, error) {
	names := decision.RequesterNames(req.Requester)
	if len(names) == 0 {
		return false, fmt.Errorf("%w: nothing names the requester (no login user, process user or CI actor), so the hub cannot tell them from you", ErrSelfApproval)
	}
	return decision.IsRequester(names, who.Username), nil
}

// namedApprover says whether the rule's approvers (names and @groups)
// name who by their IdP username or groups.
func namedApprover(who hubapi.Principal, approvers []string) bool {
	return decision.NamesApprover(who.Username, who.Groups, approvers)
}

func sameApprover(a, b hubapi.Approver) bool { return a.Issuer == b.Issuer && a.Subject == b.Subject }

// mayDecide is nil when who may vote on h (approve says which vote).
func mayDecide(who hubapi.Principal, h store.Held, approve bool) error {
	if who.Username == "" || !who.Has(hubapi.RoleApprover) {
		return ErrNotApprover
	}
	self, err := isRequester(who, h.Held.Request)
	if err != nil {
		return err
	}
	if self {
		return ErrSelfApproval
	}
	if !namedApprover(who, h.Held.Request.Approvers) {
		return ErrNotApprover
	}
	if approve && slices.ContainsFunc(h.Votes, func(v store.Vote) bool { return v.Approve && sameApprover(v.Approver, who.Approver) }) {
		return ErrAlreadyVoted
	}
	return nil
}

// mayView says whether who sees h in the queue: auditors and admins see
// every request, approvers those their rule names, requesters their own.
func mayView(who hubapi.Principal, h store.Held) bool {
	if who.Has(hubapi.RoleAuditor) {
		return true
	}
	if who.Has(hubapi.RoleApprover) && namedApprover(who, h.Held.Request.Approvers) {
		return true
	}
	self, _ := isRequester(who, h.Held.Request)
	return self
}

func pendingOf(who hubapi.Principal, h store.Held) hubapi.PendingApproval {
	p := hubapi.PendingApproval{HostID: h.HostID, HostName: h.HostName, Held: h.Held}
	for _, v := range h.Votes {
		if v.Approve {
			p.Approvals++
		}
	}
	if err := mayDecide(who, h, true); err != nil {
		p.WhyNot = err.Error()
	} else {
		p.MayDecide = true
	}
	return p
}

// PendingApprovals lists the pending requests who may see, oldest first.
func (s *Server) PendingApprovals(ctx context.Context, who hubapi.Principal) ([]hubapi.PendingApproval, error) {
	hs, err := s.opts.Store.PendingHeld(ctx, s.opts.Now())
	if err != nil {
		return nil, err
	}
	out := []hubapi.PendingApproval{}
	for _, h := range hs {
		if mayView(who, h) {
			out = append(out, pendingOf(who, h))
		}
	}
	return out, nil
}

// PendingApproval is one pending request, if who may see it.
func (s *Server) PendingApproval(ctx context.Context, who hubapi.Principal, id string) (hubapi.PendingApproval, error) {
	h, err := s.opts.Store.GetHeld(ctx, id)
	if errors.Is(err, store.ErrNoHeld) || err == nil && !mayView(who, h) {
		return hubapi.PendingApproval{}, ErrNoRequest
	}
	if err != nil {
		return hubapi.PendingApproval{}, err
	}
	if h.State != store.HeldPending || !s.opts.Now().Before(h.Held.Deadline) {
		return hubapi.PendingApproval{}, ErrNotPending
	}
	return pendingOf(who, h), nil
}

// DecideApproval records who's verdict on request id. A deny decides at
// once; an approval decides when the rule's needed count of distinct
// approvers is reached. The decision is signed and kept, and the host
// gets it at its next poll; before that, the answer says how many more
// approvals are needed (StillNeeded, nothing signed).
func (s *Server) DecideApproval(ctx context.Context, who hubapi.Principal, id string, d hubapi.DecideRequest) (hubapi.SignedDecision, error) {
	if len(d.Reason) > 1000 || !utf8.ValidString(d.Reason) {
		return hubapi.SignedDecision{}, ErrBadReason
	}
	var out hubapi.SignedDecision
	var hostID string
	err := s.opts.Store.Decide(ctx, id, func(h store.Held) (store.Vote, *hubapi.SignedDecision, error) {
		now := s.opts.Now().UTC()
		req := h.Held.Request
		if h.State != store.HeldPending || !now.Before(h.Held.Deadline) {
			return store.Vote{}, nil, ErrNotPending
		}
		if err := mayDecide(who, h, d.Approve); err != nil {
			return store.Vote{}, nil, err
		}
		if d.Approve {
			switch {
			case d.ExpectSHA256 != "" && !strings.EqualFold(strings.TrimPrefix(d.ExpectSHA256, "sha256:"), req.TextSHA256):
				return store.Vote{}, nil, ErrTextMismatch
			case d.ExpectSHA256 == "" && req.RequireExpect:
				return store.Vote{}, nil, ErrExpectRequired
			}
		}
		vote := store.Vote{Approver: who.Approver, Approve: d.Approve, Reason: d.Reason, At: now}
		var approvers []hubapi.Approver
		for _, v := range h.Votes {
			if v.Approve {
				approvers = append(approvers, v.Approver)
			}
		}
		needed := max(req.Needed, 1)
		if d.Approve {
			approvers = append(approvers, who.Approver)
			if len(approvers) < needed {
				out = hubapi.SignedDecision{RequestID: id, RequestSHA256: h.Held.RequestSHA256, HostID: h.HostID,
					Verdict: model.VerdictApprove, Scope: req.Scope, Approver: who.Approver, Approvers: approvers,
					DecidedAt: now, StillNeeded: needed - len(approvers)}
				return vote, nil, nil
			}
		} else {
			approvers = []hubapi.Approver{who.Approver}
		}
		ttl := s.opts.DecisionTTL
		if ttl <= 0 {
			ttl = defaultDecisionTTL
		}
		sd := hubapi.SignedDecision{RequestID: id, RequestSHA256: h.Held.RequestSHA256, HostID: h.HostID,
			Verdict: model.VerdictDeny, Reason: d.Reason, Scope: req.Scope, Approver: who.Approver, Approvers: approvers,
			DecidedAt: now, ExpiresAt: minTime(now.Add(ttl), h.Held.Deadline)}
		if d.Approve {
			sd.Verdict = model.VerdictApprove
		}
		if err := decision.Sign(&sd, s.opts.Keys.Decisions); err != nil {
			return store.Vote{}, nil, err
		}
		out, hostID = sd, h.HostID
		return vote, &sd, nil
	})
	switch {
	case errors.Is(err, store.ErrNoHeld):
		return hubapi.SignedDecision{}, ErrNoRequest
	case errors.Is(err, store.ErrHeldConflict):
		return hubapi.SignedDecision{}, ErrAlreadyVoted
	case err != nil:
		return hubapi.SignedDecision{}, err
	}
	s.log.Info("hub: approval vote", "request", id, "approver", who.Username, "issuer", who.Issuer,
		"approve", d.Approve, "final", out.Signed != "", "still_needed", out.StillNeeded)
	if hostID != "" {
		s.wakeHost(hostID)
	}
	return out, nil
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// approvalError answers an error of the approver API.
func (s *Server) approvalError(w http.ResponseWriter, err error) {
	status := ApprovalStatus(err)
	if status == http.StatusServiceUnavailable {
		s.unavailable(w, "the approvals store", err)
		return
	}
	code := map[int]string{http.StatusNotFound: hubapi.CodeNotFound, http.StatusForbidden: hubapi.CodeForbidden,
		http.StatusConflict: hubapi.CodeConflict}[status]
	if code == "" {
		code = hubapi.CodeBadRequest
	}
	s.refuse(w, status, code, err.Error(), nil)
}

func (s *Server) listApprovals(w http.ResponseWriter, r *http.Request, who hubapi.Principal) {
	ps, err := s.PendingApprovals(r.Context(), who)
	if err != nil {
		s.approvalError(w, err)
		return
	}
	s.reply(w, ps)
}

func (s *Server) getApproval(w http.ResponseWriter, r *http.Request, who hubapi.Principal) {
	p, err := s.PendingApproval(r.Context(), who, r.PathValue("id"))
	if err != nil {
		s.approvalError(w, err)
		return
	}
	s.reply(w, p)
}

func (s *Server) decideApproval(w http.ResponseWriter, r *http.Request, who hubapi.Principal) {
	var d hubapi.DecideRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&d); err != nil {
		s.refuse(w, http.StatusBadRequest, hubapi.CodeBadRequest, "the body is not JSON of hubapi.DecideRequest", nil)
		return
	}
	sd, err := s.DecideApproval(r.Context(), who, r.PathValue("id"), d)
	if err != nil {
		s.approvalError(w, err)
		return
	}
	s.reply(w, sd)
}
