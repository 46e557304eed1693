package main

import (
	"strings"
	"time"

	"github.com/urfave/cli/v3"
)

// The shell completions and the man page are generated from the command
// tree, so they cannot drift from the CLI. They are static: the shells never
// run interlock to complete a word (urfave/cli's dynamic completion would
// need --generate-shell-completion, which as the last word of
// `interlock run -- CMD ... --generate-shell-completion` would silently not
// run CMD). urfave/cli's static fish writer knows no enum values nor the
// command line after run, and its man page writer (urfave/cli-docs, through
// markdown) has no EXIT STATUS, ENVIRONMENT or FILES: hence these writers,
// the completions in gendocs_complete.go and the man page in gendocs_man.go.

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

// fileFlags take a file (or directory) name, wherever they appear.
var fileFlags = map[string]bool{"config": true, "journal": true, "output": true, "out": true,
	"bundle": true, "pubkey": true, "checkpoint": true, "fleet-bundle": true, "fleet-key": true, "hub-key": true,
	"fleet-checkpoint": true, "fleet-key-out": true, "ca": true, "operator": true, "save": true}

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

// forms are the flag's spellings on a command line: --long, -s.
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
