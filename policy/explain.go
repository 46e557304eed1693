package policy

import (
	"fmt"
	"slices"
	"strings"

	"github.com/interlock/interlock/model"
)

// Explanation says how Evaluate came to its decision on one operation:
// what interlock found in it, which rules of its target applied and which
// did not (and why), and why the winner won. `interlock policy test`
// prints it.
type Explanation struct {
	// Kinds are every kind the operation holds, its own first.
	Kinds    []string `json:"kinds"`
	Tables   []string `json:"tables,omitempty"`
	ReadOnly bool     `json:"read_only"`
	NoWhere  bool     `json:"no_where,omitempty"`
	// Opaque: the statement runs code whose effects its text does not
	// show. Unknown: interlock could not parse it (ParseError says why).
	Opaque     bool   `json:"opaque,omitempty"`
	Unknown    bool   `json:"unknown,omitempty"`
	ParseError string `json:"parse_error,omitempty"`
	// Rules are the rules whose targets and protocols take in the
	// operation's, in config order (targets' shorthand rules first).
	Rules []RuleTrace `json:"rules,omitempty"`
	// Why says why the decision is what it is.
	Why string `json:"why"`
}

// RuleTrace is one rule's part in an Explanation.
type RuleTrace struct {
	Rule    string       `json:"rule"`
	Action  model.Action `json:"action"`
	Applies bool         `json:"applies"`
	// Note says why it applies or not.
	Note string `json:"note,omitempty"`
}

// Explain returns Evaluate's decision with its explanation. It is slower
// than Evaluate (it looks at every rule) and meant for people.
func (p *Policy) Explain(o model.Origin, op model.Operation) (model.Decision, Explanation) {
	d := p.Evaluate(o, op)
	rs := p.rs.Load()
	ex := Explanation{
		Kinds: opKinds(op), Tables: op.Tables, ReadOnly: op.ReadOnly, NoWhere: op.NoWhere,
		Opaque: hasKind(op, model.SQLKindOpaque), Unknown: hasKind(op, model.SQLKindUnknown),
	}
	if ex.Unknown {
		ex.ParseError = op.Detail
	}
	if d.Rule == noTarget.Rule && d.Reason == noTarget.Reason {
		ex.Why = d.Reason
		return d, ex
	}
	session := isSession(&op)
	var act *lazyActivation
	for i := range rs.rules {
		r := &rs.rules[i]
		v := r.matches(o, op, p.names, session)
		if v.miss == missTarget || v.miss == missProtocol {
			continue
		}
		tr := RuleTrace{Rule: r.name, Action: r.action}
		switch {
		case v.res == noMatch:
			tr.Note = missNote(r, op, v.miss)
		case v.res == unknown && r.lenient():
			tr.Note = "what it asks of the process could not be established (the process unread, its login, agent or verified workload unknown): an " + string(r.action) + " rule then does not apply"
		default:
			ok, err := p.holds(r, &act, &o, &op)
			switch {
			case err != nil && ok:
				tr.Applies, tr.Note = true, "its condition (when) failed ("+err.Error()+"): a "+string(r.action)+" rule then applies"
			case err != nil:
				tr.Note = "its condition (when) failed (" + err.Error() + "): an " + string(r.action) + " rule then does not apply"
			case !ok:
				tr.Note = "its condition (when) is false"
			default:
				tr.Applies, tr.Note = true, applyNote(r, op, v, session)
			}
		}
		ex.Rules = append(ex.Rules, tr)
	}
	for i := range rs.effects {
		r := &rs.effects[i]
		if r.takes(o.Target.Name, op.Protocol) {
			ex.Rules = append(ex.Rules, RuleTrace{Rule: r.name, Action: r.action,
				Note: "an effects rule: it judges what a transaction did, when it commits (if the target's check_effects is on), not statements"})
		}
	}
	ex.Why = why(rs, d, o.Target.Name, op, ex.Rules)
	return d, ex
}

// opKinds lists the operation's kinds, its own first, each once.
func opKinds(op model.Operation) []string {
	var out []string
	if op.Kind != "" {
		out = append(out, op.Kind)
	}
	for _, k := range op.Kinds {
		if !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	return out
}

// patterns lists globs as written.
func patterns(ps []pattern) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.s
	}
	return strings.Join(s, ", ")
}

// noun is what the docs call an operation of op's protocol.
func noun(op model.Operation) string {
	if op.Protocol == model.ProtoPostgres {
		return "statement"
	}
	return "operation"
}

func missNote(r *rule, op model.Operation, m miss) string {
	switch m {
	case missKind:
		return "none of its kinds (" + patterns(r.op.kinds) + ") is among the " + noun(op) + "'s"
	case missCover:
		k := uncovered(r.op, op)
		note := "does not cover kind " + k
		if k == model.SQLKindOpaque || k == model.SQLKindUnknown {
			note += " (an allow rule covers " + k + " statements only when its kinds name " + k + ")"
		} else {
			note += " (an allow rule must cover every kind of the " + noun(op) + ")"
		}
		return note
	case missTables:
		s := make([]string, len(r.op.tables))
		for i, t := range r.op.tables {
			s[i] = t.s
		}
		return "none of its tables (" + strings.Join(s, ", ") + ") is among the " + noun(op) + "'s"
	case missNoWhere:
		return fmt.Sprintf("no_where: %t does not match", *r.op.noWhere)
	case missReadOnly:
		return fmt.Sprintf("read_only: %t does not match", *r.op.readOnly)
	case missCommand:
		if r.op != nil && r.op.allowlist != nil {
			if op.Kind == "shell" && op.Text != "" {
				return "the allowlist judges this command line as the exec it is, not again as a shell"
			}
			return "the target's exec allowlist permits the command line"
		}
		return "the command line does not match its commands"
	case missPath:
		return "the path does not match its paths"
	case missResource:
		return "the resource does not match its resources"
	case missNamespace:
		return "the namespace does not match its namespaces"
	case missName:
		return "the object's name does not match its names"
	case missK8sUser:
		return "the kubernetes user the request is made as does not match its k8s_users"
	case missK8sGroup:
		return "none of the kubernetes groups the request is made as matches its k8s_groups"
	case missPod:
		if op.Pod == nil {
			return "the pod could not be read, and an allow rule does not apply to unknown pod facts"
		}
		return "the pod's facts do not match its pod part"
	case missOpen:
		needs := "none"
		if len(op.Open) > 0 {
			needs = strings.Join(op.Open, ", ")
		}
		if r.action == model.Allow {
			return "its open (" + strings.Join(r.op.open, ", ") + ") does not cover every access the operation needs (" + needs + ")"
		}
		return "none of the accesses the operation needs (" + needs + ") is among its open (" + strings.Join(r.op.open, ", ") + ")"
	case missIdentity:
		return "the identity does not match"
	}
	return "does not match"
}

func applyNote(r *rule, op model.Operation, v verdict, session bool) string {
	var notes []string
	switch {
	case r.action == model.Allow && session:
		notes = append(notes, "an allow rule lets the session start; each operation is judged on its own")
	case r.action == model.Allow && (r.op == nil || len(r.op.kinds) == 0):
		notes = append(notes, "covers every kind")
	case r.action == model.Allow:
		notes = append(notes, "covers every kind of the "+noun(op)+" ("+strings.Join(opKinds(op), ", ")+")")
	case v.opaque:
		notes = append(notes, "the statement is opaque and the rule names a write or DDL kind: it applies whatever the statement's kinds and tables (include_opaque)")
	}
	if v.res == unknown {
		notes = append(notes, "what it asks of the process could not be established (the process unread, its login, agent or verified workload unknown): a "+string(r.action)+" rule then applies")
	}
	if r.action == model.Mask {
		notes = append(notes, "masks what the operation returns, if it is allowed")
	}
	return strings.Join(notes, "; ")
}

// why explains the decision from the rules' traces.
func why(rs *ruleset, d model.Decision, target string, op model.Operation, rules []RuleTrace) string {
	applied := func(a model.Action) []string {
		var out []string
		for _, r := range rules {
			if r.Applies && r.Action == a {
				out = append(out, r.Rule)
			}
		}
		return out
	}
	masks := applied(model.Mask)
	maskNote := ""
	if len(masks) > 0 {
		maskNote = "; mask rule " + strings.Join(masks, ", ") + " masks what it returns"
	}
	switch {
	case d.Rule == "policy.unknown" && d.Action != model.Allow && d.Action != model.Mask:
		return "interlock could not parse the statement, and deny or review rules guard target " + target +
			" (such as " + rs.guard(target, op.Protocol) + "): policy.unknown decides: " + string(rs.unknown)
	case d.Action == model.Deny && d.Rule == "policy.default":
		msg := "no allow rule applies"
		if len(opKinds(op)) > 0 {
			msg = "no allow rule covers every kind of the " + noun(op) + " (" + strings.Join(opKinds(op), ", ") + ")"
		}
		msg += ", and policy.default is deny"
		if len(masks) > 0 {
			msg += "; mask rule " + strings.Join(masks, ", ") + " applies, but a mask rule never allows"
		}
		return msg
	case d.Action == model.Deny:
		return "deny rule " + d.Rule + " applies; a deny beats every other rule"
	case d.Action == model.Review:
		return "review rule " + d.Rule + " applies and no deny rule does: the operation is held until approvers decide" + maskNote
	case d.Action == model.Mask:
		return strings.TrimSuffix(d.Reason, ", results masked") + maskNote + " (a mask rule never allows on its own)"
	case d.Rule == "policy.default":
		return "no deny, review or allow rule applies, and policy.default is allow"
	case d.Rule == "policy.unknown":
		return "interlock could not parse the statement, and deny or review rules guard target " + target +
			": policy.unknown is allow, and no deny or review rule applies"
	}
	return "allow rule " + d.Rule + " applies and no deny, review or mask rule does"
}
