package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/interlock/interlock/journal"
	"github.com/interlock/interlock/journal/evidence"
	"github.com/interlock/interlock/journal/export"
)

type roundResult struct {
	entries         uint64
	seconds, perCPU float64
}

// verifyBundle verifies a bundle offline once, as interlock-verify does,
// and reports the wall time and the entries per CPU-second (user+sys, so
// other work on the machine shows less than in the wall time). key nil
// trusts the bundle's own key, which costs the same.
func verifyBundle(path string, key note.Verifier) (roundResult, error) {
	runtime.GC()
	cpu0, start := cpuTime(), time.Now()
	rep, err := evidence.VerifyBundle(context.Background(), path, evidence.BundleOptions{PublicKey: key})
	wall, cpu := time.Since(start), cpuTime()-cpu0
	if err != nil {
		return roundResult{}, err
	}
	if !rep.OK {
		return roundResult{}, fmt.Errorf("the bundle does not verify: %s", rep.Reason)
	}
	n := rep.Counts.Entries + rep.Counts.Omitted
	return roundResult{entries: n, seconds: wall.Seconds(), perCPU: float64(n) / cpu.Seconds()}, nil
}

// verifyBundleRounds is -bundle: the same bundle verified o.rounds times,
// so that two builds can be compared on one file by running them in turn.
func verifyBundleRounds(o options) error {
	if o.exportFrom != "" {
		signer, err := journal.LoadSigner(filepath.Join(filepath.Dir(o.exportFrom), journal.KeyFile))
		if err != nil {
			return err
		}
		runtime.GC()
		cpu0, start := cpuTime(), time.Now()
		if _, err := export.Bundle(context.Background(), o.bundle, export.Options{Journal: o.exportFrom, Signer: signer}); err != nil {
			return err
		}
		fmt.Printf("export: %.2f s wall, %.2f s CPU\n", time.Since(start).Seconds(), (cpuTime() - cpu0).Seconds())
	}
	return rounds(o, func() (roundResult, error) { return verifyBundle(o.bundle, nil) })
}

// verifyJournalRounds is -journal: journal.Verify of a kept journal in
// rounds, as -bundle does for a bundle.
func verifyJournalRounds(o options) error {
	return rounds(o, func() (roundResult, error) {
		v, err := verify(o.journal)
		return roundResult{entries: v.entries, seconds: float64(v.entries) / v.wall, perCPU: v.perCPU}, err
	})
}

// rounds runs one verification o.rounds times (under a CPU profile with
// -cpuprofile) and prints each round and the median and spread.
func rounds(o options, once func() (roundResult, error)) error {
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	var rates, walls []float64
	for i := range max(o.rounds, 1) {
		r, err := once()
		if err != nil {
			return err
		}
		fmt.Printf("round %d: %d entries, %.3f s wall, %.0f entries per CPU-second\n", i+1, r.entries, r.seconds, r.perCPU)
		rates, walls = append(rates, r.perCPU), append(walls, r.seconds)
	}
	slices.Sort(rates)
	slices.Sort(walls)
	fmt.Printf("median %.0f entries per CPU-second (min %.0f, max %.0f); wall median %.3f s (min %.3f, max %.3f)\n",
		rates[len(rates)/2], rates[0], rates[len(rates)-1], walls[len(walls)/2], walls[0], walls[len(walls)-1])
	return nil
}
