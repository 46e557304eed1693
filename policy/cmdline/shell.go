package cmdline

import (
	"fmt"
	"path"
	"strings"
)

// StartsShell says whether running cmd with `sh -c` starts a shell (or a
// program that works as one) that takes its commands from the client:
// from stdin, from a terminal, or from a script whose content interlock
// does not see. why says which part of cmd does.
//
// cmd is split as a shell would (quotes removed, `;`, `&`, `|`, newlines
// and parentheses separating commands, redirections dropped), and each
// command, and each command substitution (`$(...)`, backquotes, `<(...)`),
// is judged:
//   - leading `NAME=value` words and reserved words (`!`, `{`, `if`,
//     `then`, `do`, `time`...) are skipped, and so are wrappers that run the
//     command their arguments name (exec, env, command, nohup, nice,
//     setsid, timeout, stdbuf, sudo, doas, chroot, xargs, busybox...)
//     with their options;
//   - a shell (sh, bash, dash, zsh, ksh, mksh, ash, fish, csh, tcsh,
//     yash, busybox sh ...) starts one, unless it runs a `-c` string,
//     which is then judged the same way; `sh script` counts: the script is
//     shell commands interlock does not see;
//   - an interpreter reading its program from stdin (python, perl,
//     ruby, node, php, lua, ... with no script, `-c`/`-e` or with `-i` or
//     `-`), ed/ex, script, tmux, screen, su without -c, sudo -s/-i, chroot or
//     unshare without a command, eval, source and `.` start one;
//   - a program name the shell computes (`$X`, “ `...` “, a glob,
//     `~`, a brace expansion), an unterminated quote or nesting deeper than
//     maxDepth is unknown, and unknown counts as a shell.
//
// This is a judgement about shell text, and shell text can build any
// program name at run time in ways no reader follows (a script written
// first, an alias, a function, `$0`): it catches the usual ways to ask
// for a shell, not every way. The exec allowlist is the boundary.
func StartsShell(cmd string) (bool, string) { return startsShell(cmd, 0) }

const maxDepth = 8

func startsShell(cmd string, depth int) (bool, string) {
	if strings.IndexByte(cmd, 0) >= 0 {
		// sshd runs the line as a C string, up to its first NUL: what
		// runs is not what this reader would see.
		return true, "the command line holds a NUL byte"
	}
	if depth > maxDepth {
		return true, "shell commands nested too deeply to follow"
	}
	segs, subs, err := split(cmd)
	if err != nil {
		return true, "the command line does not parse: " + err.Error()
	}
	for _, s := range subs {
		if ok, why := startsShell(s, depth+1); ok {
			return true, why
		}
	}
	for _, seg := range segs {
		if ok, why := judge(seg, depth); ok {
			return true, why
		}
	}
	return false, ""
}

// word is a shell word after quote removal; computed says the shell
// builds part of it at run time (expansions, globs).
type word struct {
	text     string
	computed bool
}

var shells = set("sh", "bash", "dash", "zsh", "ksh", "ksh93", "mksh", "pdksh", "oksh", "lksh", "ash", "hush", "msh",
	"yash", "posh", "fish", "csh", "tcsh", "rbash", "rzsh", "rksh", "elvish", "nu", "xonsh", "pwsh", "osh", "ysh", "es", "rc", "scsh")

// interpreters read a program from stdin when given none.
var interpreters = set("python", "python2", "python3", "pypy", "pypy3", "perl", "ruby", "irb", "node", "nodejs", "php",
	"lua", "luajit", "tclsh", "wish", "expect", "jshell", "guile", "racket", "julia", "R")

// consoles always take commands from a terminal or stdin.
var consoles = set("ed", "ex", "script", "tmux", "screen", "byobu", "login", "dtach", "abduco", "busybox-sh")

// reserved are words that precede a command without being one.
var reserved = set("!", "{", "}", "if", "then", "else", "elif", "fi", "do", "done", "while", "until", "time", "in", "esac", "coproc")

// wrapper describes a program that runs the command its arguments name.
type wrapper struct {
	valueOpts string // short options that take a value
	operands  int    // operands before the command
	bare      string // without a command it starts a shell ("": it does not)
}

var wrappers = map[string]*wrapper{
	"exec":    {valueOpts: "a"},
	"command": {},
	"builtin": {},
	"nohup":   {},
	"env":     {valueOpts: "uCP"},
	"nice":    {valueOpts: "n"},
	"ionice":  {valueOpts: "cnpPu"},
	"setsid":  {},
	"stdbuf":  {valueOpts: "ioe"},
	"timeout": {valueOpts: "sk", operands: 1},
	"sudo":    {valueOpts: "ugpChDRTUr"},
	"doas":    {valueOpts: "uC"},
	"chroot":  {operands: 1, bare: "chroot without a command starts a shell"},
	"unshare": {valueOpts: "S", bare: "unshare without a command starts a shell"},
	"nsenter": {valueOpts: "tSGwr", bare: "nsenter without a command starts a shell"},
	"flock":   {valueOpts: "wEc", operands: 1},
	"taskset": {operands: 1},
	"chrt":    {operands: 1},
	"watch":   {valueOpts: "nd"},
	"xargs":   {valueOpts: "EeILlnPsdaR"},
	"busybox": {},
	"toybox":  {},
	"strace":  {valueOpts: "eopsuEPSI"},
	"ltrace":  {valueOpts: "eopsuEPSIn"},
	"runcon":  {},
	"sg":      {operands: 1},
	"newgrp":  {bare: "newgrp starts a shell"},
}

func set(names ...string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

// interpreterName drops a version suffix: python3.11 → python3 → python.
func interpreterName(base string) bool {
	for {
		if interpreters[base] {
			return true
		}
		t := strings.TrimRight(base, "0123456789.")
		if t == base || t == "" {
			return false
		}
		base = t
	}
}

// judge judges one simple command.
func judge(words []word, depth int) (bool, string) {
	i := 0
	for i < len(words) {
		w := words[i]
		// An assignment's value may be computed (X=$(date)); its name
		// is literal, or the word is no assignment.
		if isAssignment(w.text) || !w.computed && reserved[w.text] {
			i++
			continue
		}
		if w.computed {
			return true, fmt.Sprintf("the program's name %q is computed by the shell", w.text)
		}
		base := path.Base(w.text)
		args := words[i+1:]
		switch {
		case shells[base]:
			return judgeShell(base, args, depth)
		case interpreterName(base):
			return judgeInterpreter(base, args)
		case consoles[base]:
			return true, base + " takes commands from the terminal or stdin"
		case base == "su" || base == "runuser":
			return judgeSu(base, args, depth)
		case base == "eval":
			return true, "eval runs text the shell builds"
		case base == "source" || base == ".":
			return true, base + " runs a script file as shell commands"
		case base == "flock":
			// flock FILE -c LINE runs LINE with sh -c.
			for j, a := range args {
				if (a.text == "-c" || a.text == "--command") && j+1 < len(args) {
					return judgeString(base, args[j+1], depth)
				}
			}
		}
		wr := wrappers[base]
		if wr == nil {
			return false, ""
		}
		j, shell, why := skipWrapper(base, wr, args, depth)
		if why != "" {
			return true, why
		}
		rest := args[j:]
		if len(rest) == 0 {
			if shell {
				return true, base + " -s/-i starts a shell"
			}
			if wr.bare != "" {
				return true, wr.bare
			}
			return false, ""
		}
		words, i = rest, 0
	}
	return false, ""
}

// skipWrapper skips a wrapper's options and operands: j indexes the
// command. shell reports sudo -s/-i; why a reason to judge it a shell.
func skipWrapper(base string, wr *wrapper, args []word, depth int) (j int, shell bool, why string) {
	for j < len(args) {
		// A computed word is judged where it lands: as an option value
		// or operand it does not name the program; as the command it is
		// unknown (judge).
		t := args[j].text
		if t == "--" {
			j++
			break
		}
		if base == "env" && isAssignment(t) {
			j++
			continue
		}
		if len(t) < 2 || t[0] != '-' {
			break
		}
		if strings.HasPrefix(t, "--") {
			switch {
			case base == "env" && strings.HasPrefix(t, "--split-string"):
				return j, false, "env --split-string builds a command line"
			case base == "sudo" && (t == "--shell" || t == "--login"):
				shell = true
			}
			j++
			continue
		}
		opts := t[1:]
		for k := 0; k < len(opts); k++ {
			c := opts[k]
			switch {
			case base == "env" && c == 'S':
				return j, false, "env -S builds a command line"
			case base == "sudo" && (c == 's' || c == 'i'):
				shell = true
			}
			if strings.IndexByte(wr.valueOpts, c) >= 0 {
				if k == len(opts)-1 {
					j++ // the value is the next word
				}
				break
			}
		}
		j++
	}
	j += wr.operands
	if j > len(args) {
		j = len(args)
	}
	return j, shell, ""
}

// judgeShell: a shell runs a -c string (judged in turn), or else reads
// commands from stdin or a script file.
func judgeShell(name string, args []word, depth int) (bool, string) {
	hasC := false
	for j := 0; j < len(args); j++ {
		a := args[j]
		if a.computed {
			return true, fmt.Sprintf("%s gets an argument the shell computes (%q)", name, a.text)
		}
		t := a.text
		if t == "--" || t == "-" {
			j++
			if j < len(args) && hasC {
				return judgeString(name, args[j], depth)
			}
			break
		}
		if len(t) > 1 && (t[0] == '-' || t[0] == '+') {
			if strings.HasPrefix(t, "--") {
				if t == "--rcfile" || t == "--init-file" {
					j++
				}
				continue
			}
			if t[0] == '-' && strings.IndexByte(t, 'c') >= 0 {
				hasC = true
			}
			if strings.ContainsAny(t[1:], "oO") {
				j++ // -o option
			}
			continue
		}
		if hasC {
			return judgeString(name, a, depth)
		}
		return true, fmt.Sprintf("%s runs the script %s, shell commands interlock does not see", name, t)
	}
	if hasC {
		return true, name + " -c without a command string"
	}
	return true, name + " reads commands from the client"
}

func judgeString(name string, a word, depth int) (bool, string) {
	if a.computed {
		return true, name + " -c runs a command line the shell builds"
	}
	return startsShell(a.text, depth+1)
}

// judgeInterpreter: an interpreter given no program reads one from stdin.
func judgeInterpreter(name string, args []word) (bool, string) {
	for _, a := range args {
		t := a.text
		switch {
		case a.computed:
			return true, fmt.Sprintf("%s gets an argument the shell computes (%q)", name, t)
		case t == "-i" || t == "-":
			return true, name + " " + t + " reads a program from the client"
		case t == "-c" || t == "-e" || t == "-E" || t == "-r" || t == "-m" || t == "-p" || t == "--eval" || t == "--print":
			return false, ""
		case len(t) > 0 && t[0] != '-':
			return false, ""
		}
	}
	return true, name + " without a program reads one from the client"
}

// judgeSu: su and runuser without -c start a login shell.
func judgeSu(name string, args []word, depth int) (bool, string) {
	for j := 0; j < len(args); j++ {
		t := args[j].text
		if args[j].computed {
			return true, fmt.Sprintf("%s gets an argument the shell computes (%q)", name, t)
		}
		if t == "-c" || t == "--command" || strings.HasPrefix(t, "--command=") {
			if v, ok := strings.CutPrefix(t, "--command="); ok {
				return startsShell(v, depth+1)
			}
			if j+1 < len(args) {
				return judgeString(name, args[j+1], depth)
			}
		}
		if t == "-s" || t == "--shell" {
			j++
		}
	}
	return true, name + " without -c starts a shell"
}

// isAssignment says whether w is NAME=value.
func isAssignment(w string) bool {
	eq := strings.IndexByte(w, '=')
	if eq <= 0 {
		return false
	}
	for i := 0; i < eq; i++ {
		c := w[i]
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// ExecAsShell says why an ssh exec of cmd, on a channel with a pty when
// pty is set, is judged as a shell too, or "" when it is not: a terminal
// driven by the client is a shell whatever the command says, and so is a
// command that starts one (StartsShell).
func ExecAsShell(cmd string, pty bool) string {
	var why []string
	if pty {
		why = append(why, "it runs on a terminal (the channel has a pty)")
	}
	if ok, w := StartsShell(cmd); ok {
		why = append(why, "it starts a shell: "+w)
	}
	return strings.Join(why, "; ")
}
