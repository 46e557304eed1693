package config

import (
	"strings"
	"testing"
	"time"
)

func TestHubConsoleValidate(t *testing.T) {
	ok := HubConsoleConfig{BaseURL: "https://hub.example.com:8443/console", Issuer: "https://idp.example.com", ClientID: "interlock",
		ClientSecretFile: "/etc/interlock/console.secret", Roles: HubConsoleRoles{Approver: []string{"dba"}, Auditor: []string{"audit"}}}
	for _, c := range []struct {
		name   string
		change func(*HubConsoleConfig)
		want   string // "" for valid
	}{
		{"valid", func(*HubConsoleConfig) {}, ""},
		{"off", func(c *HubConsoleConfig) { *c = HubConsoleConfig{} }, ""},
		{"loopback http issuer", func(c *HubConsoleConfig) { c.Issuer = "http://127.0.0.1:9000/oidc" }, ""},
		{"http issuer far away", func(c *HubConsoleConfig) { c.Issuer = "http://idp.example.com" }, "hub.console.issuer: "},
		{"keys without an issuer", func(c *HubConsoleConfig) { c.Issuer = "" }, "hub.console.issuer: must be set"},
		{"http base URL", func(c *HubConsoleConfig) { c.BaseURL = "http://hub.example.com/console" }, "hub.console.base_url: "},
		{"no base URL", func(c *HubConsoleConfig) { c.BaseURL = "" }, "hub.console.base_url: "},
		{"no client id", func(c *HubConsoleConfig) { c.ClientID = "" }, "hub.console.client_id: "},
		{"relative secret", func(c *HubConsoleConfig) { c.ClientSecretFile = "console.secret" }, "not an absolute path"},
		{"empty group", func(c *HubConsoleConfig) { c.Roles = HubConsoleRoles{Admin: []string{""}} }, "hub.console.roles.admin[0]"},
		{"bad claim", func(c *HubConsoleConfig) { c.UsernameClaim = "preferred username" }, "hub.console.username_claim"},
		{"long session", func(c *HubConsoleConfig) { d := Duration(30 * 24 * time.Hour); c.SessionTTL = &d }, "hub.console.session_ttl"},
	} {
		cfg := ok
		c.change(&cfg)
		l := &errorList{}
		cfg.validate(l)
		err := l.err()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: got %v, want %q", c.name, err, c.want)
		}
	}
	if ok.Username() != "preferred_username" || ok.Groups() != "groups" || ok.SessionLifetime() != 8*time.Hour {
		t.Errorf("defaults: %s %s %s", ok.Username(), ok.Groups(), ok.SessionLifetime())
	}
	y := `hub:
  console:
    base_url: https://hub.example.com:8443/console
    issuer: https://idp.example.com
    client_id: interlock
    client_secret_file: /etc/interlock/console.secret
    roles:
      approver: [dba]
      auditor: [audit]
      admin: [sec]
`
	cfg, err := Parse("test.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Hub.Console.Enabled() || cfg.Hub.Console.Roles.Map()["admin"][0] != "sec" {
		t.Errorf("parsed %+v", cfg.Hub.Console)
	}
	if _, err := Parse("test.yaml", []byte(strings.Replace(y, "admin:", "root:", 1))); err == nil || !strings.Contains(err.Error(), "root") {
		t.Errorf("an unknown role: %v", err)
	}
}
