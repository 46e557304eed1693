package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/interlock/interlock/test/testenv"
)

// TestReadersOf: a journal refused to a user names the group that may
// read it, or says only root may; the e2e test checks it as a real user.
func TestReadersOf(t *testing.T) {
	testenv.RequireRoot(t) // to give a file to a group
	dir := t.TempDir()
	for _, tc := range []struct {
		mode os.FileMode
		gid  int
		want string
	}{
		{0o640, 65534, "members of group nogroup (the audit group)"},
		{0o600, 65534, "readable by its owner alone"},
		{0o640, 0, "readable by its owner alone"},
		{0o640, 4242424, "group with gid 4242424"},
	} {
		p := filepath.Join(dir, "journal.db")
		os.Remove(p)
		if err := os.WriteFile(p, nil, tc.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, 0, tc.gid); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := readersOf(p, fi); !strings.Contains(got, tc.want) {
			t.Errorf("mode %v gid %d: %q, want %q", tc.mode, tc.gid, got, tc.want)
		}
	}
}
