// Package cmdline reads the command lines of ssh exec requests as the
// target's shell would, as far as that can be done safely: whether a line
// is plain (no character any POSIX shell gives a meaning), whether it is
// permitted by an exec allowlist, and whether it starts a shell that takes
// its commands from the client.
//
// sshd hands an exec's command line to the user's login shell (`$SHELL -c
// LINE`), so a line is shell text, not an argv. Only a plain line has the
// argv its words show; anything else is whatever the shell makes of it.
package cmdline

import (
	"strings"
)

// Plain says whether cmd is a plain command line: words of letters,
// digits and `/ . _ - + , : @ %` separated by single spaces, with no
// leading or trailing space. Such a line means the same to every POSIX
// shell (sh, bash, dash, zsh, ksh, busybox sh) as its words do: none of
// quotes, `$`, backquotes, `\`, `;`, `&`, `|`, `<`, `>`, `(`, `)`, `{`,
// `}`, globs (`*`, `?`, `[`, `]`), `~`, `#`, `!`, `^`, `=` (a leading
// `NAME=value` is an assignment, and `--opt=value` an option that may
// name a program), tabs, newlines, non-ASCII or non-printable bytes can
// appear in it, and no word starts with `%` (a job, or a fish process
// expansion).
func Plain(cmd string) bool {
	if cmd == "" || cmd[0] == ' ' || cmd[len(cmd)-1] == ' ' || strings.Contains(cmd, "  ") {
		return false
	}
	for i := 0; i < len(cmd); i++ {
		if c := cmd[i]; c != ' ' && !plainByte(c) {
			return false
		}
		// A word starting with % is a job (`%1`) or, in fish, a process
		// expansion (`%self`).
		if cmd[i] == '%' && (i == 0 || cmd[i-1] == ' ') {
			return false
		}
	}
	return true
}

// plainByte is a byte a plain word may hold.
func plainByte(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("/._-+,:@%", c) >= 0
}

// FirstBad returns the first byte of cmd that keeps it from being plain
// and its index, for messages; -1 when cmd is plain or the problem is its
// spacing.
func FirstBad(cmd string) (int, byte) {
	for i := 0; i < len(cmd); i++ {
		if c := cmd[i]; c != ' ' && !plainByte(c) {
			return i, c
		}
	}
	return -1, 0
}
