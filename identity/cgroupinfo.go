package identity

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/interlock/interlock/internal/cgroupfs"
	"github.com/interlock/interlock/model"
)

// cgroupinfoDetails is what one cgroup v2 path says about the workload.
type cgroupinfoDetails struct {
	path        string // relative to the cgroup2 root, as /proc/PID/cgroup shows it
	full        string // root + path, for stat; "" when the path cannot be joined safely
	unit        string
	containerID string
	podUID      string
	// ino is the directory's inode as last seen. A cgroup v2 directory
	// cannot be renamed and its id is never reused, so once an id was seen
	// at this path the pair stays true; only a different id needs a stat.
	ino atomic.Uint64
}

func (d *cgroupinfoDetails) apply(pf *model.ProcFacts) {
	pf.CgroupPath = d.path
	pf.SystemdUnit = d.unit
	pf.ContainerID = d.containerID
	pf.PodUID = d.podUID
}

// cgroupinfoV2Path returns the path of the "0::" (unified hierarchy) line of
// /proc/PID/cgroup, without the " (deleted)" suffix the kernel adds for a
// removed cgroup.
func cgroupinfoV2Path(b []byte) (path []byte, ok bool) {
	for len(b) > 0 {
		var line []byte
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			line, b = b, nil
		}
		if bytes.HasPrefix(line, []byte("0::")) {
			p := line[3:]
			p = bytes.TrimSuffix(p, []byte(" (deleted)"))
			return p, true
		}
	}
	return nil, false
}

// cgroupinfoParsePath derives the systemd unit, container id and pod uid
// from a cgroup v2 path.
//
//   - unit: the last component ending in .service or .scope
//     (/system.slice/foo.service, /user.slice/user-1000.slice/session-3.scope)
//   - container id: docker-<64hex>.scope, /docker/<64hex>,
//     cri-containerd-<64hex>.scope, crio-<64hex>.scope, libpod-<64hex>(.scope),
//     and a bare <64hex> below kubepods (cgroupfs driver); the innermost wins
//   - pod uid: kubepods[-class]-pod<uid>.slice (systemd driver, '_' → '-')
//     or pod<uid> below kubepods (cgroupfs driver)
func cgroupinfoParsePath(p string) (unit, containerID, podUID string) {
	kube := strings.Contains(p, "kubepods")
	prev := ""
	rest := p
	for len(rest) > 0 {
		var c string
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			c, rest = rest[:i], rest[i+1:]
		} else {
			c, rest = rest, ""
		}
		if c == "" {
			continue
		}
		if strings.HasSuffix(c, ".service") || strings.HasSuffix(c, ".scope") {
			unit = c
		}
		if id := cgroupinfoContainerID(c, prev, kube); id != "" {
			containerID = id
		}
		if kube {
			if u := cgroupinfoPodUID(c); u != "" {
				podUID = u
			}
		}
		prev = c
	}
	return unit, containerID, podUID
}

var cgroupinfoContainerPrefixes = [...]string{"docker-", "cri-containerd-", "crio-", "libpod-"}

func cgroupinfoContainerID(c, prev string, kube bool) string {
	name := strings.TrimSuffix(c, ".scope")
	for _, pfx := range cgroupinfoContainerPrefixes {
		if strings.HasPrefix(name, pfx) {
			if id := name[len(pfx):]; cgroupinfoIsHex64(id) {
				return id
			}
			return "" // e.g. crio-conmon-<id>.scope, libpod-conmon-<id>.scope
		}
	}
	if cgroupinfoIsHex64(c) && (kube || prev == "docker" || prev == "libpod_parent") {
		return c
	}
	return ""
}

func cgroupinfoIsHex64(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

func cgroupinfoPodUID(c string) string {
	var u string
	switch {
	case strings.HasPrefix(c, "kubepods") && strings.HasSuffix(c, ".slice"):
		// kubepods-burstable-pod1234_5678.slice, kubepods-pod<uid>.slice
		i := strings.LastIndex(c, "-pod")
		if i < 0 {
			return ""
		}
		u = strings.ReplaceAll(c[i+4:len(c)-len(".slice")], "_", "-")
	case strings.HasPrefix(c, "pod"):
		u = c[3:]
	default:
		return ""
	}
	if len(u) < 8 || len(u) > 64 {
		return ""
	}
	for i := 0; i < len(u); i++ {
		ch := u[i]
		if !('0' <= ch && ch <= '9' || 'a' <= ch && ch <= 'f' || 'A' <= ch && ch <= 'F' || ch == '-') {
			return ""
		}
	}
	return u
}

const (
	cgroupinfoCacheSize  = 4096
	cgroupinfoMaxWalk    = 100000 // directories visited by one search
	cgroupinfoMaxDepth   = 64
	cgroupinfoNegTTL     = 5 * time.Second
	cgroupinfoMaxPathLen = 4096
)

// cgroupinfoCache holds the per-path details and the cgroup id → path
// answers of earlier searches.
type cgroupinfoCache struct {
	root string

	mu     sync.Mutex
	byPath map[string]*cgroupinfoDetails

	ids    *identLRU[uint64, cgroupinfoIDEntry]
	walkMu sync.Mutex // one search at a time
	walks  int        // searches run (guarded by walkMu; for tests)
}

type cgroupinfoIDEntry struct {
	path     string    // "" for a recent miss
	negUntil time.Time // a miss is remembered until then
}

func newCgroupinfoCache(root string) *cgroupinfoCache {
	return &cgroupinfoCache{
		root:   root,
		byPath: make(map[string]*cgroupinfoDetails),
		ids:    newIdentLRU[uint64, cgroupinfoIDEntry](cgroupinfoCacheSize),
	}
}

// detailsBytes returns the (cached) details of the cgroup path p; p is not
// retained.
func (c *cgroupinfoCache) detailsBytes(p []byte) *cgroupinfoDetails {
	c.mu.Lock()
	d, ok := c.byPath[string(p)]
	c.mu.Unlock()
	if ok {
		return d
	}
	return c.details(procfsString(p))
}

func (c *cgroupinfoCache) details(p string) *cgroupinfoDetails {
	c.mu.Lock()
	d, ok := c.byPath[p]
	c.mu.Unlock()
	if ok {
		return d
	}
	d = &cgroupinfoDetails{path: p}
	d.unit, d.containerID, d.podUID = cgroupinfoParsePath(p)
	if c.root != "" && cgroupinfoJoinable(p) {
		d.full = c.root + p
	}
	c.mu.Lock()
	if len(c.byPath) >= cgroupinfoCacheSize {
		clear(c.byPath)
	}
	c.byPath[p] = d
	c.mu.Unlock()
	return d
}

// cgroupinfoJoinable reports whether p can be appended to the cgroup2 root
// without leaving it: absolute, and no ".." (a cgroup outside the reader's
// cgroup namespace shows as /../..).
func cgroupinfoJoinable(p string) bool {
	if !strings.HasPrefix(p, "/") || len(p) > cgroupinfoMaxPathLen {
		return false
	}
	return !strings.Contains(p, "/..") && !strings.ContainsRune(p, 0)
}

// matches reports whether the cgroup directory d has inode (cgroup id) id.
func (c *cgroupinfoCache) matches(d *cgroupinfoDetails, id uint64) bool {
	if d.full == "" {
		return false
	}
	if d.ino.Load() == id {
		return true
	}
	var st unix.Stat_t
	if unix.Stat(d.full, &st) != nil {
		return false
	}
	d.ino.Store(st.Ino)
	return st.Ino == id
}

// pathForID finds the cgroup directory whose inode (the cgroup v2 id) is
// id. walked says whether this call searched the hierarchy.
func (c *cgroupinfoCache) pathForID(ctx context.Context, id uint64) (p string, found, walked bool, err error) {
	if c.root == "" || id == 0 {
		return "", false, false, nil
	}
	if p, found, ok := c.cachedID(id); ok {
		return p, found, false, nil
	}
	c.walkMu.Lock()
	defer c.walkMu.Unlock()
	// another search may have answered meanwhile
	if p, found, ok := c.cachedID(id); ok {
		return p, found, false, nil
	}
	c.walks++
	p, found, err = cgroupfs.FindID(ctx, c.root, id, cgroupinfoMaxWalk, cgroupinfoMaxDepth)
	if found {
		c.ids.add(id, cgroupinfoIDEntry{path: p})
	} else if ctx.Err() == nil {
		c.ids.add(id, cgroupinfoIDEntry{negUntil: time.Now().Add(cgroupinfoNegTTL)})
	}
	return p, found, true, err
}

// cachedID answers from the cache; ok is false when a search is needed.
func (c *cgroupinfoCache) cachedID(id uint64) (p string, found, ok bool) {
	e, hit := c.ids.get(id)
	if !hit {
		return "", false, false
	}
	if e.path == "" {
		if time.Now().Before(e.negUntil) {
			return "", false, true
		}
		c.ids.remove(id)
		return "", false, false
	}
	var st unix.Stat_t
	if unix.Lstat(c.root+e.path, &st) == nil && st.Ino == id {
		return e.path, true, true
	}
	c.ids.remove(id)
	return "", false, false
}

// cgroupinfoCleanRoot normalises a configured cgroup2 root ("" stays "").
func cgroupinfoCleanRoot(root string) string {
	if root == "" {
		return ""
	}
	return filepath.Clean(root)
}
