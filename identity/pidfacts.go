package identity

import (
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/interlock/interlock/internal/cgroupfs"
	"github.com/interlock/interlock/model"
)

// KernelFactsOf builds the kernel facts of a process that did not come
// through a connect hook: the invoker of `interlock run`, or a control
// socket peer whose pid, uid and gid the kernel reported with
// SO_PEERCRED. The comm and cgroup are read from /proc at once.
func KernelFactsOf(root string, pid int32, uid, gid uint32) (model.KernelFacts, error) {
	k := model.KernelFacts{PID: uint32(pid), TGID: uint32(pid), UID: uid, GID: gid}
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err == nil {
		k.ConnectBootNS = uint64(ts.Nano())
	}
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return k, fmt.Errorf("read comm of pid %d: %w", pid, err)
	}
	k.Comm = strings.TrimSuffix(string(comm), "\n")
	cg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return k, fmt.Errorf("read cgroup of pid %d: %w", pid, err)
	}
	for _, line := range strings.Split(string(cg), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			if dir, err := cgroupfs.Dir(root, p); err == nil {
				k.CgroupID, _ = cgroupfs.ID(dir)
			}
		}
	}
	return k, nil
}
