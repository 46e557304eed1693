// Package glob matches the globs of interlock's config against plain
// strings: * matches any run of characters ('/' included, unlike
// path.Match: names, tables, cgroup paths, executables and command lines
// are matched as plain strings), ? one character, [...] a class ([a-z],
// [!x] or [^x] negated), and \ quotes the next character. Policy and
// identity (the agents' executables and command lines) share it, so a
// glob means the same in both.
package glob

import "unicode/utf8"

// Match says whether s matches the glob pat.
func Match(pat, s string) bool {
	if !Meta(pat) {
		return pat == s
	}
	return wildMatch(pat, s)
}

// Meta says whether pat has metacharacters (without, it matches only
// itself).
func Meta(pat string) bool {
	for i := 0; i < len(pat); i++ {
		switch pat[i] {
		case '*', '?', '[', '\\':
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
