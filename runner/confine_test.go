package runner

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/interlock/interlock/internal/cgroupfs"
	"github.com/interlock/interlock/test/testenv"
)

// testCgroup makes a real cgroup directly below the cgroup2 root, with a
// name of its own, and removes it and everything below it at the end.
func testCgroup(t *testing.T) (root, path string) {
	t.Helper()
	testenv.RequireRoot(t)
	root, err := cgroupfs.Root()
	testenv.Require(t, "cgroup v2", err)
	var rnd [4]byte
	rand.Read(rnd[:])
	path = "/interlock-test-confine-" + hex.EncodeToString(rnd[:])
	if err := os.Mkdir(filepath.Join(root, path), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeTree(t, filepath.Join(root, path)) })
	return root, path
}

func removeTree(t *testing.T, dir string) {
	var dirs []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		for try := 0; ; try++ {
			err := os.Remove(dirs[i])
			if err == nil || errors.Is(err, os.ErrNotExist) {
				break
			}
			if try == 50 {
				t.Errorf("remove test cgroup %s: %v", dirs[i], err)
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func mkcg(t *testing.T, root, path string) string {
	t.Helper()
	dir := filepath.Join(root, path)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// delegate does what systemd does for Delegate=yes: the directory and the
// files that move processes and enable controllers belong to uid.
func delegate(t *testing.T, dir string, uid int) {
	t.Helper()
	for _, p := range []string{dir, dir + "/cgroup.procs", dir + "/cgroup.threads", dir + "/cgroup.subtree_control"} {
		if err := os.Chown(p, uid, uid); err != nil {
			t.Fatal(err)
		}
	}
}

func whys(exps []Exposure) string {
	var parts []string
	for _, e := range exps {
		parts = append(parts, e.String())
	}
	return strings.Join(parts, "\n")
}

// TestNonRootWritable: the predicate finds each way a cgroup between the
// given one and the root becomes writable by a user other than root, on
// real cgroup directories.
func TestNonRootWritable(t *testing.T) {
	root, top := testCgroup(t)
	a := top + "/a"
	b := a + "/b"
	mkcg(t, root, a)
	bdir := mkcg(t, root, b)
	base, err := NonRootWritable(root, "/")
	if err != nil {
		t.Fatal(err)
	}
	if len(base) > 0 {
		t.Fatalf("this machine's cgroup2 root is writable by others (%s); the test needs a root-only one", whys(base))
	}

	exps, err := NonRootWritable(root, b)
	if err != nil || len(exps) != 0 {
		t.Fatalf("all root, mode 0755: %v, %q", err, whys(exps))
	}

	// A delegated ancestor, as systemd's user@UID.service is.
	delegate(t, filepath.Join(root, a), 65534)
	exps, err = NonRootWritable(root, b)
	if err != nil {
		t.Fatal(err)
	}
	got := whys(exps)
	for _, want := range []string{a + ": the directory is owned by uid 65534", a + ": cgroup.procs is owned by uid 65534", a + ": cgroup.threads is owned by uid 65534"} {
		if !strings.Contains(got, want) {
			t.Errorf("delegated parent: want %q in\n%s", want, got)
		}
	}
	if strings.Contains(got, b+":") || strings.Contains(got, top+":") {
		t.Errorf("root-only cgroups reported:\n%s", got)
	}
	if d := Describe(exps); !strings.HasPrefix(d, a+" (the directory is owned by uid 65534, cgroup.procs") {
		t.Errorf("Describe groups by cgroup: %q", d)
	}
	delegate(t, filepath.Join(root, a), 0)

	// Mode bits, root the owner: group write on the directory, other
	// write on cgroup.procs.
	if err := os.Chmod(bdir, 0o775); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(root, top, "cgroup.procs"), 0o646); err != nil {
		t.Fatal(err)
	}
	exps, err = NonRootWritable(root, b)
	if err != nil {
		t.Fatal(err)
	}
	got = whys(exps)
	if !strings.Contains(got, b+": the directory is writable by group 0 (mode 0775)") ||
		!strings.Contains(got, top+": cgroup.procs is writable by every user (mode 0646)") || len(exps) != 2 {
		t.Errorf("mode bits:\n%s", got)
	}

	// A level that does not exist yet is skipped; the ones above count.
	exps, err = NonRootWritable(root, b+"/not-yet")
	if err != nil || len(exps) != 2 {
		t.Errorf("missing leaf: %v\n%s", err, whys(exps))
	}
	if _, err := NonRootWritable(root, "relative/path"); err == nil {
		t.Errorf("a relative path was accepted")
	}
}

// TestCreatePlacement: a caller whose cgroup another user may write gets
// its command's cgroup below the run parent, made root's alone; a caller
// whose cgroups are root's alone gets it below its own.
func TestCreatePlacement(t *testing.T) {
	root, top := testCgroup(t)
	safe := top + "/safe"
	mkcg(t, root, safe)
	user := top + "/user"
	delegate(t, mkcg(t, root, user), 65534)
	runParent := top + "/runs"

	cg, err := create(root, safe, runParent, "cmd")
	if err != nil {
		t.Fatal(err)
	}
	if cg.Path != safe+"/cmd" || cg.Placement.Relocated || !strings.Contains(cg.Placement.Why(), "only root may write") {
		t.Errorf("root-only caller: placed at %s, %+v", cg.Path, cg.Placement)
	}
	cg.Remove()

	// A name a killed run left taken is not reused, and the leftover is
	// not touched.
	left := mkcg(t, root, safe+"/cmd")
	cg, err = create(root, safe, runParent, "cmd")
	if err != nil {
		t.Fatalf("a leftover cgroup with the run's name: %v", err)
	}
	if cg.Path != safe+"/cmd-2" || cg.Dir != filepath.Join(root, safe, "cmd-2") {
		t.Errorf("with cmd taken: placed at %s (%s), want %s/cmd-2", cg.Path, cg.Dir, safe)
	}
	if _, err := os.Stat(left); err != nil {
		t.Errorf("the leftover was removed: %v", err)
	}
	cg.Remove()
	if err := os.Remove(left); err != nil {
		t.Fatal(err)
	}

	// Under a umask that takes bits off, the modes are still 0755.
	old := syscall.Umask(0o077)
	cg, err = create(root, user, runParent, "cmd")
	syscall.Umask(old)
	if err != nil {
		t.Fatal(err)
	}
	defer cg.Remove()
	if cg.Path != runParent+"/cmd" || !cg.Placement.Relocated || cg.Placement.Caller != user {
		t.Fatalf("delegated caller: placed at %s, %+v", cg.Path, cg.Placement)
	}
	if why := cg.Placement.Why(); !strings.Contains(why, user+" (the directory is owned by uid 65534") {
		t.Errorf("why: %s", why)
	}
	if exps, err := NonRootWritable(root, cg.Path); err != nil || len(exps) != 0 {
		t.Errorf("the relocated cgroup or the run parent is writable by others: %v %s", err, whys(exps))
	}
	fi, err := os.Stat(filepath.Join(root, runParent))
	if err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("run parent: %v, mode %v, want 0755", err, fi.Mode())
	}
	if fi, err := os.Stat(cg.Dir); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("run cgroup: %v, mode %v, want 0755", err, fi.Mode())
	}
	id, err := cgroupfs.ID(cg.Dir)
	if err != nil || id != cg.ID {
		t.Errorf("cgroup id %d, directory says %d (%v)", cg.ID, id, err)
	}

	// Files handed to another uid are taken back.
	ents, _ := os.ReadDir(cg.Dir)
	for _, e := range ents {
		os.Chown(filepath.Join(cg.Dir, e.Name()), 65534, 65534)
	}
	if exps, _ := NonRootWritable(root, cg.Path); len(exps) == 0 {
		t.Fatal("chown to 65534 did not show")
	}
	if err := secure(cg.Dir); err != nil {
		t.Fatal(err)
	}
	if exps, _ := NonRootWritable(root, cg.Path); len(exps) != 0 {
		t.Errorf("secure left %s", whys(exps))
	}

	// A run parent that another user may write is refused, with the fix.
	delegate(t, filepath.Join(root, runParent), 65534)
	defer delegate(t, filepath.Join(root, runParent), 0)
	_, err = create(root, user, runParent, "cmd2")
	var pe *PlacementError
	if !errors.As(err, &pe) {
		t.Fatalf("exposed run parent: %v, want a PlacementError", err)
	}
	for _, want := range []string{runParent + " is not root's alone", "chown root:root " + filepath.Join(root, runParent), "systemd-run --scope"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	if _, err := os.Stat(filepath.Join(root, runParent, "cmd2")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a cgroup was made below the refused run parent: %v", err)
	}
}
