package policy

import (
	"fmt"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/model"
)

// Lint finds what in a valid config's policy can never do what it says:
// rules whose targets match no target, kinds of one protocol in a rule
// limited to another, allow rules that can never cover the statements
// they name, effects rules on targets whose effects are not read, column
// masks where there are no columns. Each warning is a *config.Error whose
// message starts with "warning: " (FILE:LINE: KEY: warning: ...), in file
// order. Warnings do not stop interlock; `policy check` prints them.
func Lint(cfg *config.Config) []*config.Error {
	w := &linter{cfg: cfg}
	w.rules()
	w.targets()
	w.unknown()
	w.execGlobs()
	sort.SliceStable(w.out, func(i, j int) bool {
		a, b := w.out[i].Line, w.out[j].Line
		return a != 0 && (b == 0 || a < b)
	})
	return w.out
}

type linter struct {
	cfg *config.Config
	out []*config.Error
}

func (w *linter) warn(key, format string, args ...any) {
	w.out = append(w.out, w.cfg.Errorf(key, "warning: "+format, args...))
}

// kindProtocols are the protocols whose operations have kind k (exec,
// delete and update are kinds of several), or none for connect, which
// every protocol's sessions start with, and for what is not a kind.
func kindProtocols(k string) []string {
	var p []string
	if model.IsSQLKind(k) {
		p = append(p, string(model.ProtoPostgres))
	}
	if slices.Contains(model.SSHKinds, k) {
		p = append(p, string(model.ProtoSSH))
	}
	if slices.Contains(model.K8sKinds, k) {
		p = append(p, string(model.ProtoKubernetes))
	}
	return p
}

// selected returns the targets a rule's match takes in, by name and
// protocol.
func (w *linter) selected(m config.MatchConfig) []config.TargetConfig {
	var out []config.TargetConfig
	globs := compileGlobs(m.Targets)
	for _, t := range w.cfg.Targets {
		if len(globs) > 0 && !anyMatch(globs, t.Name) {
			continue
		}
		if len(m.Protocols) > 0 && !slices.Contains(m.Protocols, string(t.Protocol)) {
			continue
		}
		out = append(out, t)
	}
	return out
}

func names(ts []config.TargetConfig) string {
	s := make([]string, len(ts))
	for i, t := range ts {
		s[i] = t.Name + " (" + string(t.Protocol) + ")"
	}
	return strings.Join(s, ", ")
}

func hasProtocol(ts []config.TargetConfig, p model.Protocol) bool {
	return slices.ContainsFunc(ts, func(t config.TargetConfig) bool { return t.Protocol == p })
}

// guarded says whether deny or review rules guard a postgres target, so
// that policy.unknown decides its unparsable statements.
func (w *linter) guarded(t config.TargetConfig) bool {
	if len(t.DenyStatements) > 0 {
		return true
	}
	for _, r := range w.cfg.Policy.Rules {
		if r.Action != "deny" && r.Action != "review" {
			continue
		}
		globs := compileGlobs(r.Match.Targets)
		if (len(globs) == 0 || anyMatch(globs, t.Name)) &&
			(len(r.Match.Protocols) == 0 || slices.Contains(r.Match.Protocols, string(model.ProtoPostgres))) {
			return true
		}
	}
	return false
}

func (w *linter) rules() {
	haveTargets := len(w.cfg.Targets) > 0
	var all []string
	for _, t := range w.cfg.Targets {
		all = append(all, t.Name)
	}
	for i, r := range w.cfg.Policy.Rules {
		key := "policy.rules[" + strconv.Itoa(i) + "]"
		m := r.Match
		for j, g := range m.Targets {
			if p := compileGlob(g); !slices.ContainsFunc(all, p.match) {
				if haveTargets {
					w.warn(fmt.Sprintf("%s.match.targets[%d]", key, j), "%q matches no target (the targets are %s)", g, strings.Join(all, ", "))
				} else {
					w.warn(fmt.Sprintf("%s.match.targets[%d]", key, j), "%q matches no target: no targets are configured", g)
				}
			}
		}
		sel := w.selected(m)
		if haveTargets && len(sel) == 0 && len(m.Protocols) > 0 && len(w.selected(config.MatchConfig{Targets: m.Targets})) > 0 {
			w.warn(key+".match.protocols", "none of the targets the rule names has protocol %s: the rule never applies",
				strings.Join(m.Protocols, " or "))
		}
		if m.Effects != nil {
			w.effectsRule(key, r, sel)
			continue
		}
		if op := m.Operation; op != nil {
			w.kinds(key, r, sel)
			if op.IncludeOpaque != nil && !includesOpaque(model.Action(r.Action), &config.OperationMatch{Kinds: op.Kinds}) {
				w.warn(key+".match.operation.include_opaque", "has no effect: it concerns deny and review rules that name a write or DDL kind")
			}
		}
		if r.Action == "allow" && m.Identity != nil {
			for j, e := range m.Identity.Exes {
				if kind := model.RunnerKind(path.Base(e)); kind != "" {
					w.warn(fmt.Sprintf("%s.match.identity.exes[%d]", key, j), "%q is %s: it runs whatever program its command line names, "+
						"so this rule allows any program run through it; name the program's own executable instead", e, article(kind))
				}
			}
		}
		if r.Action == "mask" && r.Mask != nil && len(r.Mask.Columns) > 0 && haveTargets && !hasProtocol(sel, model.ProtoPostgres) {
			msg := "columns are masked in postgres results only, and none of the targets this rule applies to is a postgres target"
			if len(r.Mask.Detectors) == 0 {
				msg += ": the rule masks nothing"
			} else {
				msg += ": only its detectors apply"
			}
			w.warn(key+".mask.columns", "%s", msg)
		}
	}
}

// kinds checks a text rule's operation.kinds against its protocols and
// targets, and an allow rule's kinds against what it can cover.
func (w *linter) kinds(key string, r config.RuleConfig, sel []config.TargetConfig) {
	op := r.Match.Operation
	haveTargets := len(w.cfg.Targets) > 0
	for j, k := range op.Kinds {
		kkey := fmt.Sprintf("%s.match.operation.kinds[%d]", key, j)
		if config.KindProblem(k) != "" {
			continue // an error already
		}
		ps := kindProtocols(k)
		p := strings.Join(ps, " or ")
		switch {
		case len(ps) == 0:
		case len(r.Match.Protocols) > 0 && !slices.ContainsFunc(ps, func(p string) bool { return slices.Contains(r.Match.Protocols, p) }):
			w.warn(kkey, "%s is a %s kind, but the rule is limited to protocol %s: it never matches",
				k, p, strings.Join(r.Match.Protocols, ", "))
		case haveTargets && len(sel) > 0 && !slices.ContainsFunc(ps, func(p string) bool { return hasProtocol(sel, model.Protocol(p)) }):
			w.warn(kkey, "%s is a %s kind, and none of the targets the rule applies to is a %s target (%s): it never matches",
				k, p, p, names(sel))
		}
		if r.Action == "allow" && (k == "do" || k == "call") && !slices.Contains(op.Kinds, model.SQLKindOpaque) {
			w.warn(kkey, "a %s statement runs code its text does not show and always holds the kind opaque, which an allow rule "+
				"covers only when its kinds name opaque: this rule never allows one; add opaque to its kinds", strings.ToUpper(k))
		}
		if r.Action == "allow" && k == model.SQLKindUnknown && haveTargets {
			var pg []config.TargetConfig
			for _, t := range sel {
				if t.Protocol == model.ProtoPostgres {
					pg = append(pg, t)
				}
			}
			if len(pg) > 0 && !slices.ContainsFunc(pg, func(t config.TargetConfig) bool { return !w.guarded(t) }) {
				w.warn(kkey, "on targets with deny or review rules (%s) policy.unknown decides statements interlock cannot parse; "+
					"naming unknown in an allow rule matters only on targets without them", names(pg))
			}
		}
	}
}

func (w *linter) effectsRule(key string, r config.RuleConfig, sel []config.TargetConfig) {
	ekey := key + ".match.effects"
	if len(r.Match.Protocols) > 0 && !slices.Contains(r.Match.Protocols, string(model.ProtoPostgres)) {
		w.warn(key+".match.protocols", "an effects rule judges postgres transactions, and this one is limited to protocol %s: it never applies",
			strings.Join(r.Match.Protocols, ", "))
		return
	}
	if len(w.cfg.Targets) > 0 {
		var on, off []config.TargetConfig
		for _, t := range sel {
			if t.Protocol != model.ProtoPostgres {
				continue
			}
			if t.EffectsChecked() {
				on = append(on, t)
			} else {
				off = append(off, t)
			}
		}
		switch {
		case len(on) == 0 && len(off) == 0:
			w.warn(ekey, "none of the targets this rule applies to is a postgres target: an effects rule judges postgres transactions, it never applies")
		case len(on) == 0:
			w.warn(ekey, "every postgres target this rule applies to has check_effects: false (%s): their transactions' effects are not read, so it never applies", names(off))
		case len(off) > 0:
			w.warn(ekey, "check_effects is false on %s: this rule does not apply there", names(off))
		}
	}
	e := r.Match.Effects
	rowsOrStorage := e.RowsInsertedOver != nil || e.RowsUpdatedOver != nil || e.RowsDeletedOver != nil || e.RowsWrittenOver != nil ||
		e.Dropped || e.Truncated || e.Altered
	if len(e.Tables) > 0 && !rowsOrStorage && (e.Catalog || e.Roles) {
		w.warn(ekey+".tables", "has no effect: catalog and roles look at the system catalogs whatever the tables; tables select relations for the rows_*_over, dropped, truncated and altered conditions")
	}
}

func (w *linter) targets() {
	for i, t := range w.cfg.Targets {
		for j, k := range t.DenyStatements {
			key := fmt.Sprintf("targets[%d].deny_statements[%d]", i, j)
			switch {
			case slices.Contains(model.SSHKinds, k):
				w.warn(key, "%s is an ssh operation kind, and deny_statements judges the statements of this postgres target: it never matches", k)
			case slices.Contains(model.TCPKinds, k):
				w.warn(key, "%s refuses every session to this target", k)
			}
		}
	}
}

func (w *linter) unknown() {
	if w.cfg.Policy.Unknown == "" {
		return
	}
	for _, t := range w.cfg.Targets {
		if t.Protocol == model.ProtoPostgres && w.guarded(t) {
			return
		}
	}
	w.warn("policy.unknown", "applies on postgres targets with deny or review rules, and there is none: "+
		"statements interlock cannot parse get the ordinary evaluation (an allow rule must name unknown)")
}

func article(kind string) string {
	if kind == "interpreter" {
		return "an interpreter"
	}
	return "a " + kind
}
