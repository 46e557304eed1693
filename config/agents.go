package config

// AgentConfig names one AI agent or automation.
type AgentConfig struct {
	Name string `yaml:"name"`
}

func validateAgents(l *errorList, agents []AgentConfig) {}
