package runner

import (
	"errors"
	"fmt"
	"math"
	"os"
	"sort"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// Descriptors a process inherits are a way around interception: a socket
// its launcher connected to a target before the command existed, from a
// cgroup nothing intercepts, reaches the command already connected, and
// no connect hook ever sees it. So the command gets stdin, stdout and
// stderr, and only the descriptors it is explicitly given.

// InheritedFDs lists the descriptors above stderr that this process was
// started with and still holds. Only descriptors without FD_CLOEXEC
// survive an exec, and everything Go opens has FD_CLOEXEC set (the
// runtime's poller, the cgroup CPU limit files it watches, any file of
// interlock's), so until CloseOnExecAbove runs the flag tells the two
// apart, however many descriptors Go has opened since.
func InheritedFDs() ([]int, error) {
	fds, err := openFDs()
	if err != nil {
		return nil, err
	}
	out := fds[:0]
	for _, fd := range fds {
		if Inherited(fd) == nil {
			out = append(out, fd)
		}
	}
	return out, nil
}

// Inherited says why fd is not a descriptor this process was started
// with (nil when it is one): it is not open, or it is close-on-exec.
func Inherited(fd int) error {
	flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	if err != nil {
		return fmt.Errorf("descriptor %d is not open: %w", fd, err)
	}
	if flags&unix.FD_CLOEXEC != 0 {
		return fmt.Errorf("descriptor %d is close-on-exec: interlock opened it, or it was never meant to be passed on", fd)
	}
	return nil
}

// openFDs lists the open descriptors above stderr.
func openFDs() ([]int, error) {
	dfd, err := unix.Open("/proc/self/fd", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("list open descriptors: open /proc/self/fd: %w", err)
	}
	defer unix.Close(dfd)
	var fds []int
	buf := make([]byte, 8192)
	for {
		n, err := unix.Getdents(dfd, buf)
		if err != nil {
			return nil, fmt.Errorf("list open descriptors: read /proc/self/fd: %w", err)
		}
		if n <= 0 {
			break
		}
		_, _, names := unix.ParseDirent(buf[:n], -1, nil)
		for _, name := range names {
			fd, err := strconv.Atoi(name)
			if err != nil || fd <= 2 || fd == dfd {
				continue
			}
			fds = append(fds, fd)
		}
	}
	sort.Ints(fds)
	return fds, nil
}

// CloseOnExecAbove marks every descriptor above stderr close-on-exec, so
// none reaches a program this process starts unless it is handed over
// explicitly (exec.Cmd's ExtraFiles clears the flag in the child only).
// The descriptors stay open in this process: whoever passed them may
// expect them held until it exits.
func CloseOnExecAbove() error {
	// close_range (Linux 5.11) does it in one call, with nothing to race.
	err := unix.CloseRange(3, math.MaxUint32, unix.CLOSE_RANGE_CLOEXEC)
	if err == nil {
		return nil
	}
	if !errors.Is(err, syscall.ENOSYS) && !errors.Is(err, syscall.EINVAL) {
		return fmt.Errorf("mark inherited descriptors close-on-exec: close_range: %w", err)
	}
	fds, err := openFDs()
	if err != nil {
		return fmt.Errorf("mark inherited descriptors close-on-exec: %w", err)
	}
	for _, fd := range fds {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC); err != nil && !errors.Is(err, syscall.EBADF) {
			return fmt.Errorf("mark descriptor %d close-on-exec: %w", fd, err)
		}
	}
	return nil
}

// PassFDs returns the ExtraFiles of an exec.Cmd that give the child each
// of fds at its own number; every other number above stderr is closed in
// the child. The files must stay referenced until the child has started:
// their finalizers close the descriptors.
func PassFDs(fds []int) []*os.File {
	top := -1
	for _, fd := range fds {
		top = max(top, fd)
	}
	if top < 3 {
		return nil
	}
	extra := make([]*os.File, top-2)
	for _, fd := range fds {
		extra[fd-3] = os.NewFile(uintptr(fd), "fd "+strconv.Itoa(fd))
	}
	return extra
}
