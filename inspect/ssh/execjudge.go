package ssh

import (
	"slices"
	"strings"

	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/policy/cmdline"
)

// Exec judged as what it is.
//
// sshd runs an exec's command line with the user's shell, on the pty the
// channel asked for if any. Two kinds of exec are a shell in all but
// name, and are judged by the shell rules too (after the exec rules, both
// must let them through; a mask of either applies):
//
//   - an exec on a channel with a pty: the client drives a terminal, and
//     `ssh -tt box 'exec bash -i'` is an interactive shell whatever its
//     command says;
//   - an exec whose command line starts a shell that takes its commands
//     from the client (cmdline.StartsShell): `ssh box bash` with commands
//     on stdin, `env bash`, `busybox sh`, `python3 -`, or a command whose
//     program name the shell computes (unknown, and unknown never opens).
//
// The shell operation carries the command line as its text and, as its
// detail, why the exec is judged as a shell.

// shellReason says why an exec of cmd on this channel is judged as a
// shell too, or "".
func (s *sessionChan) shellReason(cmd string) string { return cmdline.ExecAsShell(cmd, s.pty) }

// judgeAsShell asks policy about an exec judged as a shell and combines
// its decision with the exec's, d.
func (s *sessionChan) judgeAsShell(cmd, why string, d model.Decision) model.Decision {
	sd := s.decide(model.Operation{Kind: "shell", Text: cmd, Detail: why})
	if !permits(sd) {
		sd.Reason = "the exec is judged as a shell because " + why + ": " + sd.Reason
		return sd
	}
	if sd.Mask == nil {
		return d
	}
	out := d
	if out.Mask == nil {
		out.Action, out.Rule, out.Reason, out.Mask = sd.Action, sd.Rule, sd.Reason, sd.Mask
		return out
	}
	m := *out.Mask
	m.Rules = append(slices.Clone(m.Rules), sd.Mask.Rules...)
	out.Mask = &m
	return out
}

// envProblem says why an env request is refused on a target under an
// exec allowlist, or "". sshd passes accepted variables to the shell that
// runs the command line, where BASH_ENV, ENV, LD_PRELOAD, PATH and their
// like run other programs than the listed one: only the locale and the
// time zone pass, with plain values.
func envProblem(name, value string) string {
	if !(name == "LANG" || name == "TZ" || strings.HasPrefix(name, "LC_") && len(name) > 3 && cmdline.Plain(name)) {
		return "the target's exec allowlist lets only LANG, LC_* and TZ through (a variable can make the shell run other commands)"
	}
	if value != "" && !cmdline.Plain(value) {
		return "the value is not plain text"
	}
	return ""
}
