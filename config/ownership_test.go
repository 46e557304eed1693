package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/interlock/interlock/test/testenv"
)

func TestLoadRefusesFilesOthersCanWrite(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	p := filepath.Join(dir, "interlock.yaml")
	if err := os.WriteFile(p, []byte("journal:\n  sync: always\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(p); err != nil {
		t.Fatalf("root-owned 0644 file refused: %v", err)
	}
	os.Chmod(p, 0o664)
	_, err := Load(p)
	var ce *Error
	if !errors.As(err, &ce) || ce.File != p || !strings.Contains(ce.Msg, "chmod go-w") {
		t.Errorf("group-writable file: %v", err)
	}
	os.Chmod(p, 0o644)
	os.Chown(p, 65534, 65534)
	_, err = Load(p)
	if !errors.As(err, &ce) || !strings.Contains(ce.Msg, "chown root") {
		t.Errorf("file owned by nobody: %v", err)
	}
}
