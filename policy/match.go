package policy

import (
	"slices"
	"strings"

	"github.com/interlock/interlock/accounts"
	"github.com/interlock/interlock/model"
)

// matchResult says whether a rule applies; unknown means it depends on
// /proc facts the resolver could not get.
type matchResult int

const (
	noMatch matchResult = iota
	match
	unknown
)

// matches checks everything but the CEL condition.
func (r *rule) matches(o model.Origin, op model.Operation, names *accounts.Names) matchResult {
	if len(r.targets) > 0 && !anyMatch(r.targets, o.Target.Name) {
		return noMatch
	}
	if len(r.protocols) > 0 && !slices.Contains(r.protocols, op.Protocol) {
		return noMatch
	}
	if r.op != nil && !matchOp(r.op, op) {
		return noMatch
	}
	if r.id == nil {
		return match
	}
	return matchIdentity(r, o.Identity, names)
}

func matchIdentity(r *rule, id model.Identity, names *accounts.Names) matchResult {
	m := r.id
	k := id.Kernel
	if len(m.uids) > 0 && !slices.Contains(m.uids, int(k.UID)) {
		return noMatch
	}
	if len(m.gids) > 0 && !slices.Contains(m.gids, int(k.GID)) {
		return noMatch
	}
	if len(m.users) > 0 && !anyMatch(m.users, userName(id, names)) {
		return noMatch
	}
	if len(m.groups) > 0 && !anyMatch(m.groups, groupName(id, names)) {
		return noMatch
	}
	for _, c := range r.claimed {
		v, ok := id.Claimed[c.name]
		if !ok || !c.glob.match(v) {
			return noMatch
		}
	}
	if !r.needsProc {
		return match
	}
	p := id.Proc
	if p == nil {
		return unknown
	}
	if len(m.exes) > 0 && !anyMatch(m.exes, p.Exe) {
		return noMatch
	}
	if len(m.exeSHA256) > 0 && !slices.ContainsFunc(m.exeSHA256, func(h string) bool { return strings.EqualFold(h, p.ExeSHA256) }) {
		return noMatch
	}
	if len(m.cgroups) > 0 && !anyMatch(m.cgroups, p.CgroupPath) {
		return noMatch
	}
	if len(m.units) > 0 && !anyMatch(m.units, p.SystemdUnit) {
		return noMatch
	}
	if len(m.containers) > 0 && !anyMatch(m.containers, p.ContainerID) {
		return noMatch
	}
	return match
}

func matchOp(m *opMatch, op model.Operation) bool {
	if len(m.kinds) > 0 {
		hit := anyMatch(m.kinds, op.Kind)
		for _, k := range op.Kinds {
			hit = hit || anyMatch(m.kinds, k)
		}
		if !hit {
			return false
		}
	}
	if len(m.tables) > 0 && !slices.ContainsFunc(op.Tables, func(t string) bool { return tableMatch(m, t) }) {
		return false
	}
	if m.noWhere != nil && *m.noWhere != op.NoWhere {
		return false
	}
	if m.readOnly != nil && *m.readOnly != op.ReadOnly {
		return false
	}
	if len(m.commands) > 0 {
		cmd := strings.TrimSpace(op.Text)
		if !anyMatch(m.commands, cmd) {
			return false
		}
	}
	if len(m.paths) > 0 && !anyMatch(m.paths, op.Path) {
		return false
	}
	return true
}

// tableMatch matches a table as the statement names it against the rule's
// table globs.
func tableMatch(m *opMatch, table string) bool {
	full, name := splitTable(table)
	for _, g := range m.tables {
		if g.matchTable(full, name) {
			return true
		}
	}
	return false
}

// tablePattern is a glob over tables. One with a schema ("billing.*",
// "*.secrets") matches schema.table; one without ("customers") matches the
// table's name in any schema, so that neither spelling of a table slips
// past a rule.
type tablePattern struct {
	pattern
	qualified bool
}

func compileTableGlob(g string) tablePattern {
	return tablePattern{compileGlob(g), strings.Contains(g, ".")}
}

func compileTableGlobs(gs []string) []tablePattern {
	if len(gs) == 0 {
		return nil
	}
	out := make([]tablePattern, len(gs))
	for i, g := range gs {
		out[i] = compileTableGlob(g)
	}
	return out
}

// matchTable matches the table whose qualified name is full and whose own
// name is name (see splitTable).
func (p tablePattern) matchTable(full, name string) bool {
	if p.qualified {
		return p.match(full)
	}
	return p.match(name)
}

// splitTable returns a table's qualified name (an unqualified name is in
// public) and its name without the schema.
func splitTable(table string) (full, name string) {
	if _, n, qualified := strings.Cut(table, "."); qualified {
		return table, n
	}
	return "public." + table, table
}

// userName and groupName are the names of the kernel's uid and gid, from
// the resolver when it had the process, else looked up here.
func userName(id model.Identity, names *accounts.Names) string {
	if id.Proc != nil && id.Proc.User != "" {
		return id.Proc.User
	}
	return names.User(id.Kernel.UID)
}

func groupName(id model.Identity, names *accounts.Names) string {
	if id.Proc != nil && id.Proc.Group != "" {
		return id.Proc.Group
	}
	return names.Group(id.Kernel.GID)
}
