// Command tcpbench measures what interlock's TCP passthrough (issue 2)
// costs a client: connect + first-byte round trip, echo round trips on an
// open connection, and bulk throughput, each measured directly and through
// `interlock run` side by side in one run, against the same in-process
// server with the same client code.
//
// It is a benchmark, not a test: it prints numbers, ratios and the aims
// next to them, and fails only when it cannot measure (not root, no
// interlock binary, a client run that failed), never on the numbers.
//
//	go run ./test/bench/tcpbench -interlock ./bin/interlock
//
// The client is this binary re-executed as `tcpbench client ...`. For
// "interlock" it runs as `interlock run -c CONFIG --engine embedded --
// tcpbench client ...`, so its connects go through the BPF redirect, the
// proxy and the journal of an embedded engine.
//
// With -before PATH, an older interlock binary runs the same client as a
// third side, "before", in the same rounds (direct, before, interlock, …),
// with a config, journal and BPF pins of its own; the report puts its
// figures beside interlock's ("after") with the after/before ratio:
//
//	go run ./test/bench/tcpbench -interlock ./bin/interlock -before /tmp/interlock-before
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/interlock/interlock/internal/cgroupfs"
	"github.com/interlock/interlock/internal/testkit"
	"github.com/interlock/interlock/journal"
	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/test/bench/benchutil"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "client" {
		os.Exit(clientMain(os.Args[2:]))
	}
	o, err := parseFlags(os.Args[1:])
	os.Exit(benchutil.Main("tcpbench", err, func(ctx context.Context) error { return run(ctx, o) }))
}

type options struct {
	interlock   string
	before      string
	conns       int
	echo        int
	bulkMiB     int
	rounds      int
	jsonOut     bool
	quick       bool
	journalDir  string
	only        string
	keep        bool
	warmConns   int
	warmEcho    int
	fsyncProbes int
	profile     string
	profileSecs int
}

func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("tcpbench", flag.ContinueOnError)
	fs.StringVar(&o.interlock, "interlock", "", "path of the interlock binary (required; `make build` makes ./bin/interlock)")
	fs.StringVar(&o.before, "before", "", "path of an older interlock binary, run as a third side \"before\" in the same rounds for before/after figures")
	fs.IntVar(&o.conns, "conns", 2000, "connections measured per connect round")
	fs.IntVar(&o.echo, "echo", 20000, "64-byte round trips measured per echo round")
	fs.IntVar(&o.bulkMiB, "bulk-mib", 1024, "MiB moved per bulk round, each direction")
	fs.IntVar(&o.rounds, "rounds", 2, "rounds per metric and side (direct, [before,] interlock, direct, [before,] interlock, …)")
	fs.BoolVar(&o.jsonOut, "json", false, "also print the results as JSON")
	fs.BoolVar(&o.quick, "quick", false, "small sizes for a smoke run (200 conns, 2000 round trips, 64 MiB)")
	fs.StringVar(&o.journalDir, "journal-dir", "", "directory to put the journal in (default: the bench's temp dir; /dev/shm takes the disk's fsync out)")
	fs.StringVar(&o.only, "only", "", "comma-separated subset of connect,echo,bulk")
	fs.BoolVar(&o.keep, "keep", false, "keep the temp dir (config, journal) and print where it is")
	fs.IntVar(&o.warmConns, "warmup-conns", 50, "unmeasured connections before each connect round")
	fs.IntVar(&o.warmEcho, "warmup-echo", 1000, "unmeasured round trips before each echo round")
	fs.IntVar(&o.fsyncProbes, "fsync-probes", 200, "fdatasync calls timed on the journal's disk")
	fs.StringVar(&o.profile, "profile", "", "write a CPU profile of interlock during the first interlock round of the first metric run to this file, from 1 s after interlock starts (with -only connect -conns 20000: the connect path)")
	fs.IntVar(&o.profileSecs, "profile-seconds", 5, "seconds the -profile sample lasts; the profiled round must last 1 s longer")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if o.quick {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		quick := map[string]func(){
			"conns":        func() { o.conns = 200 },
			"echo":         func() { o.echo = 2000 },
			"bulk-mib":     func() { o.bulkMiB = 64 },
			"warmup-conns": func() { o.warmConns = 20 },
			"warmup-echo":  func() { o.warmEcho = 200 },
			"fsync-probes": func() { o.fsyncProbes = 50 },
		}
		for name, apply := range quick {
			if !set[name] {
				apply()
			}
		}
	}
	if o.interlock == "" {
		return o, errors.New("-interlock PATH is required (build it with `make build`: ./bin/interlock)")
	}
	if o.conns <= 0 || o.echo <= 0 || o.bulkMiB <= 0 || o.rounds <= 0 || o.fsyncProbes <= 0 {
		return o, errors.New("-conns, -echo, -bulk-mib, -rounds and -fsync-probes must be positive")
	}
	if o.profile != "" && o.profileSecs <= 0 {
		return o, errors.New("-profile-seconds must be positive")
	}
	if o.warmConns < 0 || o.warmEcho < 0 {
		return o, errors.New("warm-up counts cannot be negative")
	}
	return o, nil
}

// errInterrupted ends the run on SIGINT/SIGTERM, after cleaning up.
var errInterrupted = errors.New("interrupted")

// bench is one benchmark run's setup.
type bench struct {
	o       options
	self    string
	dir     string // temp dir: configs, control sockets, run state
	jdir    string // the journals' own temp dir (dir unless -journal-dir)
	engines map[string]*engineSide
	servers map[string]*server
	// profiled is set once the -profile round has run.
	profiled bool
}

// engineSide is a side that runs the client under an interlock binary:
// "interlock", and "before" with -before. Each has a config, state dir,
// control socket, journal and BPF pin directory of its own, so that the
// two binaries share nothing but the servers.
type engineSide struct {
	bin     string
	cfgPath string
	journal string
	pin     string
}

// sides are the sides of each round, in the order they run.
func (b *bench) sides() []string {
	if b.o.before != "" {
		return []string{sideDirect, sideBefore, sideInterlock}
	}
	return []string{sideDirect, sideInterlock}
}

func run(ctx context.Context, o options) (err error) {
	if os.Geteuid() != 0 {
		return errors.New("must run as root: interlock run loads BPF programs and creates cgroups (try: sudo make bench)")
	}
	b := &bench{o: o, servers: map[string]*server{}, engines: map[string]*engineSide{}}
	bins := map[string]string{sideInterlock: o.interlock}
	if o.before != "" {
		bins[sideBefore] = o.before
	}
	for side, path := range bins {
		bin, err := benchutil.Interlock(path)
		if err != nil {
			return fmt.Errorf("-%s: %w", side, err) // the flags are named after the sides
		}
		b.engines[side] = &engineSide{bin: bin}
	}
	if e := b.engines[sideBefore]; e != nil && e.bin == b.engines[sideInterlock].bin {
		return fmt.Errorf("-before and -interlock name the same binary %s", e.bin)
	}
	if b.self, err = os.Executable(); err != nil {
		return fmt.Errorf("find own executable: %w", err)
	}

	defer func() {
		if cerr := b.cleanup(); cerr != nil {
			fmt.Fprintln(os.Stderr, "tcpbench: cleanup:", cerr)
		}
	}()
	if err := b.setup(); err != nil {
		return err
	}

	env, err := collectEnv(b.engines[sideInterlock].bin, b.engines[sideInterlock].journal, o.fsyncProbes)
	if err != nil {
		return err
	}
	if e := b.engines[sideBefore]; e != nil {
		if env.Before, err = benchutil.InterlockVersion(e.bin); err != nil {
			return err
		}
		env.BeforePath = e.bin
	}
	printEnv(os.Stdout, env, o)

	res, err := b.measure(ctx)
	if err != nil {
		return err
	}
	// The disk's sync latency drifts with whatever else uses it: again
	// at the end, so the run's figures have both bounds.
	jd := filepath.Dir(b.engines[sideInterlock].journal)
	p50, p99, _, err := measureSync(jd, o.fsyncProbes, unix.Fsync)
	if err != nil {
		return fmt.Errorf("measure fsync latency: %w", err)
	}
	fmt.Printf("  disk sync    at the end, n=%d: fsync p50 %.1f µs, p99 %.1f µs\n", o.fsyncProbes, us(p50), us(p99))
	for _, side := range b.sides() {
		if b.engines[side] == nil {
			continue
		}
		opens, err := b.checkJournal(ctx, res, side)
		if err != nil {
			return err
		}
		if b.o.before == "" {
			fmt.Printf("  journal      %d session.open records, one per connection of the interlock side, none for the direct side\n", opens)
		} else {
			fmt.Printf("  journal      %d session.open records in the %s side's journal, one per connection of that side, none for the others\n", opens, side)
		}
	}
	rows := summarize(res)
	fmt.Println()
	printTable(os.Stdout, rows, o)
	printRounds(os.Stdout, res, b.sides())
	if o.jsonOut {
		out := map[string]any{
			"env":     env,
			"params":  paramsOf(o),
			"rounds":  res,
			"summary": rows,
		}
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		fmt.Println()
		if err := enc.Encode(out); err != nil {
			return err
		}
	}
	return nil
}

func paramsOf(o options) map[string]any {
	p := map[string]any{
		"conns": o.conns, "warmup_conns": o.warmConns, "echo": o.echo, "warmup_echo": o.warmEcho,
		"echo_size": 64, "bulk_mib": o.bulkMiB, "rounds": o.rounds, "quick": o.quick,
	}
	if o.before != "" {
		p["before"] = o.before
	}
	return p
}

func (b *bench) setup() error {
	var err error
	if b.dir, err = os.MkdirTemp("", "interlock-tcpbench-"); err != nil {
		return err
	}
	b.jdir = b.dir
	if b.o.journalDir != "" {
		if b.jdir, err = os.MkdirTemp(b.o.journalDir, "interlock-tcpbench-journal-"); err != nil {
			return fmt.Errorf("journal dir: %w", err)
		}
	}
	for _, s := range []struct {
		name   string
		handle func(*net.TCPConn)
	}{
		{"connect", serveConnect},
		{"echo", serveEcho},
		{"bulk", serveBulk},
	} {
		srv, err := startServer(s.name, "127.0.0.2:0", s.handle)
		if err != nil {
			return fmt.Errorf("start %s server on 127.0.0.2: %w", s.name, err)
		}
		b.servers[s.name] = srv
	}

	for _, side := range b.sides() {
		e := b.engines[side]
		if e == nil {
			continue
		}
		// The interlock side keeps the paths it had before -before
		// existed; the before side's are in a directory of its own.
		dir, jdir := b.dir, b.jdir
		if side != sideInterlock {
			dir, jdir = filepath.Join(b.dir, side), filepath.Join(b.jdir, side)
			for _, d := range []string{dir, jdir} {
				if err := os.MkdirAll(d, 0o700); err != nil {
					return err
				}
			}
		}
		e.journal = filepath.Join(jdir, "journal.db")
		e.cfgPath = filepath.Join(dir, "interlock.yaml")
		e.pin = benchutil.PinPath("interlock-tcpbench")
		var c strings.Builder
		c.WriteString(benchutil.ConfigHead(dir, e.journal, e.pin))
		c.WriteString("targets:\n")
		for _, name := range []string{"connect", "echo", "bulk"} {
			fmt.Fprintf(&c, "  - name: bench-%s\n    protocol: tcp\n    address: %q\n", name, b.servers[name].addr())
		}
		if err := os.WriteFile(e.cfgPath, []byte(c.String()), 0o600); err != nil {
			return err
		}
	}
	return nil
}

func (b *bench) cleanup() error {
	var errs []error
	for _, s := range b.servers {
		s.close()
	}
	for _, e := range b.engines {
		if e.pin != "" {
			if err := benchutil.RemovePins(e.pin); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if b.o.keep && b.dir != "" {
		for _, side := range b.sides() {
			if e := b.engines[side]; e != nil && e.cfgPath != "" {
				fmt.Fprintf(os.Stderr, "tcpbench: kept %s side's config %s and journal %s\n", side, e.cfgPath, e.journal)
			}
		}
		return errors.Join(errs...)
	}
	if b.jdir != "" && b.jdir != b.dir {
		if err := os.RemoveAll(b.jdir); err != nil {
			errs = append(errs, err)
		}
	}
	if b.dir != "" {
		if err := os.RemoveAll(b.dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// metric is one thing measured: the client arguments and the server.
type metric struct {
	name   string
	server string
	args   []string
}

func (b *bench) metrics() ([]metric, error) {
	all := []metric{
		{"connect", "connect", []string{"-mode", modeConnect, "-n", strconv.Itoa(b.o.conns), "-warmup", strconv.Itoa(b.o.warmConns)}},
		{"echo", "echo", []string{"-mode", modeEcho, "-n", strconv.Itoa(b.o.echo), "-warmup", strconv.Itoa(b.o.warmEcho), "-size", "64"}},
		{"bulk-up", "bulk", []string{"-mode", modeBulkUp, "-bytes", strconv.FormatInt(int64(b.o.bulkMiB)<<20, 10)}},
		{"bulk-down", "bulk", []string{"-mode", modeBulkDown, "-bytes", strconv.FormatInt(int64(b.o.bulkMiB)<<20, 10)}},
	}
	if b.o.only == "" {
		return all, nil
	}
	want := map[string]bool{}
	for _, w := range strings.Split(b.o.only, ",") {
		switch w = strings.TrimSpace(w); w {
		case "connect", "echo", "bulk":
			want[w] = true
		default:
			return nil, fmt.Errorf("-only: unknown metric %q (connect, echo, bulk)", w)
		}
	}
	var out []metric
	for _, m := range all {
		if want[m.name] || (want["bulk"] && m.server == "bulk") {
			out = append(out, m)
		}
	}
	return out, nil
}

// results: metric → side → one clientResult per round.
type results map[string]map[string][]clientResult

const (
	sideDirect    = "direct"
	sideBefore    = "before"
	sideInterlock = "interlock"
)

// measure runs each metric direct, interlock, direct, interlock, … (with
// -before: direct, before, interlock, …) so a drift of the machine over
// the run hits all sides alike.
func (b *bench) measure(ctx context.Context) (results, error) {
	ms, err := b.metrics()
	if err != nil {
		return nil, err
	}
	res := results{}
	for _, m := range ms {
		res[m.name] = map[string][]clientResult{}
		for r := 1; r <= b.o.rounds; r++ {
			for _, side := range b.sides() {
				cr, err := b.runClient(ctx, side, m)
				if err != nil {
					return nil, fmt.Errorf("%s, round %d, %s: %w", m.name, r, side, err)
				}
				res[m.name][side] = append(res[m.name][side], cr)
				fmt.Fprintf(os.Stderr, "tcpbench: %-9s round %d %-9s %s\n", m.name, r, side, brief(cr))
			}
		}
	}
	return res, nil
}

func brief(r clientResult) string {
	if r.MiBps > 0 {
		return fmt.Sprintf("%.0f MiB/s (%d MiB in %.2fs)", r.MiBps, r.Bytes>>20, r.Seconds)
	}
	return fmt.Sprintf("p50 %.1f µs, p99 %.1f µs (n=%d)", r.P50US, r.P99US, r.N)
}

var summaryRE = regexp.MustCompile(`interlock: (\d+) sessions?\b.*?, (\d+) refused(?:, (\d+) anomalies)?`)

// runClient runs one client process, directly or under `interlock run`,
// and returns its result; any failure is an error, never a number.
func (b *bench) runClient(ctx context.Context, side string, m metric) (clientResult, error) {
	if ctx.Err() != nil {
		return clientResult{}, errInterrupted
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	argv := append([]string{b.self, "client", "-addr", b.servers[m.server].addr()}, m.args...)
	eng := b.engines[side]
	if eng != nil {
		argv = append([]string{eng.bin, "run", "-c", eng.cfgPath, "--engine", "embedded", "--"}, argv...)
	}
	cmd := exec.CommandContext(cctx, argv[0], argv[1:]...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// Its own process group: a Ctrl-C reaches only the bench, which then
	// ends the child in order (interlock forwards SIGTERM to the client
	// and tears down its cgroup, links and journal).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 20 * time.Second
	var prof chan error
	if side == sideInterlock && b.o.profile != "" && !b.profiled {
		b.profiled = true
		addr, err := pprofAddr()
		if err != nil {
			return clientResult{}, err
		}
		cmd.Env = append(os.Environ(), "INTERLOCK_PPROF="+addr)
		prof = make(chan error, 1)
		go func() {
			prof <- benchutil.Profile(cctx, addr, 10*time.Second, time.Second, b.o.profileSecs, b.o.profile)
		}()
	}
	before := b.servers[m.server].accepted.Load()
	runErr := cmd.Run()
	if prof != nil {
		if err := <-prof; err != nil {
			return clientResult{}, fmt.Errorf("-profile: %w", err)
		}
		fmt.Fprintf(os.Stderr, "tcpbench: CPU profile of interlock (%s, round 1, %d s) in %s\n", m.name, b.o.profileSecs, b.o.profile)
	}
	if eng != nil && cmd.Process != nil {
		removeRunCgroup(cmd.Process.Pid)
	}
	if ctx.Err() != nil {
		return clientResult{}, errInterrupted
	}
	if cctx.Err() != nil {
		return clientResult{}, fmt.Errorf("client did not finish within 10 minutes; stderr: %s", tail(stderr.String()))
	}
	cr, perr := parseResult(stdout.Bytes())
	if runErr != nil || perr != nil || cr.Error != "" {
		msg := cr.Error
		if msg == "" && perr != nil {
			msg = perr.Error()
		}
		return cr, fmt.Errorf("client failed (%v): %s; stderr: %s", runErr, msg, tail(stderr.String()))
	}
	if got := b.servers[m.server].accepted.Load() - before; got != int64(cr.Conns) {
		return cr, fmt.Errorf("the server accepted %d connections, the client opened %d", got, cr.Conns)
	}
	if eng != nil {
		// The run's summary line proves the connections went through the
		// proxy: one session each, none refused.
		sm := summaryRE.FindStringSubmatch(stderr.String())
		if sm == nil {
			return cr, fmt.Errorf("no summary line from interlock run; stderr: %s", tail(stderr.String()))
		}
		sessions, _ := strconv.Atoi(sm[1])
		refused, _ := strconv.Atoi(sm[2])
		if sessions != cr.Conns || refused != 0 || sm[3] != "" {
			return cr, fmt.Errorf("interlock counted %d sessions (%d refused) for the client's %d connections: not all were proxied; summary: %q",
				sessions, refused, cr.Conns, sm[0])
		}
	}
	return cr, nil
}

// checkJournal counts the session.open records in the journal of side
// (interlock or before): there must be exactly one per connection that
// side opened. More would mean another side was intercepted too; fewer,
// sessions that were not journaled.
func (b *bench) checkJournal(ctx context.Context, res results, side string) (int, error) {
	want := 0
	for _, sides := range res {
		for _, r := range sides[side] {
			want += r.Conns
		}
	}
	jpath := b.engines[side].journal
	got := 0
	err := journal.Entries(ctx, jpath, 1, func(e journal.Entry) error {
		if e.Kind == model.KindSessionOpen {
			got++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("read the %s side's journal %s: %w", side, jpath, err)
	}
	if got != want {
		return got, fmt.Errorf("the %s side's journal holds %d session.open records; that side opened %d connections", side, got, want)
	}
	return got, nil
}

func parseResult(out []byte) (clientResult, error) {
	var r clientResult
	line := bytes.TrimSpace(out)
	if i := bytes.LastIndexByte(line, '\n'); i >= 0 {
		line = line[i+1:]
	}
	if len(line) == 0 {
		return r, errors.New("no result on stdout")
	}
	if err := json.Unmarshal(line, &r); err != nil {
		return r, fmt.Errorf("client output %q: %w", line, err)
	}
	return r, nil
}

// pprofAddr is a free loopback address for the profiled interlock's
// pprof server (127.0.0.1: the redirected targets are on 127.0.0.2).
func pprofAddr() (string, error) {
	port, err := testkit.PickPort("127.0.0.1")
	if err != nil {
		return "", fmt.Errorf("-profile: %w", err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), nil
}

func tail(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 2000 {
		s = "…" + s[len(s)-2000:]
	}
	if s == "" {
		return "(empty)"
	}
	return s
}

// removeRunCgroup removes what a killed `interlock run` (pid) could not:
// its cgroup, which it creates below ours. A run that ended normally has
// removed it already.
func removeRunCgroup(pid int) {
	root, err := cgroupfs.Root()
	if err != nil {
		return
	}
	self, err := cgroupfs.Self()
	if err != nil {
		return
	}
	dir, err := cgroupfs.Dir(root, filepath.Join(self, fmt.Sprintf("interlock-run-%d", pid)))
	if err != nil {
		return
	}
	if _, err := os.Stat(dir); err != nil {
		return
	}
	os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0)
	for range 100 {
		if err := os.Remove(dir); err == nil || errors.Is(err, os.ErrNotExist) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}
