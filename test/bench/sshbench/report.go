package main

import (
	"fmt"
	"math"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/interlock/interlock/test/bench/benchutil"
)

// report prints, for each metric, the median over rounds of each side and
// the ratio, with the aims next to them.
func report(bin string, o options, metrics []*metric, disk string) {
	fmt.Println()
	for _, l := range machine(bin) {
		fmt.Println(l)
	}
	fmt.Println(disk)
	fmt.Printf("%d MiB per transfer, %d setup runs per round, %d round(s) per side; medians over rounds\n\n", o.mib, o.runs, o.rounds)
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "metric\tdirect\tinterlock\tratio\taim\tmet?\t")
	for _, m := range metrics {
		switch len(m.Direct[0]) {
		case 1: // a transfer: MiB/s per round
			d := roundMedian(m.Direct, func(s []float64) float64 { return float64(o.mib) / s[0] })
			i := roundMedian(m.Inter, func(s []float64) float64 { return float64(o.mib) / s[0] })
			r := i / d
			fmt.Fprintf(tw, "%s (MiB/s)\t%.1f\t%.1f\t%.2f×\t≥ 0.80×\t%s\t\n", m.Name, d, i, r, met(r >= 0.8))
			fmt.Fprintf(tw, "  rounds\t%s\t%s\t\t\t\t\n", rounds(m.Direct, float64(o.mib)), rounds(m.Inter, float64(o.mib)))
			fmt.Fprintf(tw, "  interlock CPU (s/GiB)\t\t%.2f\t\t\t\t\n", cpuPerGiB(m.CPU["interlock"], o.mib))
			fmt.Fprintf(tw, "  ssh + sshd CPU (s/GiB)\t%.2f\t%.2f\t\t\t\t\n", cpuPerGiB(m.Ends["direct"], o.mib), cpuPerGiB(m.Ends["interlock"], o.mib))
			if len(m.Baseline) > 0 {
				k := roundMedian(m.Baseline, func(s []float64) float64 { return float64(o.mib) / s[0] })
				fmt.Fprintf(tw, "  baseline (MiB/s)\t\t%.1f\t%.2f×\t\t\t\n", k, k/d)
				fmt.Fprintf(tw, "  baseline rounds\t\t%s\t\t\t\t\n", rounds(m.Baseline, float64(o.mib)))
				fmt.Fprintf(tw, "  baseline CPU (s/GiB)\t\t%.2f\t\t\t\t\n", cpuPerGiB(m.CPU["baseline"], o.mib))
			}
			if len(m.Masked) > 0 {
				k := roundMedian(m.Masked, func(s []float64) float64 { return float64(o.mib) / s[0] })
				fmt.Fprintf(tw, "  masked, live (MiB/s)\t\t%.1f\t%.2f×\t\t\t\n", k, k/d)
				fmt.Fprintf(tw, "  masked / unmasked\t\t\t%.2f×\t\t\t\n", k/i)
				fmt.Fprintf(tw, "  masked rounds\t\t%s\t\t\t\t\n", rounds(m.Masked, float64(o.mib)))
				fmt.Fprintf(tw, "  masked CPU (s/GiB)\t\t%.2f\t\t\t\t\n", cpuPerGiB(m.CPU["masked"], o.mib))
			}
		default: // setup latency
			d50 := roundMedian(m.Direct, func(s []float64) float64 { return percentile(s, 0.5) * 1e3 })
			i50 := roundMedian(m.Inter, func(s []float64) float64 { return percentile(s, 0.5) * 1e3 })
			d99 := roundMedian(m.Direct, func(s []float64) float64 { return percentile(s, 0.99) * 1e3 })
			i99 := roundMedian(m.Inter, func(s []float64) float64 { return percentile(s, 0.99) * 1e3 })
			fmt.Fprintf(tw, "%s p50 (ms)\t%.1f\t%.1f\t%.2f×\t\t\t\n", m.Name, d50, i50, i50/d50)
			fmt.Fprintf(tw, "%s p99 (ms)\t%.1f\t%.1f\t%.2f×\t\t\t\n", m.Name, d99, i99, i99/d99)
			fmt.Fprintf(tw, "  added p50 (ms)\t\t%.1f\t\t≤ 30 ms\t%s\t\n", i50-d50, met(i50-d50 <= 30))
		}
	}
	tw.Flush()
}

func met(ok bool) string {
	if ok {
		return "yes"
	}
	return "missed"
}

func roundMedian(rounds [][]float64, f func([]float64) float64) float64 {
	vals := make([]float64, len(rounds))
	for i, r := range rounds {
		vals[i] = f(r)
	}
	return benchutil.Median(vals)
}

func rounds(rs [][]float64, mib float64) string {
	var parts []string
	for _, r := range rs {
		parts = append(parts, fmt.Sprintf("%.0f", mib/r[0]))
	}
	return strings.Join(parts, " / ")
}

// cpuPerGiB is the median over rounds of interlock's CPU seconds per GiB
// moved; NaN when no round could read it.
func cpuPerGiB(cpu []float64, mib int) float64 {
	var v []float64
	for _, c := range cpu {
		if c >= 0 {
			v = append(v, c*1024/float64(mib))
		}
	}
	if len(v) == 0 {
		return math.NaN()
	}
	return benchutil.Median(v)
}
