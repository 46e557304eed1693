// Command policybench is `make bench-policy`: what the policy costs.
//
//  1. Evaluation: ns per decision with 100 rules, as the proxy asks for
//     every statement (two rule sets: plain matches only, and a quarter of
//     the rules with a CEL condition).
//  2. Masking: a 100,000-row result with 3 masked columns (two column
//     rules and a card detector), fetched by psql from a real PostgreSQL 15
//     on 127.0.0.2: directly, through interlock without mask rules, and
//     through interlock with them, side by side, with ratios.
//
// It prints figures and the aims next to them; it never fails on a timing.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/policy"
	"github.com/interlock/interlock/test/e2e/pgtest"
)

func main() {
	interlock := flag.String("interlock", "", "path of the interlock binary (required)")
	rows := flag.Int("rows", 100000, "rows in the masked result")
	profile := flag.String("profile", "", "write a CPU profile of interlock fetching the masked result 8 times to this file")
	rounds := flag.Int("rounds", 3, "fetches per side (median reported)")
	evalOnly := flag.Bool("eval-only", false, "only the evaluation figures")
	flag.Parse()
	if os.Geteuid() != 0 && !*evalOnly {
		fail("must run as root: the masking figures use interlock run and a PostgreSQL it starts (try: sudo make bench-policy)")
	}

	fmt.Println("policy evaluation, 100 rules (aim: ≤ 5 µs per statement)")
	for _, cel := range []bool{false, true} {
		p, o, op := ruleset(100, cel)
		res := testing.Benchmark(func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if d := p.Evaluate(o, op); d.Action != model.Allow {
					b.Fatal(d)
				}
			}
		})
		name := "plain matches"
		if cel {
			name = "25 of them with a CEL condition"
		}
		ns := float64(res.T.Nanoseconds()) / float64(res.N)
		verdict := "met"
		if ns > 5000 {
			verdict = "MISSED"
		}
		fmt.Printf("  %-34s %8.0f ns/op  %4d allocs/op  %s\n", name, ns, res.AllocsPerOp(), verdict)
	}
	if *evalOnly {
		return
	}
	if *interlock == "" {
		fail("-interlock is required (make bench-policy passes ./bin/interlock)")
	}
	// maskBench returns only after stopping the PostgreSQL it started,
	// which runs detached and would outlive an os.Exit.
	if err := maskBench(*interlock, *rows, *rounds, *profile); err != nil {
		fail("%v", err)
	}
}

// ruleset builds 100 rules of the kinds a site writes, none of which
// matches the operation decided (the worst case: every rule is tried).
func ruleset(n int, withCEL bool) (*policy.Policy, model.Origin, model.Operation) {
	var b strings.Builder
	b.WriteString("targets:\n  - {name: db, protocol: postgres, address: \"127.0.0.2:5432\", credentials: {user: app}}\npolicy:\n  rules:\n")
	for i := 0; i < n; i++ {
		switch {
		case withCEL && i%4 == 3:
			fmt.Fprintf(&b, "    - {name: r%d, match: {targets: [db]}, when: 'identity.uid == %d && op.tables.exists(t, t.startsWith(\"s%d.\"))', action: deny}\n", i, 10000+i, i)
		case i%3 == 0:
			fmt.Fprintf(&b, "    - {name: r%d, match: {targets: [db], operation: {kinds: [drop_table, truncate], tables: [\"t%d\"]}}, action: deny}\n", i, i)
		case i%3 == 1:
			fmt.Fprintf(&b, "    - {name: r%d, match: {identity: {users: [\"u%d\"], exes: [\"/opt/tool%d/*\"]}, operation: {kinds: [delete, update]}}, action: review, review: {approvers: [alice]}}\n", i, i, i)
		default:
			fmt.Fprintf(&b, "    - {name: r%d, match: {operation: {tables: [\"s%d.*\"]}}, action: mask, mask: {columns: [\"*.email\"]}}\n", i, i)
		}
	}
	cfg, err := config.Parse("bench.yaml", []byte(b.String()))
	if err != nil {
		fail("rules: %v", err)
	}
	p, err := policy.New(cfg)
	if err != nil {
		fail("rules: %v", err)
	}
	o := model.Origin{
		Target:   model.Target{Name: "db", Protocol: model.ProtoPostgres},
		Identity: model.Identity{Kernel: model.KernelFacts{UID: 1000, TGID: 42}, Proc: &model.ProcFacts{Exe: "/usr/bin/psql", User: "ci"}},
	}
	op := model.Operation{Protocol: model.ProtoPostgres, Kind: "select", Kinds: []string{"select"}, Tables: []string{"public.orders"}, ReadOnly: true}
	return p, o, op
}

func maskBench(interlock string, rows, rounds int, profile string) error {
	srv, err := pgtest.Start(pgtest.Options{})
	if err != nil {
		return fmt.Errorf("start PostgreSQL: %w", err)
	}
	defer srv.Stop()
	if out, err := srv.PSQL(pgtest.AppDB,
		"CREATE TABLE customers(id int, email text, card text, name text, created_ms bigint)",
		fmt.Sprintf(`INSERT INTO customers SELECT i, 'user' || i || '@example.com', '4111 1111 1111 1111', 'name ' || i, 1732612345678 + i FROM generate_series(1, %d) i`, rows),
		"GRANT SELECT ON customers TO "+pgtest.AppUser, "ANALYZE customers"); err != nil {
		return fmt.Errorf("load rows: %v %s", err, out)
	}
	dir, err := os.MkdirTemp("", "policybench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	pw := filepath.Join(dir, "pw")
	os.WriteFile(pw, []byte(pgtest.AppPassword), 0o600)
	write := func(name, rules string) (string, error) {
		p := filepath.Join(dir, name)
		y := fmt.Sprintf(`state_dir: %[1]s/state
journal:
  path: %[1]s/%[2]s.db
control:
  socket: %[1]s/%[2]s-run/ctl.sock
bpf:
  pin_path: /sys/fs/bpf/policybench-%[2]s
targets:
  - name: db
    protocol: postgres
    address: "%[3]s"
    credentials: {user: %[4]s, password_file: %[5]s}
%[6]s`, dir, name, srv.Addr(), pgtest.AppUser, pw, rules)
		return p, os.WriteFile(p, []byte(y), 0o644)
	}
	plain, err := write("plain", "")
	if err != nil {
		return err
	}
	masked, err := write("masked", `policy:
  rules:
    - name: pii
      match: {targets: [db]}
      action: mask
      mask: {columns: [customers.email, customers.name], detectors: [card]}
`)
	if err != nil {
		return err
	}
	psql := filepath.Join(srv.BinDir, "psql")
	conn := fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable", srv.Host, srv.Port, pgtest.AppUser, pgtest.AppDB)
	query := "SELECT * FROM customers"
	fetch := func(prefix ...string) (time.Duration, error) {
		argv := append(prefix, psql, "-X", "-A", "-t", "-o", "/dev/null", "-c", query, conn)
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Env = append(os.Environ(), "PGPASSWORD="+pgtest.AppPassword)
		start := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			return 0, fmt.Errorf("%v: %v\n%s", argv, err, out)
		}
		return time.Since(start), nil
	}
	// Check once that masking really happens before timing it.
	check := exec.Command(interlock, "run", "-q", "--engine", "embedded", "-c", masked, "--", psql, "-X", "-A", "-t", "-c", query+" LIMIT 1", conn)
	out, err := check.CombinedOutput()
	if err != nil || strings.Contains(string(out), "@example.com") || !strings.Contains(string(out), "****-****-****-1111") {
		return fmt.Errorf("the masked side does not mask: %v %s", err, out)
	}
	sides := []struct {
		name   string
		prefix []string
	}{
		{"direct", nil},
		{"interlock", []string{interlock, "run", "-q", "--engine", "embedded", "-c", plain, "--"}},
		{"interlock+mask", []string{interlock, "run", "-q", "--engine", "embedded", "-c", masked, "--"}},
	}
	times := map[string][]time.Duration{}
	for r := 0; r < rounds; r++ {
		for _, s := range sides {
			d, err := fetch(s.prefix...)
			if err != nil {
				return err
			}
			times[s.name] = append(times[s.name], d)
		}
	}
	if profile != "" {
		// Eight fetches in one run, profiled through INTERLOCK_PPROF.
		loop := fmt.Sprintf("for i in 1 2 3 4 5 6 7 8; do %s -X -A -t -o /dev/null -c %q %q; done", psql, query, conn)
		cmd := exec.Command(interlock, "run", "-q", "--engine", "embedded", "-c", masked, "--", "sh", "-c", loop)
		cmd.Env = append(os.Environ(), "INTERLOCK_PPROF=127.0.0.1:6061", "PGPASSWORD="+pgtest.AppPassword)
		if err := cmd.Start(); err != nil {
			return err
		}
		time.Sleep(300 * time.Millisecond)
		prof := exec.Command("curl", "-s", "-o", profile, "http://127.0.0.1:6061/debug/pprof/profile?seconds=2")
		out, err := prof.CombinedOutput()
		cmd.Wait()
		if err != nil {
			return fmt.Errorf("profile: %v %s", err, out)
		}
		fmt.Println("profile written to", profile)
	}
	med := func(ds []time.Duration) time.Duration {
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		return ds[len(ds)/2]
	}
	fmt.Printf("\nmasking a %d-row result, 3 masked columns (psql fetching %q; median of %d)\n", rows, query, rounds)
	d, i, m := med(times["direct"]), med(times["interlock"]), med(times["interlock+mask"])
	rps := func(t time.Duration) float64 { return float64(rows) / t.Seconds() }
	fmt.Printf("  %-16s %8.0f ms  %10.0f rows/s\n", "direct", ms(d), rps(d))
	fmt.Printf("  %-16s %8.0f ms  %10.0f rows/s  %.2f× direct\n", "interlock", ms(i), rps(i), d.Seconds()/i.Seconds())
	verdict := "met"
	ratio := i.Seconds() / m.Seconds()
	if ratio < 0.7 {
		verdict = "MISSED"
	}
	fmt.Printf("  %-16s %8.0f ms  %10.0f rows/s  %.2f× direct, %.2f× unmasked (aim ≥ 0.7×: %s)\n", "interlock+mask", ms(m), rps(m), d.Seconds()/m.Seconds(), ratio, verdict)
	return nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "policybench: "+format+"\n", args...)
	os.Exit(1)
}
