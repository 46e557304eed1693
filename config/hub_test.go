package config

import (
	"strings"
	"testing"
)

func TestHubValidate(t *testing.T) {
	tests := []struct {
		yaml, key, msg string
	}{
		{"hub:\n  listen: nope\n", "hub.listen", "not an address:port"},
		{"hub:\n  listen: ':0'\n", "hub.listen", "out of range"},
		{"hub:\n  state_dir: rel\n", "hub.state_dir", "absolute"},
		{"hub:\n  tls:\n    cert: /a.crt\n", "hub.tls.key", "go together"},
		{"hub:\n  tls:\n    key: /a.key\n", "hub.tls.cert", "go together"},
		{"hub:\n  tls:\n    names: ['a b']\n", "hub.tls.names[0]", "not a DNS name"},
		{"hub:\n  token_ttl: 1s\n", "hub.token_ttl", "out of range"},
		{"hub:\n  max_batch_entries: 0\n", "hub.max_batch_entries", "out of range"},
		{"hub:\n  max_batch_bytes: 1000\n", "hub.max_batch_bytes", "24 MiB"},
		{"hub:\n  fleet_interval: 2h\n", "hub.fleet_interval", "out of range"},
	}
	for _, tt := range tests {
		cfg, err := Parse("hub.yaml", []byte(tt.yaml))
		if err == nil {
			err = cfg.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), tt.key+": ") || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("%q: error %v, want one naming %s with %q", tt.yaml, err, tt.key, tt.msg)
		}
	}
	cfg, err := Parse("hub.yaml", []byte("hub:\n  listen: '[::1]:8443'\n  tls:\n    names: ['::1', hub.example]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("valid hub section refused: %v", err)
	}
	err = cfg.ValidateHubServe()
	if err == nil || !strings.Contains(err.Error(), "hub.database") {
		t.Errorf("ValidateHubServe without a database = %v, want an error naming hub.database", err)
	}
	cfg.Hub.Database = "postgres://hub@db/hub"
	if err := cfg.ValidateHubServe(); err != nil {
		t.Errorf("ValidateHubServe = %v", err)
	}
}
