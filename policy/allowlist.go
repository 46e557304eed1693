package policy

import (
	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/policy/cmdline"
)

// allowlistRules express an ssh target's exec allowlist (exec.mode:
// allowlist) as a deny or review rule on exec and shell operations that
// matches whatever the allowlist does not permit: an exec whose command
// line it does not permit, and a shell request. A permitted command is still judged by
// every other rule: the allowlist narrows what policy allows, it never
// opens anything. A second rule, of the same name, keeps sftp from
// changing the files that run with every exec (startupFiles).
func allowlistRules(t config.TargetConfig) []rule {
	if !t.AllowlistOn() {
		return nil
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
	return []rule{{
		name: "targets." + t.Name + ".exec-allowlist", action: action,
		targets: compileGlobs([]string{t.Name}), protocols: []model.Protocol{model.ProtoSSH},
		op: op, review: review,
	}, startupRule(t)}
}

// startupFiles are what sshd and the login shells run before or around
// an exec's command line: ~/.ssh/rc (and authorized_keys, whose
// command="..." replaces the command), the shells' startup files (bash
// reads ~/.bashrc when sshd starts it, zsh ~/.zshenv, fish its config,
// csh ~/.cshrc, every time), ~/.pam_environment. A file written there by
// sftp runs with the next exec, whatever the allowlist permits. Globs match
// at any depth: the login directory is the target's business.
var startupFiles = []string{
	"*/.ssh", "*/.ssh/*", "*/.bashrc", "*/.bash_profile", "*/.bash_login", "*/.bash_logout", "*/.profile",
	"*/.zshenv", "*/.zshrc", "*/.zprofile", "*/.zlogin", "*/.zlogout", "*/.kshrc", "*/.mkshrc", "*/.shrc",
	"*/.cshrc", "*/.tcshrc", "*/.login", "*/.logout", "*/.config", "*/.config/fish", "*/.config/fish/*",
	"*/.pam_environment",
}

// startupRule refuses sftp changes to startupFiles on a target under an
// exec allowlist.
func startupRule(t config.TargetConfig) rule {
	return rule{
		name: "targets." + t.Name + ".exec-allowlist", action: model.Deny,
		targets: compileGlobs([]string{t.Name}), protocols: []model.Protocol{model.ProtoSSH},
		op: compileOp(&config.OperationMatch{Kinds: []string{"sftp"}, Paths: startupFiles,
			Open: []string{"write", "create", "truncate", "append"}}, model.Deny),
		reason: "the target has an exec allowlist, and sshd or the login shell runs this file with every exec: " +
			"it is not changed over sftp",
	}
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
