// Package pkg tests interlock's .deb and .rpm: what they hold (files, modes,
// conffiles, scripts), that systemd accepts the unit, that the .deb
// installs, upgrades, is removed and purged in a Debian bookworm root made
// with debootstrap, and that the .rpm's scriptlets take the deb's steps
// and the .rpm installs, upgrades and is erased in the same root (by the
// host's rpm --root). It needs root; under CI=true a missing prerequisite
// fails instead of skipping.
//
// The bookworm root is cached in /var/cache/interlock-pkgtest (made on the
// first run, about 30 s with a reachable mirror; INTERLOCK_DEBIAN_MIRROR
// overrides the mirror apt uses). Each test installs into an overlay on
// top of it, inside a private mount namespace, so the cache stays pristine
// and nothing is left mounted.
package pkg

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Two versions of the packages, for the upgrade test.
const (
	v1 = "1.0.0"
	v2 = "1.0.1"
)

var (
	repoRoot string
	workDir  string
	// debs and rpms by version.
	debs = map[string]string{}
	rpms = map[string]string{}
)

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	ci := os.Getenv("CI") == "true"
	fail := func(format string, a ...any) int {
		fmt.Fprintf(os.Stderr, "pkg: "+format+"\n", a...)
		return 1
	}
	if os.Geteuid() != 0 {
		if ci {
			return fail("these tests need root (CI=true: failing, not skipping)")
		}
		fmt.Fprintln(os.Stderr, "pkg: skipped: not root")
		return 0
	}
	var missing []string
	for _, tool := range []string{"dpkg-deb", "rpm", "debootstrap", "systemd-analyze", "unshare", "chroot", "groff", "man", "zsh", "fish", "bash", "setpriv"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) > 0 {
		msg := fmt.Sprintf("missing %s (make test installs them)", strings.Join(missing, ", "))
		if ci {
			return fail("%s", msg)
		}
		fmt.Fprintln(os.Stderr, "pkg: skipped:", msg)
		return 0
	}
	var err error
	if repoRoot, err = filepath.Abs("../.."); err != nil {
		return fail("%v", err)
	}
	if workDir, err = os.MkdirTemp("", "interlock-pkgtest-"); err != nil {
		return fail("%v", err)
	}
	defer os.RemoveAll(workDir)
	for _, v := range []string{v1, v2} {
		if err := buildPackages(v); err != nil {
			return fail("build the %s packages: %v", v, err)
		}
	}
	return m.Run()
}

// buildPackages builds the binary and both packages for a version, the way
// `make package` does.
func buildPackages(ver string) error {
	dir := filepath.Join(workDir, ver)
	bin := filepath.Join(dir, "build", "interlock")
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version="+ver, "-o", bin, "./cmd/interlock")
	build.Dir = repoRoot
	build.Env = append(os.Environ(), "CGO_ENABLED=1")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, out)
	}
	mk := exec.Command("go", "run", "./cmd/mkpkg", "-root", "..", "-bin", bin, "-version", ver, "-out", dir)
	mk.Dir = filepath.Join(repoRoot, "packaging")
	var stdout bytes.Buffer
	mk.Stdout, mk.Stderr = &stdout, os.Stderr
	if err := mk.Run(); err != nil {
		return fmt.Errorf("mkpkg: %v", err)
	}
	for _, p := range strings.Fields(stdout.String()) {
		switch filepath.Ext(p) {
		case ".deb":
			debs[ver] = p
		case ".rpm":
			rpms[ver] = p
		}
	}
	if debs[ver] == "" || rpms[ver] == "" {
		return fmt.Errorf("mkpkg made %q, want a .deb and an .rpm", stdout.String())
	}
	return nil
}

// run runs a command and returns its combined output, failing the test if
// it does not exit 0.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}
