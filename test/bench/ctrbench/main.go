// Command ctrbench measures connection latency through interlock from
// inside a container against the same from a host process, in one run:
// a daemon intercepts a cgroup holding a host cgroup and a runc
// container (busybox-static root filesystem, a network namespace of its
// own, no image pull), and the same static client connects from each,
// and directly from outside, in alternating rounds. It needs root, runc
// and busybox-static (make deps).
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/interlock/interlock/internal/cgroupfs"
	"github.com/interlock/interlock/test/bench/benchutil"
)

type options struct {
	interlock string
	n, rounds int
}

func main() {
	var o options
	fs := flag.NewFlagSet("ctrbench", flag.ContinueOnError)
	fs.StringVar(&o.interlock, "interlock", "bin/interlock", "the interlock binary")
	fs.IntVar(&o.n, "n", 1000, "connections per side and round")
	fs.IntVar(&o.rounds, "rounds", 3, "rounds (the sides alternate within each)")
	err := fs.Parse(os.Args[1:])
	os.Exit(benchutil.Main("ctrbench", err, func(ctx context.Context) error { return run(ctx, o) }))
}

// clientResult is what the client prints.
type clientResult struct {
	N       int     `json:"n"`
	Errors  int     `json:"errors"`
	P50US   float64 `json:"p50_us"`
	P90US   float64 `json:"p90_us"`
	P99US   float64 `json:"p99_us"`
	MeanUS  float64 `json:"mean_us"`
	Refused int     `json:"refused"`
	Error   string  `json:"error"`
}

type bench struct {
	o       options
	bin     string
	dir     string
	client  string
	parent  string // cgroup path
	root    string // cgroup2 mount
	pin     string
	daemon  *exec.Cmd
	ctrID   string
	bundle  string
	target  string
	cleanup []func()
}

func run(ctx context.Context, o options) (err error) {
	if os.Geteuid() != 0 {
		return errors.New("needs root (BPF, cgroups, runc)")
	}
	for _, tool := range []string{"runc", "busybox"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is missing (make deps installs it): %w", tool, err)
		}
	}
	b := &bench{o: o}
	defer func() {
		for i := len(b.cleanup) - 1; i >= 0; i-- {
			b.cleanup[i]()
		}
	}()
	if b.bin, err = benchutil.Interlock(o.interlock); err != nil {
		return err
	}
	if err := b.setup(ctx); err != nil {
		return err
	}
	sides := []string{"direct", "host", "container"}
	// Warm: the container's namespace is served at its first connect.
	for _, side := range sides[1:] {
		r, err := b.runClient(ctx, side, 20, true)
		if err != nil {
			return fmt.Errorf("warm %s: %w", side, err)
		}
		fmt.Fprintf(os.Stderr, "ctrbench: %s warm: %d first connects refused while the namespace was served\n", side, r.Refused)
	}
	all := map[string][]clientResult{}
	for round := 0; round < o.rounds; round++ {
		for _, side := range sides {
			r, err := b.runClient(ctx, side, o.n, false)
			if err != nil {
				return fmt.Errorf("round %d, %s: %w", round+1, side, err)
			}
			if r.Errors > 0 {
				return fmt.Errorf("round %d, %s: %d of %d connections failed: %s", round+1, side, r.Errors, o.n, r.Error)
			}
			all[side] = append(all[side], r)
		}
	}
	v, _ := benchutil.InterlockVersion(b.bin)
	fmt.Printf("ctrbench: %s, %d CPUs, %s, interlock %s; %d rounds of %d connections per side (connect, a line each way, close)\n\n",
		benchutil.Kernel(), runtime.NumCPU(), runtime.Version(), v, o.rounds, o.n)
	fmt.Printf("%-10s %10s %10s %10s %10s\n", "side", "p50 µs", "p90 µs", "p99 µs", "mean µs")
	for _, side := range sides {
		med := func(f func(clientResult) float64) float64 {
			var v []float64
			for _, r := range all[side] {
				v = append(v, f(r))
			}
			sort.Float64s(v)
			return v[len(v)/2]
		}
		fmt.Printf("%-10s %10.0f %10.0f %10.0f %10.0f\n", side,
			med(func(r clientResult) float64 { return r.P50US }), med(func(r clientResult) float64 { return r.P90US }),
			med(func(r clientResult) float64 { return r.P99US }), med(func(r clientResult) float64 { return r.MeanUS }))
	}
	fmt.Println("\n(medians over rounds; direct: not intercepted; host: a host process through interlock; container: a runc container's process through interlock's listener in its namespace)")
	return nil
}

func (b *bench) setup(ctx context.Context) error {
	var err error
	if b.dir, err = os.MkdirTemp("", "interlock-ctrbench-"); err != nil {
		return err
	}
	b.cleanup = append(b.cleanup, func() { os.RemoveAll(b.dir) })
	b.client = filepath.Join(b.dir, "client")
	build := exec.CommandContext(ctx, "go", "build", "-o", b.client, "github.com/interlock/interlock/test/bench/ctrbench/client")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("build the client: %v: %s", err, out)
	}
	ln, err := net.Listen("tcp4", "127.0.0.2:0")
	if err != nil {
		return fmt.Errorf("target on 127.0.0.2: %w", err)
	}
	b.cleanup = append(b.cleanup, func() { ln.Close() })
	go serveLines(ln)
	b.target = ln.Addr().String()

	if b.root, err = cgroupfs.Root(); err != nil {
		return err
	}
	b.parent = fmt.Sprintf("/interlock-ctrbench-%d", os.Getpid())
	for _, cg := range []string{b.parent, b.parent + "/host"} {
		if err := os.Mkdir(filepath.Join(b.root, cg), 0o755); err != nil {
			return fmt.Errorf("make cgroup %s: %w", cg, err)
		}
		b.cleanup = append(b.cleanup, func() {
			for i := 0; i < 50 && os.Remove(filepath.Join(b.root, cg)) != nil; i++ {
				time.Sleep(20 * time.Millisecond)
			}
		})
	}

	b.pin = benchutil.PinPath("interlock-ctrbench")
	b.cleanup = append(b.cleanup, func() { benchutil.RemovePins(b.pin) })
	cfg := filepath.Join(b.dir, "interlock.yaml")
	y := benchutil.ConfigHead(b.dir, filepath.Join(b.dir, "journal.db"), b.pin) +
		fmt.Sprintf("intercept:\n  cgroups: [%s]\ntargets:\n  - name: bench\n    protocol: tcp\n    address: %q\n", b.parent, b.target)
	if err := os.WriteFile(cfg, []byte(y), 0o600); err != nil {
		return err
	}
	b.daemon = exec.Command(b.bin, "daemon", "-c", cfg)
	dlog, err := os.Create(filepath.Join(b.dir, "daemon.log"))
	if err != nil {
		return err
	}
	b.daemon.Stdout, b.daemon.Stderr = dlog, dlog
	if err := b.daemon.Start(); err != nil {
		return err
	}
	b.cleanup = append(b.cleanup, func() {
		b.daemon.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { b.daemon.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			b.daemon.Process.Kill()
		}
	})
	sock := filepath.Join(b.dir, "ctl.sock")
	for i := 0; ; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if i == 750 {
			log, _ := os.ReadFile(dlog.Name())
			return fmt.Errorf("the daemon did not start: %s", log)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return b.startContainer()
}

// startContainer runs a runc container that sleeps, in a network
// namespace runc makes, below the intercepted cgroup.
func (b *bench) startContainer() error {
	b.ctrID = fmt.Sprintf("ilkbench%d", os.Getpid())
	b.bundle = filepath.Join(b.dir, "bundle")
	root := filepath.Join(b.bundle, "rootfs")
	for _, d := range []string{"bin", "proc", "dev", "tmp"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return err
		}
	}
	bb, _ := exec.LookPath("busybox")
	for from, to := range map[string]string{bb: "bin/busybox", b.client: "bin/client"} {
		data, err := os.ReadFile(from)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(root, to), data, 0o755); err != nil {
			return err
		}
	}
	os.Symlink("busybox", filepath.Join(root, "bin", "sleep"))
	spec := map[string]any{
		"ociVersion": "1.0.2",
		"process": map[string]any{
			"terminal": false, "user": map[string]int{"uid": 0, "gid": 0},
			"args": []string{"sleep", "3600"}, "env": []string{"PATH=/bin"}, "cwd": "/",
			"noNewPrivileges": true,
		},
		"root": map[string]any{"path": "rootfs", "readonly": true},
		"mounts": []map[string]any{
			{"destination": "/proc", "type": "proc", "source": "proc"},
			{"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": []string{"nosuid", "mode=755"}},
		},
		"linux": map[string]any{
			"cgroupsPath": b.parent + "/" + b.ctrID,
			"namespaces":  []map[string]string{{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "network"}},
		},
	}
	data, _ := json.Marshal(spec)
	if err := os.WriteFile(filepath.Join(b.bundle, "config.json"), data, 0o644); err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(b.dir, "runc.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command("runc", "run", "-d", "--bundle", b.bundle, b.ctrID)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Run(); err != nil {
		out, _ := os.ReadFile(logf.Name())
		return fmt.Errorf("runc run: %v: %s", err, out)
	}
	b.cleanup = append(b.cleanup, func() {
		exec.Command("runc", "kill", b.ctrID, "KILL").Run()
		for i := 0; i < 50 && exec.Command("runc", "delete", "-f", b.ctrID).Run() != nil; i++ {
			time.Sleep(20 * time.Millisecond)
		}
	})
	return nil
}

// runClient runs the client on one side.
func (b *bench) runClient(ctx context.Context, side string, n int, warm bool) (clientResult, error) {
	args := []string{"-addr", b.target, "-n", fmt.Sprint(n)}
	if warm {
		args = append(args, "-warm")
	}
	var cmd *exec.Cmd
	switch side {
	case "container":
		cmd = exec.CommandContext(ctx, "runc", append([]string{"exec", b.ctrID, "/bin/client"}, args...)...)
	default:
		cmd = exec.CommandContext(ctx, b.client, args...)
		if side == "host" {
			f, err := os.Open(filepath.Join(b.root, b.parent, "host"))
			if err != nil {
				return clientResult{}, err
			}
			defer f.Close()
			cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(f.Fd())}
		}
	}
	out, err := cmd.Output()
	var r clientResult
	if jerr := json.Unmarshal(out, &r); jerr != nil {
		return r, fmt.Errorf("client: %v: %q", err, out)
	}
	if r.Error != "" && r.N == 0 {
		return r, errors.New(r.Error)
	}
	return r, nil
}

// serveLines answers each connection's line with the same line.
func serveLines(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			line, err := bufio.NewReader(c).ReadString('\n')
			if err == nil {
				c.Write([]byte(strings.TrimSpace(line) + "\n"))
			}
		}()
	}
}
