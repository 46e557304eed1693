// Package approvals is the just-in-time approval loop: it holds an
// operation a review rule caught, tells the approvers, takes their
// decisions (identified by the kernel, never by a flag), and grants the
// operation, the rest of the session, or a time window. Every request,
// decision and grant expiry is journaled before it takes effect.
package approvals

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/user"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/interlock/interlock/hub/decision"
	"github.com/interlock/interlock/internal/textview"
	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/policy"
)

// Errors an approver gets.
var (
	ErrNotFound     = errors.New("no pending request with that id")
	ErrSelfApproval = errors.New("the requester cannot decide their own request (same uid)")
	ErrNotApprover  = errors.New("you are not an approver for this request")
	ErrAlreadyVoted = errors.New("you already approved this request; another approver is needed")
	// ErrTextMismatch: the approver approved with --expect a hash that is
	// not the held text's. They read something else (another request, a
	// view that hid part of it): nothing is approved.
	ErrTextMismatch = errors.New("the held operation's text does not have the SHA-256 you expected; nothing was approved: read it again with `interlock approvals show ID` and approve with the hash it prints")
	// ErrExpectRequired: the rule (review.require_expect) accepts only
	// approvals bound to the held text's hash.
	ErrExpectRequired = errors.New("this request's rule requires approving with --expect: read it with `interlock approvals show ID` and approve with the SHA-256 it prints; nothing was approved")
)

// Approver is who decides, as the kernel reported the caller of the
// approvals socket (SO_PEERCRED).
type Approver struct {
	PID      int32
	UID, GID uint32
}

// Options configure a Broker.
type Options struct {
	Journal model.Recorder
	// Identify resolves an approver's full identity for the journal.
	Identify func(ctx context.Context, pid int32, uid, gid uint32) model.Identity
	// Notify is called for each new request (the webhook); it must not
	// block for long.
	Notify func(req model.ApprovalRequest)
	Logger *slog.Logger
	// Host names this host in what a held client is told (where to run
	// `interlock approvals approve`); ConsoleURL is the console's base
	// URL, where approvers decide too ("": no link).
	Host       string
	ConsoleURL string
	// Now is the clock (tests).
	Now func() time.Time
}

// Broker holds operations for review. It implements policy.Reviewer.
type Broker struct {
	opts    Options
	log     *slog.Logger
	console atomic.Pointer[string]

	mu      sync.Mutex
	pending map[string]*pending
	grants  map[string]*grant
	// changed is closed and replaced whenever the pending set changes, so
	// watchers can wait for news.
	changed chan struct{}
	// hub, when attached, takes held requests to the fleet hub and brings
	// its signed decisions back (remote.go).
	hub *HubLink
}

type pending struct {
	req      model.ApprovalRequest
	review   policy.ReviewRequest
	created  time.Time
	deadline time.Time
	approved map[uint32]bool
	// idp are the approvals of people signed in to the host's console
	// (issuer and subject, idp.go); names the usernames of everyone who
	// approved, by either way, so that one person counts once.
	idp    map[string]bool
	names  map[string]bool
	result chan model.Decision
	// sha is the request's hash as sent to the hub (remote.go).
	sha string
}

type grant struct {
	id      string // the request it came from
	rule    string
	scope   string
	session string // scope session
	who     string // scope ttl: identity key
	target  string
	expires time.Time
	timer   *time.Timer
}

// New returns a broker.
func New(opts Options) *Broker {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	b := &Broker{opts: opts, log: opts.Logger, pending: map[string]*pending{}, grants: map[string]*grant{}, changed: make(chan struct{})}
	b.SetConsoleURL(opts.ConsoleURL)
	return b
}

func (b *Broker) notifyChange() {
	close(b.changed)
	b.changed = make(chan struct{})
}

// identityKey names "this identity" for a ttl grant: the uid and the
// executable (by hash when known), which the process cannot forge. When
// the executable facts are not verified against the kernel's record
// (another user or mount namespace, an exec between connect and accept),
// they name nothing, and the grant covers that one process alone.
func identityKey(id model.Identity) string {
	if !id.Proc.ExeTrusted() {
		start := id.Kernel.ProcStartNS
		if start == 0 {
			start = id.Kernel.ConnectBootNS
		}
		return strconv.FormatUint(uint64(id.Kernel.UID), 10) + "|process " +
			strconv.FormatUint(uint64(id.Kernel.TGID), 10) + "@" + strconv.FormatUint(start, 10)
	}
	exe := ""
	if id.Proc != nil {
		exe = id.Proc.ExeSHA256
		if exe == "" {
			exe = id.Proc.Exe
		}
	}
	return strconv.FormatUint(uint64(id.Kernel.UID), 10) + "|" + exe
}

func scopeOf(rr policy.ReviewRequest) string {
	if rr.Review.Scope == "" {
		return "once"
	}
	return rr.Review.Scope
}

// Review implements policy.Reviewer: it blocks until the request is
// decided, times out, or ctx ends (the session went away).
func (b *Broker) Review(ctx context.Context, rr policy.ReviewRequest) model.Decision {
	if g := b.findGrant(rr); g != nil {
		return b.allowed(rr, model.Decision{Action: model.Allow, Rule: rr.Rule, Grant: g.id,
			Reason: "covered by the " + g.scope + " grant of request " + g.id})
	}
	id, err := uuid.NewV7()
	if err != nil {
		return deny(rr, "", "could not create an approval request: "+err.Error())
	}
	needed := rr.Review.Needed
	if needed == 0 {
		needed = 1
	}
	req := model.ApprovalRequest{
		ID: id.String(), Requester: rr.Origin.Identity, Target: rr.Origin.Target.Name,
		Operation: rr.Operation, Rule: rr.Rule, Reason: rr.Reason, Approvers: rr.Review.Approvers, Needed: needed,
		Scope: scopeOf(rr), TimeoutNS: rr.Timeout.Nanoseconds(), Session: rr.Origin.Session,
		TextSHA256: textview.Hash(rr.Operation.Text), RequireExpect: rr.Review.RequireExpect,
	}
	if !utf8.ValidString(rr.Operation.Text) {
		req.TextBytes = []byte(rr.Operation.Text)
	}
	// The request is on disk before anyone is told of it.
	seq, err := b.opts.Journal.Append(ctx, model.Record{Kind: model.KindApprovalRequest, Session: rr.Origin.Session, Data: req}, model.Synced)
	if err != nil {
		return deny(rr, req.ID, "the journal cannot record the approval request: "+err.Error())
	}
	now := b.opts.Now()
	p := &pending{req: req, review: rr, created: now, deadline: now.Add(rr.Timeout), approved: map[uint32]bool{},
		idp: map[string]bool{}, names: map[string]bool{}, result: make(chan model.Decision, 1)}
	b.mu.Lock()
	b.pending[req.ID] = p
	b.notifyChange()
	b.mu.Unlock()
	tell(rr.Tell, b.heldNotice(p))
	b.log.Info("operation held for approval", "request", req.ID, "rule", rr.Rule, "target", req.Target,
		"session", rr.Origin.Session, "op", rr.Operation.Kind, "timeout", rr.Timeout)
	if b.opts.Notify != nil {
		go b.opts.Notify(req)
	}
	b.held(p, int64(seq))

	timer := time.NewTimer(rr.Timeout)
	defer timer.Stop()
	var d model.Decision
	verdict := model.VerdictDeny
	select {
	case d = <-p.result:
	case <-timer.C:
		d, verdict = b.close(p, model.VerdictTimeout, "no decision within "+rr.Timeout.String()), model.VerdictTimeout
	case <-ctx.Done():
		return b.close(p, model.VerdictDeny, "the session ended while the operation was held")
	}
	if d.Action == model.Allow || d.Action == model.Mask {
		verdict = model.VerdictApprove
	}
	tell(rr.Tell, outcomeNotice(p, verdict, d))
	return d
}

// close ends a request nobody decided (timeout, session gone): it is
// journaled as a decision of the system's. A request no longer pending
// was decided meanwhile: its decision is returned.
func (b *Broker) close(p *pending, verdict, reason string) model.Decision {
	b.mu.Lock()
	if b.pending[p.req.ID] != p {
		b.mu.Unlock()
		return <-p.result
	}
	delete(b.pending, p.req.ID)
	b.notifyChange()
	b.mu.Unlock()
	dec := model.ApprovalDecision{ID: p.req.ID, Verdict: verdict, Reason: reason}
	if _, err := b.opts.Journal.Append(context.Background(), model.Record{Kind: model.KindApprovalDecision, Session: p.req.Session, Data: dec}, model.Synced); err != nil {
		b.log.Error("journal approval timeout", "request", p.req.ID, "err", err)
	}
	b.withdrawn(p.req.ID)
	return deny(p.review, p.req.ID, reason)
}

func deny(rr policy.ReviewRequest, id, reason string) model.Decision {
	return model.Decision{Action: model.Deny, Rule: rr.Rule, Request: id, Reason: reason}
}

// allowed is the decision for an approved (or granted) operation: masked
// if mask rules also applied.
func (b *Broker) allowed(rr policy.ReviewRequest, d model.Decision) model.Decision {
	if rr.Mask != nil {
		d.Action = model.Mask
		d.Mask = rr.Mask
	}
	return d
}

// Decide records an approver's verdict on a pending request.
func (b *Broker) Decide(ctx context.Context, id string, who Approver, approve bool, reason string) (model.ApprovalDecision, error) {
	return b.DecideExpect(ctx, id, who, approve, reason, "")
}

// DecideExpect is Decide that, when expect is set, approves only if the
// held text's SHA-256 (hex) is expect: the approver approves exactly the
// bytes they read. A mismatch is ErrTextMismatch and changes nothing. A
// deny needs no hash: refusing what one did not read is safe.
func (b *Broker) DecideExpect(ctx context.Context, id string, who Approver, approve bool, reason, expect string) (model.ApprovalDecision, error) {
	caller := lookupAccount(who.UID)
	b.mu.Lock()
	p, ok := b.pending[id]
	if !ok {
		b.mu.Unlock()
		return model.ApprovalDecision{}, ErrNotFound
	}
	if who.UID == p.req.Requester.Kernel.UID {
		b.mu.Unlock()
		return model.ApprovalDecision{}, ErrSelfApproval
	}
	if !caller.mayApprove(p.req.Approvers) {
		b.mu.Unlock()
		return model.ApprovalDecision{}, ErrNotApprover
	}
	if approve && (p.approved[who.UID] || p.names[caller.name]) {
		b.mu.Unlock()
		return model.ApprovalDecision{}, ErrAlreadyVoted
	}
	if approve && expect == "" && p.req.RequireExpect {
		b.mu.Unlock()
		return model.ApprovalDecision{}, ErrExpectRequired
	}
	if approve && expect != "" && !strings.EqualFold(strings.TrimPrefix(expect, "sha256:"), p.req.TextSHA256) {
		b.mu.Unlock()
		b.log.Warn("approval refused: the approver expected another text", "request", id, "uid", who.UID,
			"expected", expect, "text_sha256", p.req.TextSHA256)
		return model.ApprovalDecision{}, ErrTextMismatch
	}
	final := true
	if approve {
		p.approved[who.UID] = true
		p.names[caller.name] = true
		final = p.approvals() >= p.req.Needed
	}
	return b.conclude(ctx, p, id, approve, final, reason, func(dec *model.ApprovalDecision) {
		if b.opts.Identify != nil {
			dec.Approver = b.opts.Identify(ctx, who.PID, who.UID, who.GID)
		} else {
			dec.Approver = model.Identity{Kernel: model.KernelFacts{PID: uint32(who.PID), TGID: uint32(who.PID), UID: who.UID, GID: who.GID}}
		}
	}, "uid", who.UID)
}

// approvals counts the approvals so far, by either way.
func (p *pending) approvals() int { return len(p.approved) + len(p.idp) }

// conclude journals a vote on p and, when it is final, releases or
// refuses the operation. It is called with b.mu held and releases it;
// approver fills in who decided.
func (b *Broker) conclude(ctx context.Context, p *pending, id string, approve, final bool, reason string,
	approver func(*model.ApprovalDecision), logWho ...any) (model.ApprovalDecision, error) {
	verdict := model.VerdictDeny
	if approve {
		verdict = model.VerdictApprove
	}
	var g *grant
	if final {
		delete(b.pending, id)
		b.notifyChange()
		if approve {
			g = b.newGrant(p)
		}
		defer b.withdrawn(id)
	}
	b.mu.Unlock()

	dec := model.ApprovalDecision{ID: id, Verdict: verdict, Reason: reason, Scope: p.req.Scope}
	approver(&dec)
	if g != nil && !g.expires.IsZero() {
		dec.ExpiresNS = g.expires.UnixNano()
	}
	// The decision is on disk before the operation goes ahead or fails.
	if _, err := b.opts.Journal.Append(ctx, model.Record{Kind: model.KindApprovalDecision, Session: p.req.Session, Data: dec}, model.Synced); err != nil {
		b.log.Error("journal approval decision; refusing the operation", "request", id, "err", err)
		if final {
			// g was never armed: nothing to take back.
			p.result <- deny(p.review, id, "the journal cannot record the decision")
		}
		return dec, fmt.Errorf("journal the decision: %w", err)
	}
	b.log.Info("approval decision", append([]any{"request", id, "verdict", verdict, "final", final}, logWho...)...)
	if !final {
		return dec, nil
	}
	if !approve {
		r := reason
		if r == "" {
			r = "denied by an approver"
		}
		p.result <- deny(p.review, id, r)
		return dec, nil
	}
	b.armGrant(g)
	p.result <- b.allowed(p.review, model.Decision{Action: model.Allow, Rule: p.review.Rule, Request: id,
		Reason: fmt.Sprintf("approved by %d approver(s)", p.approvals())})
	return dec, nil
}

// account is a caller's user name and group names, looked up once per
// call and before the broker's lock is taken: the lookups go through NSS
// (maybe LDAP) and must not hold up Review.
type account struct {
	name   string // "" when the uid has no user
	groups []string
}

func lookupAccount(uid uint32) account {
	u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10))
	if err != nil {
		return account{}
	}
	a := account{name: u.Username}
	ids, _ := u.GroupIds()
	for _, gid := range ids {
		if g, err := user.LookupGroupId(gid); err == nil {
			a.groups = append(a.groups, g.Name)
		}
	}
	return a
}

// mayApprove checks the account against approver names and @groups.
func (a account) mayApprove(approvers []string) bool {
	return decision.NamesApprover(a.name, a.groups, approvers)
}

// Pending is a request waiting for a decision; control/server converts it
// to the wire type controlapi.Pending.
type Pending struct {
	Request  model.ApprovalRequest `json:"request"`
	Created  time.Time             `json:"created"`
	Deadline time.Time             `json:"deadline"`
	// Approvals so far, and whether the caller may decide.
	Approvals int  `json:"approvals"`
	MayDecide bool `json:"may_decide"`
}

// List returns the pending requests who may see, oldest first, saying for
// each whether who may decide it. A request shows SQL text and commands,
// so only its approvers, its requester's uid and root see it: the
// approvals socket is open to every local user.
func (b *Broker) List(who Approver) []Pending {
	caller := lookupAccount(who.UID)
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]Pending, 0, len(b.pending))
	for _, p := range b.pending {
		approver := caller.mayApprove(p.req.Approvers)
		requester := who.UID == p.req.Requester.Kernel.UID
		if !approver && !requester && who.UID != 0 {
			continue
		}
		out = append(out, Pending{
			Request: p.req, Created: p.created, Deadline: p.deadline, Approvals: p.approvals(),
			MayDecide: !requester && approver && !p.approved[who.UID] && !p.names[caller.name],
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out
}

// Changed returns a channel closed at the next change of the pending set.
func (b *Broker) Changed() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.changed
}

// PendingCount is the number of held operations.
func (b *Broker) PendingCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.pending)
}
