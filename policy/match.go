package policy

import (
	"slices"
	"strings"

	"github.com/interlock/interlock/internal/accounts"
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

// miss says which part of a rule did not match an operation, for
// `policy test` to explain; hit when none failed.
type miss uint8

const (
	hit miss = iota
	missTarget
	missProtocol
	missKind   // none of the rule's kinds is among the operation's
	missCover  // an allow rule's kinds do not cover every kind of the operation
	missTables // none of the operation's tables
	missNoWhere
	missReadOnly
	missCommand
	missPath
	missResource
	missNamespace
	missName
	missPod
	missK8sUser
	missK8sGroup
	missIdentity
	missOpen // the sftp access the operation needs (operation.open)
)

// verdict is what matching one rule against one operation found.
type verdict struct {
	res  matchResult
	miss miss
	// opaque: the rule applies because the operation is opaque and the
	// rule includes opaque statements (its kinds, tables, no_where or
	// read_only did not match on their own).
	opaque bool
}

// matches checks everything but the CEL condition. session is set for
// the connect that starts a postgres or ssh session: an allow rule then
// applies whatever its operation part, since each operation of the
// session is judged on its own.
func (r *rule) matches(o model.Origin, op model.Operation, names *accounts.Names, session bool) verdict {
	if len(r.targets) > 0 && !anyMatch(r.targets, o.Target.Name) {
		return verdict{miss: missTarget}
	}
	if len(r.protocols) > 0 && !slices.Contains(r.protocols, op.Protocol) {
		return verdict{miss: missProtocol}
	}
	var v verdict
	switch {
	case r.action == model.Allow && session:
	case r.action == model.Allow:
		if uncovered(r.op, op) != "" {
			return verdict{miss: missCover}
		}
		if r.op != nil {
			if m := matchConditions(r.op, op); m != hit {
				return verdict{miss: m}
			}
			if m := matchPod(r.op.pod, op, true); m != hit {
				return verdict{miss: m}
			}
			if len(r.op.open) > 0 && !openCovered(r.op.open, op.Open) {
				return verdict{miss: missOpen}
			}
		}
	case r.op != nil:
		m, opaque := matchOp(r.op, op)
		if m != hit {
			return verdict{miss: m}
		}
		v.opaque = opaque
	}
	if r.id == nil {
		v.res = match
		return v
	}
	v.res = matchIdentity(r, o.Identity, names)
	if v.res == noMatch {
		v.miss = missIdentity
	}
	return v
}

// matchOp matches a deny, review or mask rule's operation part: any of
// its kinds among the operation's. A rule that includes opaque statements
// also applies to an opaque one whatever its kinds, tables, WHERE clause
// and read-only-ness (opaque is then true).
func matchOp(m *opMatch, op model.Operation) (miss, bool) {
	opq := m.opaque && hasKind(op, model.SQLKindOpaque)
	kindOK := len(m.kinds) == 0 || kindsHit(m.kinds, op)
	if !kindOK && !opq {
		return missKind, false
	}
	viaOpaque := !kindOK
	if c := matchConditions(m, op); c != hit {
		if !opq || c == missCommand || c == missPath {
			return c, false
		}
		viaOpaque = true
	}
	if len(m.open) > 0 && !slices.ContainsFunc(op.Open, func(a string) bool { return openListed(m.open, a) }) {
		return missOpen, false
	}
	if m.allowlist != nil && unlisted(m.allowlist, op) == "" {
		return missCommand, false
	}
	if c := matchPod(m.pod, op, false); c != hit {
		return c, false
	}
	return hit, viaOpaque
}

// openCovered says whether an allow rule's operation.open lists every
// access the operation needs. An operation that needs none (not an sftp
// one) is not covered: the rule is about sftp access only.
func openCovered(listed, needs []string) bool {
	if len(needs) == 0 {
		return false
	}
	for _, a := range needs {
		if !openListed(listed, a) {
			return false
		}
	}
	return true
}

// openListed says whether access a is among the listed ones. Exclusive
// is part of create (it only makes a create fail when the file exists).
func openListed(listed []string, a string) bool {
	if a == "exclusive" {
		a = "create"
	}
	return slices.Contains(listed, a)
}

// matchConditions matches everything of an operation part but its kinds.
func matchConditions(m *opMatch, op model.Operation) miss {
	if len(m.tables) > 0 && !slices.ContainsFunc(op.Tables, func(t string) bool { return tableMatch(m.tables, t) }) {
		return missTables
	}
	if m.noWhere != nil && *m.noWhere != op.NoWhere {
		return missNoWhere
	}
	if m.readOnly != nil && *m.readOnly != op.ReadOnly {
		return missReadOnly
	}
	if len(m.commands) > 0 {
		cmd := strings.TrimSpace(op.Text)
		if !anyMatch(m.commands, cmd) {
			return missCommand
		}
	}
	if len(m.paths) > 0 && !anyMatch(m.paths, op.Path) {
		return missPath
	}
	if len(m.resources) > 0 && !anyMatch(m.resources, op.Resource) {
		return missResource
	}
	if len(m.namespaces) > 0 && !anyMatch(m.namespaces, op.Namespace) {
		return missNamespace
	}
	if len(m.names) > 0 && !anyMatch(m.names, op.Name) {
		return missName
	}
	if len(m.k8sUsers) > 0 && !anyMatch(m.k8sUsers, op.K8sUser) {
		return missK8sUser
	}
	if len(m.k8sGroups) > 0 && !slices.ContainsFunc(op.K8sGroups, func(g string) bool { return anyMatch(m.k8sGroups, g) }) {
		return missK8sGroup
	}
	return hit
}

// matchPod matches an operation part's pod facts. Facts that could not be
// read are unknown: a deny, review or mask rule (allow false) applies, an
// allow rule does not.
func matchPod(m *podMatch, op model.Operation, allow bool) miss {
	if m == nil {
		return hit
	}
	p := op.Pod
	if p == nil {
		if allow {
			return missPod
		}
		return hit
	}
	if m.privileged != nil && *m.privileged != p.Privileged {
		return missPod
	}
	if m.hostNS != nil && *m.hostNS != (p.HostPID || p.HostNetwork || p.HostIPC) {
		return missPod
	}
	if len(m.serviceAccounts) > 0 && !anyMatch(m.serviceAccounts, p.ServiceAccount) {
		return missPod
	}
	return hit
}

// kindsHit says whether any of the operation's kinds matches.
func kindsHit(kinds []pattern, op model.Operation) bool {
	if anyMatch(kinds, op.Kind) {
		return true
	}
	for _, k := range op.Kinds {
		if anyMatch(kinds, k) {
			return true
		}
	}
	return false
}

// uncovered returns the first kind of op that an allow rule with this
// operation part does not cover, or "" when it covers them all. A rule
// without kinds covers every kind but opaque and unknown, which only a
// rule naming them covers: allowing a statement means allowing all of
// it, and nothing is known of what an opaque or unparsable one does.
func uncovered(m *opMatch, op model.Operation) string {
	var kinds []pattern
	if m != nil {
		kinds = m.kinds
	}
	if op.Kind != "" && !covered(kinds, op.Kind) {
		return op.Kind
	}
	for _, k := range op.Kinds {
		if !covered(kinds, k) {
			return k
		}
	}
	return ""
}

func covered(kinds []pattern, k string) bool {
	if k == model.SQLKindOpaque || k == model.SQLKindUnknown {
		return slices.ContainsFunc(kinds, func(p pattern) bool { return p.literal && p.s == k })
	}
	return len(kinds) == 0 || anyMatch(kinds, k)
}

// hasKind says whether k is among the operation's kinds.
func hasKind(op model.Operation, k string) bool {
	return op.Kind == k || slices.Contains(op.Kinds, k)
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
	if res := m.human.match(id); res != match {
		return res
	}
	if res := m.verified.match(id); res != match {
		return res
	}
	if !r.needsProc {
		return match
	}
	p := id.Proc
	if p == nil {
		return unknown
	}
	if (len(m.exes) > 0 || len(m.exeSHA256) > 0) && !p.ExeTrusted() {
		// The executable facts are claimed or do not match the
		// kernel's record of the connect: an allow rule about the
		// program cannot apply, a deny rule does.
		return unknown
	}
	if len(m.exes) > 0 && !anyMatch(m.exes, p.Exe) {
		return noMatch
	}
	if len(m.exeSHA256) > 0 && p.ExeSHA256 == "" {
		// Not hashed (too large, over the hashing budget): which hash
		// it has is unknown, so a deny rule about hashes applies.
		return unknown
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

// tableMatch matches a table as the statement names it against table
// globs.
func tableMatch(globs []tablePattern, table string) bool {
	full, name := splitTable(table)
	for _, g := range globs {
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
