package policy

import (
	"fmt"

	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/model"
)

// execGlobs warns where command-line globs are taken for a boundary: sshd
// runs an exec's command line with a shell, which runs the same command
// from text no glob foresees. A deny or review glob is advisory; an allow
// glob opens more than it names (`ls *` matches `ls x; rm -rf /`).
func (w *linter) execGlobs() {
	for i, t := range w.cfg.Targets {
		if t.Protocol == model.ProtoSSH && len(t.DenyExec) > 0 && !t.AllowlistOn() {
			w.warn(fmt.Sprintf("targets[%d].deny_exec", i), "globs on shell text are advisory, not a boundary: "+
				"`rm  -rf /x`, `'rm' -rf /x` or `echo cm0gLXJmIC94 | base64 -d | sh` run what `rm -rf *` names; "+
				"to hold against a session, give %s an exec allowlist (exec: {mode: allowlist})", t.Name)
		}
	}
	for i, r := range w.cfg.Policy.Rules {
		op := r.Match.Operation
		if op == nil || len(op.Commands) == 0 {
			continue
		}
		var open []string
		for _, t := range w.selected(r.Match) {
			if t.Protocol == model.ProtoSSH && !t.AllowlistOn() {
				open = append(open, t.Name)
			}
		}
		if len(open) == 0 {
			continue
		}
		key := fmt.Sprintf("policy.rules[%d].match.operation.commands", i)
		if model.Action(r.Action) == model.Allow {
			w.warn(key, "an allow rule's command globs let through more than they name: the shell runs all of the line, "+
				"so `ls *` matches `ls x; rm -rf /`; use an exec allowlist on %s instead (exec: {mode: allowlist, allow: [...]})", names(w.targetsNamed(open)))
			continue
		}
		w.warn(key, "globs on shell text are advisory, not a boundary (`sh -c`, quoting, spacing, base64 or variables get past them); "+
			"to hold against a session, give %s an exec allowlist (exec: {mode: allowlist})", names(w.targetsNamed(open)))
	}
}

func (w *linter) targetsNamed(ns []string) []config.TargetConfig {
	var out []config.TargetConfig
	for _, n := range ns {
		if t, ok := w.cfg.Target(n); ok {
			out = append(out, t)
		}
	}
	return out
}
