package config

import (
	"strings"
	"testing"
)

func TestSSHCertificateCredentials(t *testing.T) {
	const head = "targets:\n  - name: box\n    protocol: PROTO\n    address: a:22\n    host_key: x\n    credentials: "
	for _, tt := range []struct {
		name, proto, creds string
		key, msg           string // the error, or "" for none
	}{
		{"certificate alone", "ssh", "{user: deploy, certificate: true}", "", ""},
		{"key_file alone", "ssh", "{user: deploy, key_file: /k}", "", ""},
		{"certificate and key_file", "ssh", "{user: deploy, certificate: true, key_file: /k}", "targets[0].credentials.key_file", "not both"},
		{"certificate and password", "ssh", "{user: deploy, certificate: true, password_env: PW}", "targets[0].credentials.certificate", "not both"},
		{"nothing", "ssh", "{user: deploy}", "targets[0].credentials.key_file", "certificate: true"},
		{"postgres", "postgres", "{user: deploy, password_env: PW, certificate: true}", "targets[0].credentials.certificate", "ssh targets only"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			src := strings.Replace(head, "PROTO", tt.proto, 1) + tt.creds + "\n"
			if tt.proto != "ssh" {
				src = strings.Replace(src, "    host_key: x\n", "", 1)
			}
			cfg, err := Parse("test.yaml", []byte(src))
			if tt.key == "" {
				if err != nil {
					t.Fatalf("error: %v", err)
				}
				if got := cfg.Targets[0].Credentials.Certificate; got != strings.Contains(tt.creds, "certificate: true") {
					t.Errorf("certificate = %v", got)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error for %s", tt.creds)
			}
			if !strings.Contains(err.Error(), tt.key+": ") || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q, want %s: ...%s...", err, tt.key, tt.msg)
			}
		})
	}
}
