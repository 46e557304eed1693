package config

import (
	"strings"
	"testing"
	"time"
)

func TestConsoleConfig(t *testing.T) {
	const ok = `console:
  listen: 127.0.0.1:8444
  base_url: https://db1.example.com:8444/console
  session_ttl: 1h
  tls:
    cert: /etc/interlock/console.crt
    key: /etc/interlock/console.key
  oidc:
    issuer: https://idp.example.com
    client_id: interlock-db1
    roles:
      auditor: [audit]
`
	cfg, err := Parse("test.yaml", []byte(ok))
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Console.Enabled() || cfg.Console.Web().SessionLifetime() != time.Hour || cfg.Console.OIDC.ClientID != "interlock-db1" ||
		strings.Join(cfg.Console.OIDC.Roles.Map()["auditor"], ",") != "audit" {
		t.Errorf("parsed %+v", cfg.Console)
	}
	if cfg.Console.Decide {
		t.Error("decide is on by default")
	}
	if d, err := Parse("test.yaml", []byte(strings.Replace(ok, "  session_ttl: 1h\n", "  session_ttl: 1h\n  decide: true\n", 1))); err != nil || !d.Console.Decide {
		t.Errorf("decide: true: %v", err)
	}
	for _, c := range []struct{ name, from, to, want string }{
		{"off", "console:\n  listen: 127.0.0.1:8444", "console:\n  listen: ''", "console.listen: must be set"},
		{"http base URL", "https://db1.example.com:8444/console", "http://127.0.0.1:8444/console", "console.base_url: "},
		{"no TLS", "  tls:\n    cert: /etc/interlock/console.crt\n    key: /etc/interlock/console.key\n", "", "console.tls: cert and key must be set"},
		{"relative cert", "/etc/interlock/console.crt", "console.crt", "console.tls.cert"},
		{"no IdP", "    issuer: https://idp.example.com\n", "", "console.oidc.issuer"},
		{"bad listen", "127.0.0.1:8444", "8444", "console.listen"},
		{"decide without listen", "console:\n  listen: 127.0.0.1:8444", "console:\n  decide: true", "console.listen: must be set"},
		{"decide is a bool", "  session_ttl: 1h\n", "  session_ttl: 1h\n  decide: yes please\n", "console.decide"},
	} {
		y := strings.Replace(ok, c.from, c.to, 1)
		if y == ok {
			t.Fatalf("%s: the change does not apply", c.name)
		}
		_, err := Parse("test.yaml", []byte(y))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", c.name, err, c.want)
		}
	}
}
