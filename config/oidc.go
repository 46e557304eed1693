package config

// OIDCConfig configures verification of CI jobs' OIDC ID tokens.
type OIDCConfig struct{}

func (c *OIDCConfig) validate(l *errorList) {}
