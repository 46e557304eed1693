package main

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/interlock/interlock/config"
)

// The shell completions and the man page are generated from the command
// tree, so they cannot drift from the CLI. They are static: the shells never
// run interlock to complete a word (urfave/cli's dynamic completion would
// need --generate-shell-completion, which as the last word of
// `interlock run -- CMD ... --generate-shell-completion` would silently not
// run CMD).

// docCmd is one visible command with what the docs say about it.
type docCmd struct {
	path     []string // "interlock", "sessions", "list"
	cmd      *cli.Command
	flags    []docFlag
	children []*docCmd
	// execArgs: the positional arguments are a command line (run).
	execArgs bool
}

type docFlag struct {
	long, short string // without dashes; either may be empty
	usage       string
	value       string // placeholder when the flag takes a value, "" for a switch
	def         string // default shown in the man page
	env         []string
	file        bool     // the value is a file name
	enum        []string // the value is one of these
}

// flagEnums are the values of flags whose usage lists a closed set.
var flagEnums = map[string][]string{
	"engine": {"auto", "daemon", "embedded"},
}

// fileFlags take a file name.
var fileFlags = map[string]bool{"config": true, "journal": true, "output": true, "out": true}

func (d *docCmd) name() string { return strings.Join(d.path, " ") }

// ident is the command path as a shell identifier: interlock_sessions_list.
func (d *docCmd) ident() string {
	return strings.NewReplacer(" ", "_", "-", "_").Replace(d.name())
}

func buildDocTree(cmd *cli.Command, parent []string) *docCmd {
	d := &docCmd{path: append(append([]string{}, parent...), cmd.Name), cmd: cmd}
	d.execArgs = strings.Contains(cmd.ArgsUsage, "CMD")
	for _, f := range cmd.VisibleFlags() {
		df, ok := describeFlag(f)
		if !ok || df.long == "help" || df.long == "version" {
			continue
		}
		d.flags = append(d.flags, df)
	}
	d.flags = append(d.flags, docFlag{long: "help", short: "h", usage: "show help"})
	if len(parent) == 0 && cmd.Version != "" {
		d.flags = append(d.flags, docFlag{long: "version", short: "v", usage: "print the version"})
	}
	for _, c := range cmd.VisibleCommands() {
		d.children = append(d.children, buildDocTree(c, d.path))
	}
	return d
}

func describeFlag(f cli.Flag) (docFlag, bool) {
	var df docFlag
	for _, n := range f.Names() {
		switch {
		case len(n) == 1 && df.short == "":
			df.short = n
		case len(n) > 1 && df.long == "":
			df.long = n
		}
	}
	if df.long == "" && df.short == "" {
		return df, false
	}
	dg, ok := f.(cli.DocGenerationFlag)
	if !ok {
		return df, true
	}
	df.usage = dg.GetUsage()
	df.env = dg.GetEnvVars()
	if dg.TakesValue() {
		switch f.(type) {
		case *cli.DurationFlag:
			df.value = "DURATION"
		case *cli.IntFlag, *cli.UintFlag, *cli.Int64Flag, *cli.Uint64Flag:
			df.value = "N"
		default:
			df.value = "VALUE"
		}
		if fileFlags[df.long] {
			df.value, df.file = "FILE", true
		}
		if e, ok := flagEnums[df.long]; ok {
			df.enum, df.value = e, strings.ToUpper(df.long)
		}
		if v := dg.GetValue(); v != "" && v != "0" && v != "0s" && v != `""` {
			df.def = strings.Trim(v, `"`)
		}
	}
	return df, true
}

// walk visits d and its descendants, depth first.
func (d *docCmd) walk(fn func(*docCmd)) {
	fn(d)
	for _, c := range d.children {
		c.walk(fn)
	}
}

// generateDocs returns the files `package-helper gendocs` writes, by path
// relative to its output directory.
func generateDocs(root *cli.Command, ver string, date time.Time) (map[string]string, error) {
	tree := buildDocTree(root, nil)
	return map[string]string{
		"completions/interlock.bash": bashCompletion(tree),
		"completions/_interlock":     zshCompletion(tree),
		"completions/interlock.fish": fishCompletion(tree),
		"man/interlock.8":            manPage(tree, ver, date),
	}, nil
}

// --- bash -------------------------------------------------------------------

func bashWords(ws []string) string { return strings.Join(ws, " ") }

func (f docFlag) forms() []string {
	var out []string
	if f.long != "" {
		out = append(out, "--"+f.long)
	}
	if f.short != "" {
		out = append(out, "-"+f.short)
	}
	return out
}

func bashCompletion(tree *docCmd) string {
	var b strings.Builder
	b.WriteString(`# bash completion for interlock. Generated from the CLI when the package is built; do not edit.
# shellcheck shell=bash

declare -gA __interlock_subcmds=() __interlock_flags=() __interlock_valflags=() __interlock_exec=()
declare -gA __interlock_enums=()
__interlock_fileflags=""
`)
	files := map[string]bool{}
	enums := map[string][]string{}
	tree.walk(func(d *docCmd) {
		var subs, flags, vals []string
		for _, c := range d.children {
			subs = append(subs, c.cmd.Names()...)
		}
		for _, f := range d.flags {
			flags = append(flags, f.forms()...)
			if f.value != "" {
				vals = append(vals, f.forms()...)
				for _, fm := range f.forms() {
					if f.file {
						files[fm] = true
					}
					if f.enum != nil {
						enums[fm] = f.enum
					}
				}
			}
		}
		fmt.Fprintf(&b, "__interlock_subcmds[%q]=%q\n", d.name(), bashWords(subs))
		fmt.Fprintf(&b, "__interlock_flags[%q]=%q\n", d.name(), bashWords(flags))
		fmt.Fprintf(&b, "__interlock_valflags[%q]=%q\n", d.name(), " "+bashWords(vals)+" ")
		if d.execArgs {
			fmt.Fprintf(&b, "__interlock_exec[%q]=1\n", d.name())
		}
	})
	fmt.Fprintf(&b, "__interlock_fileflags=%q\n", " "+bashWords(sortedKeys(files))+" ")
	for _, k := range sortedKeys(enums) {
		fmt.Fprintf(&b, "__interlock_enums[%q]=%q\n", k, bashWords(enums[k]))
	}
	b.WriteString(`
__interlock_value() {
    # complete the value of flag $1, with $2 typed so far
    if [[ -n "${__interlock_enums[$1]:-}" ]]; then
        mapfile -t COMPREPLY < <(compgen -W "${__interlock_enums[$1]}" -- "$2")
    elif [[ "$__interlock_fileflags" == *" $1 "* ]]; then
        mapfile -t COMPREPLY < <(compgen -f -- "$2")
        compopt -o filenames 2>/dev/null
    else
        COMPREPLY=()
    fi
}

_interlock() {
    local cur prev words cword
    if declare -F _init_completion >/dev/null 2>&1; then
        _init_completion -n = || return
    else
        words=("${COMP_WORDS[@]}")
        cword=$COMP_CWORD
        cur="${COMP_WORDS[COMP_CWORD]}"
        prev="${COMP_WORDS[COMP_CWORD-1]}"
    fi
    COMPREPLY=()
    local cmd="interlock" i w
    for (( i = 1; i < cword; i++ )); do
        w="${words[i]}"
        if [[ "$w" == "--" ]]; then
            if [[ -n "${__interlock_exec[$cmd]:-}" ]]; then
                __interlock_command $(( i + 1 ))
                return
            fi
            continue
        fi
        if [[ "$w" == -* ]]; then
            [[ "$w" != *=* && "${__interlock_valflags[$cmd]}" == *" $w "* ]] && (( i++ ))
            continue
        fi
        if [[ " ${__interlock_subcmds[$cmd]} " == *" $w "* ]]; then
            cmd="$cmd $w"
            continue
        fi
        if [[ -n "${__interlock_exec[$cmd]:-}" ]]; then
            __interlock_command "$i"
            return
        fi
    done
    if [[ "$cur" == --*=* ]]; then
        __interlock_value "${cur%%=*}" "${cur#*=}"
        return
    fi
    if [[ "${__interlock_valflags[$cmd]}" == *" $prev "* ]]; then
        __interlock_value "$prev" "$cur"
        return
    fi
    if [[ "$cur" == -* ]]; then
        mapfile -t COMPREPLY < <(compgen -W "${__interlock_flags[$cmd]}" -- "$cur")
        return
    fi
    if [[ -n "${__interlock_subcmds[$cmd]}" ]]; then
        mapfile -t COMPREPLY < <(compgen -W "${__interlock_subcmds[$cmd]}" -- "$cur")
    elif [[ -n "${__interlock_exec[$cmd]:-}" ]]; then
        mapfile -t COMPREPLY < <(compgen -c -- "$cur")
    else
        mapfile -t COMPREPLY < <(compgen -f -- "$cur")
        compopt -o filenames 2>/dev/null
    fi
}

# __interlock_command completes the command line that starts at word $1
# (interlock run [--] CMD ARGS...).
__interlock_command() {
    if declare -F _command_offset >/dev/null 2>&1; then
        _command_offset "$1"
    elif (( cword == $1 )); then
        mapfile -t COMPREPLY < <(compgen -c -- "$cur")
    else
        mapfile -t COMPREPLY < <(compgen -f -- "$cur")
        compopt -o filenames 2>/dev/null
    fi
}

complete -F _interlock interlock
`)
	return b.String()
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// --- zsh --------------------------------------------------------------------

// zshDesc escapes text for a description inside '...[...]' or a _describe
// entry.
func zshDesc(s string) string {
	s = strings.ReplaceAll(s, `\`, `\\`)
	s = strings.ReplaceAll(s, "'", `'\''`)
	s = strings.ReplaceAll(s, "[", `\[`)
	s = strings.ReplaceAll(s, "]", `\]`)
	return s
}

func zshFlagSpec(f docFlag) string {
	action := ""
	if f.value != "" {
		switch {
		case f.enum != nil:
			action = ":" + strings.ToLower(f.value) + ":(" + strings.Join(f.enum, " ") + ")"
		case f.file:
			action = ":file:_files"
		default:
			action = ":" + strings.ToLower(f.value) + ": "
		}
	}
	desc := "[" + zshDesc(f.usage) + "]"
	forms := f.forms()
	if len(forms) == 1 {
		suffix := ""
		if f.value != "" {
			suffix = "="
			if f.long == "" {
				suffix = "+"
			}
		}
		return "'" + forms[0] + suffix + desc + action + "'"
	}
	long, short := "--"+f.long, "-"+f.short
	if f.value != "" {
		long, short = long+"=", short+"+"
	}
	return "'(" + strings.Join(forms, " ") + ")'{" + short + "," + long + "}'" + desc + action + "'"
}

func zshCompletion(tree *docCmd) string {
	var b strings.Builder
	b.WriteString("#compdef interlock\n# zsh completion for interlock. Generated from the CLI when the package is built; do not edit.\n\n")
	tree.walk(func(d *docCmd) {
		fmt.Fprintf(&b, "_%s() {\n", d.ident())
		specs := []string{}
		for _, f := range d.flags {
			specs = append(specs, zshFlagSpec(f))
		}
		switch {
		case len(d.children) > 0:
			b.WriteString("  local curcontext=\"$curcontext\" state line ret=1\n  typeset -A opt_args\n")
			specs = append(specs, "'1: :->command'", "'*:: :->args'")
			fmt.Fprintf(&b, "  _arguments -C -s \\\n    %s && ret=0\n", strings.Join(specs, " \\\n    "))
			b.WriteString("  case $state in\n  command)\n    local -a cmds\n    cmds=(\n")
			for _, c := range d.children {
				for _, n := range c.cmd.Names() {
					fmt.Fprintf(&b, "      '%s:%s'\n", n, zshDesc(strings.ReplaceAll(c.cmd.Usage, ":", `\:`)))
				}
			}
			fmt.Fprintf(&b, "    )\n    _describe -t commands '%s command' cmds && ret=0\n    ;;\n  args)\n    case $words[1] in\n", d.name())
			for _, c := range d.children {
				fmt.Fprintf(&b, "    %s) _%s && ret=0 ;;\n", strings.Join(c.cmd.Names(), "|"), c.ident())
			}
			b.WriteString("    esac\n    ;;\n  esac\n  return ret\n")
		case d.execArgs:
			specs = append(specs, "'(-)1:command:_command_names -e'", "'*::arguments:_normal'")
			fmt.Fprintf(&b, "  _arguments -S -s \\\n    %s\n", strings.Join(specs, " \\\n    "))
		default:
			if d.cmd.ArgsUsage != "" {
				specs = append(specs, "'1:"+strings.ToLower(zshDesc(d.cmd.ArgsUsage))+": '")
			}
			fmt.Fprintf(&b, "  _arguments -s \\\n    %s\n", strings.Join(specs, " \\\n    "))
		}
		b.WriteString("}\n\n")
	})
	b.WriteString("if [[ $zsh_eval_context[-1] == loadautofunc ]]; then\n  _interlock \"$@\"\nelse\n  compdef _interlock interlock\nfi\n")
	return b.String()
}

// --- fish -------------------------------------------------------------------

func fishQuote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, "'", `\'`).Replace(s) + "'"
}

func fishCompletion(tree *docCmd) string {
	var b strings.Builder
	b.WriteString("# fish completion for interlock. Generated from the CLI when the package is built; do not edit.\n\ncomplete -c interlock -e\ncomplete -c interlock -f\n")
	tree.walk(func(d *docCmd) {
		// cond holds when the command line is at d: its path is there and
		// none of its subcommands is.
		var conds []string
		for _, p := range d.path[1:] {
			conds = append(conds, "__fish_seen_subcommand_from "+p)
		}
		var subs []string
		for _, c := range d.children {
			subs = append(subs, c.cmd.Names()...)
		}
		at := conds
		if len(subs) > 0 {
			at = append(append([]string{}, conds...), "not __fish_seen_subcommand_from "+strings.Join(subs, " "))
		}
		if len(at) == 0 {
			at = []string{"true"}
		}
		cond := fishQuote(strings.Join(at, "; and "))
		fmt.Fprintf(&b, "\n# %s\n", d.name())
		for _, c := range d.children {
			for _, n := range c.cmd.Names() {
				fmt.Fprintf(&b, "complete -c interlock -n %s -a %s -d %s\n", cond, n, fishQuote(c.cmd.Usage))
			}
		}
		for _, f := range d.flags {
			line := "complete -c interlock -n " + cond
			if f.short != "" {
				line += " -s " + f.short
			}
			if f.long != "" {
				line += " -l " + f.long
			}
			switch {
			case f.enum != nil:
				line += " -x -a " + fishQuote(strings.Join(f.enum, " "))
			case f.file:
				line += " -r -F"
			case f.value != "":
				line += " -x"
			}
			line += " -d " + fishQuote(f.usage)
			b.WriteString(line + "\n")
		}
		if d.execArgs {
			fmt.Fprintf(&b, "complete -c interlock -n %s -x -a '(__fish_complete_subcommand --fcs-skip=%d)'\n", cond, len(d.path))
		} else if d.cmd.ArgsUsage != "" && len(d.children) == 0 {
			fmt.Fprintf(&b, "complete -c interlock -n %s -F\n", cond)
		}
	})
	return b.String()
}

// --- man page ---------------------------------------------------------------

// roff escapes text for roff: backslashes, leading dots and quotes, and
// hyphens (which roff would otherwise set as typographic hyphens).
func roff(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	s = strings.ReplaceAll(s, "-", `\-`)
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, ".") || strings.HasPrefix(l, "'") {
			lines[i] = `\&` + l
		}
	}
	return strings.Join(lines, "\n")
}

// roffParagraphs turns a description (lines wrapped by hand, paragraphs
// separated by blank lines) into roff paragraphs.
func roffParagraphs(s string) string {
	var b strings.Builder
	for _, p := range strings.Split(strings.TrimSpace(s), "\n\n") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		b.WriteString(".PP\n" + roff(strings.Join(strings.Fields(p), " ")) + "\n")
	}
	return b.String()
}

func (d *docCmd) synopsis() string {
	s := `\fB` + roff(d.name()) + `\fR`
	if len(d.children) > 0 {
		return s + ` \fICOMMAND\fR`
	}
	if len(d.flags) > 1 {
		s += ` [\fIOPTIONS\fR]`
	}
	if d.cmd.ArgsUsage != "" {
		s += " " + roff(d.cmd.ArgsUsage)
	}
	return s
}

func (f docFlag) manItem() string {
	var names []string
	for _, fm := range f.forms() {
		n := `\fB` + roff(fm) + `\fR`
		if f.value != "" {
			n += ` \fI` + f.value + `\fR`
		}
		names = append(names, n)
	}
	text := roff(f.usage)
	if f.def != "" {
		text += `; default \fB` + roff(f.def) + `\fR`
	}
	for _, e := range f.env {
		text += `; environment \fB` + roff(e) + `\fR`
	}
	return ".TP\n" + strings.Join(names, ", ") + "\n" + text + "\n"
}

func manPage(tree *docCmd, ver string, date time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, ".\\\" Generated from the CLI when the package is built; do not edit.\n")
	fmt.Fprintf(&b, ".TH INTERLOCK 8 %q %q \"System Administration\"\n", date.Format("2006-01-02"), "interlock "+ver)
	b.WriteString(".SH NAME\ninterlock \\- " + roff(tree.cmd.Usage) + "\n")
	b.WriteString(".SH SYNOPSIS\n")
	tree.walk(func(d *docCmd) {
		if len(d.children) == 0 {
			b.WriteString(d.synopsis() + "\n.br\n")
		}
	})
	b.WriteString(".SH DESCRIPTION\n")
	b.WriteString(roffParagraphs(tree.cmd.Description))
	b.WriteString(`.PP
Processes are intercepted by cgroup: \fBinterlock daemon\fR attaches to the
cgroups named in \fBintercept.cgroups\fR (and all their descendants), and
\fBinterlock run\fR to a fresh cgroup for one command. Connections to
anything but the configured targets are left alone. While interlock is not
running, intercepted connections to targets are refused (fail closed), since
the programs stay pinned under the BPF filesystem.
.PP
Interlock needs Linux 5.8 or later with cgroup v2, and root or the
capabilities CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN.
\fBinterlock doctor\fR checks a host and an installation and says what to fix.
`)
	b.WriteString(".SH OPTIONS\n")
	for _, f := range tree.flags {
		b.WriteString(f.manItem())
	}
	b.WriteString(".SH COMMANDS\n")
	tree.walk(func(d *docCmd) {
		if d == tree {
			return
		}
		b.WriteString(".SS \"" + strings.ReplaceAll(d.synopsis(), `"`, `\(dq`) + "\"\n")
		b.WriteString(".PP\n" + roff(upperFirst(d.cmd.Usage)) + ".\n")
		if d.cmd.Description != "" {
			b.WriteString(roffParagraphs(d.cmd.Description))
		}
		if len(d.children) > 0 {
			var names []string
			for _, c := range d.children {
				names = append(names, `\fB`+roff(c.name())+`\fR`)
			}
			b.WriteString(".PP\nCommands: " + strings.Join(names, ", ") + ".\n")
			return
		}
		if len(d.flags) > 0 {
			b.WriteString(".RS\n")
			for _, f := range d.flags {
				b.WriteString(f.manItem())
			}
			b.WriteString(".RE\n")
		}
	})
	b.WriteString(".SH EXIT STATUS\n")
	for _, e := range []struct {
		code int
		what string
	}{
		{exitOK, "success"},
		{exitFailed, "a check found a problem (journal verify, doctor)"},
		{exitUsage, "bad usage"},
		{exitNoInput, "a file to read does not exist"},
		{exitUnavailable, "something needed is unavailable: a kernel feature, the daemon"},
		{exitSoftware, "internal error"},
		{exitOSErr, "the system refused (cgroup creation, mount)"},
		{exitIOErr, "reading or writing a file failed"},
		{exitNoPerm, "missing privileges"},
		{exitConfig, "bad config"},
	} {
		fmt.Fprintf(&b, ".TP\n.B %d\n%s\n", e.code, roff(e.what))
	}
	b.WriteString(`.PP
\fBinterlock run\fR exits with its command's status: 128+N when signal N ended it, 126 when it is not executable, 127 when it is not found.
.SH ENVIRONMENT
.TP
.B INTERLOCK_CONFIG
the config file, for every command (as \fB\-\-config\fR)
.TP
.B NOTIFY_SOCKET
set by systemd for \fBType=notify\fR services; the daemon reports readiness, reloads and stopping there
.SH FILES
.TP
.I ` + roff(config.DefaultPath) + `
the configuration (YAML); refused when others than root can write it
.TP
.I /var/lib/interlock/
state: the journal (\fIjournal.db\fR) and keys; kept on upgrade and removal, deleted on purge
.TP
.I /run/interlock/interlock.sock
the daemon's control socket
.TP
.I /sys/fs/bpf/interlock/
pinned BPF programs, links and maps
.TP
.I /usr/lib/systemd/system/interlock.service
the systemd unit
.SH SEE ALSO
.BR systemctl (1),
.BR journalctl (1),
.BR systemd.exec (5);
the configuration reference and install guide in \fI/usr/share/doc/interlock/\fR.
`)
	return b.String()
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
