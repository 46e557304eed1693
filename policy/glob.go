package policy

import "unicode/utf8"

// pattern is a compiled glob: * matches any run of characters ('/'
// included, unlike path.Match: names, tables, cgroup paths and command
// lines are matched as plain strings), ? one character, [...] a class
// ([a-z], [!x] or [^x] negated), and \ quotes the next character. A
// pattern without metacharacters is a plain comparison.
type pattern struct {
	literal bool
	s       string
}

func compileGlob(g string) pattern {
	for i := 0; i < len(g); i++ {
		switch g[i] {
		case '*', '?', '[', '\\':
			return pattern{s: g}
		}
	}
	return pattern{literal: true, s: g}
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
	return wildMatch(p.s, s)
}

func anyMatch(ps []pattern, s string) bool {
	for _, p := range ps {
		if p.match(s) {
			return true
		}
	}
	return false
}

// wildMatch is an iterative glob matcher with single-star backtracking:
// linear in practice, and never exponential. ? and classes match one
// UTF-8 character.
func wildMatch(pat, s string) bool {
	pi, si := 0, 0
	starP, starS := -1, 0
	for si < len(s) {
		if pi < len(pat) {
			switch c := pat[pi]; c {
			case '*':
				starP, starS = pi, si
				pi++
				continue
			case '?':
				_, n := utf8.DecodeRuneInString(s[si:])
				pi++
				si += n
				continue
			case '[':
				r, n := utf8.DecodeRuneInString(s[si:])
				if ok, next, valid := matchClass(pat, pi, r); valid {
					if ok {
						pi, si = next, si+n
						continue
					}
				} else if s[si] == '[' {
					pi, si = pi+1, si+1
					continue
				}
			case '\\':
				if pi+1 < len(pat) && pat[pi+1] == s[si] {
					pi, si = pi+2, si+1
					continue
				}
			default:
				if c == s[si] {
					pi++
					si++
					continue
				}
			}
		}
		if starP < 0 {
			return false
		}
		_, n := utf8.DecodeRuneInString(s[starS:])
		starS += n
		pi, si = starP+1, starS
	}
	for pi < len(pat) && pat[pi] == '*' {
		pi++
	}
	return pi == len(pat)
}

// matchClass matches c against the class starting at pat[i] == '['. It
// returns whether c is in it, the index after the class, and whether the
// class is well formed.
func matchClass(pat string, i int, c rune) (ok bool, next int, valid bool) {
	j := i + 1
	negate := false
	if j < len(pat) && (pat[j] == '!' || pat[j] == '^') {
		negate = true
		j++
	}
	first := true
	for j < len(pat) {
		if pat[j] == ']' && !first {
			return ok != negate, j + 1, true
		}
		first = false
		lo, n := classRune(pat, j)
		j += n
		hi := lo
		if j+1 < len(pat) && pat[j] == '-' && pat[j+1] != ']' {
			hi, n = classRune(pat, j+1)
			j += 1 + n
		}
		if lo <= c && c <= hi {
			ok = true
		}
	}
	return false, i, false
}

// classRune reads one (possibly escaped) character of a class.
func classRune(pat string, j int) (rune, int) {
	if pat[j] == '\\' && j+1 < len(pat) {
		r, n := utf8.DecodeRuneInString(pat[j+1:])
		return r, n + 1
	}
	return utf8.DecodeRuneInString(pat[j:])
}
