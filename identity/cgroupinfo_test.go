package identity

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

const (
	cgroupinfoTestID  = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	cgroupinfoTestID2 = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
)

func TestCgroupinfoParsePath(t *testing.T) {
	id, id2 := cgroupinfoTestID, cgroupinfoTestID2
	cases := []struct {
		path, unit, container, pod string
	}{
		{"/", "", "", ""},
		{"/system.slice/actions.runner.org-repo.runner1.service", "actions.runner.org-repo.runner1.service", "", ""},
		{"/system.slice/actions.runner.org-repo.runner1.service/job-1", "actions.runner.org-repo.runner1.service", "", ""},
		{"/user.slice/user-1000.slice/session-3.scope", "session-3.scope", "", ""},
		{"/user.slice/user-1000.slice/user@1000.service/app.slice/app-foo.scope", "app-foo.scope", "", ""},
		{"/init.scope", "init.scope", "", ""},
		// docker, systemd and cgroupfs drivers
		{"/system.slice/docker-" + id + ".scope", "docker-" + id + ".scope", id, ""},
		{"/docker/" + id, "", id, ""},
		{"/docker/" + id + "/docker/" + id2, "", id2, ""}, // docker in docker: innermost
		{"/docker/notanid", "", "", ""},
		{"/somewhere/" + id, "", "", ""}, // bare hex outside docker/kubepods is not claimed
		// containerd, cri-o, podman
		{"/system.slice/cri-containerd-" + id + ".scope", "cri-containerd-" + id + ".scope", id, ""},
		{"/machine.slice/crio-" + id + ".scope", "crio-" + id + ".scope", id, ""},
		{"/machine.slice/crio-conmon-" + id + ".scope", "crio-conmon-" + id + ".scope", "", ""},
		{"/machine.slice/libpod-" + id + ".scope", "libpod-" + id + ".scope", id, ""},
		{"/machine.slice/libpod-" + id + ".scope/container", "libpod-" + id + ".scope", id, ""},
		{"/machine.slice/libpod-conmon-" + id + ".scope", "libpod-conmon-" + id + ".scope", "", ""},
		{"/libpod_parent/libpod-" + id, "", id, ""},
		// kubernetes, cgroupfs driver
		{"/kubepods/burstable/pod0d6a2a5c-6a1c-4b8e-9b53-5f2c3a1e7f00/" + id, "", id, "0d6a2a5c-6a1c-4b8e-9b53-5f2c3a1e7f00"},
		{"/kubepods/pod0d6a2a5c-6a1c-4b8e-9b53-5f2c3a1e7f00/" + id, "", id, "0d6a2a5c-6a1c-4b8e-9b53-5f2c3a1e7f00"},
		{"/kubepods/besteffort/pod0d6a2a5c-6a1c-4b8e-9b53-5f2c3a1e7f00", "", "", "0d6a2a5c-6a1c-4b8e-9b53-5f2c3a1e7f00"},
		// kubernetes, systemd driver
		{"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0d6a2a5c_6a1c_4b8e_9b53_5f2c3a1e7f00.slice/cri-containerd-" + id + ".scope",
			"cri-containerd-" + id + ".scope", id, "0d6a2a5c-6a1c-4b8e-9b53-5f2c3a1e7f00"},
		{"/kubepods.slice/kubepods-pod1234abcd_5678_90ab_cdef_1234567890ab.slice/crio-" + id + ".scope",
			"crio-" + id + ".scope", id, "1234abcd-5678-90ab-cdef-1234567890ab"},
		{"/kubepods.slice/kubepods-besteffort.slice", "", "", ""},
		// odd input
		{"", "", "", ""},
		{"//a//b.service//", "b.service", "", ""},
		{"/../../system.slice/x.service", "x.service", "", ""},
	}
	for _, c := range cases {
		u, ctr, pod := cgroupinfoParsePath(c.path)
		if u != c.unit || ctr != c.container || pod != c.pod {
			t.Errorf("%q: got unit=%q container=%q pod=%q, want %q %q %q", c.path, u, ctr, pod, c.unit, c.container, c.pod)
		}
	}
}

func TestCgroupinfoV2Path(t *testing.T) {
	hybrid := "12:pids:/user.slice\n1:name=systemd:/user.slice/x.scope\n0::/user.slice/user-0.slice/session-1.scope\n"
	if p, ok := cgroupinfoV2Path([]byte(hybrid)); !ok || string(p) != "/user.slice/user-0.slice/session-1.scope" {
		t.Fatalf("hybrid: %q %v", p, ok)
	}
	if p, ok := cgroupinfoV2Path([]byte("0::/gone.scope (deleted)\n")); !ok || string(p) != "/gone.scope" {
		t.Fatalf("deleted: %q %v", p, ok)
	}
	if p, ok := cgroupinfoV2Path([]byte("0::/\n")); !ok || string(p) != "/" {
		t.Fatalf("root: %q %v", p, ok)
	}
	if _, ok := cgroupinfoV2Path([]byte("4:memory:/x\n")); ok {
		t.Fatal("v1-only accepted")
	}
}

func cgroupinfoTestIno(t *testing.T, p string) uint64 {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

func TestCgroupinfoCache(t *testing.T) {
	root := t.TempDir()
	deep := filepath.Join(root, "kubepods.slice", "kubepods-burstable.slice", "kubepods-burstable-pod1234abcd_5678.slice", "cri-containerd-"+cgroupinfoTestID+".scope")
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
	// the cache: a hit is re-validated, a miss is remembered
	c := newCgroupinfoCache(root)
	id := cgroupinfoTestIno(t, deep)
	for i := 0; i < 3; i++ {
		p, found, _, err := c.pathForID(ctx, id)
		if !found || p != want || err != nil {
			t.Fatalf("pathForID: %q %v %v", p, found, err)
		}
	}
	if c.walks != 1 {
		t.Fatalf("walks = %d, want 1", c.walks)
	}
	for i := 0; i < 3; i++ {
		if _, found, _, _ := c.pathForID(ctx, 1<<62); found {
			t.Fatal("found a missing id")
		}
	}
	if c.walks != 2 {
		t.Fatalf("negative cache: walks = %d, want 2", c.walks)
	}
	// the directory goes away: the cached answer is dropped
	if err := os.Remove(deep); err != nil {
		t.Fatal(err)
	}
	if _, found, _, _ := c.pathForID(ctx, id); found {
		t.Fatal("stale path returned")
	}
	d := c.details("/../x.service")
	if d.full != "" || d.unit != "x.service" {
		t.Fatalf("unsafe path joined: %+v", d)
	}
}
