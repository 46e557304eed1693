package runner

import (
	"slices"
	"strings"
)

// ScrubEnv returns environ without the variables named in secrets, and
// the names it removed (sorted, each once). A variable that holds one of
// interlock's own credentials (a target's password_env) is interlock's
// secret: the command it starts is the party that credential is kept
// from, so it must not find it in its environment.
//
// Names are compared exactly, as the kernel and getenv do. Every entry
// with a secret's name is removed, not only the first: a duplicated entry
// would otherwise survive for a libc that reads the later one.
func ScrubEnv(environ, secrets []string) (kept, removed []string) {
	if len(secrets) == 0 {
		return slices.Clone(environ), nil
	}
	kept = make([]string, 0, len(environ))
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if slices.Contains(secrets, name) {
			if !slices.Contains(removed, name) {
				removed = append(removed, name)
			}
			continue
		}
		kept = append(kept, kv)
	}
	slices.Sort(removed)
	return kept, removed
}
