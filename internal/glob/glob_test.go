package glob

import "testing"

func TestMatch(t *testing.T) {
	for _, c := range []struct {
		pat, s string
		want   bool
	}{
		{"/usr/bin/claude", "/usr/bin/claude", true},
		{"/usr/bin/claude", "/usr/bin/claude2", false},
		{"*/claude", "/home/a/.local/bin/claude", true}, // * crosses '/'
		{"node */claude-code/cli.js *", "node /usr/lib/node_modules/@anthropic-ai/claude-code/cli.js --print", true},
		{"[!a]gent", "agent", false},
		{"\\*", "*", true},
		{"a?c", "aéc", true},
	} {
		if got := Match(c.pat, c.s); got != c.want {
			t.Errorf("Match(%q, %q) = %v, want %v", c.pat, c.s, got, c.want)
		}
	}
}
