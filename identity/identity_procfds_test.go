package identity

import (
	"context"
	"fmt"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/test/testenv"
)

// identTestOpenFDs counts this process's open descriptors of files under
// /proc (not the pidfds the children started by os/exec come with).
func identTestOpenFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(l, "/proc/") && !strings.HasPrefix(l, "/proc/self/") {
			n++
		}
	}
	return n
}

// identTestKernel is what the hook would record for a connect by pid.
func identTestKernel(t *testing.T, root string, pid int) model.KernelFacts {
	t.Helper()
	return model.KernelFacts{
		PID: uint32(pid), TGID: uint32(pid), UID: uint32(os.Getuid()), GID: uint32(os.Getgid()),
		CgroupID:      identTestIno(t, root+identTestProcCgroup(t, pid)),
		ConnectBootNS: identTestBootNS(t),
	}
}

// TestResolveHeldFDs: the second connection of a process is answered
// through the descriptors kept from the first (the process's and its
// parent's), with the same facts; once the process exits they say so
// (a zombie is exited, a reaped process is gone) and are closed.
func TestResolveHeldFDs(t *testing.T) {
	testenv.RequireRoot(t)
	root := identTestCgroup2Root(t)
	before := identTestOpenFDs(t)
	cmd := identTestStartSleep(t, "", []string{"PATH=/usr/bin", "CI=true"})
	pid := cmd.Process.Pid
	k := identTestKernel(t, root, pid)
	r := NewResolver(ResolverOptions{})
	t.Cleanup(func() { r.Close() })
	if r.fds == nil {
		t.Fatal("no descriptors kept on the real /proc")
	}
	first := r.Resolve(context.Background(), k)
	if first.Proc == nil {
		t.Fatal(first.ProcError)
	}
	if _, ok := r.fds.get(uint32(pid)); !ok {
		t.Fatal("the process's descriptors were not kept")
	}
	if _, ok := r.fds.get(uint32(os.Getpid())); !ok {
		t.Fatal("the parent's descriptors were not kept")
	}
	if got := identTestOpenFDs(t) - before; got != 8 {
		t.Errorf("%d descriptors more after the first resolution, want 8 (directory, stat, status, cmdline of the process and of its parent)", got)
	}
	second := r.Resolve(context.Background(), k)
	if second.Proc == nil || !reflect.DeepEqual(second, first) {
		t.Fatalf("through the kept descriptors:\n%+v\nfirst:\n%+v", second.Proc, first.Proc)
	}
	if got := identTestOpenFDs(t) - before; got != 8 {
		t.Errorf("%d descriptors more after the second resolution, want the same 8", got)
	}

	// Killed, not yet reaped: a zombie is an exited process.
	cmd.Process.Kill()
	for i := 0; ; i++ {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			t.Fatal(err)
		}
		if st, ok := procfsParseStat(b); ok && st.state == 'Z' {
			break
		}
		if i > 500 {
			t.Fatal("child never became a zombie")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if id := r.Resolve(context.Background(), k); id.Proc != nil || id.ProcError != identErrExited {
		t.Fatalf("zombie: %+v", id)
	}
	// Reaped: its files fail to read, and what was kept for it goes.
	cmd.Wait()
	if id := r.Resolve(context.Background(), k); id.Proc != nil || id.ProcError != identErrExited {
		t.Fatalf("reaped: %+v", id)
	}
	if _, ok := r.fds.get(uint32(pid)); ok {
		t.Fatal("the descriptors of an exited process are still kept")
	}
	if got := identTestOpenFDs(t) - before; got != 4 {
		t.Errorf("%d descriptors more after the exit, want the parent's 4", got)
	}
	r.Close()
	if got := identTestOpenFDs(t) - before; got != 0 {
		t.Errorf("%d descriptors more after Close, want 0", got)
	}
}

// TestResolveHeldFDsChurn: resolutions of several processes at once, with
// room for the descriptors of one, evict and close sets while others read
// through them (the race detector watches), and Close in the middle of it
// all. Every resolution still gets the facts, and nothing stays open.
func TestResolveHeldFDsChurn(t *testing.T) {
	testenv.RequireRoot(t)
	root := identTestCgroup2Root(t)
	before := identTestOpenFDs(t)
	var ks []model.KernelFacts
	for range 3 {
		ks = append(ks, identTestKernel(t, root, identTestStartSleep(t, "", nil).Process.Pid))
	}
	r := NewResolver(ResolverOptions{})
	r.fds = newIdentLRU[uint32, *identFDs](1)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				k := ks[(g+i)%len(ks)]
				if id := r.Resolve(context.Background(), k); id.Proc == nil || id.Proc.Exe == "" || len(id.Proc.Cmdline) != 2 {
					errs <- fmt.Errorf("pid %d: %+v %s", k.TGID, id.Proc, id.ProcError)
					return
				}
				if g == 0 && i%50 == 0 {
					r.Close()
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	r.Close()
	if got := identTestOpenFDs(t) - before; got != 0 {
		t.Errorf("%d descriptors more after Close, want 0", got)
	}
}

// TestResolveNoHeldFDsOnFakeProc: a fake /proc is plain files, which stay
// readable after they are removed, so nothing is kept open for it.
func TestResolveNoHeldFDsOnFakeProc(t *testing.T) {
	f := newIdentTestFake(t)
	if f.r.fds != nil {
		t.Fatal("descriptors kept for a /proc that is not a procfs")
	}
}

// TestNsInodes: the namespaces read from the links' text are the inode
// numbers a stat through the links gives.
func TestNsInodes(t *testing.T) {
	dirfd, err := unix.Open("/proc/self", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dirfd)
	user, mnt, err := nsInodes(dirfd)
	if err != nil {
		t.Fatal(err)
	}
	var su, sm unix.Stat_t
	if err := unix.Stat("/proc/self/ns/user", &su); err != nil {
		t.Fatal(err)
	}
	if err := unix.Stat("/proc/self/ns/mnt", &sm); err != nil {
		t.Fatal(err)
	}
	if user != su.Ino || mnt != sm.Ino || user == 0 || mnt == 0 || user == mnt {
		t.Fatalf("readlink says user %d mnt %d; stat says %d and %d", user, mnt, su.Ino, sm.Ino)
	}
	if _, err := nsInode(dirfd, "cwd"); err == nil {
		t.Fatal("a link that names no namespace was read as one")
	}
}
