// Package testkit is what the module's tests share: an in-memory
// model.Recorder, free ports, a buffer a process may write while the test
// reads it, polling with a deadline, the process's CPU time for benchmarks,
// and the reading of tar.gz bundles.
// Only tests and the test harnesses under test/ import it; its helpers
// take a testing.TB where a failure should stop the test.
package testkit

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
)

// SyncBuffer is a bytes.Buffer that one goroutine (a child process's
// stdout or stderr, through exec.Cmd) may write while another reads it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns a copy of what was written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// PickPort returns a TCP port that was free on host when asked. Another
// process may take it before the caller binds it; tests accept that race
// for servers (sshd, PostgreSQL) that cannot be handed a listener.
func PickPort(host string) (int, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, fmt.Errorf("testkit: free port on %s: %w", host, err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// FreePort is PickPort, failing the test when no port can be had.
func FreePort(tb testing.TB, host string) int {
	tb.Helper()
	port, err := PickPort(host)
	if err != nil {
		tb.Fatal(err)
	}
	return port
}

// WaitFor calls cond every interval until it holds, and fails the test
// if it does not within the given time. Callers choose the interval: a
// condition that runs a command wants a slower one than a counter.
func WaitFor(tb testing.TB, within, every time.Duration, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("condition not met within %v", within)
		}
		time.Sleep(every)
	}
}

// ProcessCPU is the user and system CPU time this process has used so
// far. Benchmarks report it per operation: on a busy machine the wall time
// also counts the waits for a CPU.
func ProcessCPU(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Tail is the last n bytes of s, marked as cut when it was longer: for
// logs quoted in a failure.
func Tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// ReadTarGz returns the files of a tar.gz archive (an evidence bundle) by
// name, failing the test when it cannot be read whole.
func ReadTarGz(tb testing.TB, path string) map[string][]byte {
	tb.Helper()
	files, err := readTarGz(path)
	if err != nil {
		tb.Fatal(err)
	}
	return files
}

func readTarGz(path string) (map[string][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("testkit: %w", err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("testkit: %s: %w", path, err)
	}
	out := map[string][]byte{}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("testkit: %s: %w", path, err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return nil, fmt.Errorf("testkit: %s: %s: %w", path, h.Name, err)
		}
		out[h.Name] = b
	}
}
