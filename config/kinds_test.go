package config

import (
	"strings"
	"testing"
)

// TestKindAliasesNameKinds ties the did-you-mean table to the one list of
// kinds: a suggestion must itself be a kind the checks accept.
func TestKindAliasesNameKinds(t *testing.T) {
	for alias, suggestion := range kindAliases {
		// A suggestion may offer two kinds: "copy_from or copy_to".
		for _, kind := range strings.Split(suggestion, " or ") {
			if !isOpKind(kind) {
				t.Errorf("kindAliases[%q] suggests %q, which is not an operation kind (model.SQLKinds, SSHKinds, TCPKinds)", alias, kind)
			}
		}
		if isOpKind(alias) {
			t.Errorf("kindAliases has %q, which is itself a kind: a suggestion would replace a valid kind", alias)
		}
	}
}
