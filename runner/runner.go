// Package runner starts a command directly inside a fresh cgroup (so no
// instant of it runs unintercepted), and makes sure nothing it leaves
// behind outlives the interception when it ends.
package runner

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/interlock/interlock/redirector"
)

// Cgroup is a cgroup created for one command.
type Cgroup struct {
	// Path is relative to the cgroup2 root; Dir is the absolute directory.
	Path string
	Dir  string
	ID   uint64
	fd   *os.File
}

// Create makes a cgroup named name below the calling process's own
// cgroup. Nesting under the caller keeps the command inside whatever
// already intercepts the caller (a daemon watching a CI runner, an outer
// `interlock run`): a new cgroup elsewhere would let it escape them.
func Create(root, name string) (*Cgroup, error) {
	self, err := redirector.SelfCgroup()
	if err != nil {
		return nil, err
	}
	p := path.Join(self, name)
	dir, err := redirector.CgroupDir(root, p)
	if err != nil {
		return nil, err
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create cgroup %s: %w", dir, err)
	}
	id, err := redirector.CgroupID(dir)
	if err != nil {
		os.Remove(dir)
		return nil, err
	}
	fd, err := os.Open(dir)
	if err != nil {
		os.Remove(dir)
		return nil, fmt.Errorf("open cgroup %s: %w", dir, err)
	}
	return &Cgroup{Path: p, Dir: dir, ID: id, fd: fd}, nil
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
		populated, err := redirector.CgroupPopulated(c.Dir)
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
			pids, _ := redirector.CgroupProcs(p)
			n += len(pids)
		}
		return nil
	})
	return n
}

func killTree(dir string) {
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			pids, _ := redirector.CgroupProcs(p)
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
