package pgxsuite

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/interlock/interlock/test/testenv"
)

// pgxModule is the pgx module interlock depends on, as `go list -m` gives it.
type pgxModule struct {
	Path    string
	Version string
	Dir     string
	Sum     string
}

// findPGX finds pgx's module directory for the version in interlock's
// go.mod, downloading the module when the cache lacks it.
func findPGX(t *testing.T) pgxModule {
	t.Helper()
	var m pgxModule
	out, err := goCmd("", "list", "-m", "-json", pgxPath).Output()
	if err != nil {
		t.Fatalf("go list -m %s: %v", pgxPath, exitText(err))
	}
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatalf("go list -m %s: %v: %s", pgxPath, err, out)
	}
	if m.Dir != "" {
		if _, err := os.Stat(filepath.Join(m.Dir, "go.mod")); err == nil {
			return m
		}
	}
	out, err = goCmd("", "mod", "download", "-json", pgxPath+"@"+m.Version).Output()
	testenv.Require(t, "the pgx module "+m.Version+" (network for modules)", exitText(err))
	var d struct{ Dir, Sum, Error string }
	if err := json.Unmarshal(out, &d); err != nil || d.Dir == "" {
		testenv.Require(t, "the pgx module "+m.Version, fmt.Errorf("go mod download: %v %s %s", err, d.Error, out))
	}
	m.Dir, m.Sum = d.Dir, d.Sum
	return m
}

// goCmd is a go command run in dir (the test's own directory when empty).
func goCmd(dir string, args ...string) *exec.Cmd {
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	return cmd
}

// exitText folds a command's stderr into its error.
func exitText(err error) error {
	if ee, ok := err.(*exec.ExitError); ok && len(ee.Stderr) > 0 {
		return fmt.Errorf("%v: %s", err, bytes.TrimSpace(ee.Stderr))
	}
	return err
}

// goEnv reads one `go env` value.
func goEnv(t *testing.T, key string) string {
	t.Helper()
	out, err := goCmd("", "env", key).Output()
	if err != nil {
		t.Fatalf("go env %s: %v", key, exitText(err))
	}
	return strings.TrimSpace(string(out))
}

// cacheDir is where built test binaries are kept between runs, keyed by
// pgx's version and the Go toolchain: $(go env GOCACHE)/../interlock-pgxsuite.
// It is empty when GOCACHE is off or the directory cannot be made; the
// binaries are then built into the test's temporary directory every time.
func cacheDir(t *testing.T, m pgxModule) string {
	t.Helper()
	gocache := goEnv(t, "GOCACHE")
	if gocache == "" || gocache == "off" {
		return ""
	}
	key := fmt.Sprintf("pgx-%s-%s-%s-%s", m.Version, goEnv(t, "GOVERSION"), goEnv(t, "GOOS"), goEnv(t, "GOARCH"))
	dir := filepath.Join(filepath.Dir(gocache), "interlock-pgxsuite", key)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Logf("no cache for the pgx test binaries (%v): building them afresh", err)
		return ""
	}
	return dir
}

// buildSuite returns the test binary of one of pgx's packages: from the
// cache when it is there, otherwise built with `go test -c` inside pgx's
// own module directory (its go.mod and go.sum; test dependencies from the
// module proxy) and written to the cache (or tmp).
func buildSuite(t *testing.T, m pgxModule, cache, tmp string, s suite) string {
	t.Helper()
	dir := cache
	if dir == "" {
		dir = tmp
	}
	bin := filepath.Join(dir, s.name+".test")
	if cache != "" {
		if fi, err := os.Stat(bin); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return bin
		}
	}
	// Download first so that a missing network is told apart from a build
	// that fails.
	dl := goCmd(m.Dir, "mod", "download")
	dl.Env = pgxBuildEnv()
	if out, err := dl.CombinedOutput(); err != nil {
		testenv.Require(t, "pgx's test dependencies (network for modules)", fmt.Errorf("go mod download in %s: %v: %s", m.Dir, err, out))
	}
	part := fmt.Sprintf("%s.%d.part", bin, os.Getpid())
	cmd := goCmd(m.Dir, "test", "-c", "-o", part, "./"+s.rel)
	cmd.Env = pgxBuildEnv()
	if out, err := cmd.CombinedOutput(); err != nil {
		os.Remove(part)
		t.Fatalf("build the test binary of %s (go test -c in %s): %v: %s", s.importPath, m.Dir, err, out)
	}
	if err := os.Rename(part, bin); err != nil {
		t.Fatal(err)
	}
	return bin
}

// pgxBuildEnv is the environment for go commands in pgx's module: its own
// go.mod rules (no workspace; no -mod flag inherited from interlock's).
func pgxBuildEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "GOWORK=") || strings.HasPrefix(kv, "GOFLAGS=") {
			continue
		}
		env = append(env, kv)
	}
	var flags []string
	for _, f := range strings.Fields(os.Getenv("GOFLAGS")) {
		if !strings.HasPrefix(f, "-mod=") && !strings.HasPrefix(f, "-modfile=") {
			flags = append(flags, f)
		}
	}
	return append(env, "GOWORK=off", "GOFLAGS="+strings.Join(flags, " "))
}

// buildInterlock builds interlock from the current tree, as test/e2e does.
func buildInterlock(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "interlock")
	if out, err := goCmd("", "build", "-o", bin, "../../cmd/interlock").CombinedOutput(); err != nil {
		t.Fatalf("build interlock: %v: %s", err, out)
	}
	return bin
}
