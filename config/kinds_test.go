package config

import "testing"

// TestKindAliasesNameKinds ties the did-you-mean table to the one list of
// kinds: a suggestion must itself be a kind the checks accept.
func TestKindAliasesNameKinds(t *testing.T) {
	for alias, kind := range kindAliases {
		if !isOpKind(kind) {
			t.Errorf("kindAliases[%q] = %q, which is not an operation kind (model.SQLKinds, SSHKinds, TCPKinds)", alias, kind)
		}
		if isOpKind(alias) {
			t.Errorf("kindAliases has %q, which is itself a kind: a suggestion would replace a valid kind", alias)
		}
	}
}
