package policy

import (
	"errors"
	"fmt"
	"strings"

	"cel.dev/cel-go/cel"

	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/policy/cmdline"
)

// rule is a config rule compiled for evaluation.
type rule struct {
	name   string
	action model.Action
	reason string

	targets   []pattern
	protocols []model.Protocol
	id        *identityMatch
	op        *opMatch
	// needsProc is set when the identity match uses /proc facts: with the
	// process gone they are unknown, and then deny, review and mask rules
	// match (fail closed) while allow rules do not.
	needsProc bool
	claimed   []claimMatch

	when cel.Program
	// whenUse is what when reads.
	whenUse celUse

	review *config.ReviewConfig
	mask   *config.MaskConfig
	// effects is set for an effects rule: it judges a transaction's
	// effects at COMMIT (DecideEffects), never a statement.
	effects *effectsMatch
}

type claimMatch struct {
	name string
	glob pattern
}

// identityMatch and opMatch are the config's match sections with their
// globs compiled.
type identityMatch struct {
	users, groups, exes, cgroups, units, containers []pattern
	uids, gids                                      []int
	exeSHA256                                       []string
	// human and agents: identity.login_users, login_uids and agents
	// (match_human.go); verified: identity.verified (match_verified.go).
	human    *humanMatch
	verified *verifiedMatch
}

type opMatch struct {
	kinds, commands, paths []pattern
	// resources, namespaces and names match kubernetes requests.
	resources, namespaces, names []pattern
	// k8sUsers and k8sGroups match who a kubernetes request is made as.
	k8sUsers, k8sGroups []pattern
	pod                 *podMatch
	tables              []tablePattern
	// open is the sftp access the rule matches (operation.open).
	open              []string
	noWhere, readOnly *bool
	// opaque: the rule also applies to opaque statements, whatever their
	// kinds, tables, WHERE clause or read-only-ness. Set for deny and
	// review rules naming a write or DDL kind, unless include_opaque is
	// false: what an opaque statement does is not in its text.
	opaque bool
	// allowlist, on an exec allowlist's rule, permits commands: the rule
	// matches the exec and shell operations it does not (allowlist.go).
	allowlist *cmdline.Allowlist
}

func compileIdentity(m *config.IdentityMatch) *identityMatch {
	if m == nil {
		return nil
	}
	return &identityMatch{
		users: compileGlobs(m.Users), groups: compileGlobs(m.Groups), exes: compileGlobs(m.Exes),
		cgroups: compileGlobs(m.Cgroups), units: compileGlobs(m.Units), containers: compileGlobs(m.Containers),
		uids: m.UIDs, gids: m.GIDs, exeSHA256: m.ExeSHA256,
		human: compileHuman(m), verified: compileVerified(m),
	}
}

func compileOp(m *config.OperationMatch, action model.Action) *opMatch {
	if m == nil {
		return nil
	}
	return &opMatch{
		kinds: compileGlobs(m.Kinds), tables: compileTableGlobs(m.Tables), commands: compileGlobs(m.Commands),
		paths: compileGlobs(m.Paths), noWhere: m.NoWhere, readOnly: m.ReadOnly,
		resources: compileGlobs(m.Resources), namespaces: compileGlobs(m.Namespaces), names: compileGlobs(m.Names),
		k8sUsers: compileGlobs(m.K8sUsers), k8sGroups: compileGlobs(m.K8sGroups),
		pod:    compilePod(m.Pod),
		open:   m.Open,
		opaque: includesOpaque(action, m),
	}
}

// includesOpaque says whether a rule with this action and operation match
// also applies to opaque statements: a deny or review rule naming a kind
// of class write or ddl, unless include_opaque is false.
func includesOpaque(action model.Action, m *config.OperationMatch) bool {
	if m == nil || (action != model.Deny && action != model.Review) || (m.IncludeOpaque != nil && !*m.IncludeOpaque) {
		return false
	}
	for _, k := range m.Kinds {
		if c, ok := model.SQLKindClass(k); ok && (c == model.KindWrite || c == model.KindDDL) {
			return true
		}
	}
	return false
}

// ruleset is one config's compiled policy.
type ruleset struct {
	cfg *config.Config
	// rules judge operations (Decide); effects rules judge transactions'
	// effects (DecideEffects). No rule is in both.
	rules    []rule
	effects  []rule
	fallback model.Action
	// unknown is policy.unknown's action; unknownReview its approvers.
	unknown       model.Action
	unknownReview *config.ReviewConfig
	// unknownIdentity is policy.unknown_identity ("" when unset).
	unknownIdentity string
	// byKind indexes the rules that name operation kinds literally;
	// anyKind lists the others. Both hold rule indexes in rule order, so
	// an evaluation visits only the rules that can apply to its kinds.
	// A rule that also applies to opaque statements is indexed under
	// opaque too. all lists every rule, for a session's connect, which
	// every allow rule may open.
	byKind  map[string][]int
	anyKind []int
	all     []int
	// uncacheable says why a session may not keep decisions under these
	// rules ("" when it may); keyText says an operation's text is part of
	// what the rules read (session.go).
	uncacheable string
	keyText     bool
	// namesRead: a rule reads the identity's user or group names.
	namesRead bool
}

// index builds byKind, anyKind and all.
func (rs *ruleset) index() {
	rs.byKind = map[string][]int{}
	add := func(k string, i int) {
		if l := rs.byKind[k]; len(l) == 0 || l[len(l)-1] != i {
			rs.byKind[k] = append(l, i)
		}
	}
	for i := range rs.rules {
		rs.all = append(rs.all, i)
		op := rs.rules[i].op
		literal := op != nil && len(op.kinds) > 0
		if literal {
			for _, k := range op.kinds {
				literal = literal && k.literal
			}
		}
		if !literal {
			rs.anyKind = append(rs.anyKind, i)
			continue
		}
		for _, k := range op.kinds {
			add(k.s, i)
		}
		if op.opaque {
			add(model.SQLKindOpaque, i)
		}
	}
}

// compile turns the config's rules and the targets' shorthand rules
// (deny_statements, deny_exec, allow) into a ruleset. The shorthand comes
// first: it is the older, narrower form, and precedence does not depend on
// order anyway.
func compile(cfg *config.Config, env *cel.Env) (*ruleset, error) {
	rs := &ruleset{
		cfg: cfg, fallback: model.Action(cfg.Policy.DefaultAction()),
		unknown: model.Action(cfg.Policy.UnknownAction()), unknownReview: cfg.Policy.UnknownReview,
		unknownIdentity: cfg.Policy.UnknownIdentity,
	}
	var errs []error
	for _, t := range cfg.Targets {
		rs.rules = append(rs.rules, sugarRules(t)...)
	}
	for i, rc := range cfg.Policy.Rules {
		action := model.Action(rc.Action)
		r := rule{
			name:    rc.Name,
			action:  action,
			reason:  rc.Reason,
			targets: compileGlobs(rc.Match.Targets),
			id:      compileIdentity(rc.Match.Identity),
			op:      compileOp(rc.Match.Operation, action),
			review:  rc.Review,
			mask:    rc.Mask,
			effects: compileEffects(rc.Match.Effects),
		}
		for _, p := range rc.Match.Protocols {
			r.protocols = append(r.protocols, model.Protocol(p))
		}
		if id := rc.Match.Identity; id != nil {
			r.needsProc = len(id.Exes)+len(id.ExeSHA256)+len(id.Cgroups)+len(id.Units)+len(id.Containers) > 0
			for _, c := range id.Claimed {
				name, glob, _ := strings.Cut(c, "=")
				r.claimed = append(r.claimed, claimMatch{name, compileGlob(glob)})
			}
		}
		if rc.When != "" {
			prg, use, err := compileWhen(env, rc.When)
			if err != nil {
				errs = append(errs, cfg.Errorf(fmt.Sprintf("policy.rules[%d].when", i), "%v", err))
				continue
			}
			r.when, r.whenUse = prg, use
		}
		if r.effects != nil {
			rs.effects = append(rs.effects, r)
			continue
		}
		rs.rules = append(rs.rules, r)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	rs.index()
	rs.cacheability()
	return rs, nil
}

// cacheability works out what a session's kept decisions must be keyed
// by under these rules, or that they may not be kept.
func (rs *ruleset) cacheability() {
	for i := range rs.rules {
		r := &rs.rules[i]
		if r.when != nil && r.whenUse.now {
			rs.uncacheable = "the condition of rule " + r.name + " reads the time"
		}
		if r.when != nil && r.whenUse.opText || r.op != nil && (len(r.op.commands) > 0 || r.op.allowlist != nil) {
			rs.keyText = true
		}
		if r.when != nil && r.whenUse.identity || r.id != nil && len(r.id.users)+len(r.id.groups) > 0 {
			rs.namesRead = true
		}
	}
}

// sugarRules expresses a target's deny_statements, deny_exec and allow
// keys as rules.
func sugarRules(t config.TargetConfig) []rule {
	var out []rule
	base := "targets." + t.Name + "."
	if len(t.DenyStatements) > 0 {
		out = append(out, rule{
			name: base + "deny_statements", action: model.Deny,
			targets: compileGlobs([]string{t.Name}), protocols: []model.Protocol{model.ProtoPostgres},
			op:     compileOp(&config.OperationMatch{Kinds: t.DenyStatements}, model.Deny),
			reason: "statement kind denied on " + t.Name,
		})
	}
	if len(t.DenyExec) > 0 {
		out = append(out, rule{
			name: base + "deny_exec", action: model.Deny,
			targets: compileGlobs([]string{t.Name}), protocols: []model.Protocol{model.ProtoSSH},
			op:     compileOp(&config.OperationMatch{Kinds: []string{"exec"}, Commands: t.DenyExec}, model.Deny),
			reason: "command denied on " + t.Name,
		})
	}
	out = append(out, allowlistRules(t)...)
	if t.Protocol == model.ProtoSSH {
		// Forwarding is refused unless the target's allow section opens
		// it: a deny rule per closed kind.
		var closed []string
		a := t.Allow
		if a == nil || !a.PortForwarding {
			closed = append(closed, "port_forwarding")
		}
		if a == nil || !a.AgentForwarding {
			closed = append(closed, "agent_forwarding")
		}
		if a == nil || !a.X11 {
			closed = append(closed, "x11")
		}
		if len(closed) > 0 {
			out = append(out, rule{
				name: base + "allow", action: model.Deny,
				targets: compileGlobs([]string{t.Name}), protocols: []model.Protocol{model.ProtoSSH},
				op:     compileOp(&config.OperationMatch{Kinds: closed}, model.Deny),
				reason: "not allowed on " + t.Name + " (see its allow section)",
			})
		}
	}
	return out
}

// podMatch is an operation part's pod facts (operation.pod).
type podMatch struct {
	privileged, hostNS *bool
	serviceAccounts    []pattern
}

func compilePod(m *config.PodMatch) *podMatch {
	if m == nil {
		return nil
	}
	return &podMatch{privileged: m.Privileged, hostNS: m.HostNamespaces, serviceAccounts: compileGlobs(m.ServiceAccounts)}
}
