package redirector

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/interlock/interlock/internal/cgroupfs"
)

// PinnedAttachment reports what CollectPinned did with links an earlier
// process pinned.
type PinnedAttachment struct {
	Cgroup string
	Kept   bool
	Reason string
}

// CollectPinned looks at the links pinned under LinkPin for cgroups that
// are not attached now (an earlier daemon's). Links of a cgroup that is
// gone or no longer wanted are removed. The one exception is an
// `interlock run` cgroup that still has processes: those processes were
// intercepted and must stay so, so its links are kept and it is adopted.
func (r *Redirector) CollectPinned() []PinnedAttachment {
	if r.opts.LinkPin == "" {
		return nil
	}
	ids, err := PinnedCgroupIDs(r.opts.LinkPin)
	if err != nil || len(ids) == 0 {
		return nil
	}
	r.mu.Lock()
	attachedIDs := map[uint64]bool{}
	for path := range r.attached {
		if dir, err := cgroupfs.Dir(r.root, path); err == nil {
			if id, err := cgroupfs.ID(dir); err == nil {
				attachedIDs[id] = true
			}
		}
	}
	r.mu.Unlock()
	var paths map[uint64]string
	var out []PinnedAttachment
	for _, id := range ids {
		if attachedIDs[id] {
			continue
		}
		if paths == nil {
			paths = cgroupfs.PathsByID(r.root)
		}
		pinDir := PinnedCgroupDir(r.opts.LinkPin, id)
		path, exists := paths[id]
		res := PinnedAttachment{Cgroup: path}
		switch {
		case !exists:
			res.Cgroup = "cgroup id " + strconv.FormatUint(id, 10)
			res.Reason = "the cgroup no longer exists"
		case strings.HasPrefix(filepath.Base(path), "interlock-run-"):
			dir := filepath.Join(r.root, path)
			if populated, err := cgroupfs.Populated(dir); err == nil && populated {
				res.Kept, res.Reason = true, "an interlock run cgroup that still has processes"
				r.adopt(path, pinDir)
			} else {
				res.Reason = "an interlock run cgroup that is empty"
				defer os.Remove(dir)
			}
		default:
			res.Reason = "the cgroup is no longer in intercept.cgroups"
		}
		if !res.Kept {
			if err := DetachPinned(pinDir); err != nil {
				r.log.Warn("remove pinned links", "dir", pinDir, "err", err)
			}
		}
		out = append(out, res)
	}
	return out
}

// adopt re-attaches this process's programs to a cgroup through its pinned
// links (updating them in place), so it is served and can be detached.
func (r *Redirector) adopt(path, pinDir string) {
	dir, err := cgroupfs.Dir(r.root, path)
	if err != nil {
		return
	}
	a, err := r.progs.attach(dir, pinDir)
	if err != nil {
		r.log.Warn("adopt pinned cgroup", "cgroup", path, "err", err)
		return
	}
	if id, err := cgroupfs.ID(dir); err == nil {
		a.cgroupID = id
		_ = r.progs.setClass(id, cgIntercepted)
	}
	r.mu.Lock()
	r.attached[path] = a
	r.mu.Unlock()
}
