package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCredentialsPassword: one rule for every protocol's held password.
func TestCredentialsPassword(t *testing.T) {
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Setenv("INTERLOCK_TEST_PW", "s3cret")
	t.Setenv("INTERLOCK_TEST_EMPTY", "")
	for _, tt := range []struct {
		name    string
		c       *Credentials
		want    string
		wantErr string // "" for none
	}{
		{"none given", &Credentials{User: "u"}, "", ""},
		{"nil credentials", nil, "", ""},
		{"file", &Credentials{PasswordFile: file("pw", "s3cret\n")}, "s3cret", ""},
		{"file with CRLF", &Credentials{PasswordFile: file("crlf", "s3cret\r\n")}, "s3cret", ""},
		{"file keeps inner spaces", &Credentials{PasswordFile: file("sp", " a b \n")}, " a b ", ""},
		{"empty file", &Credentials{PasswordFile: file("empty", "")}, "", "is empty"},
		{"file of newlines", &Credentials{PasswordFile: file("nl", "\n\r\n")}, "", "is empty"},
		{"missing file", &Credentials{PasswordFile: filepath.Join(dir, "absent")}, "", "no such file"},
		{"env", &Credentials{PasswordEnv: "INTERLOCK_TEST_PW"}, "s3cret", ""},
		{"env empty", &Credentials{PasswordEnv: "INTERLOCK_TEST_EMPTY"}, "", "is empty"},
		{"env unset", &Credentials{PasswordEnv: "INTERLOCK_TEST_UNSET_4711"}, "", "is not set"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.c.Password()
			if tt.wantErr == "" {
				if err != nil || got != tt.want {
					t.Fatalf("Password() = %q, %v; want %q", got, err, tt.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.HasPrefix(err.Error(), "credentials.password_") {
				t.Fatalf("Password() = %q, %v; want an error naming the setting and saying %q", got, err, tt.wantErr)
			}
		})
	}
}
