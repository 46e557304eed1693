package config

import (
	"strconv"

	"github.com/interlock/interlock/policy/cmdline"
)

// ExecConfig is an ssh target's exec section: how its exec requests are
// judged, and whether SSH or sftp may be tunnelled through an exec or a
// shell.
//
//	exec:
//	  mode: allowlist          # rules (default) or allowlist
//	  allow:                   # argv patterns: plain words and globs
//	    - systemctl status *
//	  allow_exact:             # whole command lines, byte for byte
//	    - cd /srv/app && make deploy
//	  unlisted: review         # deny (default) or review
//	  review: {approvers: [alice]}
//	  tunnels: refuse          # refuse (default) or allow
type ExecConfig struct {
	// Mode is rules (commands are judged by policy rules, whose globs on
	// shell text are advisory) or allowlist (only listed commands run).
	Mode string `yaml:"mode,omitempty"`
	// Allow lists argv patterns (see cmdline.Allowlist).
	Allow []string `yaml:"allow,omitempty"`
	// AllowExact lists command lines permitted as they are written.
	AllowExact []string `yaml:"allow_exact,omitempty"`
	// Unlisted is what happens to a command, a shell or an exec judged as
	// a shell that the allowlist does not permit: deny or review.
	Unlisted string `yaml:"unlisted,omitempty"`
	// Review names the approvers of unlisted commands (unlisted: review).
	Review *ReviewConfig `yaml:"review,omitempty"`
	// Tunnels is refuse or allow: an SSH identification string or an sftp
	// handshake inside an exec or shell channel ends it, unless allowed.
	Tunnels string `yaml:"tunnels,omitempty"`
}

// Exec modes and settings.
const (
	ExecModeRules     = "rules"
	ExecModeAllowlist = "allowlist"
)

// AllowlistOn says whether the target's exec requests are judged by an
// allowlist.
func (t TargetConfig) AllowlistOn() bool { return t.Exec != nil && t.Exec.Mode == ExecModeAllowlist }

// TunnelsAllowed says whether SSH and sftp may run inside an exec or a
// shell of the target.
func (t TargetConfig) TunnelsAllowed() bool { return t.Exec != nil && t.Exec.Tunnels == "allow" }

// UnlistedAction is exec.unlisted, with its default.
func (e *ExecConfig) UnlistedAction() string {
	if e == nil || e.Unlisted == "" {
		return "deny"
	}
	return e.Unlisted
}

func validateExec(l *errorList, key string, e *ExecConfig) {
	key += ".exec"
	if e.Mode != "" {
		oneOf(l, key+".mode", e.Mode, ExecModeRules, ExecModeAllowlist)
	}
	if e.Tunnels != "" {
		oneOf(l, key+".tunnels", e.Tunnels, "refuse", "allow")
	}
	if e.Mode != ExecModeAllowlist {
		for k, set := range map[string]bool{"allow": len(e.Allow) > 0, "allow_exact": len(e.AllowExact) > 0,
			"unlisted": e.Unlisted != "", "review": e.Review != nil} {
			if set {
				l.add(key+"."+k, "applies to mode: allowlist only")
			}
		}
		return
	}
	if len(e.Allow) == 0 && len(e.AllowExact) == 0 {
		l.add(key+".allow", "is empty: with mode: allowlist and nothing listed, every exec is refused; list argv patterns such as 'systemctl status *'")
	}
	for j, p := range e.Allow {
		if msg := cmdline.PatternProblem(p); msg != "" {
			l.add(key+".allow["+strconv.Itoa(j)+"]", msg)
		}
	}
	for j, x := range e.AllowExact {
		if msg := cmdline.ExactProblem(x); msg != "" {
			l.add(key+".allow_exact["+strconv.Itoa(j)+"]", msg)
		}
	}
	if e.Unlisted != "" {
		oneOf(l, key+".unlisted", e.Unlisted, "deny", "review")
	}
	switch {
	case e.UnlistedAction() == "review":
		validateReview(l, key+".review", e.Review)
	case e.Review != nil:
		l.add(key+".review", "applies to unlisted: review only")
	}
}
