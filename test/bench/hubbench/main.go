// Command hubbench is `make bench-hub` (issue 17): whether shipping to the
// fleet hub keeps up with the journal's durable append rate. It starts a
// real PostgreSQL 15 (fsync on) and the hub (`interlock hub serve`, the
// binary, so that its CPU is its own process's), and in each round:
//
//  1. appends to a journal from N writers (Append with model.Synced, as
//     journalbench does) with nothing shipping: the durable append rate
//     on this machine, now;
//  2. appends the same way to a second journal while the real shipper
//     (package ship, the daemon's, with the ship section's defaults)
//     ships it to the hub: entries/s appended and entries/s cosigned by
//     the hub, the shipper's lag (sampled every 50 ms: max, at the end)
//     and how long the hub takes to cosign the rest once the writers stop;
//  3. enrols the first journal and ships its whole backlog with nothing
//     appending: how fast the hub can take one host's entries.
//
// The hub's CPU is read from its /proc/PID/stat, PostgreSQL's from its
// postmaster's (its own, its reaped children's) and its live children's,
// the host side's (writers, journal, shipper) with getrusage. It prints
// figures and ratios; it never passes or fails on a timing.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/interlock/interlock/test/bench/benchutil"
)

type options struct {
	bin        string
	dir        string
	writers    int
	duration   time.Duration
	rounds     int
	profileDir string
	keep       bool
}

func main() {
	var o options
	fs := flag.NewFlagSet("hubbench", flag.ContinueOnError)
	fs.StringVar(&o.bin, "interlock", "bin/interlock", "the interlock binary whose `hub serve` is measured")
	fs.StringVar(&o.dir, "dir", "", "directory for the journals and the hub's state (default: a temp dir on the disk of the working directory)")
	fs.IntVar(&o.writers, "writers", 16, "goroutines appending with model.Synced")
	fs.DurationVar(&o.duration, "duration", 20*time.Second, "how long the writers append in each phase (after a lead-in of 2 s while shipping)")
	fs.IntVar(&o.rounds, "rounds", 3, "rounds (medians and the spread are printed)")
	fs.StringVar(&o.profileDir, "profile", "", "write CPU profiles of the hub (hub.pprof) and of this process (host.pprof: writers, journal, shipper) over round 1's shipping phase to this directory")
	fs.BoolVar(&o.keep, "keep", false, "keep the journals and the hub's state")
	quick := fs.Bool("quick", false, "smoke-run sizes (1 round of 2 s)")
	err := fs.Parse(os.Args[1:])
	if *quick {
		o.rounds, o.duration = 1, 2*time.Second
	}
	os.Exit(benchutil.Main("hubbench", err, func(ctx context.Context) error { return run(ctx, o) }))
}

func run(ctx context.Context, o options) error {
	bin, err := benchutil.Interlock(o.bin)
	if err != nil {
		return err
	}
	version, err := benchutil.InterlockVersion(bin)
	if err != nil {
		return err
	}
	base := o.dir
	if base == "" {
		if base, err = os.Getwd(); err != nil {
			return err
		}
	}
	dir, err := os.MkdirTemp(base, ".hubbench-")
	if err != nil {
		return err
	}
	if !o.keep {
		defer os.RemoveAll(dir)
	}
	fsync, err := benchutil.SyncLatencies(dir, 200, syscall.Fdatasync)
	if err != nil {
		return err
	}
	fmt.Printf("hubbench: %s\n%d CPUs (%s), kernel %s, %s; load average %s\n", version, runtime.NumCPU(), benchutil.CPUModel(),
		benchutil.Kernel(), runtime.Version(), loadavg())
	fmt.Printf("journals and hub state in %s: fdatasync p50 %s, p99 %s\n", dir, fsync[len(fsync)/2].Round(time.Microsecond),
		fsync[len(fsync)*99/100].Round(time.Microsecond))
	fmt.Printf("%d writers, %s per phase, %d rounds\n\n", o.writers, o.duration, o.rounds)

	pprofAddr := ""
	if o.profileDir != "" {
		if err := os.MkdirAll(o.profileDir, 0o755); err != nil {
			return err
		}
		pprofAddr = "127.0.0.1:6063"
	}
	e, err := startEnv(ctx, bin, dir, pprofAddr)
	if err != nil {
		return err
	}
	defer e.stop()

	var rs []roundResult
	for i := range o.rounds {
		prof := ""
		if i == 0 {
			prof = o.profileDir
		}
		r, err := round(ctx, e, dir, i+1, o, prof, pprofAddr)
		if err != nil {
			return fmt.Errorf("round %d: %w", i+1, err)
		}
		r.print(i + 1)
		rs = append(rs, r)
	}
	fmt.Printf("\nload average at the end %s\n\n", loadavg())
	summarize(rs)
	return nil
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// roundResult is one round's figures.
type roundResult struct {
	// appendAlone is the durable append rate with nothing shipping,
	// appendShipping the same while the shipper ships that journal, and
	// cosigned the rate at which the hub cosigned its entries meanwhile.
	appendAlone, appendShipping, cosigned float64
	// lagMax, and lagStart and lagEnd at the window's ends, are journal
	// head − cosigned size, in entries; drain the time from the writers'
	// stop to the hub's cosignature of everything appended by then.
	lagMax, lagStart, lagEnd int64
	drain                    time.Duration
	// hostAlone and hostShipping are this process's CPU per append
	// (writers and journal, plus the shipper in the second).
	hostAlone, hostShipping time.Duration
	// hub and pg are CPU per 1000 entries cosigned while appending.
	hub, pg time.Duration
	// backlog is the rate the hub cosigned a journal's backlog of
	// backlogN entries; its CPU per 1000 entries for the hub, PostgreSQL
	// and the host (the shipper alone: nothing else appends).
	backlog                            float64
	backlogN                           int64
	backlogHub, backlogPG, backlogHost time.Duration
	errors                             map[string]uint64
}

func per1000(d time.Duration, n int64) time.Duration {
	return time.Duration(float64(d) * 1000 / float64(max(n, 1)))
}

func round(ctx context.Context, e *env, dir string, n int, o options, profileDir, pprofAddr string) (r roundResult, err error) {
	r.errors = map[string]uint64{}
	// 1. The durable append rate, nothing shipping.
	alone, err := openHost(ctx, dir, fmt.Sprintf("r%d-alone", n))
	if err != nil {
		return r, err
	}
	defer alone.close()
	if _, err := alone.appendFor(ctx, 4, 200*time.Millisecond, nil); err != nil { // warm-up: the file grows
		return r, err
	}
	c0, t0 := must(e.cpu()), time.Now()
	appended, err := alone.appendFor(ctx, o.writers, o.duration, nil)
	if err != nil {
		return r, err
	}
	el, c := time.Since(t0), must(e.cpu()).sub(c0)
	r.appendAlone = float64(appended) / el.Seconds()
	r.hostAlone = c.self / time.Duration(max(appended, 1))

	// 2. The same while the shipper ships it.
	live, err := openHost(ctx, dir, fmt.Sprintf("r%d-shipped", n))
	if err != nil {
		return r, err
	}
	defer live.close()
	if _, err := live.appendFor(ctx, 4, 200*time.Millisecond, nil); err != nil {
		return r, err
	}
	if err := live.enrol(ctx, e); err != nil {
		return r, err
	}
	live.start(ctx)
	if err := live.waitCosigned(ctx, e, live.head(), time.Minute); err != nil {
		return r, err
	}
	stopProfiles, err := startProfiles(ctx, profileDir, pprofAddr, o.duration)
	if err != nil {
		return r, err
	}
	// The window opens after a lead-in, so that it starts with the
	// shipper at work rather than in the ship.interval pause it takes
	// once caught up (which the lead-in also shows in lagMax).
	lead := min(2*time.Second, o.duration/2)
	var win struct {
		at                      time.Time
		appended, cosigned, lag int64
	}
	c0, cos0, t0 := must(e.cpu()), live.cosigned(), time.Now()
	appended, err = live.appendFor(ctx, o.writers, lead+o.duration, func(n int64) {
		cos := live.cosigned()
		lag := live.head() - cos
		r.lagMax = max(r.lagMax, lag)
		if win.at.IsZero() && time.Since(t0) >= lead {
			win.at, win.appended, win.cosigned, win.lag = time.Now(), n, cos, lag
		}
	})
	if err != nil {
		stopProfiles()
		return r, err
	}
	el = time.Since(win.at)
	head, cos1 := live.head(), live.cosigned()
	r.lagStart, r.lagEnd = win.lag, head-cos1
	r.lagMax = max(r.lagMax, r.lagEnd)
	r.appendShipping = float64(appended-win.appended) / el.Seconds()
	r.cosigned = float64(cos1-win.cosigned) / el.Seconds()
	stopped := time.Now()
	if err := live.waitCosigned(ctx, e, head, 5*time.Minute); err != nil {
		stopProfiles()
		return r, err
	}
	r.drain = time.Since(stopped)
	c = must(e.cpu()).sub(c0)
	if err := stopProfiles(); err != nil {
		return r, err
	}
	shipped := live.cosigned() - cos0
	r.hub, r.pg = per1000(c.hub, shipped), per1000(c.pg, shipped)
	r.hostShipping = c.self / time.Duration(max(appended, 1))

	// 3. The first journal's backlog, shipped with nothing appending.
	if err := alone.enrol(ctx, e); err != nil {
		return r, err
	}
	r.backlogN = alone.head()
	c0, t0 = must(e.cpu()), time.Now()
	alone.start(ctx)
	if err := alone.waitCosigned(ctx, e, r.backlogN, 10*time.Minute); err != nil {
		return r, err
	}
	el, c = time.Since(t0), must(e.cpu()).sub(c0)
	r.backlog = float64(r.backlogN) / el.Seconds()
	r.backlogHub, r.backlogPG, r.backlogHost = per1000(c.hub, r.backlogN), per1000(c.pg, r.backlogN), per1000(c.self, r.backlogN)
	for _, h := range []*host{live, alone} {
		for k, v := range h.errors() {
			r.errors[k] += v
		}
	}
	return r, e.alive()
}

// must keeps a CPU reading's error for the end of the round: a reading
// that fails (the hub died) is found by e.alive.
func must(c cpu, err error) cpu {
	if err != nil {
		fmt.Fprintln(os.Stderr, "hubbench:", err)
	}
	return c
}

// startProfiles profiles the hub (through its INTERLOCK_PPROF server) and
// this process while the shipping phase runs; stop ends this process's
// profile and waits for the hub's.
func startProfiles(ctx context.Context, dir, addr string, d time.Duration) (stop func() error, err error) {
	if dir == "" {
		return func() error { return nil }, nil
	}
	f, err := os.Create(filepath.Join(dir, "host.pprof"))
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	secs := max(1, int(d.Seconds())-1)
	hubDone := make(chan error, 1)
	go func() {
		hubDone <- benchutil.Profile(ctx, addr, 5*time.Second, 0, secs, filepath.Join(dir, "hub.pprof"))
	}()
	return func() error {
		pprof.StopCPUProfile()
		f.Close()
		if err := <-hubDone; err != nil {
			return fmt.Errorf("hub profile: %w", err)
		}
		fmt.Printf("profiles: %s, %s\n", filepath.Join(dir, "hub.pprof"), filepath.Join(dir, "host.pprof"))
		return nil
	}, nil
}
