package redirector

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Cgroup2Root finds the cgroup v2 mount: /sys/fs/cgroup on a pure (unified)
// system, /sys/fs/cgroup/unified on a hybrid one, or wherever mountinfo
// says. The filesystem type is checked with statfs rather than assumed
// from the path.
func Cgroup2Root() (string, error) {
	for _, p := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		if isCgroup2(p) {
			return p, nil
		}
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("find cgroup2 mount: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		// mountinfo: id parent maj:min root mountpoint opts... - fstype src opts
		line := sc.Text()
		sep := strings.Index(line, " - ")
		if sep < 0 {
			continue
		}
		fields := strings.Fields(line[:sep])
		after := strings.Fields(line[sep+3:])
		if len(fields) >= 5 && len(after) >= 1 && after[0] == "cgroup2" {
			mp := unescapeMountinfo(fields[4])
			if isCgroup2(mp) {
				return mp, nil
			}
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

// unescapeMountinfo undoes the octal escapes (\040 for space) mountinfo
// uses in paths.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &v); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// CgroupID returns the cgroup v2 id of a cgroup directory: its inode number,
// the same value bpf_get_current_cgroup_id() reports.
func CgroupID(dir string) (uint64, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		return 0, fmt.Errorf("cgroup %s: %w", dir, err)
	}
	return st.Ino, nil
}

// SelfCgroup returns the cgroup v2 path (relative to the cgroup2 root) of
// the calling process.
func SelfCgroup() (string, error) {
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

// CgroupDir joins a cgroup path from the config (relative to the cgroup2
// root, written with a leading slash) to the mount point, refusing paths
// that would leave the hierarchy.
func CgroupDir(root, path string) (string, error) {
	if !strings.HasPrefix(path, "/") || filepath.Clean(path) != path {
		return "", fmt.Errorf("cgroup path %q must be absolute and clean, like %q", path, filepath.Clean("/"+path))
	}
	return filepath.Join(root, path), nil
}

// CgroupProcs lists the pids in one cgroup (not its descendants).
func CgroupProcs(dir string) ([]int, error) {
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

// CgroupPopulated reports whether a cgroup or any descendant has processes.
func CgroupPopulated(dir string) (bool, error) {
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
