package policy

import (
	"context"
	"hash/maphash"
	"slices"
	"sync"

	"cel.dev/cel-go/cel"
	celast "cel.dev/cel-go/common/ast"

	"github.com/interlock/interlock/model"
)

// A session's statements repeat: a pool's connection runs the same few
// statements all day. Session keeps the decision for each operation it
// has judged, so that the next one like it is not judged again: the
// same origin (one session's), the same rules (a reload starts afresh),
// and an operation equal in every part a rule can read.
//
// What a rule can read is known when the rules compile: the operation's
// kinds, tables, flags, detail, path and accesses always; its text when a
// rule matches commands or a `when` condition reads op.text (or op by a
// computed key); when a rule matches users or groups or a condition reads
// the identity, the names of an origin whose process facts lack them come
// from the account cache, and are checked on every call. A `when`
// condition that reads `now` makes every decision of its rule set depend
// on the time: under such rules nothing is kept. Reviews are never kept
// (each one asks a human), nor are effects judgements.

// maxSessionDecisions bounds the decisions a session keeps; beyond it one
// is dropped for each new one.
const maxSessionDecisions = 256

// maxKeyText bounds the text of an operation whose decision is kept when
// the text is part of the key.
const maxKeyText = 4 << 10

// Session judges the operations of one origin. Safe for concurrent use.
type Session struct {
	p    *Policy
	o    model.Origin
	seed maphash.Seed

	mu sync.Mutex
	// rs is the rule set the kept decisions were made under; user and
	// group the account names they saw.
	rs          *ruleset
	user, group string
	kept        map[uint64]keptDecision
}

type keptDecision struct {
	op model.Operation
	d  model.Decision
}

// Session returns the decision function of one session of origin o.
func (p *Policy) Session(o model.Origin) *Session {
	return &Session{p: p, o: o, seed: maphash.MakeSeed()}
}

// SessionDecider is Session as the handlers ask for it
// (inspect.SessionPolicy).
func (p *Policy) SessionDecider(o model.Origin) model.Decider { return p.Session(o) }

// Decide is Policy.Decide for the session's origin.
func (s *Session) Decide(ctx context.Context, op model.Operation) model.Decision {
	rs := s.p.rs.Load()
	if len(rs.rules) == 0 || rs.uncacheable != "" || op.Effects != nil || rs.keyText && len(op.Text) > maxKeyText {
		// Without rules the defaults decide at once: keeping costs more.
		return s.p.Decide(ctx, s.o, op)
	}
	h := s.hash(&op, rs.keyText)
	user, group := s.names(rs)
	s.mu.Lock()
	s.refresh(rs, user, group)
	if k, ok := s.kept[h]; ok && sameOp(&k.op, &op, rs.keyText) {
		d := k.d
		s.mu.Unlock()
		return d
	}
	s.mu.Unlock()
	d, req := s.p.evaluateIn(rs, s.o, op)
	if d.Action == model.Review {
		return s.p.hold(ctx, d, req)
	}
	s.mu.Lock()
	if s.rs == rs {
		if len(s.kept) >= maxSessionDecisions {
			for k := range s.kept {
				delete(s.kept, k)
				break
			}
		}
		s.kept[h] = keptDecision{op: keyOf(op, rs.keyText), d: d}
	}
	s.mu.Unlock()
	return d
}

// names are the origin's user and group names as the rules rs would see
// them, when they come from the account cache (a lookup may wait for
// NSS, so not under s.mu); "" otherwise.
func (s *Session) names(rs *ruleset) (user, group string) {
	if p := s.o.Identity.Proc; rs.namesRead && (p == nil || p.User == "" || p.Group == "") {
		return userName(s.o.Identity, s.p.names), groupName(s.o.Identity, s.p.names)
	}
	return "", ""
}

// refresh drops the kept decisions when the rules changed, or the
// account names of the origin did (s.mu held).
func (s *Session) refresh(rs *ruleset, user, group string) {
	if s.rs == rs && s.kept != nil && user == s.user && group == s.group {
		return
	}
	s.rs, s.user, s.group = rs, user, group
	s.kept = map[uint64]keptDecision{}
}

func (s *Session) hash(op *model.Operation, text bool) uint64 {
	var h maphash.Hash
	h.SetSeed(s.seed)
	str := func(v string) {
		h.WriteString(v)
		h.WriteByte(0)
	}
	list := func(l []string) {
		for _, v := range l {
			str(v)
		}
		h.WriteByte(1)
	}
	str(string(op.Protocol))
	str(op.Kind)
	list(op.Kinds)
	list(op.Tables)
	list(op.Open)
	str(op.Path)
	str(op.Detail)
	str(op.Resource)
	str(op.Namespace)
	str(op.Name)
	// Who a kubernetes request is made as may change within a session
	// (a client's bearer tokens): a decision kept for one must not
	// answer for another.
	str(op.K8sUser)
	list(op.K8sGroups)
	if p := op.Pod; p != nil {
		str("pod")
		str(p.ServiceAccount)
		var f byte
		for i, b := range []bool{p.Privileged, p.HostPID, p.HostNetwork, p.HostIPC} {
			if b {
				f |= 1 << i
			}
		}
		h.WriteByte(f)
	}
	if text {
		str(op.Text)
	}
	var flags byte
	if op.ReadOnly {
		flags |= 1
	}
	if op.NoWhere {
		flags |= 2
	}
	h.WriteByte(flags)
	return h.Sum64()
}

// keyOf keeps the parts of op a rule can read, its lists copied (the
// caller's may be shared).
func keyOf(op model.Operation, text bool) model.Operation {
	k := model.Operation{Protocol: op.Protocol, Kind: op.Kind, Kinds: slices.Clone(op.Kinds), Tables: slices.Clone(op.Tables),
		Open: slices.Clone(op.Open), Path: op.Path, Detail: op.Detail, ReadOnly: op.ReadOnly, NoWhere: op.NoWhere,
		Resource: op.Resource, Namespace: op.Namespace, Name: op.Name,
		K8sUser: op.K8sUser, K8sGroups: slices.Clone(op.K8sGroups)}
	if op.Pod != nil {
		p := *op.Pod
		k.Pod = &p
	}
	if text {
		k.Text = op.Text
	}
	return k
}

func sameOp(k, op *model.Operation, text bool) bool {
	return k.Protocol == op.Protocol && k.Kind == op.Kind && slices.Equal(k.Kinds, op.Kinds) &&
		slices.Equal(k.Tables, op.Tables) && slices.Equal(k.Open, op.Open) && k.Path == op.Path &&
		k.Detail == op.Detail && k.ReadOnly == op.ReadOnly && k.NoWhere == op.NoWhere &&
		k.Resource == op.Resource && k.Namespace == op.Namespace && k.Name == op.Name &&
		k.K8sUser == op.K8sUser && slices.Equal(k.K8sGroups, op.K8sGroups) &&
		(k.Pod == nil) == (op.Pod == nil) && (k.Pod == nil || *k.Pod == *op.Pod) &&
		(!text || k.Text == op.Text)
}

// celUse is what a `when` condition reads, as far as caching cares.
type celUse struct {
	now bool
	// opText: it reads op.text, or op by a key it computes.
	opText bool
	// identity: it reads the identity (whose user and group may be
	// names the account cache gives).
	identity bool
}

// usesOf walks a checked condition for the variables it reads. An
// identifier named like a variable counts even where a macro binds it
// (op in [1].exists(op, ...)): that only makes caching more careful.
func usesOf(ast *cel.Ast) celUse {
	var u celUse
	e := ast.NativeRep().Expr()
	selected := map[int64]bool{}
	celast.PreOrderVisit(e, celast.NewExprVisitor(func(x celast.Expr) {
		switch x.Kind() {
		case celast.SelectKind:
			sel := x.AsSelect()
			if op := sel.Operand(); op.Kind() == celast.IdentKind && op.AsIdent() == "op" {
				selected[op.ID()] = true
				if sel.FieldName() == "text" {
					u.opText = true
				}
			}
		case celast.IdentKind:
			switch x.AsIdent() {
			case "now":
				u.now = true
			case "identity":
				u.identity = true
			case "op":
				if !selected[x.ID()] {
					u.opText = true
				}
			}
		}
	}))
	return u
}
