package kubernetes

import (
	"net/url"
	"strings"

	"github.com/interlock/interlock/identity/argvredact"
)

// redactCommandQuery replaces the secrets in a raw query's command
// parameters (an exec's argv, one word each), keeping every other byte
// of it as the client sent it, and counts them. A command parameter that
// does not unescape is replaced whole: the journal cannot tell what it
// holds.
func redactCommandQuery(raw string) (string, int) {
	if !strings.Contains(raw, "command") {
		return raw, 0
	}
	pairs := strings.Split(raw, "&")
	var idx []int
	var words []string
	bad := 0
	for i, p := range pairs {
		k, v, _ := strings.Cut(p, "=")
		key, err := url.QueryUnescape(k)
		if err != nil || key != "command" {
			continue
		}
		val, err := url.QueryUnescape(v)
		if err != nil {
			pairs[i] = k + "=" + url.QueryEscape(argvredact.Marker)
			bad++
			continue
		}
		idx = append(idx, i)
		words = append(words, val)
	}
	red, n := argvredact.Argv(words)
	if n == 0 && bad == 0 {
		return raw, 0
	}
	for j, i := range idx {
		if red[j] != words[j] {
			k, _, _ := strings.Cut(pairs[i], "=")
			pairs[i] = k + "=" + url.QueryEscape(red[j])
		}
	}
	return strings.Join(pairs, "&"), n + bad
}
