package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/interlock/interlock/test/bench/benchutil"
	"github.com/interlock/interlock/test/e2e/pgtest"
)

// parse reads pgbench's summary (TPS, transactions, failures) and its
// per-transaction log in dir (latencies).
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

// printMachine prints what the figures come from: the machine, the
// programs, and the sync latency of the journals' disk, measured now (and
// again at the end: syncFigures).
func printMachine(o options, il string, srv *pgtest.Server, bouncer, jdir string) error {
	version := func(name string, args ...string) string {
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			return "unknown"
		}
		return strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
	}
	iv, err := benchutil.InterlockVersion(il)
	if err != nil {
		return err
	}
	sync, err := syncFigures(jdir)
	if err != nil {
		return err
	}
	fmt.Println("PostgreSQL through interlock, PgBouncer, a go relay and direct (bench-pg)")
	fmt.Printf("  date         %s\n", time.Now().Format("2006-01-02 15:04 MST"))
	fmt.Printf("  machine      %s, %d CPUs (%s), %s\n", benchutil.Kernel(), runtime.NumCPU(), benchutil.CPUModel(), runtime.Version())
	fmt.Printf("  interlock    %s (embedded engine)\n", iv)
	if o.baseline != "" {
		bv, err := benchutil.InterlockVersion(o.baseline)
		if err != nil {
			return err
		}
		fmt.Printf("  baseline     %s (%s)\n", bv, o.baseline)
	}
	fmt.Printf("  server       %s, fsync on; %s; %s\n", version(filepath.Join(srv.BinDir, "postgres"), "--version"),
		version(filepath.Join(srv.BinDir, "pgbench"), "--version"), version(bouncer, "--version"))
	fmt.Printf("  journal      %s, sync: normal, sync_interval: 10ms\n", jdir)
	fmt.Printf("  disk sync    at the start, in the journals' dir: %s\n", sync)
	fmt.Printf("  runs         %d s each, %d round(s), client TLS %s\n", o.dur, o.rounds, strings.Join(o.tls, " then "))
	return nil
}

// syncFigures times 100 fdatasync and 100 fsync calls, each after a 4 KiB
// append, in dir: the floor under a synced journal record there.
func syncFigures(dir string) (string, error) {
	var parts []string
	for _, s := range []struct {
		name string
		fn   func(int) error
	}{{"fdatasync", unix.Fdatasync}, {"fsync", unix.Fsync}} {
		lat, err := benchutil.SyncLatencies(dir, 100, s.fn)
		if err != nil {
			return "", fmt.Errorf("measure %s latency: %w", s.name, err)
		}
		parts = append(parts, fmt.Sprintf("%s p50 %.0f µs, p99 %.0f µs", s.name,
			float64(lat[len(lat)/2].Microseconds()), float64(lat[len(lat)*99/100].Microseconds())))
	}
	return strings.Join(parts, "; "), nil
}

// med is the median over rounds of one figure of a leg's results.
func med(rs []result, f func(result) float64) float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	return benchutil.Median(v)
}

func tps(r result) float64      { return r.TPS }
func p50(r result) float64      { return r.P50US }
func p99(r result) float64      { return r.P99US }
func cpu(r result) float64      { return r.CPUUS }
func switches(r result) float64 { return r.SwitchesPerTxn }

// journaled sums a leg's journal check over its rounds.
func journaled(rs []result) (got, sent int) {
	for _, r := range rs {
		got += r.Journaled
		sent += r.Sent
	}
	return got, sent
}

// shareTable prints figure f per workload for each leg, each proxy's share
// (its leg less pgbench alone, the direct leg) and interlock's share
// against the others'.
func shareTable(res map[string]map[string][]result, f func(result) float64, num, title string) {
	fmt.Printf("\n%s:\n\n", title)
	fmt.Println("| workload | pgbench alone | PgBouncer leg | relay leg | interlock leg | PgBouncer's share | relay's share | interlock's share | interlock / PgBouncer | interlock / relay |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	row := strings.Repeat(" "+num+" |", 7)
	for _, w := range workloads {
		r, ok := res[w.name]
		if !ok {
			continue
		}
		d, b, g, i := med(r["direct"], f), med(r["pgbouncer"], f), med(r["relay"], f), med(r["interlock"], f)
		fmt.Printf("| %s |"+row+" %.2f× | %.2f× |\n",
			w.name, d, b, g, i, b-d, g-d, i-d, (i-d)/max(b-d, 0.01), (i-d)/max(g-d, 0.01))
	}
}

func report(o options, tls string, res map[string]map[string][]result) {
	fmt.Printf("\nClient TLS %s on every leg (sslmode=%s): interlock (every statement journaled, journal in %s), PgBouncer (session mode), %s and direct; medians of %d round(s) of %d s\n\n",
		strings.ToUpper(tls), sslmode(tls), journalDirOf(o), relayWhat(tls), o.rounds, o.dur)
	fmt.Println("| workload | direct TPS | PgBouncer TPS | relay TPS | interlock TPS | relay/PgBouncer | interlock/PgBouncer | interlock/relay | interlock/direct | p50 µs d / b / r / i | p99 µs d / b / r / i | added p50 (i−d) µs | pg.statement journaled / sent |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, w := range workloads {
		r, ok := res[w.name]
		if !ok {
			continue
		}
		d, b, g, i := r["direct"], r["pgbouncer"], r["relay"], r["interlock"]
		got, sent := journaled(i)
		fmt.Printf("| %s | %.0f | %.0f | %.0f | %.0f | %.2f× | %.2f× | %.2f× | %.2f× | %.0f / %.0f / %.0f / %.0f | %.0f / %.0f / %.0f / %.0f | %.0f | %d / %d |\n",
			w.name, med(d, tps), med(b, tps), med(g, tps), med(i, tps),
			med(g, tps)/med(b, tps), med(i, tps)/med(b, tps), med(i, tps)/med(g, tps), med(i, tps)/med(d, tps),
			med(d, p50), med(b, p50), med(g, p50), med(i, p50), med(d, p99), med(b, p99), med(g, p99), med(i, p99),
			med(i, p50)-med(d, p50), got, sent)
	}
	shareTable(res, cpu, "%.1f", "CPU per transaction, same runs (user+system µs; pgbench's own CPU is the direct leg's, the proxy's is a leg's less that)")
	shareTable(res, switches, "%.2f", "Context switches per transaction, same runs (voluntary and not, every thread; pgbench's own are the direct leg's, the proxy's a leg's less those)")
	effects := false
	for _, w := range workloads {
		if _, ok := res[w.name]; ok && w.effects {
			effects = true
		}
	}
	if effects {
		fmt.Println("\nThe effects gate (write transactions held and their effects read before COMMIT), same run:")
		fmt.Println()
		fmt.Println("| workload | direct TPS | interlock TPS (gate off) | interlock TPS (gate on) | on/off | p50 µs direct / off / on | added p50 by the gate µs | added p50 vs direct µs |")
		fmt.Println("|---|---:|---:|---:|---:|---:|---:|---:|")
		for _, w := range workloads {
			r, ok := res[w.name]
			if !ok || !w.effects {
				continue
			}
			d, off, on := r["direct"], r["interlock"], r["interlock+effects"]
			fmt.Printf("| %s | %.0f | %.0f | %.0f | %.2f× | %.0f / %.0f / %.0f | %.0f | %.0f |\n",
				w.name, med(d, tps), med(off, tps), med(on, tps), med(on, tps)/med(off, tps),
				med(d, p50), med(off, p50), med(on, p50), med(on, p50)-med(off, p50), med(on, p50)-med(d, p50))
		}
	}
	fmt.Printf("\nAims of issue 15, client TLS %s:\n", tls)
	for _, w := range workloads {
		r, ok := res[w.name]
		if !ok {
			continue
		}
		d, b, i := r["direct"], r["pgbouncer"], r["interlock"]
		got, sent := journaled(i)
		switch {
		case w.selectOnly:
			fmt.Printf("- %s: TPS interlock/PgBouncer %.2f× (aim ≥ 1: %s); every statement journaled (%d of %d sent: %s)",
				w.name, med(i, tps)/med(b, tps), met(med(i, tps) >= med(b, tps)), got, sent, met(got >= sent))
			if w.clients == 1 {
				added := med(i, p50) - med(d, p50)
				fmt.Printf("; added p50 %.0f µs (aim ≤ 50: %s)", added, met(added <= 50))
			}
			fmt.Println()
		case w.tpcb:
			fmt.Printf("- %s: TPS interlock/PgBouncer %.2f× (aim ≥ 0.8: %s); every statement journaled (%d of %d sent: %s)\n",
				w.name, med(i, tps)/med(b, tps), met(med(i, tps) >= 0.8*med(b, tps)), got, sent, met(got >= sent))
		case strings.Contains(w.name, "-C"):
			fmt.Printf("- %s: connection churn interlock/direct %.2f× (aim of issue 4 ≥ 0.5: %s)\n", w.name, med(i, tps)/med(d, tps), met(med(i, tps) >= 0.5*med(d, tps)))
		default:
			continue
		}
		g, dc := r["relay"], med(d, cpu)
		if strings.Contains(w.name, "-C") {
			// PgBouncer keeps its server connections and the relay
			// cannot, nor can the login's CPU be told apart from the
			// proxy's: only the TPS against direct says anything.
			fmt.Printf("  - go relay floor: %.2f× direct TPS (a new server connection per client one, like interlock; PgBouncer reuses its own)\n", med(g, tps)/med(d, tps))
			continue
		}
		fmt.Printf("  - go relay floor: %.2f× PgBouncer TPS, share %.0f µs/txn (PgBouncer's %.0f, interlock's %.0f)\n",
			med(g, tps)/med(b, tps), med(g, cpu)-dc, med(b, cpu)-dc, med(i, cpu)-dc)
	}
}

// relayWhat is the go relay leg in a table's header: with client TLS on it
// cannot terminate TLS, so it passes the client's through and PostgreSQL
// does the crypto that PgBouncer and interlock do in their own share.
func relayWhat(tls string) string {
	if tls == tlsOn {
		return "a go relay (plain Read/Write with raw system calls, no parsing, no journal; it passes the client's TLS through to PostgreSQL, which terminates it, so its share has no TLS in it)"
	}
	return "a go relay (plain Read/Write with raw system calls, no parsing, no journal: the floor of a Go proxy)"
}

func journalDirOf(o options) string {
	if o.journalDir != "" {
		return o.journalDir
	}
	return "a temp dir on the disk"
}

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "missed"
}

// reportBaseline compares this interlock with an earlier binary, run in
// the same run on the same server.
func reportBaseline(tls string, res map[string]map[string][]result, baseline string) {
	fmt.Printf("\nThis interlock against %s (same run, client TLS %s):\n\n", baseline, tls)
	fmt.Println("| workload | direct TPS | before TPS | after TPS | after/before | p50 µs before / after | CPU µs/txn before / after (pgbench alone) | context switches/txn before / after (pgbench alone) |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|---:|")
	for _, w := range workloads {
		r, ok := res[w.name]
		if !ok {
			continue
		}
		d, b, i := r["direct"], r["baseline"], r["interlock"]
		fmt.Printf("| %s | %.0f | %.0f | %.0f | %.2f× | %.0f / %.0f | %.1f / %.1f (%.1f) | %.2f / %.2f (%.2f) |\n", w.name, med(d, tps), med(b, tps), med(i, tps), med(i, tps)/med(b, tps),
			med(b, p50), med(i, p50), med(b, cpu), med(i, cpu), med(d, cpu), med(b, switches), med(i, switches), med(d, switches))
	}
}
