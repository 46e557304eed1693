package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/interlock/interlock/redirector"
	"github.com/interlock/interlock/test/testenv"
)

func TestStateDirCheck(t *testing.T) {
	testenv.RequireRoot(t) // the check wants root-owned files
	dir := filepath.Join(t.TempDir(), "state")
	if c := stateDirCheck(dir); c.Status != "ok" || !strings.Contains(c.Detail, "does not exist yet") {
		t.Errorf("missing dir: %+v", c)
	}
	for mode, want := range map[os.FileMode]string{0o750: "ok", 0o700: "ok", 0o755: "warn", 0o770: "fail", 0o777: "fail"} {
		os.Mkdir(dir, 0o700)
		if err := os.Chmod(dir, mode); err != nil {
			t.Fatal(err)
		}
		if c := stateDirCheck(dir); c.Status != want {
			t.Errorf("mode %04o: %+v, want %s", mode, c, want)
		}
	}
}

func TestKeysCheck(t *testing.T) {
	testenv.RequireRoot(t) // the check wants root-owned files
	dir := t.TempDir()
	if c := keysCheck(filepath.Join(dir, "missing")); c.Status != "ok" {
		t.Errorf("missing dir: %+v", c)
	}
	if c := keysCheck(dir); c.Status != "ok" || !strings.Contains(c.Detail, "no key files") {
		t.Errorf("empty dir: %+v", c)
	}
	os.MkdirAll(filepath.Join(dir, "ssh"), 0o700)
	os.WriteFile(filepath.Join(dir, "signing.key"), []byte("k"), 0o600)
	os.WriteFile(filepath.Join(dir, "ssh", "ca.key"), []byte("k"), 0o400)
	os.WriteFile(filepath.Join(dir, "signing.pub"), []byte("k"), 0o644)
	if c := keysCheck(dir); c.Status != "ok" || !strings.Contains(c.Detail, "2 key file(s)") {
		t.Errorf("good keys: %+v", c)
	}
	os.Chmod(filepath.Join(dir, "ssh", "ca.key"), 0o640)
	c := keysCheck(dir)
	if c.Status != "fail" || !strings.Contains(c.Detail, "ca.key is mode 0640") || !strings.Contains(c.Fix, "chmod 600 "+filepath.Join(dir, "ssh", "ca.key")) {
		t.Errorf("group-readable key: %+v", c)
	}
}

func TestJudgePins(t *testing.T) {
	full := func(id uint64) []redirector.PinnedLink {
		var out []redirector.PinnedLink
		for _, p := range redirector.AttachedPrograms {
			out = append(out, redirector.PinnedLink{Name: p, CgroupID: id})
		}
		return out
	}
	if c := judgePins(check{}, 7, full(7)); c.Status != "ok" {
		t.Errorf("all attached: %+v", c)
	}
	if c := judgePins(check{}, 7, full(8)); c.Status != "fail" || !strings.Contains(c.Detail, "attached to cgroup id 8, not 7") {
		t.Errorf("wrong cgroup: %+v", c)
	}
	if c := judgePins(check{}, 7, full(0)); c.Status != "fail" || !strings.Contains(c.Detail, "defunct") {
		t.Errorf("defunct: %+v", c)
	}
	if c := judgePins(check{}, 7, full(7)[1:]); c.Status != "fail" || !strings.Contains(c.Detail, "connect4 is not pinned") {
		t.Errorf("missing program: %+v", c)
	}
	bad := append(full(7), redirector.PinnedLink{Name: "junk", Err: errors.New("not a link")})
	if c := judgePins(check{}, 7, bad); c.Status != "fail" || !strings.Contains(c.Detail, "junk: not a link") {
		t.Errorf("unreadable pin: %+v", c)
	}
}
