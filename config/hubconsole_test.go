package config

import (
	"strings"
	"testing"
	"time"
)

func TestHubConsoleValidate(t *testing.T) {
	oidc := HubOIDCConfig{Issuer: "https://idp.example.com", ClientID: "interlock"}
	ok := HubConsoleConfig{BaseURL: "https://hub.example.com:8443/console", ClientSecretFile: "/etc/interlock/console.secret"}
	for _, c := range []struct {
		name   string
		change func(*HubConsoleConfig, *HubOIDCConfig)
		want   string // "" for valid
	}{
		{"valid", func(*HubConsoleConfig, *HubOIDCConfig) {}, ""},
		{"off", func(c *HubConsoleConfig, _ *HubOIDCConfig) { *c = HubConsoleConfig{} }, ""},
		{"public client", func(c *HubConsoleConfig, _ *HubOIDCConfig) { c.ClientSecretFile = "" }, ""},
		{"no IdP", func(_ *HubConsoleConfig, o *HubOIDCConfig) { *o = HubOIDCConfig{} }, "hub.oidc.issuer: must be set to serve the console"},
		{"keys without a base URL", func(c *HubConsoleConfig, _ *HubOIDCConfig) { c.BaseURL = "" }, "hub.console.base_url: must be set"},
		{"http base URL", func(c *HubConsoleConfig, _ *HubOIDCConfig) { c.BaseURL = "http://hub.example.com/console" }, "hub.console.base_url: "},
		{"base URL with a query", func(c *HubConsoleConfig, _ *HubOIDCConfig) { c.BaseURL = "https://hub.example.com/?x=1" }, "hub.console.base_url: "},
		{"relative secret", func(c *HubConsoleConfig, _ *HubOIDCConfig) { c.ClientSecretFile = "console.secret" }, "not an absolute path"},
		{"scopes", func(c *HubConsoleConfig, _ *HubOIDCConfig) { c.Scopes = []string{"openid", "profile"} }, ""},
		{"scopes without openid", func(c *HubConsoleConfig, _ *HubOIDCConfig) { c.Scopes = []string{"profile"} }, "hub.console.scopes: must include openid"},
		{"bad scope", func(c *HubConsoleConfig, _ *HubOIDCConfig) { c.Scopes = []string{"openid", "a b"} }, "hub.console.scopes[1]"},
		{"long session", func(c *HubConsoleConfig, _ *HubOIDCConfig) { d := Duration(30 * 24 * time.Hour); c.SessionTTL = &d }, "hub.console.session_ttl"},
	} {
		cfg, o := ok, oidc
		c.change(&cfg, &o)
		l := &errorList{}
		cfg.validate(l, o)
		err := l.err()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: got %v, want %q", c.name, err, c.want)
		}
	}
	if ok.SessionLifetime() != 8*time.Hour {
		t.Errorf("default session: %s", ok.SessionLifetime())
	}
	y := `hub:
  oidc:
    issuer: https://idp.example.com
    client_id: interlock
    roles:
      approver: [dba, sre]
      auditor: [audit]
  console:
    base_url: https://hub.example.com:8443/console
    client_secret_file: /etc/interlock/console.secret
    session_ttl: 1h
`
	cfg, err := Parse("test.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Hub.Console.Enabled() || cfg.Hub.Console.SessionLifetime() != time.Hour ||
		strings.Join(cfg.Hub.OIDC.Roles.Map()["approver"], ",") != "dba,sre" {
		t.Errorf("parsed %+v %+v", cfg.Hub.Console, cfg.Hub.OIDC)
	}
}
