package identity

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/interlock/interlock/model"
)

// Program identity. The hook records, in the connecting task's own
// context, the executable file the kernel runs for it (device, inode,
// ctime) and its user and mount namespaces. What /proc shows at accept is
// trusted only when it is that same file, unchanged, and the process is
// in the initial user namespace and the host mount namespace: elsewhere
// an unprivileged process can point its exe link at any file
// (PR_SET_MM_EXE_FILE needs only CAP_SYS_RESOURCE in its own user
// namespace) and make paths lie with bind mounts.

// hostNamespaces are the inode numbers of the initial user namespace and
// the host mount namespace (those of pid 1 in the procfs given).
type hostNamespaces struct {
	once      sync.Once
	user, mnt uint64
	err       error
}

// When pid 1's are not readable (a sandbox that denies ptrace access to
// it), interlock's own are taken: it runs on the host, and its unit keeps
// the host's mount namespace.
func (h *hostNamespaces) get(procRoot string) (user, mnt uint64, err error) {
	h.once.Do(func() {
		for _, pid := range []string{"1", "self"} {
			var su, sm unix.Stat_t
			if h.err = unix.Stat(procRoot+"/"+pid+"/ns/user", &su); h.err != nil {
				continue
			}
			if h.err = unix.Stat(procRoot+"/"+pid+"/ns/mnt", &sm); h.err != nil {
				continue
			}
			h.user, h.mnt = su.Ino, sm.Ino
			return
		}
	})
	return h.user, h.mnt, h.err
}

// nsInodes are the user and mount namespaces of the process at dirfd.
// They are read from the links' text ("user:[4026531837]"), the same
// inode number a stat through the link gives, at half the cost: a stat
// makes the kernel find or build the namespace file's dentry, readlink
// only prints the number.
func nsInodes(dirfd int) (user, mnt uint64, err error) {
	if user, err = nsInode(dirfd, "ns/user"); err != nil {
		return 0, 0, err
	}
	if mnt, err = nsInode(dirfd, "ns/mnt"); err != nil {
		return 0, 0, err
	}
	return user, mnt, nil
}

func nsInode(dirfd int, name string) (uint64, error) {
	var buf [64]byte
	n, err := unix.Readlinkat(dirfd, name, buf[:])
	if err != nil {
		return 0, err
	}
	link := buf[:n]
	open := bytes.IndexByte(link, '[')
	if open < 0 || open+2 >= n || link[n-1] != ']' {
		return 0, fmt.Errorf("%s: unexpected link %q", name, link)
	}
	var ino uint64
	for _, c := range link[open+1 : n-1] {
		if c < '0' || c > '9' || ino > (1<<64-1)/10-9 {
			return 0, fmt.Errorf("%s: unexpected link %q", name, link)
		}
		ino = ino*10 + uint64(c-'0')
	}
	return ino, nil
}

// startDiffers reports whether the process start time /proc shows is not
// the one the hook read from the kernel (one tick of rounding allowed): a
// reused pid, even one reused within the same clock tick as the connect.
func (r *Resolver) startDiffers(startTicks uint64, k model.KernelFacts) bool {
	if k.ProcStartNS == 0 {
		return false
	}
	want := k.ProcStartNS / r.tickNS
	return startTicks+1 < want || startTicks > want+1
}

// judgeProgram sets pf.ExeTrust by comparing the executable read at
// accept (key, the statx of /proc/TGID/exe the facts and hash came from)
// with the kernel's record of the connect. It returns why the facts are
// not to be relied on, or "" when nothing is missing. (pf.Runner and
// Program follow from Exe and Cmdline alone: classifyRunner.)
func (r *Resolver) judgeProgram(dirfd int, k model.KernelFacts, key identFileKey, pf *model.ProcFacts) string {
	pf.ExeTrust = model.ExeUnknown
	if k.ExeIno == 0 {
		return "the connect record has no executable (the kernel hook could not read it): program identity unknown"
	}
	user, mnt, err := nsInodes(dirfd)
	if err != nil {
		return "the process's namespaces could not be read: program identity unknown"
	}
	if k.UserNS != 0 && (uint32(user) != k.UserNS || uint32(mnt) != k.MntNS) {
		return "the process changed namespaces between connect and accept: program identity unknown"
	}
	hostUser, hostMnt, err := r.hostNS.get(r.procRoot)
	if err != nil {
		return "the host's namespaces could not be read: program identity unknown"
	}
	if uint32(user) != uint32(hostUser) || uint32(mnt) != uint32(hostMnt) {
		// Whatever file it shows, the process could have chosen it; and
		// a container's overlay file system shows other inode numbers
		// than the kernel's record. Claimed, not unknown: rules by
		// cgroup, unit, container and uid still see it.
		pf.ExeTrust = model.ExeClaimed
		return ""
	}
	if key.ino == 0 {
		return "the executable could not be examined at accept: program identity unknown"
	}
	// The device is compared when it can be: btrfs reports a subvolume's
	// device to stat, not the super block's. An inode number with the
	// same ctime to the nanosecond is the same file; ctime cannot be set.
	sameFile := key.ino == k.ExeIno && (key.dev == k.ExeDev ||
		(k.ExeCtimeNS != 0 && key.ctimeSec*1e9+key.ctimeNsec == k.ExeCtimeNS))
	if !sameFile {
		return fmt.Sprintf("the executable at accept (%s) is not the file that made the connect (%s): "+
			"the process exec'd or replaced its executable; program identity unknown",
			fileID(key.dev, key.ino), fileID(k.ExeDev, k.ExeIno))
	}
	if k.ExeCtimeNS != 0 && key.ctimeSec*1e9+key.ctimeNsec != k.ExeCtimeNS {
		return "the executable was modified between connect and accept: program identity unknown"
	}
	pf.ExeTrust = model.ExeVerified
	if pf.ExeSHA256 == "" {
		return "the executable was not hashed (too large, over the hashing budget, or unreadable): hash rules cannot match"
	}
	return ""
}

func fileID(dev, ino uint64) string {
	return fmt.Sprintf("device %d:%d inode %d", unix.Major(dev), unix.Minor(dev), ino)
}

// Options of ld.so and of common interpreters that take a value.
var runnerOptArgs = map[string]bool{
	"--library-path": true, "--inhibit-rpath": true, "--audit": true, "--preload": true, "--argv0": true,
	"--glibc-hwcaps-prepend": true, "--glibc-hwcaps-mask": true,
	"-W": true, "-X": true, "-o": true, "-O": true, "-I": true, "-r": true, "-cp": true, "-classpath": true,
	"--require": true, "-L": true,
}

// classifyRunner names what a loader or an interpreter runs, from its
// command line: a claim, since the process wrote it.
func classifyRunner(exe string, cmdline []string) (runner, program string) {
	runner = model.RunnerKind(filepath.Base(strings.TrimSuffix(exe, " (deleted)")))
	if runner == "" {
		return "", ""
	}
	if len(cmdline) < 2 {
		return runner, ""
	}
	args := cmdline[1:]
	if b := filepath.Base(exe); b == "busybox" || b == "toybox" {
		if ab := filepath.Base(cmdline[0]); ab != b {
			return runner, ab
		}
		return runner, args[0]
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			if i+1 < len(args) {
				return runner, args[i+1]
			}
			return runner, ""
		case a == "-c" || a == "-e" || a == "-E" || a == "--eval" || a == "-p" || a == "--print":
			return runner, "(inline code)"
		case a == "-m" && i+1 < len(args):
			return runner, "module " + args[i+1]
		case a == "-jar" && i+1 < len(args):
			return runner, args[i+1]
		case runnerOptArgs[a]:
			i++
		case strings.HasPrefix(a, "-"):
		default:
			return runner, a
		}
	}
	return runner, "(standard input)"
}
