// Package policy decides what an identity may do to a target: allow, deny,
// hold for review, or mask. It is pure: it reads the config and the facts
// it is given, and knows nothing of the kernel, the wire or the journal.
// Holding an operation for review is delegated to a Reviewer (the
// approvals broker), so the decision function itself stays pure.
//
// Precedence: among the rules that match an operation, deny beats review,
// review beats mask, mask beats allow; with none matching, policy.default
// applies. Rule order does not matter.
package policy

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"cel.dev/cel-go/cel"

	"github.com/interlock/interlock/accounts"
	"github.com/interlock/interlock/config"
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

// SetReviewer installs the approvals broker. Without one, a review is a
// deny: nobody could approve it.
func (p *Policy) SetReviewer(r Reviewer) { p.reviewer.Store(&reviewerBox{r}) }

// DecideConnect judges a session's connection to its target.
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
	if d.Action != model.Review {
		return d
	}
	box := p.reviewer.Load()
	if box == nil {
		return model.Decision{Action: model.Deny, Rule: d.Rule, Reason: "held for review, but no approvals broker runs here to decide"}
	}
	return box.r.Review(ctx, *req)
}

// Evaluate returns what Decide would decide, without holding anything: a
// review comes back as a Review decision. `interlock policy test` uses it.
func (p *Policy) Evaluate(o model.Origin, op model.Operation) model.Decision {
	d, _ := p.evaluate(o, op)
	return d
}

func (p *Policy) evaluate(o model.Origin, op model.Operation) (model.Decision, *ReviewRequest) {
	rs := p.rs.Load()
	if _, ok := rs.cfg.Target(o.Target.Name); !ok && o.Target.Name != "" {
		return model.Decision{Action: model.Deny, Rule: "no-target", Reason: "the target is no longer configured"}, nil
	}
	var (
		act    *lazyActivation
		review *rule
		allow  *rule
		masks  []model.MaskRule
	)
	var lists [8][]int
	cand := candidates(rs, op, lists[:0])
	for next := nextRule(cand); next >= 0; next = nextRule(cand) {
		r := &rs.rules[next]
		m := r.matches(o, op, p.names)
		if m == noMatch {
			continue
		}
		lenient := r.action == model.Allow || r.action == model.Mask
		if m == unknown && lenient {
			// An allow or mask rule about the process cannot apply to a
			// process interlock could not inspect.
			continue
		}
		if r.when != nil {
			if act == nil {
				// One activation serves every condition of this decision.
				act = newActivation(o, op, p.now(), p.names)
			}
			out, _, err := r.when.Eval(act)
			if err != nil {
				if lenient {
					continue
				}
				// A deny or review whose condition cannot be evaluated
				// applies: fail closed.
			} else if b, ok := out.Value().(bool); !ok || !b {
				continue
			}
		}
		switch r.action {
		case model.Deny:
			reason := r.reason
			if reason == "" {
				reason = "denied by rule " + r.name
			}
			return model.Decision{Action: model.Deny, Rule: r.name, Reason: reason}, nil
		case model.Review:
			if review == nil {
				review = r
			}
		case model.Mask:
			masks = append(masks, model.MaskRule{Rule: r.name, Columns: r.mask.Columns, Detectors: r.mask.Detectors, Live: r.mask.Live})
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
	if review != nil {
		d := model.Decision{Action: model.Review, Rule: review.name, Reason: review.reason, Mask: spec}
		return d, &ReviewRequest{
			Origin: o, Operation: op, Rule: review.name, Reason: review.reason,
			Review: *review.review, Timeout: rs.cfg.Policy.Timeout(review.review), Mask: spec,
		}
	}
	if spec != nil {
		names := make([]string, len(masks))
		for i, m := range masks {
			names[i] = m.Rule
		}
		return model.Decision{Action: model.Mask, Rule: strings.Join(names, ","), Mask: spec}, nil
	}
	if allow != nil {
		return model.Decision{Action: model.Allow, Rule: allow.name, Reason: allow.reason}, nil
	}
	if rs.fallback == model.Deny {
		return model.Decision{Action: model.Deny, Rule: "policy.default", Reason: "no rule allows this operation (policy.default: deny)"}, nil
	}
	return model.Decision{Action: model.Allow, Rule: "policy.default"}, nil
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

// DecideEffects judges a transaction about to commit by its effects.
// TODO(effects): evaluate the effects rules; until then nothing is judged.
func (p *Policy) DecideEffects(ctx context.Context, o model.Origin, op model.Operation) model.Decision {
	return model.Decision{Action: model.Allow, Rule: "policy.effects"}
}

// EffectsRules says whether any effects rule can apply to o.
func (p *Policy) EffectsRules(o model.Origin) bool { return false }
