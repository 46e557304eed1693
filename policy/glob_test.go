package policy

import (
	"path"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestWildMatch(t *testing.T) {
	cases := []struct {
		pat, s string
		want   bool
	}{
		{"rm -rf *", "rm -rf /srv/data", true},
		{"rm -rf *", "rm -r /srv", false},
		{"*.secrets", "vault.secrets", true},
		{"public.*", "billing.invoices", false},
		{"/system.slice/actions.runner.*", "/system.slice/actions.runner.acme.service/job", true},
		{"a?c", "abc", true},
		{"a?c", "ac", false},
		{"[a-c]x", "bx", true},
		{"[!a-c]x", "bx", false},
		{"[^a-c]x", "dx", true},
		{`\*lit`, "*lit", true},
		{`\*lit`, "xlit", false},
		{"*a*a*a*a*a*b", strings.Repeat("a", 60), false},
		{"", "", true},
		{"*", "", true},
		{"[", "[", true},
	}
	for _, c := range cases {
		if got := compileGlob(c.pat).match(c.s); got != c.want {
			t.Errorf("match(%q, %q) = %v, want %v", c.pat, c.s, got, c.want)
		}
	}
}

// FuzzWildMatch: the matcher agrees with path.Match wherever path.Match
// accepts the pattern and the two syntaxes agree.
func FuzzWildMatch(f *testing.F) {
	for _, s := range []string{"a*b", "[a-z]?", "*x*", `\*`, "[!q]z"} {
		f.Add(s, "abz")
	}
	f.Fuzz(func(t *testing.T, pat, s string) {
		// '/' is special to path.Match only, and "[!" negates here (as in
		// shells) but not there.
		if strings.ContainsAny(pat+s, "/") || strings.Contains(pat, "[!") || !utf8.ValidString(pat) || !utf8.ValidString(s) {
			return
		}
		want, err := path.Match(pat, s)
		if err != nil {
			return
		}
		if got := compileGlob(pat).match(s); got != want {
			t.Errorf("match(%q, %q) = %v, path.Match says %v", pat, s, got, want)
		}
	})
}
