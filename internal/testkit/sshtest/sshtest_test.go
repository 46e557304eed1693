package sshtest

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/interlock/interlock/test/testenv"
)

func TestNewKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "id_test")
	k, err := NewKey(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	b, _ := os.ReadFile(path)
	if !bytes.Equal(b, k.PEM) {
		t.Error("the file is not the key's PEM")
	}
	s, err := gossh.ParsePrivateKey(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(s.PublicKey().Marshal(), k.Pub.Marshal()) || !bytes.Equal(k.Signer.PublicKey().Marshal(), k.Pub.Marshal()) {
		t.Error("the file, the signer and Pub are not one key")
	}
	if !strings.HasPrefix(k.Authorized(), "ssh-ed25519 ") || strings.HasSuffix(k.Authorized(), "\n") {
		t.Errorf("Authorized = %q", k.Authorized())
	}
	if !strings.HasPrefix(k.Fingerprint(), "SHA256:") {
		t.Errorf("Fingerprint = %q", k.Fingerprint())
	}
	mem, err := NewKey("")
	if err != nil || mem.Path != "" || len(mem.PEM) == 0 {
		t.Fatalf("in-memory key: %+v, %v", mem, err)
	}
	if bytes.Equal(mem.Pub.Marshal(), k.Pub.Marshal()) {
		t.Error("two keys are the same")
	}
}

// TestStart runs sshd and logs in with CredKey; ClientKey is refused.
func TestStart(t *testing.T) {
	testenv.RequireRoot(t)
	for _, tool := range []string{SSHD, "ssh"} {
		_, err := exec.LookPath(tool)
		testenv.Require(t, tool, err)
	}
	dir := t.TempDir()
	s, err := Start(context.Background(), dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	ssh := func(key string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		argv := s.SSHArgv(key, "echo", "hello")
		out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
		return string(out), err
	}
	if out, err := ssh(s.CredKey.Path); err != nil || strings.TrimSpace(out) != "hello" {
		t.Errorf("login with CredKey: %v: %s", err, out)
	}
	if out, err := ssh(s.ClientKey.Path); err == nil {
		t.Errorf("the target let ClientKey in: %s", out)
	}
	// LogLevel VERBOSE by default: each connection is logged.
	if b, _ := os.ReadFile(s.Log); strings.Count(string(b), "Connection from ") < 2 {
		t.Errorf("sshd log does not show the connections:\n%s", b)
	}
	s.Stop()
	if err := answers(s.Addr()); err == nil {
		t.Error("sshd still answers after Stop")
	}
}

// TestRunReportsAnExit: an sshd that cannot start is an error with its
// log, not a wait of 10 seconds.
func TestRunReportsAnExit(t *testing.T) {
	testenv.RequireRoot(t)
	_, err := exec.LookPath(SSHD)
	testenv.Require(t, SSHD, err)
	dir := t.TempDir()
	start := time.Now()
	_, err = Run(context.Background(), filepath.Join(dir, "log"), "127.0.0.3:1", "-f", filepath.Join(dir, "missing_config"))
	if err == nil || !strings.Contains(err.Error(), "exited") {
		t.Errorf("Run with no config: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v to see the exit", d)
	}
}
