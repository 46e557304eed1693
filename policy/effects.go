package policy

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/model"
)

// Effects rules judge what a postgres transaction did, as the server
// reports it from inside the transaction before its COMMIT goes through
// (model.PGEffects), where text rules judge what a statement says. They
// are deny and review rules only: at COMMIT interlock can refuse or hold
// the transaction, nothing else.

// effectsMatch is a rule's match.effects, compiled.
type effectsMatch struct {
	// tables select the relations the row and storage conditions look
	// at; none selects every relation that is not a system catalog.
	tables                              []tablePattern
	inserted, updated, deleted, written *int64
	dropped, truncated, altered         bool
	catalog, roles                      bool
}

func compileEffects(m *config.EffectsMatch) *effectsMatch {
	if m == nil {
		return nil
	}
	return &effectsMatch{
		tables:   compileTableGlobs(m.Tables),
		inserted: m.RowsInsertedOver, updated: m.RowsUpdatedOver, deleted: m.RowsDeletedOver, written: m.RowsWrittenOver,
		dropped: m.Dropped, truncated: m.Truncated, altered: m.Altered, catalog: m.Catalog, roles: m.Roles,
	}
}

// hit returns what holds of the effects, such as
// "public.orders: 250 rows deleted > 100", or "" when no condition does.
func (m *effectsMatch) hit(e *model.PGEffects) string {
	for _, t := range e.Tables {
		if !m.selects(t) {
			continue
		}
		if why := m.relationHit(t); why != "" {
			return why
		}
	}
	if m.catalog {
		for _, t := range e.Tables {
			if n := written(t); t.System && n > 0 {
				return fmt.Sprintf("%s: system catalog changed (%d rows written)", t.Name, n)
			}
		}
	}
	if m.roles {
		for _, t := range e.Tables {
			if n := written(t); n > 0 && isRoleCatalog(t) {
				return fmt.Sprintf("%s: roles changed (%d rows written)", t.Name, n)
			}
		}
	}
	return ""
}

// relationHit checks the row and storage conditions on one selected
// relation. Dropping or rewriting a relation the transaction itself
// created changes nothing that existed before, and is not counted.
func (m *effectsMatch) relationHit(t model.PGTableEffect) string {
	over := func(limit *int64, n int64, what string) string {
		if limit != nil && n > *limit {
			return fmt.Sprintf("%s: %d rows %s > %d", t.Name, n, what, *limit)
		}
		return ""
	}
	for _, why := range []string{
		over(m.deleted, t.Deleted, "deleted"),
		over(m.updated, t.Updated, "updated"),
		over(m.inserted, t.Inserted, "inserted"),
		over(m.written, written(t), "written (inserted, updated or deleted)"),
	} {
		if why != "" {
			return why
		}
	}
	switch {
	case m.dropped && t.Dropped && !t.Created:
		return t.Name + " dropped"
	case m.truncated && t.Rewritten && !t.Created:
		return t.Name + " truncated or rewritten"
	case m.altered && t.Altered():
		return t.Name + " altered (" + t.Lock + ")"
	}
	return ""
}

func written(t model.PGTableEffect) int64 { return t.Inserted + t.Updated + t.Deleted }

func isRoleCatalog(t model.PGTableEffect) bool {
	return slices.Contains(model.RoleCatalogs, t.Name) ||
		slices.ContainsFunc(t.Also, func(a string) bool { return slices.Contains(model.RoleCatalogs, a) })
}

// selects says whether the rule's tables take in the relation, by its
// name or any of its other names. Without tables every relation but the
// system catalogs is selected; a system catalog only by a glob that names
// its schema (pg_catalog.*, pg_catalog.pg_class), never by one such as
// *.pg_class or a bare name.
func (m *effectsMatch) selects(t model.PGTableEffect) bool {
	if len(m.tables) == 0 {
		return !t.System
	}
	if m.selectsName(t.Name, t.System) {
		return true
	}
	for _, a := range t.Also {
		if m.selectsName(a, t.System) {
			return true
		}
	}
	return false
}

func (m *effectsMatch) selectsName(name string, system bool) bool {
	full, short := splitTable(name)
	for _, g := range m.tables {
		if system && !g.namesSchemaOf(full) {
			continue
		}
		if g.matchTable(full, short) {
			return true
		}
	}
	return false
}

// namesSchemaOf says whether the glob names the schema of the qualified
// relation name full literally (pg_catalog.*, not *.* or pg_*.x).
func (p tablePattern) namesSchemaOf(full string) bool {
	if !p.qualified {
		return false
	}
	schema, _, _ := strings.Cut(p.s, ".")
	relSchema, _, _ := strings.Cut(full, ".")
	return schema == relSchema && !strings.ContainsAny(schema, `*?[\`)
}

// DecideEffects judges a postgres transaction about to commit (op.Kind
// "commit", op.Effects set) by what it did, with the effects rules only:
// deny beats review; with none that applies it allows. A review blocks
// until the Reviewer returns, like Decide's; the request carries the
// effects, so approvers see what they approve. Effects that could not be
// read in full (op.Effects.Error, or no op.Effects) make every effects
// rule that applies to the target and identity apply: fail closed.
func (p *Policy) DecideEffects(ctx context.Context, o model.Origin, op model.Operation) model.Decision {
	d, req := p.evaluateEffects(o, op)
	return p.hold(ctx, d, req)
}

// EvaluateEffects returns what DecideEffects would decide, without
// holding anything.
func (p *Policy) EvaluateEffects(o model.Origin, op model.Operation) model.Decision {
	d, _ := p.evaluateEffects(o, op)
	return d
}

// effectsAllowed is DecideEffects' answer when no effects rule applies.
var effectsAllowed = model.Decision{Action: model.Allow, Rule: "policy.effects"}

func (p *Policy) evaluateEffects(o model.Origin, op model.Operation) (model.Decision, *ReviewRequest) {
	rs := p.rs.Load()
	if _, ok := rs.cfg.Target(o.Target.Name); !ok && o.Target.Name != "" {
		return noTarget, nil
	}
	if len(rs.effects) == 0 {
		return effectsAllowed, nil
	}
	incomplete := ""
	switch {
	case op.Effects == nil:
		incomplete = "no effects were read"
	case op.Effects.Error != "":
		incomplete = op.Effects.Error
	}
	var (
		act          *lazyActivation
		review       *rule
		reviewReason string
	)
	for i := range rs.effects {
		r := &rs.effects[i]
		if (r.action != model.Deny && r.action != model.Review) || !r.takes(o.Target.Name, op.Protocol) {
			continue
		}
		if r.id != nil && matchIdentity(r, o.Identity, p.names) == noMatch {
			// An identity interlock could not inspect (unknown) is
			// matched: these are deny and review rules.
			continue
		}
		var why string
		if incomplete != "" {
			// What the transaction did is not known: every effects rule
			// that could apply does, whatever its condition.
			why = "the transaction's effects could not be read in full (" + incomplete + "), so effects rules apply (fail closed)"
		} else {
			if ok, _ := p.holds(r, &act, &o, &op); !ok {
				continue
			}
			if why = r.effects.hit(op.Effects); why == "" {
				continue
			}
		}
		reason := why
		if r.reason != "" {
			reason = r.reason + " (" + why + ")"
		}
		if r.action == model.Deny {
			return model.Decision{Action: model.Deny, Rule: r.name, Reason: reason}, nil
		}
		if review == nil {
			review, reviewReason = r, reason
		}
	}
	if review == nil {
		return effectsAllowed, nil
	}
	if review.review == nil {
		return model.Decision{Action: model.Deny, Rule: review.name, Reason: reviewReason + "; the rule names no approvers"}, nil
	}
	d := model.Decision{Action: model.Review, Rule: review.name, Reason: reviewReason}
	return d, &ReviewRequest{
		Origin: o, Operation: op, Rule: review.name, Reason: reviewReason,
		Review: *review.review, Timeout: rs.cfg.Policy.Timeout(review.review),
	}
}

// EffectsRules says whether any effects rule can apply to sessions of
// this origin, by its target, protocol and identity (an identity
// interlock could not inspect counts as matched). Without one, the
// handler need not read transactions' effects for policy.
func (p *Policy) EffectsRules(o model.Origin) bool {
	rs := p.rs.Load()
	for i := range rs.effects {
		r := &rs.effects[i]
		if (r.action != model.Deny && r.action != model.Review) || !r.takes(o.Target.Name, o.Target.Protocol) {
			continue
		}
		if r.id == nil || matchIdentity(r, o.Identity, p.names) != noMatch {
			return true
		}
	}
	return false
}
