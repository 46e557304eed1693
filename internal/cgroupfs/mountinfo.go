package cgroupfs

import (
	"bytes"
	"strings"
)

// Cgroup2Mounts returns the mount points of the cgroup2 mounts in a
// /proc/PID/mountinfo text, in file order except that those showing the
// hierarchy's root come first: a mount of a sub-cgroup (a container's
// bind mount) cannot join a cgroup path the kernel reports from the root.
//
// It is the one mountinfo parser of interlock.
func Cgroup2Mounts(b []byte) []string {
	var rooted, other []string
	for len(b) > 0 {
		var line []byte
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			line, b = b, nil
		}
		// id parent maj:min root mountpoint opts... - fstype src opts
		sep := bytes.Index(line, []byte(" - "))
		if sep < 0 {
			continue
		}
		after := bytes.Fields(line[sep+3:])
		if len(after) < 1 || string(after[0]) != "cgroup2" {
			continue
		}
		f := bytes.Fields(line[:sep])
		if len(f) < 5 {
			continue
		}
		mp := unescapeMountinfo(string(f[4]))
		if string(f[3]) == "/" {
			rooted = append(rooted, mp)
		} else {
			other = append(other, mp)
		}
	}
	return append(rooted, other...)
}

// unescapeMountinfo undoes the octal escapes (\040 for a space, ...) of
// mountinfo fields.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var sb strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) &&
			'0' <= s[i+1] && s[i+1] <= '3' && '0' <= s[i+2] && s[i+2] <= '7' && '0' <= s[i+3] && s[i+3] <= '7' {
			sb.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		sb.WriteByte(s[i])
	}
	return sb.String()
}
