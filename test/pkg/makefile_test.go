package pkg

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestMakeFindsGoUnderSudoPath (issue 14): `sudo make run` resets PATH to
// sudo's secure_path, which leaves out /usr/local/go/bin. The Makefile
// finds the toolchain anyway, builds with it, and, when there is none,
// says what to do.
func TestMakeFindsGoUnderSudoPath(t *testing.T) {
	securePath := "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	mk := func(args ...string) (string, error) {
		cmd := exec.Command("make", append([]string{"-s", "--no-print-directory", "-C", repoRoot}, args...)...)
		cmd.Env = []string{securePath, "HOME=/root", "SUDO_USER=" + os.Getenv("SUDO_USER")}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := mk("go-check"); err != nil {
		t.Fatalf("make go-check under sudo's PATH: %v\n%s", err, out)
	}
	out, err := mk("-n", "build")
	if err != nil {
		t.Fatalf("make -n build under sudo's PATH: %v\n%s", err, out)
	}
	var goBin string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[1] == "build" {
			goBin = f[0]
		}
	}
	if goBin == "" {
		t.Fatalf("no go build line in make -n build:\n%s", out)
	}
	if goBin != "go" {
		if _, err := os.Stat(goBin); err != nil {
			t.Errorf("make builds with %s, which does not exist: %v", goBin, err)
		}
	} else if _, err := exec.LookPath("/usr/bin/go"); err != nil {
		t.Errorf("make falls back to a bare `go` that sudo's PATH does not have:\n%s", out)
	}
	out, err = mk("GO=/nonexistent/bin/go", "go-check")
	if err == nil || !strings.Contains(out, "Go not found") || !strings.Contains(out, "GO=/path/to/bin/go") {
		t.Errorf("make with no Go: %v\n%s", err, out)
	}
}
