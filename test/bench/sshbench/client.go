package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clientResult is what `sshbench client` prints.
type clientResult struct {
	NS []int64 `json:"ns"`
	// ParentCPUMS is the CPU time (user + system, all threads) of the
	// client's parent over the timed runs: under `interlock run` that is
	// interlock's own cost, which a shared machine's load disturbs much
	// less than the wall times. -1 when it could not be read.
	ParentCPUMS float64 `json:"parent_cpu_ms"`
	// ClientCPUMS is the CPU time of the runs themselves (ssh, scp and
	// what they ran, from wait4's rusage).
	ClientCPUMS float64 `json:"client_cpu_ms"`
}

// clientMain runs argv n times, timing each, and prints the times. With
// -profile it also takes a CPU profile of its parent (interlock, started
// with INTERLOCK_PPROF) from the first run's start: the client, not the
// bench, fetches it, so the profile starts with the transfer, and the
// client stays alive (and so does interlock) until the profile is written.
func clientMain(args []string) int {
	fs := flag.NewFlagSet("client", flag.ContinueOnError)
	n := fs.Int("n", 1, "runs")
	profile := fs.String("profile", "", "write a CPU profile of the parent (at $INTERLOCK_PPROF) to this file")
	profileSecs := fs.Int("profile-secs", 10, "seconds the profile lasts")
	if err := fs.Parse(args); err != nil || fs.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: sshbench client [-n N] [-profile FILE -profile-secs S] -- ARGV...")
		return 2
	}
	argv := fs.Args()
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var prof chan error
	if *profile != "" {
		prof = make(chan error, 1)
		go func() { prof <- fetchProfile(os.Getenv("INTERLOCK_PPROF"), *profileSecs, *profile) }()
	}
	res := clientResult{ParentCPUMS: -1}
	cpu0, cpuOK := cpuTicks(os.Getppid())
	for i := 0; i < *n; i++ {
		cmd := exec.Command(argv[0], argv[1:]...)
		var stderr strings.Builder
		cmd.Stdout, cmd.Stderr = devnull, &stderr
		t0 := time.Now()
		err := cmd.Run()
		d := time.Since(t0)
		if err != nil {
			fmt.Fprintf(os.Stderr, "run %d of %v: %v: %s\n", i+1, argv, err, stderr.String())
			return 1
		}
		res.NS = append(res.NS, d.Nanoseconds())
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			res.ClientCPUMS += float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e6
		}
	}
	if cpu1, ok := cpuTicks(os.Getppid()); cpuOK && ok && cpu1 >= cpu0 {
		res.ParentCPUMS = float64(cpu1-cpu0) * 1000 / clockTicks
	}
	if prof != nil {
		if err := <-prof; err != nil {
			fmt.Fprintln(os.Stderr, "profile:", err)
			return 1
		}
	}
	json.NewEncoder(os.Stdout).Encode(res)
	return 0
}

// fetchProfile asks net/http/pprof at addr for a CPU profile of secs
// seconds and writes it to path.
func fetchProfile(addr string, secs int, path string) error {
	if addr == "" {
		return fmt.Errorf("INTERLOCK_PPROF is not set")
	}
	c := http.Client{Timeout: time.Duration(secs+30) * time.Second}
	resp, err := c.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, secs))
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
		return fmt.Errorf("CPU profile from %s: %w", addr, err)
	}
	if err := os.WriteFile(path, body, 0o644); err != nil {
		return fmt.Errorf("write profile: %w", err)
	}
	return nil
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat's times: 100 on every
// Linux architecture Go supports.
const clockTicks = 100

// cpuTicks is utime + stime of pid, all threads (fields 14 and 15 of its
// stat, counted after the parenthesised comm, which may hold spaces).
func cpuTicks(pid int) (uint64, bool) { return statTicks(pid, 11) }

// childTicks is cutime + cstime of pid (fields 16 and 17): what its
// children that it waited for used.
func childTicks(pid int) (uint64, bool) { return statTicks(pid, 13) }

// statTicks adds two fields of pid's stat, the first at index i after the
// comm (field 3 is index 0).
func statTicks(pid, i int) (uint64, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	s := string(b)
	j := strings.LastIndexByte(s, ')')
	if j < 0 {
		return 0, false
	}
	f := strings.Fields(s[j+1:])
	if len(f) < i+2 {
		return 0, false
	}
	u, err1 := strconv.ParseUint(f[i], 10, 64)
	k, err2 := strconv.ParseUint(f[i+1], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return u + k, true
}
