// Package benchutil is what the benchmark commands under test/bench share:
// the frame of a run (signals, exit codes), the interlock binary measured,
// the head of its config and its pins, and the facts about the machine
// and its disk printed beside the numbers. What each bench measures stays
// in the bench.
package benchutil

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/interlock/interlock/redirector"
)

// Main is a bench's main after its flags are parsed: a flag error exits 2
// (0 for -h); run gets a context that SIGINT, SIGTERM and SIGHUP cancel,
// and must clean up before it returns; an interrupted run exits 130, a
// failed one 1.
func Main(name string, flagErr error, run func(context.Context) error) int {
	if flagErr != nil {
		if errors.Is(flagErr, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, flagErr)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	err := run(ctx)
	switch {
	case err == nil:
		return 0
	case ctx.Err() != nil:
		fmt.Fprintf(os.Stderr, "%s: interrupted; cleaned up, no results\n", name)
		return 130
	default:
		fmt.Fprintf(os.Stderr, "%s: FAILED: %v\n", name, err)
		return 1
	}
}

// Interlock returns the absolute path of the interlock binary at path,
// which must be an executable file.
func Interlock(path string) (string, error) {
	bin, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(bin)
	switch {
	case err != nil:
		return "", fmt.Errorf("interlock binary: %w (build it with `make build`)", err)
	case !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0:
		return "", fmt.Errorf("interlock binary %s is not an executable file", bin)
	}
	return bin, nil
}

// InterlockVersion is what `bin version` prints.
func InterlockVersion(bin string) (string, error) {
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s version: %v: %s", bin, err, strings.TrimSpace(string(out)))
	}
	return strings.TrimSpace(string(out)), nil
}

// ConfigHead is the start of an interlock config for a bench: state and
// the control socket in dir, the journal at journal (sync: normal, every
// 10 ms), the BPF pins at pin, warnings only. The targets follow it.
func ConfigHead(dir, journal, pin string) string {
	return fmt.Sprintf(`state_dir: %s
journal:
  path: %s
  sync: normal
  sync_interval: 10ms
control:
  socket: %s
bpf:
  pin_path: %s
log:
  level: warn
`, filepath.Join(dir, "state"), journal, filepath.Join(dir, "ctl.sock"), pin)
}

// PinPath is a BPF pin directory of its own for one run, named
// /sys/fs/bpf/PREFIX-RANDOM.
func PinPath(prefix string) string {
	var rnd [4]byte
	rand.Read(rnd[:])
	return "/sys/fs/bpf/" + prefix + "-" + hex.EncodeToString(rnd[:])
}

// RemovePins detaches and removes what a run left pinned under pin, if
// anything.
func RemovePins(pin string) error {
	if _, err := os.Stat(pin); err != nil {
		return nil
	}
	if err := redirector.DetachPinned(pin); err != nil {
		return fmt.Errorf("remove pins %s: %w", pin, err)
	}
	return nil
}

// Kernel is the running kernel's release and machine.
func Kernel() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:]) + " " + unix.ByteSliceToString(u.Machine[:])
}

// CPUModel is the first model name in /proc/cpuinfo.
func CPUModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// SyncLatencies times n appends of 4 KiB to a file in dir, each followed
// by sync (unix.Fdatasync or unix.Fsync): the floor under any durable
// commit on that disk. The latencies come back sorted.
func SyncLatencies(dir string, n int, sync func(fd int) error) ([]time.Duration, error) {
	f, err := os.CreateTemp(dir, "fsync-probe-")
	if err != nil {
		return nil, err
	}
	name := f.Name()
	defer func() {
		f.Close()
		os.Remove(name)
	}()
	block := make([]byte, 4096)
	for i := range block {
		block[i] = byte(i)
	}
	lat := make([]time.Duration, 0, n)
	for range n {
		if _, err := f.Write(block); err != nil {
			return nil, fmt.Errorf("write %s: %w", name, err)
		}
		t0 := time.Now()
		if err := sync(int(f.Fd())); err != nil {
			return nil, fmt.Errorf("sync %s: %w", name, err)
		}
		lat = append(lat, time.Since(t0))
	}
	slices.Sort(lat)
	return lat, nil
}

// Median is the middle value of v, or the mean of the two middle values;
// 0 for none.
func Median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// Profile takes a CPU profile of an interlock started with
// INTERLOCK_PPROF=addr and writes it to path: it waits up to wait for the
// pprof server (the process is being started), lets skip pass (its start,
// which is not what a bench profiles), then lets net/http/pprof sample for
// secs seconds. The profiled process must live that long: a profile cut
// short by its exit is an error, not a file.
func Profile(ctx context.Context, addr string, wait, skip time.Duration, secs int, path string) error {
	deadline := time.Now().Add(wait)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pprof server %s: %w", addr, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(skip):
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, secs), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("CPU profile from %s: %w", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("CPU profile from %s: %s: %s", addr, resp.Status, strings.TrimSpace(string(b)))
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("CPU profile from %s (did the process exit before %d s?): %w", addr, secs, err)
	}
	if err := os.WriteFile(path, body, 0o644); err != nil {
		return fmt.Errorf("write profile: %w", err)
	}
	return nil
}

// ContextSwitches sums the context switches, voluntary and not, of every
// thread of process pid so far (from /proc; ok is false if it cannot be
// read). A thread that has exited no longer counts: the processes measured
// keep theirs for as long as they are measured. On a VM each switch is a
// thread put to sleep or woken through the hypervisor, and the count varies
// much less between runs than the CPU time does.
func ContextSwitches(pid int) (n uint64, ok bool) {
	if pid <= 0 {
		return 0, false
	}
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	if err != nil || len(tasks) == 0 {
		return 0, false
	}
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			k, v, found := strings.Cut(line, ":")
			if found && (k == "voluntary_ctxt_switches" || k == "nonvoluntary_ctxt_switches") {
				c, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
				n += c
			}
		}
	}
	return n, true
}
