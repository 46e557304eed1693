package main

// The shell completion writers, one per shell, from the doc tree
// (gendocs.go). Each completes flags, enum values, file names and the
// command line of run without running interlock.

import (
	"fmt"
	"sort"
	"strings"
)

// --- bash -------------------------------------------------------------------

func bashWords(ws []string) string { return strings.Join(ws, " ") }

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
