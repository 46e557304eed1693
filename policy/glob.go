package policy

import "github.com/interlock/interlock/internal/glob"

// pattern is a compiled glob (internal/glob says what it matches). A
// pattern without metacharacters is a plain comparison.
type pattern struct {
	literal bool
	s       string
}

func compileGlob(g string) pattern {
	return pattern{literal: !glob.Meta(g), s: g}
}

func compileGlobs(gs []string) []pattern {
	if len(gs) == 0 {
		return nil
	}
	out := make([]pattern, len(gs))
	for i, g := range gs {
		out[i] = compileGlob(g)
	}
	return out
}

func (p pattern) match(s string) bool {
	if p.literal {
		return p.s == s
	}
	return glob.Match(p.s, s)
}

func anyMatch(ps []pattern, s string) bool {
	for _, p := range ps {
		if p.match(s) {
			return true
		}
	}
	return false
}
