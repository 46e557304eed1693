package engine

import (
	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/identity"
)

// agentSpecs turns the config's identity.agents into what the resolver
// takes (identity does not import config).
func agentSpecs(agents []config.AgentConfig) []identity.AgentSpec {
	out := make([]identity.AgentSpec, len(agents))
	for i, a := range agents {
		out[i] = identity.AgentSpec{Name: a.Name, Exes: a.Exes, SHA256: a.SHA256, Cmdlines: a.Cmdlines}
	}
	return out
}
