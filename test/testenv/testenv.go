// Package testenv decides what a test does when something it needs is
// missing: outside CI it skips, and under CI=true it fails, because CI
// must run every test and a skipped one proves nothing.
package testenv

import (
	"fmt"
	"os"
	"testing"
)

// CI reports whether the tests run under CI=true.
func CI() bool { return os.Getenv("CI") == "true" }

// Require stops the test when err, the reason a prerequisite (what) is
// missing, is not nil: a failure under CI, a skip elsewhere.
func Require(t testing.TB, what string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	msg := fmt.Sprintf("%s: %v", what, err)
	if CI() {
		t.Fatal(msg + " (CI=true: failing, not skipping; make test installs what the tests need)")
	}
	t.Skip(msg)
}

// RequireRoot stops a test that needs root when it runs as another user.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Require(t, "this test needs root", fmt.Errorf("running as uid %d", os.Geteuid()))
	}
}
