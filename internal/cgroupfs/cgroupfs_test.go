package cgroupfs

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/interlock/interlock/test/testenv"
)

func TestCgroup2Mounts(t *testing.T) {
	mi := `22 1 0:21 / /proc rw,nosuid - proc proc rw
31 25 0:26 / /sys/fs/cgroup ro - tmpfs tmpfs ro,mode=755
41 31 0:38 /some/sub /mnt/other rw - cgroup2 cgroup2 rw
42 31 0:38 / /sys/fs/cgroup/my\040unified rw,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate
43 31 0:39 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
44 31 0:38 / /odd\134name\07 rw - cgroup2 cgroup2 rw`
	// The mounts showing the hierarchy's root come first, in file order;
	// a trailing line without a newline counts; a short escape stays as is.
	want := []string{"/sys/fs/cgroup/my unified", `/odd\name\07`, "/mnt/other"}
	if got := Cgroup2Mounts([]byte(mi)); !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	if got := Cgroup2Mounts([]byte("41 31 0:38 /sub /x rw - cgroup2 cgroup2 rw\n")); !slices.Equal(got, []string{"/x"}) {
		t.Fatalf("a sub-cgroup mount alone: %q", got)
	}
	if got := Cgroup2Mounts([]byte("43 31 0:39 / /a rw - cgroup cgroup rw\n")); len(got) != 0 {
		t.Fatalf("a cgroup v1 mount was taken: %q", got)
	}
	if got := Cgroup2Mounts([]byte("garbage\n1 2 3 - cgroup2 x rw\n")); len(got) != 0 {
		t.Fatalf("malformed lines were taken: %q", got)
	}
}

// TestRootIsInMountinfo ties Root to the parser on the real machine: the
// mount it returns is a cgroup2 mount of this mount namespace.
func TestRootIsInMountinfo(t *testing.T) {
	root, err := Root()
	testenv.Require(t, "a cgroup v2 mount", err)
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if mounts := Cgroup2Mounts(b); !slices.Contains(mounts, root) {
		t.Fatalf("Root() = %q, not among the cgroup2 mounts %q", root, mounts)
	}
	self, err := Self()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := Dir(root, self)
	if err != nil {
		t.Fatal(err)
	}
	id, err := ID(dir)
	if err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil || st.Ino != id {
		t.Fatalf("ID(%s) = %d, stat says %d (%v)", dir, id, st.Ino, err)
	}
}

func TestDirRefusesEscapes(t *testing.T) {
	for _, p := range []string{"relative", "/a/../../etc", "/a//b", "/a/"} {
		if _, err := Dir("/sys/fs/cgroup", p); err == nil || !strings.Contains(err.Error(), "absolute and clean") {
			t.Errorf("Dir(%q) = %v, want a refusal", p, err)
		}
	}
	if got, err := Dir("/sys/fs/cgroup", "/a/b"); err != nil || got != filepath.Join("/sys/fs/cgroup", "a", "b") {
		t.Fatalf("Dir(/a/b) = %q, %v", got, err)
	}
}

const testContainerID = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func testIno(t *testing.T, p string) uint64 {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

func TestFindID(t *testing.T) {
	root := t.TempDir()
	deep := filepath.Join(root, "kubepods.slice", "kubepods-burstable.slice", "kubepods-burstable-pod1234abcd_5678.slice", "cri-containerd-"+testContainerID+".scope")
	for _, d := range []string{deep, filepath.Join(root, "system.slice", "a.service"), filepath.Join(root, "user.slice")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "system.slice", "cgroup.procs"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// a symlink to a directory must not be followed or matched
	if err := os.Symlink(deep, filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	want := strings.TrimPrefix(deep, root)
	p, found, err := FindID(ctx, root, testIno(t, deep), 1000, 64)
	if err != nil || !found || p != want {
		t.Fatalf("got %q %v %v, want %q", p, found, err, want)
	}
	if p, found, _ := FindID(ctx, root, testIno(t, root), 1000, 64); !found || p != "/" {
		t.Fatalf("root: %q %v", p, found)
	}
	if _, found, _ := FindID(ctx, root, 1<<62, 1000, 64); found {
		t.Fatal("found a missing id")
	}
	if _, found, err := FindID(ctx, root, testIno(t, deep), 2, 64); found || err != ErrSearchLimit {
		t.Fatalf("limit: found=%v err=%v", found, err)
	}
	if _, found, _ := FindID(ctx, root, testIno(t, deep), 1000, 2); found {
		t.Fatal("depth limit ignored")
	}
	// PathsByID answers the same for every directory, and nothing else
	paths := PathsByID(root)
	if paths[testIno(t, deep)] != want || paths[testIno(t, root)] != "/" {
		t.Fatalf("PathsByID: %v", paths)
	}
	if n := len(paths); n != 8 {
		t.Fatalf("PathsByID found %d directories, want 8 (root, 4 deep, system.slice, a.service, user.slice): %v", n, paths)
	}
}
