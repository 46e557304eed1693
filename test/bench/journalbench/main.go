// Command journalbench measures the journal (issues 3 and 15): durable
// Append throughput and latency at 1, 16 and 64 concurrent writers, batched
// (Post) throughput, verify speed and export time on a journal of a million
// entries, each next to the fsync latency of the same disk measured in the
// same run, and the CPU time each took (which other work on a shared
// machine disturbs less than the rates). It prints figures and the aims
// beside them; it never passes or fails on a timing. `make bench-journal`
// runs it.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/interlock/interlock/journal"
	"github.com/interlock/interlock/journal/export"
	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/test/bench/benchutil"
)

type options struct {
	dir      string
	entries  int
	duration time.Duration
	jsonOut  bool
	keep     bool
	// bundle, rounds and cpuProfile: verify an existing bundle only.
	bundle     string
	journal    string
	exportFrom string
	rounds     int
	cpuProfile string
}

func main() {
	var o options
	flag.StringVar(&o.dir, "dir", "", "directory for the journals (default: a temp dir on the disk of the working directory)")
	flag.IntVar(&o.entries, "entries", 1_000_000, "entries in the journal that verify and export read")
	flag.DurationVar(&o.duration, "duration", 3*time.Second, "how long each Append measurement runs")
	flag.BoolVar(&o.jsonOut, "json", false, "also print machine-readable results")
	flag.BoolVar(&o.keep, "keep", false, "keep the journals")
	flag.StringVar(&o.bundle, "bundle", "", "only verify this bundle (one a -keep run left), -rounds times")
	flag.StringVar(&o.journal, "journal", "", "only verify this journal (one a -keep run left) with journal.Verify, -rounds times")
	flag.StringVar(&o.exportFrom, "export", "", "with -bundle: first export this journal (one a -keep run left, beside its journal.key) to that bundle")
	flag.IntVar(&o.rounds, "rounds", 5, "with -bundle: how many times to verify it")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "with -bundle: write a CPU profile of the rounds to this file")
	quick := flag.Bool("quick", false, "smoke-run sizes")
	flag.Parse()
	if *quick {
		o.entries, o.duration = 20_000, 500*time.Millisecond
	}
	run := run
	switch {
	case o.bundle != "":
		run = verifyBundleRounds
	case o.journal != "":
		run = verifyJournalRounds
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "journalbench:", err)
		os.Exit(1)
	}
}

// result is one printed figure.
type result struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
	Aim   string  `json:"aim,omitempty"`
	Note  string  `json:"note,omitempty"`
}

func run(o options) error {
	base := o.dir
	if base == "" {
		wd, err := os.Getwd()
		if err != nil {
			return err
		}
		base = wd
	}
	dir, err := os.MkdirTemp(base, ".journalbench-")
	if err != nil {
		return err
	}
	if !o.keep {
		defer os.RemoveAll(dir)
	}
	var results []result
	add := func(r result) {
		results = append(results, r)
		fmt.Printf("%-52s %14.1f %-10s %s %s\n", r.Name, r.Value, r.Unit, r.Aim, r.Note)
	}
	fmt.Printf("journalbench: %d CPUs, %s, journals in %s\n\n", runtime.NumCPU(), runtime.Version(), dir)

	fs, err := fsyncLatency(dir)
	if err != nil {
		return err
	}
	add(result{Name: "fdatasync after a 4 KiB append, p50", Value: us(fs.p50), Unit: "µs"})
	add(result{Name: "fdatasync after a 4 KiB append, p99", Value: us(fs.p99), Unit: "µs"})

	for _, writers := range []int{1, 16, 64} {
		a, err := durableAppends(filepath.Join(dir, fmt.Sprintf("append-%d.db", writers)), writers, o.duration)
		if err != nil {
			return err
		}
		aim := ""
		if writers == 16 {
			aim = "aim ≥ 100,000/s"
		}
		add(result{Name: fmt.Sprintf("durable Append, %d writers: throughput", writers), Value: a.rate, Unit: "events/s", Aim: aim,
			Note: fmt.Sprintf("(%.1f records per fsync)", a.perFsync)})
		add(result{Name: fmt.Sprintf("durable Append, %d writers: CPU per append", writers), Value: us(a.cpu), Unit: "µs"})
		aim = ""
		if writers == 16 {
			aim = "aim p99 ≤ 2 ms"
		}
		add(result{Name: fmt.Sprintf("durable Append, %d writers: p50 latency", writers), Value: us(a.p50), Unit: "µs"})
		add(result{Name: fmt.Sprintf("durable Append, %d writers: p99 latency", writers), Value: us(a.p99), Unit: "µs", Aim: aim})
	}
	fsAgain, err := fsyncLatency(dir)
	if err != nil {
		return err
	}
	add(result{Name: "fdatasync again, after the Append runs, p50", Value: us(fsAgain.p50), Unit: "µs"})

	big := filepath.Join(dir, "big.db")
	p, err := batched(big, o.entries)
	if err != nil {
		return err
	}
	add(result{Name: fmt.Sprintf("batched Post: %d entries written", o.entries), Value: p.rate, Unit: "events/s", Aim: "aim ≥ 500,000/s",
		Note: fmt.Sprintf("(%d batches, %d lost)", p.batches, p.lost)})
	add(result{Name: "batched Post: CPU per entry (posters and writer)", Value: us(p.cpu), Unit: "µs"})

	v, err := verify(big)
	if err != nil {
		return err
	}
	add(result{Name: fmt.Sprintf("verify %d entries: wall clock", v.entries), Value: v.wall, Unit: "entries/s"})
	add(result{Name: "verify: per CPU-second used (user+sys)", Value: v.perCPU, Unit: "entries/s", Aim: "aim ≥ 1,000,000/s per core"})

	e, err := exportTime(big, dir)
	if err != nil {
		return err
	}
	add(result{Name: fmt.Sprintf("export bundle of %d entries", o.entries), Value: e.seconds, Unit: "s", Note: fmt.Sprintf("(%.1f MiB)", e.mib)})
	add(result{Name: "verify that bundle", Value: e.verify.seconds, Unit: "s"})
	add(result{Name: "verify that bundle: per CPU-second used (user+sys)", Value: e.verify.perCPU, Unit: "entries/s", Aim: "aim ≥ 1,000,000/s per core"})

	if o.jsonOut {
		b, _ := json.MarshalIndent(results, "", "  ")
		fmt.Println(string(b))
	}
	return nil
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

type fsyncResult struct{ p50, p99 time.Duration }

// fsyncLatency appends 4 KiB and fdatasyncs, 200 times, on the journals'
// disk: the floor under any durable commit.
func fsyncLatency(dir string) (fsyncResult, error) {
	lat, err := benchutil.SyncLatencies(dir, 200, syscall.Fdatasync)
	if err != nil {
		return fsyncResult{}, err
	}
	return fsyncResult{percentile(lat, 50), percentile(lat, 99)}, nil
}

func percentile(d []time.Duration, p int) time.Duration {
	slices.Sort(d)
	return d[(len(d)-1)*p/100]
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// statement is the record the Append runs write: a pg.statement of a
// typical size.
func statement(i int) model.Record {
	return model.Record{Kind: model.KindPGStatement, Session: "0198c1a4-6a7e-7b3c-9d2e-5f4a3b2c1d0e", Data: model.PGStatement{
		SQL: "SELECT id, name, email FROM accounts WHERE id = $1", Protocol: "extended", Kinds: []string{"select"}, Tables: []string{"accounts"},
		ReadOnly: true, Decision: model.Decision{Action: model.Allow, Rule: "ci-read"}, Params: []model.PGParam{{Type: "int4", Format: "text"}},
		StartNS: int64(i),
	}}
}

type appendResult struct {
	rate, perFsync float64
	p50, p99, cpu  time.Duration
}

// durableAppends runs writers goroutines doing Synced Appends for d.
func durableAppends(path string, writers int, d time.Duration) (appendResult, error) {
	j, err := journal.Open(context.Background(), journal.Options{Path: path, Logger: quiet()})
	if err != nil {
		return appendResult{}, err
	}
	defer j.Close()
	// Warm up: the first commits grow the file.
	for i := range 200 {
		if _, err := j.Append(context.Background(), statement(i), model.Synced); err != nil {
			return appendResult{}, err
		}
	}
	before := j.Stats()
	cpu0 := cpuTime()
	lats := make([][]time.Duration, writers)
	var failed atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	stop := start.Add(d)
	for w := range writers {
		wg.Go(func() {
			for i := 0; time.Now().Before(stop); i++ {
				t0 := time.Now()
				if _, err := j.Append(context.Background(), statement(i), model.Synced); err != nil {
					failed.Store(err)
					return
				}
				lats[w] = append(lats[w], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed, cpu := time.Since(start), cpuTime()-cpu0
	if err, _ := failed.Load().(error); err != nil {
		return appendResult{}, err
	}
	var all []time.Duration
	for _, l := range lats {
		all = append(all, l...)
	}
	st := j.Stats()
	fsyncs := st.Fsyncs - before.Fsyncs
	return appendResult{
		rate:     float64(len(all)) / elapsed.Seconds(),
		perFsync: float64(len(all)) / float64(max(fsyncs, 1)),
		p50:      percentile(all, 50), p99: percentile(all, 99),
		cpu: cpu / time.Duration(max(len(all), 1)),
	}, nil
}

type batchResult struct {
	rate          float64
	batches, lost uint64
	cpu           time.Duration
}

// mixed is the million-entry journal's content: sessions opening and
// closing, statements and their results, and terminal output with
// payloads.
func mixed(i int) model.Record {
	session := fmt.Sprintf("sess-%06d", i/100)
	switch {
	case i%100 == 0:
		return model.Record{Kind: model.KindSessionOpen, Session: session, Data: model.SessionOpen{
			Target:  model.Target{Name: "prod-db", Protocol: model.ProtoPostgres, Address: "db.internal:5432"},
			OrigDst: netip.MustParseAddrPort("10.0.0.5:5432"), Client: netip.MustParseAddrPort("127.0.0.1:41234"),
			Identity: model.Identity{Kernel: model.KernelFacts{PID: 4242, TGID: 4242, UID: 1001, Comm: "psql", CgroupID: 77},
				Proc: &model.ProcFacts{Exe: "/usr/bin/psql", ExeSHA256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
					Cmdline: []string{"psql", "-h", "db.internal", "-c", "select 1"}, CgroupPath: "/system.slice/runner.service", SystemdUnit: "runner.service"},
				Claimed: map[string]string{"GITHUB_REPOSITORY": "octo/repo", "GITHUB_RUN_ID": "123456"}},
			Decision: model.Decision{Action: model.Allow}, Postgres: &model.PGStartup{User: "app", Database: "prod", ProtocolVersion: "3.0"}}}
	case i%100 == 99:
		return model.Record{Kind: model.KindSessionClose, Session: session, Data: model.SessionClose{BytesUp: 1000, BytesDown: 5000, DurationNS: 1e9}}
	case i%10 == 5:
		return model.Record{Kind: model.KindSSHIO, Session: session, Data: model.SSHIO{Stream: "o", OffsetNS: int64(i), Bytes: 64},
			Payload: []byte("total 48\ndrwxr-xr-x  2 deploy deploy 4096 Mar  1 12:00 releases\n")}
	case i%2 == 0:
		r := statement(i)
		r.Session = session
		return r
	}
	return model.Record{Kind: model.KindPGResult, Session: session, Data: model.PGResult{Statement: uint64(i), Tag: "SELECT 1", Rows: 1, DurationNS: 183000}}
}

// batched posts n records from 8 goroutines as fast as the queue takes
// them (a poster backs off while the queue is half full, so nothing is
// lost to overflow), then closes, and reports the rate.
func batched(path string, n int) (batchResult, error) {
	j, err := journal.Open(context.Background(), journal.Options{Path: path, Logger: quiet()})
	if err != nil {
		return batchResult{}, err
	}
	const posters = 8
	var next atomic.Int64
	cpu0, start := cpuTime(), time.Now()
	var wg sync.WaitGroup
	for range posters {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				for {
					st := j.Stats()
					if st.Posted-st.PostWritten-st.PostLost < journal.DefaultPostQueue/2 {
						break
					}
					time.Sleep(50 * time.Microsecond)
				}
				j.Post(mixed(i))
			}
		})
	}
	wg.Wait()
	for j.Stats().PostWritten+j.Stats().PostLost < uint64(n) {
		time.Sleep(time.Millisecond)
	}
	elapsed, cpu := time.Since(start), cpuTime()-cpu0
	if err := j.Close(); err != nil {
		return batchResult{}, err
	}
	st := j.Stats()
	return batchResult{rate: float64(st.PostWritten) / elapsed.Seconds(), batches: st.Batches, lost: st.PostLost,
		cpu: cpu / time.Duration(max(st.PostWritten, 1))}, nil
}

type verifyResult struct {
	entries      uint64
	wall, perCPU float64
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func verify(path string) (verifyResult, error) {
	runtime.GC()
	cpu0, start := cpuTime(), time.Now()
	rep, err := journal.Verify(context.Background(), path, nil)
	wall, cpu := time.Since(start), cpuTime()-cpu0
	if err != nil {
		return verifyResult{}, err
	}
	if !rep.OK {
		return verifyResult{}, fmt.Errorf("the benchmark journal does not verify: %s", rep.Reason)
	}
	return verifyResult{entries: rep.Entries, wall: float64(rep.Entries) / wall.Seconds(), perCPU: float64(rep.Entries) / cpu.Seconds()}, nil
}

type exportResult struct {
	seconds, mib float64
	verify       roundResult
}

func exportTime(path, dir string) (exportResult, error) {
	signer, err := journal.LoadSigner(filepath.Join(filepath.Dir(path), journal.KeyFile))
	if err != nil {
		return exportResult{}, err
	}
	out := filepath.Join(dir, "bundle.tar.gz")
	start := time.Now()
	if _, err := export.Bundle(context.Background(), out, export.Options{Journal: path, Signer: signer}); err != nil {
		return exportResult{}, err
	}
	secs := time.Since(start).Seconds()
	fi, err := os.Stat(out)
	if err != nil {
		return exportResult{}, err
	}
	v, err := verifyBundle(out, signer.Verifier())
	if err != nil {
		return exportResult{}, err
	}
	return exportResult{seconds: secs, mib: float64(fi.Size()) / (1 << 20), verify: v}, nil
}
