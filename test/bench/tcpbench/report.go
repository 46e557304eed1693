package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/interlock/interlock/test/bench/benchutil"
)

// row is one line of the results table. Direct, Before and Interlock are
// medians of the per-round values; Before (the -before binary) is set only
// with -before, and Interlock is then the "after" figure.
type row struct {
	Metric    string    `json:"metric"`
	Unit      string    `json:"unit"`
	Direct    *float64  `json:"direct,omitempty"`
	Before    *float64  `json:"before,omitempty"`
	Interlock float64   `json:"interlock"`
	Ratio     *float64  `json:"ratio,omitempty"`              // interlock / direct
	AfterB    *float64  `json:"after_before_ratio,omitempty"` // interlock / before
	DirectR   []float64 `json:"direct_rounds,omitempty"`
	BeforeR   []float64 `json:"before_rounds,omitempty"`
	InterR    []float64 `json:"interlock_rounds,omitempty"`
	Aim       string    `json:"aim,omitempty"`
	Met       *bool     `json:"aim_met,omitempty"`
}

func values(rs []clientResult, f func(clientResult) float64) []float64 {
	out := make([]float64, len(rs))
	for i, r := range rs {
		out[i] = f(r)
	}
	return out
}

func ptr[T any](v T) *T { return &v }

// summarize turns the per-round results into the table's rows.
func summarize(res results) []row {
	var rows []row
	side := func(name string, unit string, m string, f func(clientResult) float64) row {
		d := values(res[m][sideDirect], f)
		i := values(res[m][sideInterlock], f)
		r := row{Metric: name, Unit: unit, Direct: ptr(benchutil.Median(d)), Interlock: benchutil.Median(i), DirectR: d, InterR: i}
		if *r.Direct != 0 {
			r.Ratio = ptr(r.Interlock / *r.Direct)
		}
		if bs := res[m][sideBefore]; len(bs) > 0 {
			r.BeforeR = values(bs, f)
			r.Before = ptr(benchutil.Median(r.BeforeR))
			if *r.Before != 0 {
				r.AfterB = ptr(r.Interlock / *r.Before)
			}
		}
		return r
	}
	// Interlock's own CPU and context switches (its process, all threads)
	// over the measured part of each round: the cost the connect path
	// changes aim at, less disturbed by a busy machine than the latencies.
	// No direct figure: there the parent is this bench.
	own := func(name, unit, m string, per func(clientResult) float64) {
		var r row
		r.Metric, r.Unit = name, unit
		f := func(c clientResult) float64 {
			if c.ParentCPUMS < 0 || c.ParentSwitches < 0 {
				return 0
			}
			return per(c)
		}
		r.InterR = values(res[m][sideInterlock], f)
		r.Interlock = benchutil.Median(r.InterR)
		if bs := res[m][sideBefore]; len(bs) > 0 {
			r.BeforeR = values(bs, f)
			r.Before = ptr(benchutil.Median(r.BeforeR))
			if *r.Before != 0 {
				r.AfterB = ptr(r.Interlock / *r.Before)
			}
		}
		rows = append(rows, r)
	}
	perOp := func(c clientResult) float64 { return c.ParentCPUMS * 1000 / float64(max(c.N, 1)) }
	perGiB := func(c clientResult) float64 { return c.ParentCPUMS / 1000 / (float64(c.Bytes) / (1 << 30)) }
	switchesPerOp := func(c clientResult) float64 { return c.ParentSwitches / float64(max(c.N, 1)) }
	p50 := func(r clientResult) float64 { return r.P50US }
	p99 := func(r clientResult) float64 { return r.P99US }
	rate := func(r clientResult) float64 { return r.MiBps }
	if _, ok := res["connect"]; ok {
		a := side("connect+1B round trip p50", "µs", "connect", p50)
		rows = append(rows, a, side("connect+1B round trip p99", "µs", "connect", p99))
		// Added p50 per round pair (interlock round k − direct round k),
		// and its median; the headline is the difference of the medians.
		var added []float64
		for k := range min(len(a.DirectR), len(a.InterR)) {
			added = append(added, a.InterR[k]-a.DirectR[k])
		}
		v := a.Interlock - *a.Direct
		ad := row{Metric: "connect added p50 (interlock − direct)", Unit: "µs",
			Interlock: v, InterR: added, Aim: "≤ 150 µs", Met: ptr(v <= 150)}
		if a.Before != nil {
			// The same for the before binary, and what the after binary
			// adds to it: after round k − before round k.
			var bAdded, checks []float64
			for k := range min(len(a.DirectR), len(a.BeforeR)) {
				bAdded = append(bAdded, a.BeforeR[k]-a.DirectR[k])
			}
			for k := range min(len(a.BeforeR), len(a.InterR)) {
				checks = append(checks, a.InterR[k]-a.BeforeR[k])
			}
			bv := *a.Before - *a.Direct
			ad.Before, ad.BeforeR = ptr(bv), bAdded
			if bv > 0 {
				ad.AfterB = ptr(v / bv)
			}
			rows = append(rows, ad, row{Metric: "connect p50 after − before", Unit: "µs",
				Interlock: a.Interlock - *a.Before, InterR: checks})
		} else {
			rows = append(rows, ad)
		}
		own("interlock CPU per connection", "µs", "connect", perOp)
		own("interlock context switches per connection", "", "connect", switchesPerOp)
	}
	if _, ok := res["echo"]; ok {
		rows = append(rows, side("echo 64B round trip p50", "µs", "echo", p50), side("echo 64B round trip p99", "µs", "echo", p99))
		own("interlock CPU per round trip", "µs", "echo", perOp)
		own("interlock context switches per round trip", "", "echo", switchesPerOp)
	}
	for _, m := range []struct{ key, name string }{{"bulk-up", "bulk client→server"}, {"bulk-down", "bulk server→client"}} {
		if _, ok := res[m.key]; !ok {
			continue
		}
		r := side(m.name, "MiB/s", m.key, rate)
		r.Aim = "≥ 0.90×"
		if r.Ratio != nil {
			r.Met = ptr(*r.Ratio >= 0.9)
		}
		rows = append(rows, r)
		own("interlock CPU per GiB, "+m.name[5:], "CPU-s", m.key, perGiB)
	}
	return rows
}

func num(v float64) string {
	switch {
	case v >= 1000 || v <= -1000:
		return fmt.Sprintf("%.0f", v)
	case v < 10 && v > -10:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.1f", v)
	}
}

func printEnv(w io.Writer, e envFacts, o options) {
	fmt.Fprintln(w, "interlock TCP passthrough benchmark (tcpbench)")
	fmt.Fprintf(w, "  date         %s\n", time.Now().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(w, "  kernel       %s\n", e.Kernel)
	fmt.Fprintf(w, "  cpus         %d (%s)\n", e.CPUs, e.CPUModel)
	fmt.Fprintf(w, "  go           %s\n", e.GoVersion)
	fmt.Fprintf(w, "  interlock    %s (embedded engine: interlock run --engine embedded)\n", e.Interlock)
	if e.BeforePath != "" {
		fmt.Fprintf(w, "  before       %s (%s), the same way, with a config, journal and pins of its own; \"after\" is interlock above\n", e.Before, e.BeforePath)
	}
	fmt.Fprintf(w, "  journal      %s on %s, sync: %s, sync_interval: %s (session.open is synced before the upstream dial in every mode)\n",
		e.JournalPath, e.JournalFS, e.JournalSync, e.JournalSyncEvery)
	fmt.Fprintf(w, "  disk sync    after a 4 KiB append in the journal's dir, n=%d each: fdatasync p50 %.1f µs, p99 %.1f µs; fsync (what SQLite's WAL uses) p50 %.1f µs, p99 %.1f µs\n",
		e.FsyncN, e.FdatasyncP50US, e.FdatasyncP99US, e.FsyncP50US, e.FsyncP99US)
	order := "direct, interlock"
	if o.before != "" {
		order = "direct, before, interlock"
	}
	fmt.Fprintf(w, "  sizes        connect %d (+%d warm-up) per round, echo %d×64 B (+%d warm-up), bulk %d MiB each way; %d rounds per side, interleaved (%s)\n",
		o.conns, o.warmConns, o.echo, o.warmEcho, o.bulkMiB, o.rounds, order)
}

// printTable prints the rows; with -before, the before and after
// (interlock) figures side by side, with the after/before ratio next to
// the interlock/direct one.
func printTable(w io.Writer, rows []row, o options) {
	withBefore := o.before != ""
	head := []string{"metric", "direct", "interlock", "ratio i/d", "aim", ""}
	if withBefore {
		head = []string{"metric", "direct", "before", "after", "after/before", "ratio i/d", "aim", ""}
	}
	left := map[int]bool{0: true, len(head) - 2: true, len(head) - 1: true}
	orDash := func(v *float64, format func(float64) string) string {
		if v == nil {
			return "—"
		}
		return format(*v)
	}
	times := func(v float64) string { return fmt.Sprintf("%.2f×", v) }
	table := [][]string{head}
	for _, r := range rows {
		verdict := ""
		if r.Met != nil {
			verdict = "met"
			if !*r.Met {
				verdict = "MISSED"
			}
		}
		metric := r.Metric
		if r.Unit != "" {
			metric += " (" + r.Unit + ")"
		}
		line := []string{metric, orDash(r.Direct, num)}
		if withBefore {
			line = append(line, orDash(r.Before, num), num(r.Interlock), orDash(r.AfterB, times))
		} else {
			line = append(line, num(r.Interlock))
		}
		table = append(table, append(line, orDash(r.Ratio, times), r.Aim, verdict))
	}
	widths := make([]int, len(head))
	for _, t := range table {
		for i, c := range t {
			widths[i] = max(widths[i], len([]rune(c)))
		}
	}
	fmt.Fprintf(w, "results (median of %d rounds per side)\n", o.rounds)
	if withBefore {
		fmt.Fprintf(w, "before: %s; after: interlock (%s)\n", o.before, o.interlock)
	}
	for k, t := range table {
		var b strings.Builder
		for i, c := range t {
			pad := widths[i] - len([]rune(c))
			if left[i] {
				b.WriteString(c + strings.Repeat(" ", pad))
			} else {
				b.WriteString(strings.Repeat(" ", pad) + c)
			}
			b.WriteString("  ")
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
		if k == 0 {
			total := 0
			for _, wd := range widths {
				total += wd + 2
			}
			fmt.Fprintln(w, strings.Repeat("-", total-2))
		}
	}
}

// printRounds shows every round's value: the spread behind each median.
func printRounds(w io.Writer, res results, sides []string) {
	fmt.Fprintf(w, "\nper round (%s)\n", strings.Join(sides, " | "))
	for _, m := range []string{"connect", "echo", "bulk-up", "bulk-down"} {
		s, ok := res[m]
		if !ok {
			continue
		}
		f := func(rs []clientResult) string {
			var parts []string
			for _, r := range rs {
				if r.MiBps > 0 {
					parts = append(parts, fmt.Sprintf("%.0f MiB/s", r.MiBps))
				} else {
					parts = append(parts, fmt.Sprintf("p50 %s p99 %s max %s", num(r.P50US), num(r.P99US), num(r.MaxUS)))
				}
			}
			return strings.Join(parts, ", ")
		}
		var cols []string
		for _, side := range sides {
			cols = append(cols, f(s[side]))
		}
		fmt.Fprintf(w, "  %-9s %s\n", m, strings.Join(cols, " | "))
	}
}
