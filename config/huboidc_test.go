package config

import (
	"strings"
	"testing"
)

func TestHubOIDC(t *testing.T) {
	cfg, err := Parse("test.yaml", []byte(`hub:
  oidc:
    issuer: https://login.example.com
    client_id: interlock-hub
    roles:
      approver: [dba, sre]
      admin: [platform]
ship:
  console_url: https://hub.example.com:8443/
`))
	if err != nil {
		t.Fatal(err)
	}
	o := cfg.Hub.OIDC
	m := o.Roles.Map()
	if !o.Enabled() || o.ClientID != "interlock-hub" || len(m["approver"]) != 2 || m["admin"][0] != "platform" || len(m["auditor"]) != 0 {
		t.Errorf("oidc %+v, roles %v", o, m)
	}
	if got := cfg.Ship.Resolve().ConsoleURL; got != "https://hub.example.com:8443" {
		t.Errorf("console_url %q", got)
	}
	for src, want := range map[string]string{
		"hub:\n  oidc:\n    issuer: http://login.example.com\n    client_id: c\n":                "hub.oidc.issuer",
		"hub:\n  oidc:\n    issuer: https://login.example.com\n":                                 "hub.oidc.client_id",
		"hub:\n  oidc:\n    client_id: c\n":                                                      "hub.oidc.issuer",
		"hub:\n  oidc:\n    issuer: https://i\n    client_id: c\n    roles:\n      owner: [x]\n": "owner",
		"ship:\n  console_url: http://hub.example.com\n":                                         "ship.console_url",
	} {
		if _, err := Parse("test.yaml", []byte(src)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want an error naming %s", src, err, want)
		}
	}
	if _, err := Parse("test.yaml", []byte("hub:\n  oidc:\n    issuer: http://127.0.0.1:5556/oidc\n    client_id: c\n")); err != nil {
		t.Errorf("a loopback http issuer (tests): %v", err)
	}
}
