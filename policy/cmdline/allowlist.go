package cmdline

import (
	"fmt"
	"path"
	"strconv"
	"strings"
)

// Allowlist is an ssh target's exec allowlist. A command line is
// permitted when it equals an exact entry byte for byte, or when it is
// plain (see Plain) and its words match an argv pattern word for word.
//
// An argv pattern is words separated by single spaces. Its first word is
// literal; the others are literal or path.Match globs that match within
// one word: `*` matches any bytes of the word, `/` included. Two more rules keep a
// glob from letting a client choose what runs:
//   - a glob word matches a word starting with `-` only when the glob
//     itself starts with `-`: options are listed, never matched by `*`
//     (so `find /srv -name *` does not admit `find /srv -name x -delete`,
//     which has more words anyway, nor `rsync * *` admit `rsync -e ...`);
//   - a glob word never matches a word with a `..` path element.
type Allowlist struct {
	exact    map[string]bool
	patterns [][]string
}

// NewAllowlist compiles the entries; they must have passed PatternProblem
// and ExactProblem.
func NewAllowlist(exact, argv []string) (*Allowlist, error) {
	a := &Allowlist{exact: map[string]bool{}}
	for _, e := range exact {
		if msg := ExactProblem(e); msg != "" {
			return nil, fmt.Errorf("exact entry %q: %s", e, msg)
		}
		a.exact[e] = true
	}
	for _, p := range argv {
		if msg := PatternProblem(p); msg != "" {
			return nil, fmt.Errorf("argv pattern %q: %s", p, msg)
		}
		a.patterns = append(a.patterns, strings.Split(p, " "))
	}
	return a, nil
}

// Permits says whether cmd may run; when not, why says why, in words
// for the journal and the client.
func (a *Allowlist) Permits(cmd string) (ok bool, why string) {
	if a.exact[cmd] {
		return true, ""
	}
	if !Plain(cmd) {
		if i, c := FirstBad(cmd); i >= 0 {
			return false, fmt.Sprintf("the command line is not an exact entry of the allowlist and holds %s at byte %d, which a shell gives a meaning; only plain command lines are matched against argv patterns", describe(c), i)
		}
		return false, "the command line is not an exact entry of the allowlist and is not plain (empty, or words not separated by single spaces); only plain command lines are matched against argv patterns"
	}
	words := strings.Split(cmd, " ")
	for _, p := range a.patterns {
		if matchArgv(p, words) {
			return true, ""
		}
	}
	return false, "no entry of the exec allowlist matches the command"
}

func matchArgv(pattern, words []string) bool {
	if len(pattern) != len(words) {
		return false
	}
	for i, p := range pattern {
		if !matchWord(p, words[i]) {
			return false
		}
	}
	return true
}

func matchWord(p, w string) bool {
	if !isGlob(p) {
		return p == w
	}
	if strings.HasPrefix(w, "-") && !strings.HasPrefix(p, "-") {
		return false
	}
	for _, e := range strings.Split(w, "/") {
		if e == ".." {
			return false
		}
	}
	// path.Match's * stops at '/'; within an argv word it should not
	// (`cat /var/log/*` matches /var/log/nginx/access.log), so '/' is
	// swapped for a byte no plain word holds on both sides.
	ok, err := path.Match(strings.ReplaceAll(p, "/", "\x01"), strings.ReplaceAll(w, "/", "\x01"))
	return err == nil && ok
}

func isGlob(p string) bool { return strings.ContainsAny(p, "*?[") }

// PatternProblem says what is wrong with an argv pattern, or "".
func PatternProblem(p string) string {
	if p == "" || p[0] == ' ' || p[len(p)-1] == ' ' || strings.Contains(p, "  ") {
		return "write words separated by single spaces, such as 'systemctl status *'"
	}
	words := strings.Split(p, " ")
	for i, w := range words {
		for j := 0; j < len(w); j++ {
			c := w[j]
			if plainByte(c) || i > 0 && strings.IndexByte("*?[]^", c) >= 0 {
				continue
			}
			if i == 0 && strings.IndexByte("*?[]^", c) >= 0 {
				return "the first word (the program) must be literal, not a glob"
			}
			return fmt.Sprintf("word %q holds %s; an argv pattern holds plain words and globs only (list a command line with other characters in allow_exact)", w, describe(c))
		}
		if _, err := path.Match(w, ""); err != nil {
			return fmt.Sprintf("word %q is not a valid glob: %v", w, err)
		}
	}
	if why := runsOthers(words[0]); why != "" {
		return fmt.Sprintf("%s %s, so an argv pattern would let a client choose what runs; list exact command lines in allow_exact instead", words[0], why)
	}
	return ""
}

// ExactProblem says what is wrong with an exact entry, or "".
func ExactProblem(e string) string {
	if strings.TrimSpace(e) == "" {
		return "is empty"
	}
	if ok, why := StartsShell(e); ok {
		return "starts a shell that takes commands from the client (" + why + "); a shell is judged by the shell rules, not listed"
	}
	return ""
}

// runsOthers says why the program named by the first word of a pattern
// runs programs its arguments or input name, or "".
func runsOthers(prog string) string {
	base := path.Base(prog)
	switch {
	case shells[base]:
		return "is a shell"
	case interpreters[base]:
		return "is an interpreter"
	case wrappers[base] != nil || base == "xargs" || base == "eval" || base == "source" || base == ".":
		return "runs the command its arguments name"
	}
	return ""
}

// describe names a byte for a message.
func describe(c byte) string {
	switch c {
	case ' ':
		return "a space"
	case '\t':
		return "a tab"
	case '\n':
		return "a newline"
	}
	if c < 0x20 || c >= 0x7f {
		return "byte " + fmt.Sprintf("0x%02x", c)
	}
	return strconv.QuoteRune(rune(c))
}
