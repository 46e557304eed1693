package cgroupfs

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"

	"golang.org/x/sys/unix"
)

// ErrSearchLimit is FindID's answer when it visited maxDirs directories
// without finding the id.
var ErrSearchLimit = errors.New("cgroup search limit reached")

// direntBufSize is the getdents buffer of one search.
const direntBufSize = 32 << 10

// FindID searches root breadth-first for the cgroup directory whose inode
// (the cgroup v2 id) is id, and returns its path relative to root ("/a/b").
// It visits at most maxDirs directories, maxDepth deep, and does not
// follow symbolic links: the hierarchy can be large and its names are
// chosen by whoever may create cgroups.
func FindID(ctx context.Context, root string, id uint64, maxDirs, maxDepth int) (string, bool, error) {
	var st unix.Stat_t
	if err := unix.Stat(root, &st); err != nil {
		return "", false, err
	}
	if st.Ino == id {
		return "/", true, nil
	}
	type item struct {
		rel   string
		depth int
	}
	queue := []item{{"", 0}}
	buf := make([]byte, direntBufSize)
	visited := 0
	for len(queue) > 0 {
		it := queue[0]
		queue = queue[1:]
		visited++
		if visited > maxDirs {
			return "", false, ErrSearchLimit
		}
		if visited%64 == 0 {
			if err := ctx.Err(); err != nil {
				return "", false, err
			}
		}
		dir := root + it.rel
		if it.rel == "" {
			dir = root
		}
		fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
		if err != nil {
			continue
		}
		for {
			n, err := unix.Getdents(fd, buf)
			if err == unix.EINTR {
				continue
			}
			if err != nil || n <= 0 {
				break
			}
			for b := buf[:n]; len(b) >= 19; {
				reclen := int(binary.NativeEndian.Uint16(b[16:18]))
				if reclen < 19 || reclen > len(b) {
					break
				}
				ino := binary.NativeEndian.Uint64(b[0:8])
				typ := b[18]
				name := b[19:reclen]
				if i := bytes.IndexByte(name, 0); i >= 0 {
					name = name[:i]
				}
				b = b[reclen:]
				if len(name) == 0 || string(name) == "." || string(name) == ".." {
					continue
				}
				if typ != unix.DT_DIR && typ != unix.DT_UNKNOWN {
					continue
				}
				rel := it.rel + "/" + string(name)
				if typ == unix.DT_UNKNOWN || ino == id {
					if unix.Lstat(root+rel, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
						continue
					}
					ino = st.Ino
				}
				if ino == id {
					unix.Close(fd)
					return rel, true, nil
				}
				if it.depth+1 < maxDepth && len(queue) < maxDirs {
					queue = append(queue, item{rel, it.depth + 1})
				}
			}
		}
		unix.Close(fd)
	}
	return "", false, nil
}
