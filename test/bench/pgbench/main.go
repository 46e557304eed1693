// Command pgbench is `make bench-pg`: PostgreSQL through interlock against
// the same server directly and through PgBouncer (session mode), side by
// side in one run, with pgbench as the client.
//
// It starts a PostgreSQL 15 on 127.0.0.2 (fsync on), initialises pgbench's
// tables, starts PgBouncer (run as the postgres user; clients log in with
// trust, PgBouncer logs in to the server with scram-sha-256), and runs
// every workload against the three in turn. Interlock runs as
// `interlock run --engine embedded -- pgbench ...` with full statement
// journaling (sync: normal). TPS comes from pgbench, latency percentiles
// from its per-transaction log.
package main

import (
	"bufio"
	"encoding/json"
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
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/interlock/interlock/internal/testkit"
	"github.com/interlock/interlock/test/bench/benchutil"
	"github.com/interlock/interlock/test/e2e/pgtest"
)

type workload struct {
	name string
	args []string
	// selectOnly workloads are the ones the TPS aim is about.
	selectOnly bool
	// effects workloads also run through interlock with an effects rule,
	// so that every write transaction goes through the gate.
	effects bool
}

type result struct {
	TPS      float64 `json:"tps"`
	P50US    float64 `json:"p50_us"`
	P99US    float64 `json:"p99_us"`
	Txns     int     `json:"txns"`
	Failures int     `json:"failures"`
}

type options struct {
	interlock  string
	baseline   string
	dur, scale int
	only       string
	profile    string
	jsonOut    bool
	journalDir string
}

func main() {
	var o options
	flag.StringVar(&o.interlock, "interlock", "", "path of the interlock binary (required)")
	flag.StringVar(&o.baseline, "baseline", "", "an earlier interlock binary to run beside it, for before/after figures in one run")
	flag.IntVar(&o.dur, "T", 10, "seconds per pgbench run")
	flag.IntVar(&o.scale, "scale", 10, "pgbench scale factor")
	flag.StringVar(&o.only, "only", "", "comma-separated workload names to run")
	flag.StringVar(&o.profile, "profile", "", "write a CPU profile of interlock during the 'S prepared c8' workload to this file")
	flag.BoolVar(&o.jsonOut, "json", false, "also print machine-readable results")
	flag.StringVar(&o.journalDir, "journal-dir", "", "where interlock's journal goes (default: a temp dir on the disk)")
	flag.Parse()
	// run returns only after stopping what it started (PostgreSQL runs
	// detached from this process and outlives it otherwise).
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "bench-pg:", err)
		os.Exit(1)
	}
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

	direct := fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable", srv.Host, srv.Port, pgtest.AppUser, pgtest.AppDB)
	fmt.Fprintf(os.Stderr, "initialising pgbench tables (scale %d)...\n", o.scale)
	init := exec.Command(pgbench, "-i", "-q", "-s", strconv.Itoa(o.scale), direct)
	init.Env = append(os.Environ(), "PGPASSWORD="+pgtest.AppPassword)
	if out, err := init.CombinedOutput(); err != nil {
		return fmt.Errorf("pgbench -i: %v: %s", err, out)
	}

	bport, stopBouncer, err := startBouncer(bouncer, srv, work)
	if err != nil {
		return fmt.Errorf("pgbouncer: %w", err)
	}
	cleanups = append(cleanups, stopBouncer)
	viaBouncer := fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=%s sslmode=disable", bport, pgtest.AppUser, pgtest.AppDB)

	jdir := o.journalDir
	if jdir == "" {
		jdir = filepath.Join(work, "journal")
	}
	os.MkdirAll(jdir, 0o755)
	cfgPath, err := interlockConfig(work, jdir, srv, "", "interlock.yaml")
	if err != nil {
		return err
	}
	// The same with an effects rule on the target: every transaction
	// that writes is held, its effects read and judged before COMMIT. The
	// rule never fires (nothing is dropped); it only turns the gate on.
	fxPath, err := interlockConfig(work, jdir, srv, `policy:
  rules:
    - name: no-drops
      match: {targets: [db], effects: {dropped: true}}
      action: deny
`, "interlock-effects.yaml")
	if err != nil {
		return err
	}

	workloads := []workload{
		{"S simple c1", []string{"-S", "-M", "simple", "-c", "1"}, true, false},
		{"S extended c1", []string{"-S", "-M", "extended", "-c", "1"}, true, false},
		{"S prepared c1", []string{"-S", "-M", "prepared", "-c", "1"}, true, false},
		{"S simple c8", []string{"-S", "-M", "simple", "-c", "8", "-j", "2"}, true, false},
		{"S extended c8", []string{"-S", "-M", "extended", "-c", "8", "-j", "2"}, true, false},
		{"S prepared c8", []string{"-S", "-M", "prepared", "-c", "8", "-j", "2"}, true, false},
		{"TPC-B c1", []string{"-c", "1"}, false, true},
		{"TPC-B c8", []string{"-c", "8", "-j", "2"}, false, true},
		{"S -C c8", []string{"-S", "-C", "-c", "8", "-j", "2"}, false, false},
	}
	want := map[string]bool{}
	for _, w := range strings.Split(o.only, ",") {
		if w = strings.TrimSpace(w); w != "" {
			want[w] = true
		}
	}
	sides := []string{"direct", "pgbouncer", "interlock"}
	results := map[string]map[string]result{}
	for _, w := range workloads {
		if len(want) > 0 && !want[w.name] {
			continue
		}
		results[w.name] = map[string]result{}
		ws := sides
		if w.effects {
			ws = append(append([]string(nil), ws...), "interlock+effects")
		}
		if o.baseline != "" {
			ws = append(append([]string(nil), ws...), "baseline")
		}
		for _, side := range ws {
			dir := filepath.Join(work, "logs", strings.NewReplacer(" ", "_", "-", "").Replace(w.name), strings.ReplaceAll(side, "+", "_"))
			os.MkdirAll(dir, 0o755)
			args := append([]string{"-n", "-T", strconv.Itoa(o.dur), "-l", "--log-prefix", filepath.Join(dir, "log")}, w.args...)
			var cmd *exec.Cmd
			switch side {
			case "direct":
				cmd = exec.Command(pgbench, append(args, direct)...)
				cmd.Env = append(os.Environ(), "PGPASSWORD="+pgtest.AppPassword)
			case "pgbouncer":
				cmd = exec.Command(pgbench, append(args, viaBouncer)...)
			case "interlock", "interlock+effects", "baseline":
				cfg, bin := cfgPath, il
				switch side {
				case "interlock+effects":
					cfg = fxPath
				case "baseline":
					bin = o.baseline
				}
				cmd = exec.Command(bin, append([]string{"run", "-q", "-c", cfg, "--engine", "embedded", "--", pgbench}, append(args, direct)...)...)
				if o.profile != "" && w.name == "S prepared c8" {
					cmd.Env = append(os.Environ(), "INTERLOCK_PPROF=127.0.0.1:6060")
				}
			}
			cmd.Dir = dir
			fmt.Fprintf(os.Stderr, "%-14s %-17s ", w.name, side)
			var prof chan error
			if side == "interlock" && o.profile != "" && w.name == "S prepared c8" {
				prof = make(chan error, 1)
				go func() { prof <- fetchProfile(o.profile, o.dur) }()
			}
			out, err := cmd.CombinedOutput()
			if prof != nil {
				if perr := <-prof; perr != nil {
					fmt.Fprintf(os.Stderr, "(profile: %v) ", perr)
				}
			}
			if err != nil {
				return fmt.Errorf("%s via %s: %v\n%s", w.name, side, err, out)
			}
			r, err := parse(string(out), dir)
			if err != nil {
				return fmt.Errorf("%s via %s: %v\n%s", w.name, side, err, out)
			}
			if r.Failures > 0 {
				return fmt.Errorf("%s via %s: %d failed transactions\n%s", w.name, side, r.Failures, out)
			}
			fmt.Fprintf(os.Stderr, "%9.0f tps  p50 %7.1f µs  p99 %8.1f µs\n", r.TPS, r.P50US, r.P99US)
			results[w.name][side] = r
			os.RemoveAll(dir)
		}
	}
	report(workloads, results, jdir)
	if o.baseline != "" {
		reportBaseline(workloads, results, o.baseline)
	}
	if o.jsonOut {
		return json.NewEncoder(os.Stdout).Encode(results)
	}
	return nil
}

// fetchProfile takes a CPU profile of the interlock run in the middle of
// the workload.
func fetchProfile(path string, dur int) error {
	time.Sleep(time.Second)
	secs := max(dur-3, 1)
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:6060/debug/pprof/profile?seconds=%d", secs))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(f, resp.Body)
	return err
}

func parse(out, dir string) (result, error) {
	var r result
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(l, "tps = "):
			f := strings.Fields(l)
			r.TPS, _ = strconv.ParseFloat(f[2], 64)
		case strings.HasPrefix(l, "number of transactions actually processed:"):
			f := strings.Fields(strings.TrimPrefix(l, "number of transactions actually processed:"))
			r.Txns, _ = strconv.Atoi(f[0])
		case strings.HasPrefix(l, "number of failed transactions:"):
			f := strings.Fields(strings.TrimPrefix(l, "number of failed transactions:"))
			r.Failures, _ = strconv.Atoi(f[0])
		}
	}
	if r.TPS == 0 {
		return r, fmt.Errorf("no tps in pgbench's output")
	}
	files, _ := filepath.Glob(filepath.Join(dir, "log*"))
	var lat []float64
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			if len(fs) >= 3 {
				if v, err := strconv.ParseFloat(fs[2], 64); err == nil {
					lat = append(lat, v)
				}
			}
		}
		fh.Close()
	}
	if len(lat) == 0 {
		return r, fmt.Errorf("no per-transaction log")
	}
	sort.Float64s(lat)
	r.P50US = lat[len(lat)/2]
	r.P99US = lat[len(lat)*99/100]
	return r, nil
}

func interlockConfig(work, jdir string, srv *pgtest.Server, policy, name string) (string, error) {
	pw := filepath.Join(work, "app.password")
	if err := os.WriteFile(pw, []byte(pgtest.AppPassword+"\n"), 0o600); err != nil {
		return "", err
	}
	cfg := benchutil.ConfigHead(work, filepath.Join(jdir, "journal.db"), "/sys/fs/bpf/interlock-bench-pg") + fmt.Sprintf(`targets:
  - name: db
    protocol: postgres
    address: "%s"
    credentials:
      user: %s
      password_file: %s
    tls: disable
`, srv.Addr(), pgtest.AppUser, pw) + policy
	p := filepath.Join(work, name)
	return p, os.WriteFile(p, []byte(cfg), 0o600)
}

// startBouncer runs PgBouncer in session mode as the postgres user.
func startBouncer(bin string, srv *pgtest.Server, work string) (int, func(), error) {
	dir := filepath.Join(work, "pgbouncer")
	os.MkdirAll(dir, 0o755)
	port, err := testkit.PickPort("127.0.0.1")
	if err != nil {
		return 0, nil, err
	}
	ini := fmt.Sprintf(`[databases]
%s = host=%s port=%d dbname=%s
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = trust
auth_file = %s/userlist.txt
pool_mode = session
max_client_conn = 200
default_pool_size = 50
logfile = %s/pgbouncer.log
pidfile = %s/pgbouncer.pid
log_connections = 0
log_disconnections = 0
`, pgtest.AppDB, srv.Host, srv.Port, pgtest.AppDB, port, dir, dir, dir)
	files := map[string]string{
		"pgbouncer.ini": ini,
		"userlist.txt":  fmt.Sprintf("%q %q\n", pgtest.AppUser, pgtest.AppPassword),
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			return 0, nil, err
		}
	}
	exec.Command("chown", "-R", "postgres:postgres", dir).Run()
	cmd := exec.Command("runuser", "-u", "postgres", "--", bin, filepath.Join(dir, "pgbouncer.ini"))
	if err := cmd.Start(); err != nil {
		return 0, nil, err
	}
	stop := func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
		}
	}
	for i := 0; i < 100; i++ {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
			return port, stop, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	b, _ := os.ReadFile(filepath.Join(dir, "pgbouncer.log"))
	return 0, nil, fmt.Errorf("did not start listening: %s", b)
}

func report(workloads []workload, results map[string]map[string]result, jdir string) {
	fmt.Printf("\nPostgreSQL through interlock (full statement journaling, journal in %s), PgBouncer (session mode) and direct, side by side\n\n", jdir)
	fmt.Println("| workload | direct TPS | PgBouncer TPS | interlock TPS | interlock/direct | interlock/PgBouncer | p50 µs d / b / i | p99 µs d / b / i | added p50 (i−d) µs |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, w := range workloads {
		r, ok := results[w.name]
		if !ok {
			continue
		}
		d, b, i := r["direct"], r["pgbouncer"], r["interlock"]
		fmt.Printf("| %s | %.0f | %.0f | %.0f | %.2f× | %.2f× | %.0f / %.0f / %.0f | %.0f / %.0f / %.0f | %.0f |\n",
			w.name, d.TPS, b.TPS, i.TPS, i.TPS/d.TPS, i.TPS/b.TPS, d.P50US, b.P50US, i.P50US, d.P99US, b.P99US, i.P99US, i.P50US-d.P50US)
	}
	fmt.Println("\nThe effects gate (write transactions held and their effects read before COMMIT), same run:")
	fmt.Println()
	fmt.Println("| workload | direct TPS | interlock TPS (gate off) | interlock TPS (gate on) | on/off | p50 µs direct / off / on | added p50 by the gate µs | added p50 vs direct µs |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|---:|")
	for _, w := range workloads {
		r, ok := results[w.name]
		if !ok || !w.effects {
			continue
		}
		d, off, on := r["direct"], r["interlock"], r["interlock+effects"]
		fmt.Printf("| %s | %.0f | %.0f | %.0f | %.2f× | %.0f / %.0f / %.0f | %.0f | %.0f |\n",
			w.name, d.TPS, off.TPS, on.TPS, on.TPS/off.TPS, d.P50US, off.P50US, on.P50US, on.P50US-off.P50US, on.P50US-d.P50US)
	}
	fmt.Println("\nAims:")
	for _, w := range workloads {
		r, ok := results[w.name]
		if !ok {
			continue
		}
		d, b, i := r["direct"], r["pgbouncer"], r["interlock"]
		switch {
		case w.selectOnly:
			fmt.Printf("- %s: TPS interlock/PgBouncer %.2f× (aim ≥ 1: %s); added p50 %.0f µs (aim ≤ 200: %s)\n",
				w.name, i.TPS/b.TPS, met(i.TPS >= b.TPS), i.P50US-d.P50US, met(i.P50US-d.P50US <= 200))
		case strings.Contains(w.name, "-C"):
			fmt.Printf("- %s: connection churn interlock/direct %.2f× (aim ≥ 0.5: %s)\n", w.name, i.TPS/d.TPS, met(i.TPS >= 0.5*d.TPS))
		}
	}
}

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "missed"
}

// reportBaseline compares this interlock with an earlier binary, run in
// the same run on the same server.
func reportBaseline(workloads []workload, results map[string]map[string]result, baseline string) {
	fmt.Printf("\nThis interlock against %s (same run):\n\n", baseline)
	fmt.Println("| workload | direct TPS | before TPS | after TPS | after/before | p50 µs before / after |")
	fmt.Println("|---|---:|---:|---:|---:|---:|")
	for _, w := range workloads {
		r, ok := results[w.name]
		if !ok {
			continue
		}
		d, b, i := r["direct"], r["baseline"], r["interlock"]
		fmt.Printf("| %s | %.0f | %.0f | %.0f | %.2f× | %.0f / %.0f |\n", w.name, d.TPS, b.TPS, i.TPS, i.TPS/b.TPS, b.P50US, i.P50US)
	}
}
