package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/interlock/interlock/internal/testkit"
	"github.com/interlock/interlock/test/e2e/pgtest"
)

// env is what every round shares: one PostgreSQL (fsync on, as a hub runs
// it) and one hub, the interlock binary's `hub serve` on it.
type env struct {
	bin, dir, cfg string
	pg            *pgtest.Server
	hub           *exec.Cmd
	hubExited     chan error
	hubLog        string
	url           string
}

func startEnv(ctx context.Context, bin, dir, pprofAddr string) (*env, error) {
	e := &env{bin: bin, dir: dir, hubLog: filepath.Join(dir, "hub.log")}
	ok := false
	defer func() {
		if !ok {
			e.stop()
		}
	}()
	var err error
	// Durable: the hub's commits wait for PostgreSQL's WAL fsync, as in
	// production; pgtest turns fsync off for tests.
	if e.pg, err = pgtest.Start(pgtest.Options{Durable: true}); err != nil {
		return nil, fmt.Errorf("start PostgreSQL: %w", err)
	}
	conn, err := e.pg.CreateDB("hubbench")
	if err != nil {
		return nil, err
	}
	connFile := filepath.Join(dir, "db.conn")
	if err := os.WriteFile(connFile, []byte(conn+"\n"), 0o600); err != nil {
		return nil, err
	}
	port, err := testkit.PickPort("127.0.0.1")
	if err != nil {
		return nil, err
	}
	e.url = fmt.Sprintf("https://127.0.0.1:%d", port)
	e.cfg = filepath.Join(dir, "hub.yaml")
	y := fmt.Sprintf("hub:\n  listen: 127.0.0.1:%d\n  database: %s\n  state_dir: %s\n  tls:\n    names: [127.0.0.1]\nlog:\n  level: warn\n",
		port, connFile, filepath.Join(dir, "hub-state"))
	if err := os.WriteFile(e.cfg, []byte(y), 0o644); err != nil {
		return nil, err
	}
	logf, err := os.Create(e.hubLog)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	e.hub = exec.Command(bin, "hub", "serve", "-c", e.cfg)
	e.hub.Stdout, e.hub.Stderr = logf, logf
	if pprofAddr != "" {
		e.hub.Env = append(os.Environ(), "INTERLOCK_PPROF="+pprofAddr)
	}
	if err := e.hub.Start(); err != nil {
		return nil, fmt.Errorf("start the hub: %w", err)
	}
	e.hubExited = make(chan error, 1)
	go func() { e.hubExited <- e.hub.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
			break
		}
		select {
		case err := <-e.hubExited:
			return nil, fmt.Errorf("the hub exited at start (%v): %s", err, e.log())
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the hub is not listening after 30 s: %s", e.log())
		}
	}
	ok = true
	return e, nil
}

func (e *env) log() string {
	b, _ := os.ReadFile(e.hubLog)
	return strings.TrimSpace(string(b))
}

// alive says whether the hub still runs: a figure taken after it died
// would measure nothing.
func (e *env) alive() error {
	select {
	case err := <-e.hubExited:
		e.hubExited <- err
		return fmt.Errorf("the hub exited (%v): %s", err, e.log())
	default:
		return nil
	}
}

func (e *env) stop() {
	if e.hub != nil && e.hub.Process != nil {
		e.hub.Process.Signal(syscall.SIGTERM)
		select {
		case <-e.hubExited:
		case <-time.After(10 * time.Second):
			e.hub.Process.Kill()
			<-e.hubExited
		}
	}
	e.pg.Stop()
}

// token makes a join token with the hub's own CLI, with the CA
// fingerprint to pin.
func (e *env) token() (token, caSHA256 string, err error) {
	var out, errb bytes.Buffer
	cmd := exec.Command(e.bin, "hub", "token", "create", "--json", "-c", e.cfg)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", "", fmt.Errorf("hub token create: %v: %s", err, strings.TrimSpace(errb.String()))
	}
	var t struct {
		Token    string `json:"token"`
		CASHA256 string `json:"ca_sha256"`
	}
	if err := json.Unmarshal(out.Bytes(), &t); err != nil {
		return "", "", fmt.Errorf("hub token create printed %q: %w", out.String(), err)
	}
	return t.Token, t.CASHA256, nil
}

// cpu is CPU time (user+sys) of the hub process, of PostgreSQL (the
// postmaster, its live children, and the children it reaped), and of this
// process (the journal's writers and the shipper).
type cpu struct{ hub, pg, self time.Duration }

func (e *env) cpu() (cpu, error) {
	var c cpu
	h, err := procCPU(e.hub.Process.Pid, false)
	if err != nil {
		return c, fmt.Errorf("hub CPU: %w", err)
	}
	c.hub = h
	if c.pg, err = e.pgCPU(); err != nil {
		return c, err
	}
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	c.self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	return c, nil
}

func (c cpu) sub(o cpu) cpu { return cpu{c.hub - o.hub, c.pg - o.pg, c.self - o.self} }

// pgCPU sums the postmaster's own CPU and that of the backends and
// auxiliary processes it reaped (cutime, cstime) with the CPU of those
// still running: a backend that exits between two readings moves from
// one term to the other, so differences stay right.
func (e *env) pgCPU() (time.Duration, error) {
	b, err := os.ReadFile(filepath.Join(e.pg.Dir, "data", "postmaster.pid"))
	if err != nil {
		return 0, fmt.Errorf("PostgreSQL CPU: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pm, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		return 0, fmt.Errorf("PostgreSQL CPU: postmaster.pid: %w", err)
	}
	total, err := procCPU(pm, true)
	if err != nil {
		return 0, fmt.Errorf("PostgreSQL CPU: %w", err)
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, d := range ents {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		f, err := readStat(pid)
		if err != nil || f.ppid != pm {
			continue // gone since the listing, or not a backend
		}
		total += f.utime + f.stime
	}
	return total, nil
}

type stat struct {
	ppid                         int
	utime, stime, cutime, cstime time.Duration
}

// clockTick is USER_HZ, 100 on every Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

func readStat(pid int) (stat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return stat{}, err
	}
	// The command name may hold spaces and parentheses: fields start
	// after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return stat{}, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 15 {
		return stat{}, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	// f[0] is field 3 (state): ppid is field 4, utime..cstime 14..17.
	n := func(k int) int64 { v, _ := strconv.ParseInt(f[k-3], 10, 64); return v }
	return stat{ppid: int(n(4)), utime: time.Duration(n(14)) * clockTick, stime: time.Duration(n(15)) * clockTick,
		cutime: time.Duration(n(16)) * clockTick, cstime: time.Duration(n(17)) * clockTick}, nil
}

// procCPU is a process's user+sys time, with its reaped children's when
// children is set.
func procCPU(pid int, children bool) (time.Duration, error) {
	s, err := readStat(pid)
	if err != nil {
		return 0, err
	}
	t := s.utime + s.stime
	if children {
		t += s.cutime + s.cstime
	}
	return t, nil
}
