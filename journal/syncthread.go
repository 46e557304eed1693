package journal

// The syncer's fdatasync on a thread of its own, outside the Go scheduler.
//
// An fdatasync blocks for the disk (150 µs to several ms here). Made from a
// goroutine, it holds the goroutine's P in the runtime's system-call state
// all that time, and wakes the runtime's sysmon thread if it slept, which
// then polls every 20 µs while the fsync lasts (and takes the P back to
// hand it to another thread when the other P is busy). The thread below is
// made by pthread_create and never holds a P: the syncer goroutine asks it
// through an eventfd and parks on a second eventfd in the netpoller, as it
// would on a socket, until the thread answers (docs/benchmarks.md, "The
// fsync off the scheduler").

/*
#define _GNU_SOURCE // gettid
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sys/types.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

typedef struct {
	int req;          // eventfd, blocking: the syncer asks for a sync
	int done;         // eventfd, non-blocking on Go's side: the thread answers
	volatile int fd;      // the file to sync; -1 asks the thread to stop
	volatile int err;     // errno of the last fdatasync, 0 if it succeeded
	volatile int stopped; // set, before its last answer, when the thread ends
	volatile pid_t tid;   // the thread's id, once it runs (tests, debugging)
} interlock_sync_thread;

static void *interlock_sync_loop(void *arg) {
	interlock_sync_thread *t = arg;
	uint64_t v;
	t->tid = gettid();
	for (;;) {
		ssize_t n = read(t->req, &v, sizeof v);
		if (n != (ssize_t)sizeof v) {
			if (n < 0 && errno == EINTR) {
				continue;
			}
			t->err = n < 0 ? errno : EIO;
			t->fd = -1;
		}
		int stop = t->fd < 0;
		if (stop) {
			t->stopped = 1;
		} else {
			int r;
			do {
				r = fdatasync(t->fd);
			} while (r < 0 && errno == EINTR);
			t->err = r < 0 ? errno : 0;
		}
		v = 1;
		while (write(t->done, &v, sizeof v) < 0 && errno == EINTR) {
		}
		if (stop) {
			return NULL;
		}
	}
}

// interlock_sync_start starts the thread with every signal blocked (it
// inherits the mask it is created with, as runtime/cgo's threads do), so
// that the process's signals go to Go's threads.
static int interlock_sync_start(interlock_sync_thread *t) {
	pthread_t th;
	pthread_attr_t a;
	sigset_t all, old;
	int r = pthread_attr_init(&a);
	if (r != 0) {
		return r;
	}
	pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&a, 64 * 1024);
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	r = pthread_create(&th, &a, interlock_sync_loop, t);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&a);
	return r;
}
*/
import "C"

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The thread cannot be asked: it was closed, or a round with it failed (its
// state unknown, or it ended on its own). Either way the caller syncs in its
// own goroutine instead; only a failure is worth a word in the log.
var (
	errSyncThreadClosed = errors.New("journal: the sync thread is closed")
	errSyncThreadFailed = errors.New("journal: the sync thread failed")
)

// syncThread runs fdatasync on a pthread of its own, one call at a time.
type syncThread struct {
	mu   sync.Mutex
	t    *C.interlock_sync_thread // C memory: the thread reads it
	req  int
	done *os.File
	rc   syscall.RawConn
	// one is the counter value written to req, got where done's counter
	// is read into.
	one, got uint64
	readF    func(uintptr) bool
	rerr     syscall.Errno
	// broken: a round failed, so the thread's state is unknown (or it
	// ended); closed: close ran.
	broken, closed bool
}

// newSyncThread starts the thread.
func newSyncThread() (*syncThread, error) {
	req, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("journal: eventfd for the sync thread: %w", err)
	}
	done, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(req)
		return nil, fmt.Errorf("journal: eventfd for the sync thread: %w", err)
	}
	// A non-blocking descriptor: os.NewFile registers it with the poller.
	f := os.NewFile(uintptr(done), "sync-thread-done")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		unix.Close(req)
		return nil, fmt.Errorf("journal: poll the sync thread's eventfd: %w", err)
	}
	ct := (*C.interlock_sync_thread)(C.calloc(1, C.size_t(unsafe.Sizeof(C.interlock_sync_thread{}))))
	if ct == nil {
		f.Close()
		unix.Close(req)
		return nil, errors.New("journal: no memory for the sync thread")
	}
	ct.req, ct.done, ct.fd = C.int(req), C.int(done), -1
	st := &syncThread{t: ct, req: req, done: f, rc: rc, one: 1}
	st.readF = st.rawRead
	if r := C.interlock_sync_start(ct); r != 0 {
		C.free(unsafe.Pointer(ct))
		f.Close()
		unix.Close(req)
		return nil, fmt.Errorf("journal: start the sync thread: %w", syscall.Errno(r))
	}
	return st, nil
}

func (st *syncThread) rawRead(fd uintptr) bool {
	_, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&st.got)), 8)
	if e == syscall.EAGAIN {
		return false
	}
	st.rerr = e
	return true
}

// ask has the thread run one round with t.fd as set, and waits for its
// answer in the netpoller. Writing to an eventfd whose counter is far from
// its maximum never blocks, so the raw write holds no P for long.
func (st *syncThread) ask() error {
	_, _, e := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(st.req), uintptr(unsafe.Pointer(&st.one)), 8)
	if e != 0 {
		return fmt.Errorf("journal: wake the sync thread: %w", e)
	}
	st.rerr = 0
	if err := st.rc.Read(st.readF); err != nil {
		return fmt.Errorf("journal: wait for the sync thread: %w", err)
	}
	if st.rerr != 0 {
		return fmt.Errorf("journal: wait for the sync thread: %w", st.rerr)
	}
	return nil
}

// fdatasync makes what was written to f durable, as the package's
// fdatasync does, on the thread.
func (st *syncThread) fdatasync(f *os.File) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	switch {
	case st.closed:
		return errSyncThreadClosed
	case st.broken || st.t.stopped != 0:
		// Ended on its own (below), or behind this side's back: nothing
		// would answer a round.
		st.broken = true
		return errSyncThreadFailed
	}
	st.t.fd = C.int(f.Fd())
	err := st.ask()
	runtime.KeepAlive(f)
	if err != nil {
		// Whether the file was synced is unknown, and so is the thread's
		// state: it is not asked again, and the caller syncs itself.
		st.broken = true
		return fmt.Errorf("%w: %w", errSyncThreadFailed, err)
	}
	if st.t.stopped != 0 {
		// The thread could not read its eventfd and ended without
		// syncing.
		st.broken = true
		return fmt.Errorf("%w: it ended: %w", errSyncThreadFailed, syscall.Errno(st.t.err))
	}
	if e := st.t.err; e != 0 {
		return fmt.Errorf("fdatasync %s: %w", f.Name(), syscall.Errno(e))
	}
	return nil
}

// close stops the thread and frees what it used, once it has said it
// stopped.
func (st *syncThread) close() {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed {
		return
	}
	st.closed = true
	if st.t.stopped == 0 {
		if st.broken {
			// The thread may still use its descriptors and memory: leak
			// them rather than let a reused descriptor number reach it.
			return
		}
		st.t.fd = -1
		if st.ask() != nil {
			return
		}
	}
	// The thread has answered its last round and touches nothing of this
	// any more.
	st.done.Close()
	unix.Close(st.req)
	C.free(unsafe.Pointer(st.t))
	st.t = nil
}
