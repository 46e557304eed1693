package postgres

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/model"
)

// TestEmptyPasswordFileRefused: an empty held password stops the target's
// setup with a message that says so, as for ssh targets (it used to log in
// with an empty password).
func TestEmptyPasswordFileRefused(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := newTarget(config.TargetConfig{Name: "db", Protocol: model.ProtoPostgres, Address: "127.0.0.2:5432",
		Credentials: &config.Credentials{User: "app", PasswordFile: pw}})
	if err == nil || !strings.Contains(err.Error(), "credentials.password_file") || !strings.Contains(err.Error(), "is empty") {
		t.Fatalf("newTarget with an empty password file: %v; want an error saying the file is empty", err)
	}
}
