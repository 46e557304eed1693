package config

// IdentityConfig is the identity section: how interlock finds the
// principals behind a process beyond its kernel and /proc facts.
type IdentityConfig struct {
	// Agents are the AI agents and automations recognised in a process's
	// ancestry (config/agents.go).
	Agents []AgentConfig `yaml:"agents,omitempty"`
	// OIDC says which CI platforms' ID tokens are verified, and where a
	// job's token is found (config/oidc.go).
	OIDC OIDCConfig `yaml:"oidc,omitempty"`
}

func (c *IdentityConfig) validate(l *errorList) {
	validateAgents(l, c.Agents)
	c.OIDC.validate(l)
}
