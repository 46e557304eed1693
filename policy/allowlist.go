package policy

import (
	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/policy/cmdline"
)

// allowlistRule expresses an ssh target's exec allowlist (exec.mode:
// allowlist) as a deny or review rule on exec and shell operations that
// matches whatever the allowlist does not permit: an exec whose command
// line it does not permit, and a shell request. A permitted command is still judged by
// every other rule: the allowlist narrows what policy allows, it never
// opens anything.
func allowlistRule(t config.TargetConfig) (rule, bool) {
	if !t.AllowlistOn() {
		return rule{}, false
	}
	// Validate checked the entries; a list that does not compile
	// (a config built without Validate) permits nothing.
	list, err := cmdline.NewAllowlist(t.Exec.AllowExact, t.Exec.Allow)
	if err != nil {
		list, _ = cmdline.NewAllowlist(nil, nil)
	}
	action := model.Deny
	var review *config.ReviewConfig
	if t.Exec.UnlistedAction() == "review" {
		action, review = model.Review, t.Exec.Review
	}
	op := compileOp(&config.OperationMatch{Kinds: []string{"exec", "shell"}}, action)
	op.allowlist = list
	return rule{
		name: "targets." + t.Name + ".exec-allowlist", action: action,
		targets: compileGlobs([]string{t.Name}), protocols: []model.Protocol{model.ProtoSSH},
		op: op, review: review,
	}, true
}

// unlisted says why the allowlist does not permit op, or "" when it does.
// An exec judged as a shell (a shell operation with a command line) was
// judged by the allowlist as the exec it is: asking again would hold it
// for a second review.
func unlisted(list *cmdline.Allowlist, op model.Operation) string {
	if op.Kind == "shell" && op.Text != "" {
		return ""
	}
	if op.Text == "" {
		return "a shell runs any command; the target's exec allowlist permits listed commands only"
	}
	if ok, why := list.Permits(op.Text); !ok {
		return "not on the target's exec allowlist: " + why
	}
	return ""
}

// allowlistReason is the reason an allowlist rule gives for op, "" for
// other rules.
func allowlistReason(r *rule, op model.Operation) string {
	if r.op == nil || r.op.allowlist == nil {
		return ""
	}
	return unlisted(r.op.allowlist, op)
}
