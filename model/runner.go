package model

import "regexp"

// Loaders run the program named on their command line; interpreters run
// a script or inline code. Either way the executable is not the program.
var (
	loaderName      = regexp.MustCompile(`^(ld-linux[-a-z0-9_.]*\.so(\.[0-9]+)*|ld\.so(\.[0-9]+)?|ld64\.so\.[0-9]+|ld-musl-[a-z0-9_]+\.so\.[0-9]+|qemu-[a-z0-9_]+(-static)?)$`)
	interpreterName = regexp.MustCompile(`^(python[0-9.]*|pypy[0-9.]*|perl[0-9.]*|ruby[0-9.]*|node(js)?|deno|bun|php[0-9.]*(-cli)?|lua[0-9.]*|luajit|tclsh[0-9.]*|wish[0-9.]*|R|Rscript|java|jshell|osascript|awk|gawk|mawk|nawk|busybox|toybox|(ba|da|z|k|mk|pdk|c|tc|fi|a|y|)sh)$`)
)

// RunnerKind says whether an executable's base name is a known loader
// or interpreter, and which.
func RunnerKind(base string) string {
	switch {
	case loaderName.MatchString(base):
		return "loader"
	case interpreterName.MatchString(base):
		return "interpreter"
	}
	return ""
}
