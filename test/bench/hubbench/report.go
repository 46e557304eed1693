package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/interlock/interlock/test/bench/benchutil"
)

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func (r roundResult) print(n int) {
	errs := "none"
	if len(r.errors) > 0 {
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(r.errors)) {
			parts = append(parts, fmt.Sprintf("%s=%d", k, r.errors[k]))
		}
		errs = strings.Join(parts, " ")
	}
	fmt.Printf("round %d: append alone %.0f/s; while shipping %.0f/s appended, %.0f/s cosigned (%.2f×); lag max %d, %d → %d over the window, drained in %s;\n"+
		"         hub %.1f ms CPU, PostgreSQL %.1f ms per 1000 entries; backlog of %d at %.0f/s (hub %.1f, PostgreSQL %.1f, host %.1f ms per 1000); shipper errors: %s\n",
		n, r.appendAlone, r.appendShipping, r.cosigned, r.cosigned/r.appendShipping, r.lagMax, r.lagStart, r.lagEnd, r.drain.Round(time.Millisecond),
		ms(r.hub), ms(r.pg), r.backlogN, r.backlog, ms(r.backlogHub), ms(r.backlogPG), ms(r.backlogHost), errs)
}

// summarize prints each figure's median over the rounds with the lowest
// and highest beside it: on a shared machine the spread is part of the
// result.
func summarize(rs []roundResult) {
	row := func(name, unit string, f func(r roundResult) float64) {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		fmt.Printf("%-58s %12.1f %-16s (%.1f to %.1f)\n", name, benchutil.Median(v), unit, slices.Min(v), slices.Max(v))
	}
	fmt.Printf("%-58s %12s %-16s %s\n", "figure", "median", "", "(lowest to highest)")
	row("durable append, nothing shipping", "entries/s", func(r roundResult) float64 { return r.appendAlone })
	row("durable append while shipping", "entries/s", func(r roundResult) float64 { return r.appendShipping })
	row("shipped and cosigned while appending", "entries/s", func(r roundResult) float64 { return r.cosigned })
	row("ratio cosigned / appended (same run)", "×", func(r roundResult) float64 { return r.cosigned / r.appendShipping })
	row("ratio appended while shipping / alone", "×", func(r roundResult) float64 { return r.appendShipping / r.appendAlone })
	row("shipper lag, max over the run", "entries", func(r roundResult) float64 { return float64(r.lagMax) })
	row("shipper lag when the window opens", "entries", func(r roundResult) float64 { return float64(r.lagStart) })
	row("shipper lag when the writers stop", "entries", func(r roundResult) float64 { return float64(r.lagEnd) })
	row("time to cosign the rest after the writers stop", "ms", func(r roundResult) float64 { return ms(r.drain) })
	row("hub CPU per 1000 entries (while appending)", "ms", func(r roundResult) float64 { return ms(r.hub) })
	row("PostgreSQL CPU per 1000 entries (while appending)", "ms", func(r roundResult) float64 { return ms(r.pg) })
	row("host CPU per append, nothing shipping", "µs", func(r roundResult) float64 { return us(r.hostAlone) })
	row("host CPU per append, shipping", "µs", func(r roundResult) float64 { return us(r.hostShipping) })
	row("backlog shipped and cosigned (nothing appending)", "entries/s", func(r roundResult) float64 { return r.backlog })
	row("ratio backlog rate / durable append rate", "×", func(r roundResult) float64 { return r.backlog / r.appendAlone })
	row("backlog: hub CPU per 1000 entries", "ms", func(r roundResult) float64 { return ms(r.backlogHub) })
	row("backlog: PostgreSQL CPU per 1000 entries", "ms", func(r roundResult) float64 { return ms(r.backlogPG) })
	row("backlog: host (shipper) CPU per 1000 entries", "ms", func(r roundResult) float64 { return ms(r.backlogHost) })
	// The verdict the issue asks for. Once caught up the shipper pauses
	// for ship.interval, so the lag saws up to an interval's appends (and
	// a batch in flight) even when it keeps up; falling behind shows as a
	// lag that grows by more than that over the window, and as a rate of
	// cosigned entries below the appended one.
	var grew, bound, ratio []float64
	for _, r := range rs {
		grew = append(grew, float64(r.lagEnd-r.lagStart))
		bound = append(bound, r.appendShipping*shipInterval.Seconds()+float64(batchEntries))
		ratio = append(ratio, r.cosigned/r.appendShipping)
	}
	verdict := "keeps up"
	if benchutil.Median(grew) > benchutil.Median(bound) || benchutil.Median(ratio) < 0.9 {
		verdict = "does NOT keep up"
	}
	fmt.Printf("\nshipping %s with the durable append rate: median cosigned/appended %.2f×; the lag grew by %.0f entries over the window "+
		"(median; an interval's appends and a batch are %.0f)\n", verdict, benchutil.Median(ratio), benchutil.Median(grew), benchutil.Median(bound))
}
