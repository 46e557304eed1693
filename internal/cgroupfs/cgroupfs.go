// Package cgroupfs reads and names things in the cgroup v2 filesystem:
// where it is mounted, a cgroup directory's id, which processes a cgroup
// holds. It knows nothing of BPF; the redirector, the runner, the control
// server and the doctor all join cgroup paths through it.
package cgroupfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Root finds the cgroup v2 mount: /sys/fs/cgroup on a pure (unified)
// system, /sys/fs/cgroup/unified on a hybrid one, or wherever mountinfo
// says. The filesystem type is checked with statfs rather than assumed
// from the path.
func Root() (string, error) {
	for _, p := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		if isCgroup2(p) {
			return p, nil
		}
	}
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("find cgroup2 mount: %w", err)
	}
	for _, mp := range Cgroup2Mounts(b) {
		if isCgroup2(mp) {
			return mp, nil
		}
	}
	return "", errors.New("no cgroup v2 filesystem is mounted: mount one with " +
		"`mount -t cgroup2 none /sys/fs/cgroup/unified` or boot with systemd.unified_cgroup_hierarchy=1")
}

func isCgroup2(path string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false
	}
	return st.Type == unix.CGROUP2_SUPER_MAGIC
}

// ID returns the cgroup v2 id of a cgroup directory: its inode number,
// the same value bpf_get_current_cgroup_id() reports.
func ID(dir string) (uint64, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		return 0, fmt.Errorf("cgroup %s: %w", dir, err)
	}
	return st.Ino, nil
}

// Self returns the cgroup v2 path (relative to the cgroup2 root) of
// the calling process.
func Self() (string, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", fmt.Errorf("read own cgroup: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "0::"); ok {
			return rest, nil
		}
	}
	return "", errors.New("this process has no cgroup v2 membership (no 0:: line in /proc/self/cgroup)")
}

// Dir joins a cgroup path from the config (relative to the cgroup2
// root, written with a leading slash) to the mount point, refusing paths
// that would leave the hierarchy.
func Dir(root, path string) (string, error) {
	if !strings.HasPrefix(path, "/") || filepath.Clean(path) != path {
		return "", fmt.Errorf("cgroup path %q must be absolute and clean, like %q", path, filepath.Clean("/"+path))
	}
	return filepath.Join(root, path), nil
}

// Procs lists the pids in one cgroup (not its descendants).
func Procs(dir string) ([]int, error) {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		var pid int
		if _, err := fmt.Sscan(f, &pid); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// Populated reports whether a cgroup or any descendant has processes.
func Populated(dir string) (bool, error) {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.events"))
	if err != nil {
		return false, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "populated "); ok {
			return strings.TrimSpace(v) == "1", nil
		}
	}
	return false, fmt.Errorf("%s/cgroup.events has no populated line", dir)
}

// PathsByID maps the ids (inode numbers) of every cgroup below root to
// their paths relative to root ("/" for root itself).
func PathsByID(root string) map[uint64]string {
	out := map[uint64]string{}
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		var st syscall.Stat_t
		if syscall.Stat(p, &st) == nil {
			rel := strings.TrimPrefix(p, root)
			if rel == "" {
				rel = "/"
			}
			out[st.Ino] = rel
		}
		return nil
	})
	return out
}
