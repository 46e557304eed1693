// Package policy decides what an identity may do to a target: allow, deny,
// hold for review, or mask. It is pure: it reads the config and the facts
// it is given, and knows nothing of the kernel, the wire or the journal.
// Holding an operation for review is delegated to a Reviewer (the
// approvals broker), so the decision function itself stays pure.
//
// Precedence: among the rules that match an operation, deny beats review,
// review beats allow. A mask rule never allows anything: it masks what an
// allowed or approved operation returns. An allow rule applies only when
// its kinds cover every kind the statement holds; deny and review rules
// apply when any kind matches. With no rule allowing, policy.default
// applies. Rule order does not matter.
//
// Statements interlock could not parse (kind unknown) on a target with
// deny or review rules get policy.unknown; effects rules judge what a
// transaction did, at COMMIT (DecideEffects), not its statements.
package policy

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"cel.dev/cel-go/cel"

	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/internal/accounts"
	"github.com/interlock/interlock/model"
)

// Reviewer holds an operation until a human decides, or until ctx ends or
// the rule's timeout passes (both deny). It journals the request and the
// decisions itself and returns the final decision.
type Reviewer interface {
	Review(ctx context.Context, req ReviewRequest) model.Decision
}

// ReviewRequest is an operation a review rule holds.
type ReviewRequest struct {
	Origin    model.Origin
	Operation model.Operation
	Rule      string
	Reason    string
	Review    config.ReviewConfig
	Timeout   time.Duration
	// Mask is the masking the operation gets once approved.
	Mask *model.MaskSpec
	// Tell tells the client whose operation is held (nil: the handler
	// cannot): the request id, the rule, who may approve and where, the
	// deadline, and then the outcome. It comes from the ctx the handler
	// passed to Decide (model.WithTeller).
	Tell model.Teller
}

// Policy is the decision function handlers consult. It is safe for
// concurrent use; SetConfig swaps the rules atomically.
type Policy struct {
	env      *cel.Env
	rs       atomic.Pointer[ruleset]
	reviewer atomic.Pointer[reviewerBox]
	now      func() time.Time
	// names names the uids and gids of identities the resolver could not
	// inspect, for rules and conditions written with names.
	names *accounts.Names
}

type reviewerBox struct{ r Reviewer }

// New compiles cfg's policy. It fails on a CEL condition that does not
// compile; Config.Validate has checked the rest.
func New(cfg *config.Config) (*Policy, error) {
	env, err := newEnv()
	if err != nil {
		return nil, fmt.Errorf("policy: CEL environment: %w", err)
	}
	p := &Policy{env: env, now: time.Now, names: accounts.NewNames()}
	if err := p.SetConfig(cfg); err != nil {
		return nil, err
	}
	return p, nil
}

// MustNew is New for configs known to be good (tests).
func MustNew(cfg *config.Config) *Policy {
	p, err := New(cfg)
	if err != nil {
		panic(err)
	}
	return p
}

// SetConfig replaces the rules (on SIGHUP). A config that does not compile
// leaves the running rules in place.
func (p *Policy) SetConfig(cfg *config.Config) error {
	rs, err := compile(cfg, p.env)
	if err != nil {
		return err
	}
	p.rs.Store(rs)
	return nil
}

// PrepareConfig compiles cfg's rules without putting them in force, so a
// reload can check every part of a config before it changes any. apply
// puts them in force; the undo it returns puts back the rules it replaced.
func (p *Policy) PrepareConfig(cfg *config.Config) (apply func() (undo func()), err error) {
	rs, err := compile(cfg, p.env)
	if err != nil {
		return nil, err
	}
	return func() (undo func()) {
		old := p.rs.Swap(rs)
		return func() { p.rs.Store(old) }
	}, nil
}

// SetReviewer installs the approvals broker. Without one, a review is a
// deny: nobody could approve it.
func (p *Policy) SetReviewer(r Reviewer) { p.reviewer.Store(&reviewerBox{r}) }

// DecideConnect judges a session's connection to its target. For postgres
// and ssh targets, whose operations are each judged on their own, any
// allow rule that applies to the identity and target lets the session
// start, whatever its kinds; deny and review rules on connect (or without
// kinds) still refuse or hold it.
func (p *Policy) DecideConnect(ctx context.Context, o model.Origin) model.Decision {
	d := p.Decide(ctx, o, model.Operation{Protocol: o.Target.Protocol, Kind: "connect"})
	if d.Action == model.Mask {
		// Masking applies to what operations return, not to the
		// connection itself: the session may start.
		d.Action, d.Mask = model.Allow, nil
	}
	return d
}

// Decide judges one operation inside a session. A review blocks until the
// Reviewer returns.
func (p *Policy) Decide(ctx context.Context, o model.Origin, op model.Operation) model.Decision {
	d, req := p.evaluate(o, op)
	return p.hold(ctx, d, req)
}

// hold sends a review to the Reviewer and returns its decision; other
// decisions are returned as they are.
func (p *Policy) hold(ctx context.Context, d model.Decision, req *ReviewRequest) model.Decision {
	if d.Action != model.Review {
		return d
	}
	box := p.reviewer.Load()
	if box == nil {
		return model.Decision{Action: model.Deny, Rule: d.Rule, Reason: "held for review, but no approvals broker runs here to decide"}
	}
	r := *req
	r.Tell = model.TellerOf(ctx)
	return box.r.Review(ctx, r)
}

// Evaluate returns what Decide would decide, without holding anything: a
// review comes back as a Review decision. `interlock policy test` uses it.
func (p *Policy) Evaluate(o model.Origin, op model.Operation) model.Decision {
	d, _ := p.evaluate(o, op)
	return d
}

// noTarget is the decision for an origin whose target left the config.
var noTarget = model.Decision{Action: model.Deny, Rule: "no-target", Reason: "the target is no longer configured"}

// isSession says whether op is the connect that starts a session whose
// operations are judged one by one.
func isSession(op *model.Operation) bool {
	return op.Kind == "connect" && len(op.Kinds) == 0 && (op.Protocol == model.ProtoPostgres || op.Protocol == model.ProtoSSH || op.Protocol == model.ProtoKubernetes)
}

func (p *Policy) evaluate(o model.Origin, op model.Operation) (model.Decision, *ReviewRequest) {
	return p.evaluateIn(p.rs.Load(), o, op)
}

// evaluateIn is evaluate under the rule set rs.
func (p *Policy) evaluateIn(rs *ruleset, o model.Origin, op model.Operation) (model.Decision, *ReviewRequest) {
	if _, ok := rs.cfg.Target(o.Target.Name); !ok && o.Target.Name != "" {
		return noTarget, nil
	}
	if d, ok := rs.unknownIdentityDecision(o, op); ok {
		return d, nil
	}
	session := isSession(&op)
	var (
		act          *lazyActivation
		review       *rule
		reviewOpaque bool
		allow        *rule
		masks        []model.MaskRule
	)
	var lists [8][]int
	var cand [][]int
	if session {
		cand = append(lists[:0], rs.all)
	} else {
		cand = candidates(rs, op, lists[:0])
	}
	for next := nextRule(cand); next >= 0; next = nextRule(cand) {
		r := &rs.rules[next]
		v := r.matches(o, op, p.names, session)
		if v.res == noMatch {
			continue
		}
		if v.res == unknown && r.lenient() {
			// An allow rule about the process cannot apply to a
			// process interlock could not inspect.
			continue
		}
		if ok, _ := p.holds(r, &act, &o, &op); !ok {
			continue
		}
		switch r.action {
		case model.Deny:
			reason := allowlistReason(r, op)
			if reason == "" {
				reason = ruleReason(r, "denied by rule "+r.name, v.opaque)
			}
			return model.Decision{Action: model.Deny, Rule: r.name, Reason: reason}, nil
		case model.Review:
			if review == nil {
				review, reviewOpaque = r, v.opaque
			}
		case model.Mask:
			masks = append(masks, model.MaskRule{Rule: r.name, Columns: r.mask.Columns, Detectors: r.mask.Detectors, Live: r.mask.Live, Transfers: r.mask.Transfers})
		case model.Allow:
			if allow == nil {
				allow = r
			}
		}
	}
	var spec *model.MaskSpec
	if len(masks) > 0 {
		spec = &model.MaskSpec{Rules: masks}
	}

	// A statement interlock could not parse, on a target someone guards
	// with deny or review rules: policy.unknown decides (a deny rule that
	// matched it, say one naming unknown, has decided already).
	unknownAllowed := false
	if hasKind(op, model.SQLKindUnknown) && rs.guard(o.Target.Name, op.Protocol) != "" {
		reason := unknownReason(op, rs.unknown)
		switch rs.unknown {
		case model.Review:
			if rs.unknownReview == nil {
				return model.Decision{Action: model.Deny, Rule: "policy.unknown", Reason: reason + ", but policy.unknown_review names no approvers"}, nil
			}
			d := model.Decision{Action: model.Review, Rule: "policy.unknown", Reason: reason, Mask: spec}
			return d, &ReviewRequest{
				Origin: o, Operation: op, Rule: "policy.unknown", Reason: reason,
				Review: *rs.unknownReview, Timeout: rs.cfg.Policy.Timeout(rs.unknownReview), Mask: spec,
			}
		case model.Allow:
			unknownAllowed = true
		default:
			return model.Decision{Action: model.Deny, Rule: "policy.unknown", Reason: reason}, nil
		}
	}

	if review != nil {
		reason := allowlistReason(review, op)
		if reason == "" {
			reason = ruleReason(review, "", reviewOpaque)
		}
		d := model.Decision{Action: model.Review, Rule: review.name, Reason: reason, Mask: spec}
		return d, &ReviewRequest{
			Origin: o, Operation: op, Rule: review.name, Reason: reason,
			Review: *review.review, Timeout: rs.cfg.Policy.Timeout(review.review), Mask: spec,
		}
	}

	// Only an allow rule, policy.unknown: allow or policy.default: allow
	// lets the operation through; a mask rule never does.
	var grant, grantReason string
	switch {
	case allow != nil:
		grant, grantReason = allow.name, allow.reason
	case unknownAllowed:
		grant, grantReason = "policy.unknown", unknownReason(op, rs.unknown)
	case rs.fallback != model.Deny:
		grant = "policy.default"
	}
	if grant == "" {
		reason := "no rule allows this operation (policy.default: deny)"
		if spec != nil {
			reason += "; a mask rule only masks what an allowed operation returns"
		}
		return model.Decision{Action: model.Deny, Rule: "policy.default", Reason: reason}, nil
	}
	if spec != nil {
		names := make([]string, len(masks))
		for i, m := range masks {
			names[i] = m.Rule
		}
		by := "rule " + grant
		if strings.HasPrefix(grant, "policy.") {
			by = grant
		}
		return model.Decision{Action: model.Mask, Rule: strings.Join(names, ","), Reason: "allowed by " + by + ", results masked", Mask: spec}, nil
	}
	return model.Decision{Action: model.Allow, Rule: grant, Reason: grantReason}, nil
}

// identityUnknown says why interlock could not establish who connected,
// or "" when it could: the process was gone or not the one that
// connected, or its executable at accept is not the file that made the
// connect.
func identityUnknown(id model.Identity) string {
	switch {
	case id.Proc == nil:
		if id.ProcError != "" {
			return id.ProcError
		}
		return "the process could not be inspected"
	case id.Proc.ExeTrust == model.ExeUnknown:
		if id.ProcError != "" {
			return id.ProcError
		}
		return "the program identity could not be checked against the kernel's record"
	}
	return ""
}

// unknownIdentityDecision applies policy.unknown_identity: a session of a
// process interlock could not identify is denied where it matters.
func (rs *ruleset) unknownIdentityDecision(o model.Origin, op model.Operation) (model.Decision, bool) {
	why := identityUnknown(o.Identity)
	if why == "" {
		return model.Decision{}, false
	}
	switch rs.unknownIdentity {
	case "allow":
		return model.Decision{}, false
	case "deny":
	default:
		if rs.guard(o.Target.Name, op.Protocol) == "" {
			return model.Decision{}, false
		}
	}
	return model.Decision{Action: model.Deny, Rule: "policy.unknown_identity",
		Reason: "interlock could not establish who connected (" + why + "); policy.unknown_identity is deny"}, true
}

// lenient rules (allow) do not apply when what they depend on is
// unknown; deny, review and mask rules then do (fail closed: unknown
// never opens anything, and never unmasks data either).
func (r *rule) lenient() bool { return r.action == model.Allow }

// holds evaluates r's `when` condition (true without one). A condition
// that fails to evaluate holds for a deny, review or mask rule and not for
// an allow rule; the error is returned for `policy test`. act is
// built on first use, so that one activation serves every condition of
// a decision.
func (p *Policy) holds(r *rule, act **lazyActivation, o *model.Origin, op *model.Operation) (bool, error) {
	if r.when == nil {
		return true, nil
	}
	if *act == nil {
		*act = newActivation(*o, *op, p.now(), p.names)
	}
	out, _, err := r.when.Eval(*act)
	if err != nil {
		return !r.lenient(), err
	}
	b, ok := out.Value().(bool)
	return ok && b, nil
}

// ruleReason is a deny or review rule's reason (def when it gives none),
// saying when the rule applied only because the statement is opaque.
func ruleReason(r *rule, def string, opaque bool) string {
	reason := r.reason
	if reason == "" {
		reason = def
	}
	if !opaque {
		return reason
	}
	note := "the statement is opaque (it runs code whose effects its text does not show), and rule " + r.name +
		" also applies to opaque statements (include_opaque)"
	if reason == "" {
		return note
	}
	return reason + "; " + note
}

// unknownReason says why policy.unknown decided.
func unknownReason(op model.Operation, action model.Action) string {
	msg := "interlock could not parse the statement"
	if op.Detail != "" {
		msg += " (" + op.Detail + ")"
	}
	return msg + "; policy.unknown is " + string(action)
}

// guard returns the name of a deny or review rule (effects rules
// included) whose targets and protocols take in this target and protocol,
// whatever its other parts, or "" when there is none.
func (rs *ruleset) guard(target string, proto model.Protocol) string {
	for _, list := range [][]rule{rs.rules, rs.effects} {
		for i := range list {
			r := &list[i]
			if (r.action == model.Deny || r.action == model.Review) && r.takes(target, proto) {
				return r.name
			}
		}
	}
	return ""
}

// takes says whether the rule's targets and protocols take in this target
// and protocol.
func (r *rule) takes(target string, proto model.Protocol) bool {
	return (len(r.targets) == 0 || anyMatch(r.targets, target)) &&
		(len(r.protocols) == 0 || slices.Contains(r.protocols, proto))
}

// candidates gathers the index lists of the rules that may apply to op:
// those without a literal kind, and those naming one of op's kinds.
func candidates(rs *ruleset, op model.Operation, lists [][]int) [][]int {
	lists = append(lists, rs.anyKind)
	if l := rs.byKind[op.Kind]; len(l) > 0 {
		lists = append(lists, l)
	}
	for _, k := range op.Kinds {
		if k == op.Kind {
			continue
		}
		if l := rs.byKind[k]; len(l) > 0 {
			lists = append(lists, l)
		}
	}
	return lists
}

// nextRule pops the smallest rule index across the sorted lists (merging
// them in rule order, each rule once), or -1 when all are empty.
func nextRule(lists [][]int) int {
	best := -1
	for _, l := range lists {
		if len(l) > 0 && (best < 0 || l[0] < best) {
			best = l[0]
		}
	}
	if best < 0 {
		return -1
	}
	for i := range lists {
		for len(lists[i]) > 0 && lists[i][0] == best {
			lists[i] = lists[i][1:]
		}
	}
	return best
}
