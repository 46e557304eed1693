package runner

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
)

// The kernel lets a process move into another cgroup when its user may
// write cgroup.procs of the destination and of the common ancestor of
// both cgroups. A command of user U in cgroup C/run therefore leaves the
// run's cgroup (and with it the interception) if U may write C, or any
// cgroup above C, up to the root. systemd hands user@UID.service and
// everything below it to UID, so a run started from a terminal of a
// desktop session would be escapable if it nested there.

// Exposure is one cgroup that a user other than root may write.
type Exposure struct {
	// Cgroup is relative to the cgroup2 root.
	Cgroup string
	// Why names the file or directory and what makes it writable.
	Why string
}

func (e Exposure) String() string { return e.Cgroup + ": " + e.Why }

// Describe puts exposures in one phrase, one group per cgroup:
// "/a (the directory is owned by uid 1000, cgroup.procs is owned by uid
// 1000); /b (...)".
func Describe(exps []Exposure) string {
	var b strings.Builder
	for i, e := range exps {
		switch {
		case i == 0:
		case exps[i-1].Cgroup == e.Cgroup:
			b.WriteString(", ")
			b.WriteString(e.Why)
			continue
		default:
			b.WriteString("); ")
		}
		b.WriteString(e.Cgroup + " (" + e.Why)
	}
	if len(exps) > 0 {
		b.WriteString(")")
	}
	return b.String()
}

// writableFiles are the files of a cgroup that move processes or threads
// into it. cgroup.threads moves threads only within a threaded subtree,
// but systemd delegates it with cgroup.procs, and a rule that names both
// is simpler to reason about than one that weighs each.
var writableFiles = []string{"cgroup.procs", "cgroup.threads"}

// NonRootWritable lists the cgroups from cg (relative to root) up to the
// cgroup2 root itself, cg included, that a user other than root may
// write: the directory or one of the files that move processes is owned
// by a uid other than 0, or has the group or other write bit. A level that
// does not exist is skipped (whoever may create it must write its parent,
// which is checked). Group write is counted even for gid 0, because a
// member of group root need not be root.
func NonRootWritable(root, cg string) ([]Exposure, error) {
	if cg == "" || cg[0] != '/' || path.Clean(cg) != cg {
		return nil, fmt.Errorf("cgroup path %q must be absolute and clean", cg)
	}
	var out []Exposure
	for p := cg; ; p = path.Dir(p) {
		dir := filepath.Join(root, p)
		exp, err := exposures(p, dir)
		if err != nil {
			return out, err
		}
		out = append(out, exp...)
		if p == "/" {
			return out, nil
		}
	}
}

func exposures(cg, dir string) ([]Exposure, error) {
	var out []Exposure
	check := func(file string) error {
		p := dir
		if file != "" {
			p = filepath.Join(dir, file)
		}
		fi, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("check who may write cgroup %s: %w", cg, err)
		}
		name := "the directory"
		if file != "" {
			name = file
		}
		if why := nonRootWritable(fi); why != "" {
			out = append(out, Exposure{Cgroup: cg, Why: name + " " + why})
		}
		return nil
	}
	if err := check(""); err != nil {
		return nil, err
	}
	for _, f := range writableFiles {
		if err := check(f); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// nonRootWritable says why a file is writable by someone other than root,
// or "" when it is not.
func nonRootWritable(fi fs.FileInfo) string {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return "has no owner information"
	}
	switch mode := fi.Mode().Perm(); {
	case st.Uid != 0:
		return fmt.Sprintf("is owned by uid %d", st.Uid)
	case mode&0o002 != 0:
		return fmt.Sprintf("is writable by every user (mode %04o)", mode)
	case mode&0o020 != 0:
		return fmt.Sprintf("is writable by group %d (mode %04o)", st.Gid, mode)
	}
	return ""
}

// secure makes a cgroup directory interlock created, and every file in
// it, owned by root and writable by root alone. Files of a new cgroup take
// the creator's fsuid, which is not root when interlock runs with
// capabilities under another uid; a command of that uid could then move
// processes in and out of the run's cgroup, or make it threaded.
func secure(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("secure cgroup %s: %w", dir, err)
	}
	paths := []string{dir}
	for _, e := range ents {
		if !e.IsDir() {
			paths = append(paths, filepath.Join(dir, e.Name()))
		}
	}
	for _, p := range paths {
		fi, err := os.Lstat(p)
		if err != nil {
			return fmt.Errorf("secure cgroup %s: %w", dir, err)
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("secure cgroup %s: no owner information for %s", dir, p)
		}
		if st.Uid != 0 || st.Gid != 0 {
			if err := os.Lchown(p, 0, 0); err != nil {
				return fmt.Errorf("make %s owned by root: %w (run interlock as root)", p, err)
			}
		}
		if mode := fi.Mode().Perm(); mode&0o022 != 0 {
			if err := os.Chmod(p, mode&^0o022); err != nil {
				return fmt.Errorf("make %s writable by root only: %w (run interlock as root)", p, err)
			}
		}
	}
	return nil
}
