// Package runner starts a command directly inside a fresh cgroup (so no
// instant of it runs unintercepted), and makes sure nothing it leaves
// behind outlives the interception when it ends.
package runner

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/interlock/interlock/internal/cgroupfs"
	"golang.org/x/sys/unix"
)

// Cgroup is a cgroup created for one command.
type Cgroup struct {
	// Path is relative to the cgroup2 root; Dir is the absolute directory.
	Path string
	Dir  string
	ID   uint64
	// Placement says why the cgroup is where it is.
	Placement Placement
	fd        *os.File
}

// RunParent is the cgroup, directly below the cgroup2 root, where runs go
// when the caller's own cgroup is not safe to nest in. Only root may write
// it.
const RunParent = "/interlock.run"

// Placement says where Create put a run's cgroup, and why.
type Placement struct {
	// Caller is the cgroup of the process that called Create.
	Caller string
	// Relocated is true when the cgroup was made below RunParent rather
	// than below Caller.
	Relocated bool
	// Exposed are the cgroups from Caller up to the root that a user
	// other than root may write; they are why the run was relocated.
	Exposed []Exposure
	// Unverified is set when who may write the caller's cgroups could not
	// be checked; the run is relocated then too.
	Unverified error
}

// Why says in one phrase why the cgroup is where it is.
func (p Placement) Why() string {
	switch {
	case p.Unverified != nil:
		return "could not check who may write the caller's cgroups: " + p.Unverified.Error()
	case p.Relocated:
		return "a user other than root may write " + Describe(p.Exposed) +
			", so a command nested there could move itself out of the run's cgroup"
	default:
		return "only root may write the caller's cgroup and every cgroup above it, so an interception of the caller also covers the command"
	}
}

// PlacementError is a relocation that could not be done. Its message says
// what to change.
type PlacementError struct {
	Placement Placement
	// Parent is where the cgroup was to go instead.
	Parent string
	Err    error
}

func (e *PlacementError) Error() string {
	return fmt.Sprintf("cannot place the command's cgroup where its user cannot leave it: %v; "+
		"%s, so interlock tried %s instead. Start `interlock run` from a cgroup only root may write "+
		"(for example `sudo systemd-run --scope interlock run -- CMD`, which runs it in a root-owned scope), "+
		"or fix what the error names", e.Err, e.Placement.Why(), e.Parent)
}

func (e *PlacementError) Unwrap() error { return e.Err }

// Create makes a cgroup named name for one command.
//
// It goes below the calling process's own cgroup when only root may write
// that cgroup and every one above it. Nesting under the caller keeps the
// command inside whatever already intercepts the caller (a daemon watching
// a CI runner, an outer `interlock run`): a new cgroup elsewhere would let
// it escape them.
//
// When another user may write one of them (systemd delegates
// user@UID.service and all below it to UID), a command of that user could
// write its pid into that cgroup's cgroup.procs and connect from there,
// unintercepted. The cgroup then goes below RunParent instead, which only
// root may write. The run's own interception still covers the command;
// what it loses is an interception of the caller's cgroup, which that
// user could have left anyway.
func Create(root, name string) (*Cgroup, error) {
	self, err := cgroupfs.Self()
	if err != nil {
		return nil, err
	}
	return create(root, self, RunParent, name)
}

// create is Create for a caller in cgroup self, relocating below
// runParent.
func create(root, self, runParent, name string) (*Cgroup, error) {
	pl := Placement{Caller: self}
	pl.Exposed, pl.Unverified = NonRootWritable(root, self)
	parent := self
	if len(pl.Exposed) > 0 || pl.Unverified != nil {
		pl.Relocated = true
		if err := ensureRunParent(root, runParent); err != nil {
			return nil, &PlacementError{Placement: pl, Parent: runParent, Err: err}
		}
		parent = runParent
	}
	p, dir, err := mkdirFresh(root, parent, name)
	if err != nil {
		if pl.Relocated {
			return nil, &PlacementError{Placement: pl, Parent: runParent, Err: err}
		}
		return nil, err
	}
	// The umask may have taken bits off; the mode is part of the promise
	// that only root writes the run's cgroup, so set it whole.
	if err := os.Chmod(dir, 0o755); err != nil {
		os.Remove(dir)
		return nil, fmt.Errorf("chmod cgroup %s: %w", dir, err)
	}
	if err := secure(dir); err != nil {
		os.Remove(dir)
		return nil, err
	}
	id, err := cgroupfs.ID(dir)
	if err != nil {
		os.Remove(dir)
		return nil, err
	}
	fd, err := os.Open(dir)
	if err != nil {
		os.Remove(dir)
		return nil, fmt.Errorf("open cgroup %s: %w", dir, err)
	}
	return &Cgroup{Path: p, Dir: dir, ID: id, Placement: pl, fd: fd}, nil
}

// maxNameTries bounds how many suffixed names mkdirFresh tries after
// name itself is taken.
const maxNameTries = 64

// mkdirFresh makes a new cgroup below parent named name, or name-2,
// name-3 and so on when the name is taken. A run's name carries its pid,
// and a run killed before it could remove its cgroup leaves the name
// taken for whichever process gets that pid next. The leftover is not
// ours to remove: it may hold what the killed run's command left behind,
// or belong to a run with the same pid in another pid namespace. It
// returns the cgroup's path below the root and its directory.
func mkdirFresh(root, parent, name string) (string, string, error) {
	var taken []string
	for i := 1; i <= maxNameTries; i++ {
		n := name
		if i > 1 {
			n = fmt.Sprintf("%s-%d", name, i)
		}
		p := path.Join(parent, n)
		dir, err := cgroupfs.Dir(root, p)
		if err != nil {
			return "", "", err
		}
		err = os.Mkdir(dir, 0o755)
		if err == nil {
			return p, dir, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return "", "", fmt.Errorf("create cgroup %s: %w", dir, err)
		}
		taken = append(taken, n)
	}
	return "", "", fmt.Errorf("create cgroup below %s: the names %s to %s are all taken by cgroups earlier runs left; "+
		"remove the empty ones with rmdir", filepath.Join(root, parent), taken[0], taken[len(taken)-1])
}

// ensureRunParent makes RunParent if it is missing, and refuses it if a
// user other than root may write it or anything above it: a run placed
// there could then leave it as easily as the cgroup it was moved away
// from.
func ensureRunParent(root, runParent string) error {
	dir := filepath.Join(root, runParent)
	err := os.Mkdir(dir, 0o755)
	switch {
	case err == nil:
		if err := os.Chmod(dir, 0o755); err != nil {
			return fmt.Errorf("chmod %s: %w", dir, err)
		}
		if err := secure(dir); err != nil {
			return err
		}
	case errors.Is(err, fs.ErrExist):
	case errors.Is(err, syscall.EROFS):
		return fmt.Errorf("create %s: %w (the cgroup filesystem is mounted read-only here, as in many containers; "+
			"mount it read-write, or run interlock where it is)", dir, err)
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return fmt.Errorf("create %s: %w (run interlock as root)", dir, err)
	default:
		return fmt.Errorf("create %s: %w", dir, err)
	}
	exposed, err := NonRootWritable(root, runParent)
	if err != nil {
		return err
	}
	if len(exposed) > 0 {
		return fmt.Errorf("%s is not root's alone: a user other than root may write %s; make it so with "+
			"`chown root:root %s %s/cgroup.procs %s/cgroup.threads && chmod go-w %s %s/cgroup.procs %s/cgroup.threads`",
			runParent, Describe(exposed), dir, dir, dir, dir, dir, dir)
	}
	return nil
}

// Command prepares argv to start inside the cgroup: clone3 with
// CLONE_INTO_CGROUP puts the child there before it runs a single
// instruction.
func (c *Cgroup) Command(argv []string) *exec.Cmd {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{
		UseCgroupFD: true,
		CgroupFD:    int(c.fd.Fd()),
		// If interlock is killed, its direct child goes too; the pinned
		// links keep refusing its descendants' connects to targets.
		Pdeathsig: syscall.SIGKILL,
	}
	return cmd
}

// Kill ends every process left in the cgroup and its descendants, and
// waits until it is empty. It returns how many processes it found.
func (c *Cgroup) Kill(timeout time.Duration) (int, error) {
	n := countProcs(c.Dir)
	if n == 0 {
		return 0, nil
	}
	// cgroup.kill (Linux 5.14) kills the whole subtree atomically, so a
	// process forking in a loop cannot outrun it.
	if err := os.WriteFile(filepath.Join(c.Dir, "cgroup.kill"), []byte("1"), 0); err != nil {
		killTree(c.Dir)
	}
	deadline := time.Now().Add(timeout)
	for {
		populated, err := cgroupfs.Populated(c.Dir)
		if err != nil {
			return n, err
		}
		if !populated {
			return n, nil
		}
		if time.Now().After(deadline) {
			return n, fmt.Errorf("cgroup %s still has processes after %s", c.Path, timeout)
		}
		killTree(c.Dir)
		time.Sleep(10 * time.Millisecond)
	}
}

func countProcs(dir string) int {
	n := 0
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			pids, _ := cgroupfs.Procs(p)
			n += len(pids)
		}
		return nil
	})
	return n
}

func killTree(dir string) {
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			pids, _ := cgroupfs.Procs(p)
			for _, pid := range pids {
				_ = unix.Kill(pid, unix.SIGKILL)
			}
		}
		return nil
	})
}

// Remove deletes the cgroup and any cgroups the command created below it.
func (c *Cgroup) Remove() error {
	c.fd.Close()
	var dirs []string
	_ = filepath.WalkDir(c.Dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	var errs []error
	// Deepest first: a cgroup with children cannot be removed.
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := os.Remove(dirs[i]); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ExitStatus turns a finished command's state into a shell-style exit code
// (128+N for a signal) and the signal's name.
func ExitStatus(ps *os.ProcessState) (int, string) {
	if ps == nil {
		return 1, ""
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal()), strings.ToUpper(unix.SignalName(ws.Signal()))
	}
	return ps.ExitCode(), ""
}
