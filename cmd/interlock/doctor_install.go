package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/control/controlapi"
	"github.com/interlock/interlock/internal/cgroupfs"
	"github.com/interlock/interlock/redirector"
)

// The checks of a live installation: state directory and keys, the
// daemon's listener, and the programs pinned for each configured cgroup.

// stateDirCheck: the state directory holds the journal and the signing
// keys; only root may write it, and others should not even list it.
func stateDirCheck(dir string) check {
	c := check{Name: "state dir"}
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		c.Status, c.Detail = "ok", dir+" does not exist yet; the daemon creates it (0750)"
		return c
	case err != nil:
		c.Status, c.Detail = "fail", err.Error()
		return c
	case !fi.IsDir():
		c.Status, c.Detail, c.Fix = "fail", dir+" is not a directory", "move it away, or set state_dir"
		return c
	}
	mode := fi.Mode().Perm()
	st, _ := fi.Sys().(*syscall.Stat_t)
	switch {
	case st != nil && st.Uid != 0:
		c.Status, c.Detail, c.Fix = "fail", fmt.Sprintf("%s is owned by uid %d, not root", dir, st.Uid), "chown root:root "+dir
	case mode&0o022 != 0:
		c.Status, c.Detail, c.Fix = "fail", fmt.Sprintf("%s is mode %04o: others than root can write the journal's directory and keys", dir, mode), "chmod 0750 "+dir
	case mode&0o007 != 0:
		c.Status, c.Detail, c.Fix = "warn", fmt.Sprintf("%s is mode %04o: any user can look into it", dir, mode), "chmod 0750 "+dir
	default:
		c.Status, c.Detail = "ok", fmt.Sprintf("%s, mode %04o, root", dir, mode)
	}
	return c
}

// keysCheck: every file under the state directory whose name ends in .key
// is a private key and must be readable by its owner, root, alone.
func keysCheck(dir string) check {
	c := check{Name: "keys"}
	var n int
	var bad []string
	var fixes []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == dir && errors.Is(err, fs.ErrNotExist) {
				return fs.SkipAll
			}
			return err
		}
		if d.IsDir() || !strings.HasSuffix(d.Name(), ".key") {
			return nil
		}
		n++
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st, _ := fi.Sys().(*syscall.Stat_t)
		switch {
		case !fi.Mode().IsRegular():
			bad = append(bad, p+" is not a regular file")
		case fi.Mode().Perm()&0o077 != 0:
			bad = append(bad, fmt.Sprintf("%s is mode %04o", p, fi.Mode().Perm()))
			fixes = append(fixes, "chmod 600 "+p)
		case st != nil && st.Uid != 0:
			bad = append(bad, fmt.Sprintf("%s is owned by uid %d", p, st.Uid))
			fixes = append(fixes, "chown root "+p)
		}
		return nil
	})
	switch {
	case errors.Is(err, fs.ErrPermission):
		c.Status, c.Detail, c.Fix = "warn", "cannot read "+dir+": "+err.Error(), "run interlock doctor as root"
	case err != nil:
		c.Status, c.Detail = "fail", err.Error()
	case len(bad) > 0:
		c.Status, c.Detail = "fail", "private keys others can read or own: "+strings.Join(bad, "; ")
		c.Fix = strings.Join(fixes, "; ")
		if c.Fix == "" {
			c.Fix = "remove what is not a key file"
		}
	case n == 0:
		c.Status, c.Detail = "ok", "no key files under "+dir+" yet"
	default:
		c.Status, c.Detail = "ok", fmt.Sprintf("%d key file(s) under %s, each 0600 or stricter, owned by root", n, dir)
	}
	return c
}

// listenerCheck: the daemon says it listens; without a listener every
// intercepted connect is refused.
func listenerCheck(s *controlapi.Status) check {
	if len(s.Listener) == 0 {
		return check{Name: "listener", Status: "fail", Detail: "the daemon reports no listener: intercepted connects are refused",
			Fix: "restart it: systemctl restart interlock; see journalctl -u interlock"}
	}
	return check{Name: "listener", Status: "ok", Detail: "listening on " + strings.Join(s.Listener, ", ")}
}

// pinChecks looks at the links the daemon pins for each configured cgroup:
// present, one per program, and attached to that cgroup (by id). With no
// daemon running, pins that are there refuse connects (fail closed).
func pinChecks(cfg *config.Config, root string, status *controlapi.Status) []check {
	linkPin := filepath.Join(cfg.BPF.PinPath, "daemon", "links")
	var out []check
	wanted := map[uint64]bool{}
	for _, cg := range expandCgroupPatterns(root, cfg.Intercept.Cgroups) {
		c := check{Name: "pins " + cg}
		dir, err := cgroupfs.Dir(root, cg)
		if err != nil {
			continue
		}
		id, err := cgroupfs.ID(dir)
		if err != nil {
			continue // reported by the "cgroup" check
		}
		wanted[id] = true
		links, err := redirector.InspectPinnedLinks(redirector.PinnedCgroupDir(linkPin, id))
		switch {
		case errors.Is(err, fs.ErrNotExist) && status == nil:
			c.Status, c.Detail, c.Fix = "warn", "no programs pinned: not intercepted until the daemon starts", "systemctl enable --now interlock"
		case errors.Is(err, fs.ErrNotExist):
			c.Status, c.Detail = "fail", "the daemon runs, but no programs are pinned for this cgroup: it is not intercepted"
			c.Fix = "the daemon may run an older config: systemctl reload interlock"
			if status.Config != "" && cfg.Source != "" && status.Config != cfg.Source {
				c.Detail += fmt.Sprintf(" (the daemon runs on %s, this check read %s)", status.Config, cfg.Source)
			}
		case errors.Is(err, fs.ErrPermission):
			c.Status, c.Detail, c.Fix = "warn", "cannot read the pins: "+err.Error(), "run interlock doctor as root"
		case err != nil:
			c.Status, c.Detail = "fail", err.Error()
		default:
			c = judgePins(c, id, links)
			if c.Status == "ok" && status == nil && cfg.Intercept.Fail == config.FailClosed {
				c.Status = "fail"
				c.Detail += "; no daemon runs, so connects from it to targets are refused (fail closed)"
				c.Fix = "start the daemon: systemctl start interlock (or stop intercepting: interlock package-helper detach)"
			}
			if c.Status == "ok" && status != nil && !slices.Contains(status.Cgroups, cg) {
				c.Status = "warn"
				c.Detail += "; but the daemon does not list it as intercepted"
				c.Fix = "systemctl reload interlock"
			}
		}
		out = append(out, c)
	}

	// Pins for cgroups neither configured nor attached by the daemon (for
	// an `interlock run`): left by an earlier config, collected when the
	// daemon starts.
	ids, err := redirector.PinnedCgroupIDs(linkPin)
	if err != nil {
		if !errors.Is(err, fs.ErrPermission) {
			out = append(out, check{Name: "stale pins", Status: "warn", Detail: err.Error()})
		}
		return out
	}
	if status != nil {
		for _, cg := range status.Cgroups {
			if dir, err := cgroupfs.Dir(root, cg); err == nil {
				if id, err := cgroupfs.ID(dir); err == nil {
					wanted[id] = true
				}
			}
		}
	}
	var stale []string
	for _, id := range ids {
		if !wanted[id] {
			stale = append(stale, fmt.Sprint(id))
		}
	}
	if len(stale) > 0 {
		sort.Strings(stale)
		out = append(out, check{Name: "stale pins", Status: "warn",
			Detail: "programs pinned for cgroup ids not in intercept.cgroups: " + strings.Join(stale, ", ") + " (connects to targets from them are refused)",
			Fix:    "restarting the daemon removes them: systemctl restart interlock"})
	}
	return out
}

// judgePins checks one cgroup's pinned links: each program once, attached
// to the cgroup with this id.
func judgePins(c check, id uint64, links []redirector.PinnedLink) check {
	seen := map[string]bool{}
	var problems []string
	for _, l := range links {
		seen[l.Name] = true
		switch {
		case l.Err != nil:
			problems = append(problems, fmt.Sprintf("%s: %v", l.Name, l.Err))
		case l.CgroupID == 0:
			problems = append(problems, l.Name+" is defunct (its cgroup was removed)")
		case l.CgroupID != id:
			problems = append(problems, fmt.Sprintf("%s is attached to cgroup id %d, not %d", l.Name, l.CgroupID, id))
		}
	}
	for _, p := range redirector.AttachedPrograms {
		if !seen[p] {
			problems = append(problems, p+" is not pinned")
		}
	}
	if len(problems) > 0 {
		c.Status, c.Detail = "fail", strings.Join(problems, "; ")
		c.Fix = "restart the daemon, which re-attaches: systemctl restart interlock"
		return c
	}
	c.Status = "ok"
	c.Detail = fmt.Sprintf("%d programs attached to cgroup id %d (and its descendants)", len(links), id)
	return c
}

// dirWritable reports whether dir can take new files (SQLite's -wal and
// -shm files live beside the database).
func dirWritable(dir string) bool {
	return unix.Access(dir, unix.W_OK|unix.X_OK) == nil
}

// expandCgroupPatterns replaces each pattern in intercept.cgroups by the
// cgroups that match it now (the daemon attaches each as it appears).
func expandCgroupPatterns(root string, cgs []string) []string {
	var out []string
	for _, cg := range cgs {
		if !redirector.IsPattern(cg) {
			out = append(out, cg)
			continue
		}
		matches, _ := filepath.Glob(filepath.Join(root, cg))
		for _, m := range matches {
			if rel, err := filepath.Rel(root, m); err == nil {
				out = append(out, "/"+rel)
			}
		}
	}
	return out
}
