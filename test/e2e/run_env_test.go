package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/interlock/interlock/internal/testkit"
)

// TestRunKeepsCredentialVariables: the variables a target's
// credentials.password_env names are in interlock's environment (it logs
// in with them) but not in the command's: `echo $VAR` in the job prints
// nothing. Every other variable reaches the command unchanged.
func TestRunKeepsCredentialVariables(t *testing.T) {
	// Nothing listens there: the password is only read, never used, and
	// the engine reads it when it starts, so an unset variable would fail
	// the run before the command starts.
	addr1 := fmt.Sprintf("127.0.0.2:%d", testkit.FreePort(t, "127.0.0.2"))
	addr2 := fmt.Sprintf("127.0.0.3:%d", testkit.FreePort(t, "127.0.0.3"))
	e := newEnv(t, []target{
		{name: "db", address: addr1, protocol: "postgres", extra: "credentials:\n      user: app\n      password_env: SOME_VAR"},
		{name: "db2", address: addr2, protocol: "postgres", extra: "credentials:\n      user: app\n      password_env: OTHER_SECRET"},
	}, "")

	cmd := exec.Command(interlockBin, "run", "-v", "-c", e.cfgPath, "--",
		"sh", "-c", `echo "[$SOME_VAR][$OTHER_SECRET][$PASS_ME][$SOME_VAR_NOT]"; env | grep -c '^SOME_VAR=' || true`)
	cmd.Env = append(os.Environ(),
		"SOME_VAR=pg-secret-1", "OTHER_SECRET=pg-secret-2",
		"PASS_ME=through", "SOME_VAR_NOT=also through")
	out, stderr, code := runCmd(t, cmd)
	if code != 0 {
		t.Fatalf("interlock run exited %d: %s%s", code, out, stderr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("command printed %q, want two lines", out)
	}
	if want := "[][][through][also through]"; lines[0] != want {
		t.Errorf("command saw %q, want %q: a credential variable reached it, or another variable did not", lines[0], want)
	}
	if lines[1] != "0" {
		t.Errorf("env lists SOME_VAR %s times in the command's environment, want 0", lines[1])
	}
	if strings.Contains(out, "pg-secret") {
		t.Errorf("a credential reached the command's output: %q", out)
	}
	// -v says which variables were held back, by name only.
	if !strings.Contains(stderr, "OTHER_SECRET") || !strings.Contains(stderr, "SOME_VAR") {
		t.Errorf("the log does not name the removed variables: %s", stderr)
	}
	if strings.Contains(stderr, "pg-secret") {
		t.Errorf("the log shows a credential's value: %s", stderr)
	}
}
