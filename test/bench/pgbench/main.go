// Command pgbench is `make bench-pg`: PostgreSQL through interlock against
// the same server directly, through PgBouncer (session mode) and through a
// minimal Go relay (the floor any Go proxy pays here), side by side in one
// run, with pgbench as the client.
//
// It starts a PostgreSQL 15 on 127.0.0.2 (fsync on, TLS offered),
// initialises pgbench's tables, starts PgBouncer (run as the postgres
// user; clients log in with trust, PgBouncer logs in to the server with
// scram-sha-256; TLS offered to clients) and the go relay (this binary
// again, with -relay-serve: a Read/Write loop per direction with raw
// system calls as interlock's sessions make (internal/rawconn), no parsing,
// no journal), and runs every workload against the four in turn, like for
// like: every leg with the same client TLS setting, once with TLS off on
// all of them and once with TLS on. Interlock runs as `interlock run
// --engine embedded -- pgbench ...` with full statement journaling (sync:
// normal), and after each of its runs the bench counts the pg.statement
// entries the run added to the journal against the statements pgbench's
// transactions sent. TPS comes from pgbench, latency percentiles from its
// per-transaction log.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/interlock/interlock/internal/testkit"
	"github.com/interlock/interlock/journal"
	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/test/bench/benchutil"
	"github.com/interlock/interlock/test/e2e/pgtest"
)

type workload struct {
	name string
	args []string
	// selectOnly workloads are the ones the TPS and latency aims are
	// about; tpcb the one the write aim is about.
	selectOnly, tpcb bool
	// clients is pgbench's -c.
	clients int
	// effects workloads also run through interlock with an effects rule,
	// so that every write transaction goes through the gate.
	effects bool
	// stmts is how many statements one transaction of the script sends:
	// the journal must hold a pg.statement entry for each.
	stmts int
}

var workloads = func() []workload {
	var ws []workload
	for _, c := range []int{1, 4, 8} {
		for _, mode := range []string{"simple", "extended", "prepared"} {
			args := []string{"-S", "-M", mode, "-c", strconv.Itoa(c)}
			if c > 1 {
				args = append(args, "-j", "2")
			}
			ws = append(ws, workload{name: fmt.Sprintf("S %s c%d", mode, c), args: args, selectOnly: true, clients: c, stmts: 1})
		}
	}
	// TPC-B: BEGIN, three UPDATEs, a SELECT, an INSERT, END.
	ws = append(ws,
		workload{name: "TPC-B c1", args: []string{"-c", "1"}, clients: 1, effects: true, stmts: 7},
		workload{name: "TPC-B c8", args: []string{"-c", "8", "-j", "2"}, clients: 8, effects: true, tpcb: true, stmts: 7},
		workload{name: "S -C c8", args: []string{"-S", "-C", "-c", "8", "-j", "2"}, clients: 8, stmts: 1},
	)
	return ws
}()

type result struct {
	TPS      float64 `json:"tps"`
	P50US    float64 `json:"p50_us"`
	P99US    float64 `json:"p99_us"`
	Txns     int     `json:"txns"`
	Failures int     `json:"failures"`
	// Journaled is how many pg.statement entries an interlock run added
	// to its journal; Sent how many statements its transactions sent
	// (-1 for the legs that journal nothing).
	Journaled int `json:"journaled"`
	Sent      int `json:"sent"`
	// CPUUS is the CPU time (user+system) per transaction of pgbench and
	// of the leg's proxy together: the interlock process (which runs
	// pgbench as its child), or PgBouncer's process. The proxy's own
	// share is a leg's figure less the direct leg's (pgbench alone). It
	// moves much less with the machine's other load than TPS does.
	CPUUS float64 `json:"cpu_us_per_txn"`
	// SwitchesPerTxn counts the context switches (voluntary and not) of
	// the same processes per transaction. Each is a thread put to sleep
	// or woken, which on a VM is an interrupt through the hypervisor: the
	// cost that is left on the select path is mostly these, and they vary
	// much less between runs than the CPU time does.
	SwitchesPerTxn float64 `json:"context_switches_per_txn"`
}

type options struct {
	interlock   string
	baseline    string
	dur, scale  int
	rounds      int
	only        string
	tls         []string
	profile     string
	profileWork string
	jsonOut     bool
	journalDir  string
}

func main() {
	if len(os.Args) == 4 && os.Args[1] == relayServeFlag {
		if err := serveRelay(os.Args[2], os.Args[3]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	var o options
	var tls string
	flag.StringVar(&o.interlock, "interlock", "", "path of the interlock binary (required)")
	flag.StringVar(&o.baseline, "baseline", "", "an earlier interlock binary to run beside it, for before/after figures in one run")
	flag.IntVar(&o.dur, "T", 10, "seconds per pgbench run")
	flag.IntVar(&o.scale, "scale", 10, "pgbench scale factor")
	flag.IntVar(&o.rounds, "rounds", 1, "runs of each workload on each leg, interleaved; the tables give medians")
	flag.StringVar(&o.only, "only", "", "comma-separated workload names to run")
	flag.StringVar(&tls, "tls", "off,on", "client TLS on every leg, one run each: off (sslmode=disable), on (sslmode=require)")
	flag.StringVar(&o.profile, "profile", "", "write a CPU profile of interlock during the -profile-workload run to this file")
	flag.StringVar(&o.profileWork, "profile-workload", "S prepared c8", "the workload -profile profiles (its first interlock run)")
	flag.BoolVar(&o.jsonOut, "json", false, "also print machine-readable results")
	flag.StringVar(&o.journalDir, "journal-dir", "", "where interlock's journals go (default: a temp dir on the disk)")
	flag.Parse()
	for _, t := range strings.Split(tls, ",") {
		switch t = strings.TrimSpace(t); t {
		case tlsOff, tlsOn:
			o.tls = append(o.tls, t)
		default:
			fmt.Fprintf(os.Stderr, "bench-pg: -tls: %q is neither off nor on\n", t)
			os.Exit(2)
		}
	}
	if o.rounds < 1 || o.dur < 1 {
		fmt.Fprintln(os.Stderr, "bench-pg: -rounds and -T must be positive")
		os.Exit(2)
	}
	// run returns only after stopping what it started (PostgreSQL runs
	// detached from this process and outlives it otherwise).
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "bench-pg:", err)
		os.Exit(1)
	}
}

// legs of one run: the TLS setting, the workload, the leg, each round.
type results map[string]map[string]map[string][]result

func (r results) add(tls, w, side string, res result) {
	if r[tls] == nil {
		r[tls] = map[string]map[string][]result{}
	}
	if r[tls][w] == nil {
		r[tls][w] = map[string][]result{}
	}
	r[tls][w][side] = append(r[tls][w][side], res)
}

func run(o options) error {
	if o.interlock == "" {
		return errors.New("-interlock is required (make bench-pg passes ./bin/interlock)")
	}
	if os.Geteuid() != 0 {
		return errors.New("run as root: interlock run loads BPF programs")
	}
	il, err := benchutil.Interlock(o.interlock)
	if err != nil {
		return err
	}
	want := map[string]bool{}
	for _, w := range strings.Split(o.only, ",") {
		if w = strings.TrimSpace(w); w != "" {
			if !slices.ContainsFunc(workloads, func(x workload) bool { return x.name == w }) {
				return fmt.Errorf("-only: no workload %q", w)
			}
			want[w] = true
		}
	}
	if o.profile != "" {
		if !slices.ContainsFunc(workloads, func(x workload) bool { return x.name == o.profileWork }) {
			return fmt.Errorf("-profile-workload: no workload %q", o.profileWork)
		}
		if len(want) > 0 && !want[o.profileWork] {
			return fmt.Errorf("-profile-workload %q is not among the -only workloads", o.profileWork)
		}
	}
	bouncer, err := exec.LookPath("pgbouncer")
	if err != nil {
		if _, e2 := os.Stat("/usr/sbin/pgbouncer"); e2 == nil {
			bouncer = "/usr/sbin/pgbouncer"
		} else {
			return errors.New("pgbouncer not found (apt-get install pgbouncer; make bench-pg installs it)")
		}
	}
	srv, err := pgtest.Start(pgtest.Options{Durable: true, Conf: []string{"shared_buffers = 256MB", "max_connections = 300"}})
	if err != nil {
		return fmt.Errorf("start PostgreSQL: %w", err)
	}
	cleanups := []func(){srv.Stop}
	cleanup := func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		cleanup()
		os.Exit(130)
	}()
	defer cleanup()
	pgbench := filepath.Join(srv.BinDir, "pgbench")

	work, err := os.MkdirTemp("", "interlock-bench-pg-")
	if err != nil {
		return err
	}
	os.Chmod(work, 0o755)
	cleanups = append(cleanups, func() { os.RemoveAll(work) })

	fmt.Fprintf(os.Stderr, "initialising pgbench tables (scale %d)...\n", o.scale)
	init := exec.Command(pgbench, "-i", "-q", "-s", strconv.Itoa(o.scale), conninfo(srv.Host, srv.Port, tlsOff))
	init.Env = append(os.Environ(), "PGPASSWORD="+pgtest.AppPassword)
	if out, err := init.CombinedOutput(); err != nil {
		return fmt.Errorf("pgbench -i: %v: %s", err, out)
	}

	var px proxies
	var stopBouncer, stopRelay func()
	if px.bouncerPort, stopBouncer, err = startBouncer(bouncer, srv, work); err != nil {
		return fmt.Errorf("pgbouncer: %w", err)
	}
	cleanups = append(cleanups, stopBouncer)
	if px.relayPort, px.relayPID, stopRelay, err = startRelay(srv.Addr()); err != nil {
		return err
	}
	cleanups = append(cleanups, stopRelay)

	jdir := o.journalDir
	if jdir == "" {
		jdir = filepath.Join(work, "journal")
	}
	os.MkdirAll(jdir, 0o755)
	// One journal per interlock leg, so that each run's entries can be
	// counted and an older baseline binary never meets a newer format.
	legs := map[string]*interlockLeg{
		"interlock": {bin: il, journal: filepath.Join(jdir, "interlock.db")},
		// The effects rule on the target: every transaction that writes
		// is held, its effects read and judged before COMMIT. The rule
		// never fires (nothing is dropped); it only turns the gate on.
		"interlock+effects": {bin: il, journal: filepath.Join(jdir, "interlock-effects.db"), policy: `policy:
  rules:
    - name: no-drops
      match: {targets: [db], effects: {dropped: true}}
      action: deny
`},
	}
	if o.baseline != "" {
		b, err := benchutil.Interlock(o.baseline)
		if err != nil {
			return fmt.Errorf("-baseline: %w", err)
		}
		legs["baseline"] = &interlockLeg{bin: b, journal: filepath.Join(jdir, "baseline.db")}
	}
	for name, l := range legs {
		if l.cfg, err = interlockConfig(work, l.journal, srv, l.policy, strings.ReplaceAll(name, "+", "-")+".yaml"); err != nil {
			return err
		}
	}

	if err := printMachine(o, il, srv, bouncer, jdir); err != nil {
		return err
	}
	res := results{}
	profiled := false
	for _, tls := range o.tls {
		for _, w := range workloads {
			if len(want) > 0 && !want[w.name] {
				continue
			}
			sides := []string{"direct", "pgbouncer", "relay", "interlock"}
			if w.effects {
				sides = append(sides, "interlock+effects")
			}
			if o.baseline != "" {
				sides = append(sides, "baseline")
			}
			for round := 1; round <= o.rounds; round++ {
				for _, side := range sides {
					var prof string
					if o.profile != "" && !profiled && side == "interlock" && w.name == o.profileWork {
						prof, profiled = o.profile, true
					}
					r, err := runLeg(o, pgbench, srv, px, legs[side], tls, w, side, round, work, prof)
					if err != nil {
						return err
					}
					res.add(tls, w.name, side, r)
				}
			}
		}
	}
	sync, err := syncFigures(jdir)
	if err != nil {
		return err
	}
	fmt.Printf("  disk sync    at the end, in the journals' dir: %s\n", sync)
	for _, tls := range o.tls {
		report(o, tls, res[tls])
		if o.baseline != "" {
			reportBaseline(tls, res[tls], o.baseline)
		}
	}
	if o.jsonOut {
		return json.NewEncoder(os.Stdout).Encode(res)
	}
	return nil
}

// interlockLeg is one interlock binary with its config and journal.
type interlockLeg struct {
	bin, cfg, journal, policy string
	// seen is the last journal entry counted.
	seen uint64
}

// proxies is where the legs that are not interlock listen.
type proxies struct {
	bouncerPort, relayPort int
	// relayPID is the go relay's process, for its CPU time.
	relayPID int
}

// runLeg runs pgbench once for workload w on one leg.
func runLeg(o options, pgbench string, srv *pgtest.Server, px proxies, leg *interlockLeg, tls string, w workload, side string, round int, work, profile string) (result, error) {
	what := fmt.Sprintf("%s, TLS %s, via %s (round %d)", w.name, tls, side, round)
	dir := filepath.Join(work, "logs", strings.NewReplacer(" ", "_", "-", "").Replace(w.name), tls, strings.ReplaceAll(side, "+", "_"))
	os.MkdirAll(dir, 0o755)
	defer os.RemoveAll(dir)
	args := append([]string{"-n", "-T", strconv.Itoa(o.dur), "-l", "--log-prefix", filepath.Join(dir, "log")}, w.args...)
	var cmd *exec.Cmd
	switch side {
	case "direct":
		cmd = exec.Command(pgbench, append(args, conninfo(srv.Host, srv.Port, tls))...)
		cmd.Env = append(os.Environ(), "PGPASSWORD="+pgtest.AppPassword)
	case "pgbouncer":
		cmd = exec.Command(pgbench, append(args, conninfo("127.0.0.1", px.bouncerPort, tls))...)
	case "relay":
		// The server sees the client's login (and its TLS) through the
		// relay, so the client needs the password as on the direct leg.
		cmd = exec.Command(pgbench, append(args, conninfo("127.0.0.1", px.relayPort, tls))...)
		cmd.Env = append(os.Environ(), "PGPASSWORD="+pgtest.AppPassword)
	default:
		// The client has no password: interlock logs in with its own.
		cmd = exec.Command(leg.bin, append([]string{"run", "-q", "-c", leg.cfg, "--engine", "embedded", "--", pgbench}, append(args, conninfo(srv.Host, srv.Port, tls))...)...)
	}
	cmd.Dir = dir
	fmt.Fprintf(os.Stderr, "%-16s TLS %-3s %-17s ", w.name, tls, side)
	var prof chan error
	if profile != "" {
		port, err := testkit.PickPort("127.0.0.1")
		if err != nil {
			return result{}, err
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		cmd.Env = append(os.Environ(), "INTERLOCK_PPROF="+addr)
		prof = make(chan error, 1)
		// From 1 s in (interlock's start) to 1 s before the end.
		go func() {
			prof <- benchutil.Profile(context.Background(), addr, 10*time.Second, time.Second, max(o.dur-2, 1), profile)
		}()
	}
	// The proxy's CPU time during the run, when it is a process of its
	// own (interlock's is pgbench's parent's, in the rusage below).
	proxyCPU := func() time.Duration {
		switch side {
		case "pgbouncer":
			return bouncerCPUTime(work)
		case "relay":
			return procCPUTime(px.relayPID)
		}
		return 0
	}
	proxySwitches := func() int64 {
		pid := 0
		switch side {
		case "pgbouncer":
			pid = bouncerPID(work)
		case "relay":
			pid = px.relayPID
		}
		n, _ := benchutil.ContextSwitches(pid)
		return int64(n)
	}
	before, beforeSwitches := proxyCPU(), proxySwitches()
	out, err := cmd.CombinedOutput()
	proxyCPUUsed, proxySwitched := proxyCPU()-before, proxySwitches()-beforeSwitches
	if prof != nil {
		if perr := <-prof; perr != nil {
			return result{}, fmt.Errorf("%s: -profile: %w", what, perr)
		}
		fmt.Fprintf(os.Stderr, "(CPU profile in %s) ", profile)
	}
	if err != nil {
		return result{}, fmt.Errorf("%s: %v\n%s", what, err, out)
	}
	r, err := parse(string(out), dir)
	if err != nil {
		return result{}, fmt.Errorf("%s: %v\n%s", what, err, out)
	}
	if r.Failures > 0 {
		return result{}, fmt.Errorf("%s: %d failed transactions\n%s", what, r.Failures, out)
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok && r.Txns > 0 {
		cpu := time.Duration(ru.Utime.Nano()+ru.Stime.Nano()) + proxyCPUUsed
		r.CPUUS = float64(cpu.Microseconds()) / float64(r.Txns)
		r.SwitchesPerTxn = float64(ru.Nvcsw+ru.Nivcsw+proxySwitched) / float64(r.Txns)
	}
	r.Journaled, r.Sent = -1, -1
	// An earlier build (-baseline) writes its own journal format, which
	// this build may read only after upgrading it: it is not counted.
	if leg != nil && side != "baseline" {
		if r.Journaled, err = leg.statements(); err != nil {
			return result{}, fmt.Errorf("%s: %w", what, err)
		}
		r.Sent = r.Txns * w.stmts
		// pgbench's own queries come on top, once per run.
		if r.Journaled < r.Sent || r.Journaled > r.Sent+setupStatements {
			return result{}, fmt.Errorf("%s: the journal gained %d pg.statement entries for %d transactions of %d statements (%d sent, at most %d more of pgbench's own): not every statement was journaled once",
				what, r.Journaled, r.Txns, w.stmts, r.Sent, setupStatements)
		}
	}
	fmt.Fprintf(os.Stderr, "%9.0f tps  p50 %7.1f µs  p99 %8.1f µs  cpu %5.1f µs/txn  %4.2f cs/txn", r.TPS, r.P50US, r.P99US, r.CPUUS, r.SwitchesPerTxn)
	if r.Journaled >= 0 {
		fmt.Fprintf(os.Stderr, "  journaled %d of %d", r.Journaled, r.Sent)
	}
	fmt.Fprintln(os.Stderr)
	return r, nil
}

// setupStatements is what pgbench (15) sends besides its transactions,
// once per run: the count of pgbench_branches it takes for the scale, and
// whether pgbench_accounts is partitioned.
const setupStatements = 2

// statements counts the pg.statement entries added to the leg's journal
// since the last count.
func (l *interlockLeg) statements() (int, error) {
	n := 0
	err := journal.Entries(context.Background(), l.journal, l.seen+1, func(e journal.Entry) error {
		if e.Kind == model.KindPGStatement {
			n++
		}
		l.seen = e.Seq
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("count the statements in %s: %w", l.journal, err)
	}
	return n, nil
}
