package main

import (
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/interlock/interlock/engine"
)

func TestExitCode(t *testing.T) {
	devnull, _ := os.Open(os.DevNull)
	old := os.Stderr
	os.Stderr = devnull
	defer func() { os.Stderr = old }()
	cases := []struct {
		err  error
		want int
	}{
		{nil, 0},
		{childExit{code: 3}, 3},
		{fmt.Errorf("wrapped: %w", childExit{code: 143}), 143},
		{exitWith(exitConfig, errors.New("bad")), 78},
		{fmt.Errorf("ctx: %w", exitWith(exitNoPerm, errors.New("caps"))), 77},
		{errors.New("unclassified"), exitSoftware},
	}
	for _, c := range cases {
		if got := exitCode(c.err); got != c.want {
			t.Errorf("exitCode(%v) = %d, want %d", c.err, got, c.want)
		}
	}
}

func TestSummaryLine(t *testing.T) {
	got := summaryLine(engine.Tally{Sessions: 3, Refused: 1, BytesUp: 1536, BytesDown: 3 << 20,
		ByTarget: map[string]int{"db": 2, "cache": 1}}, 2, "/j.db")
	want := "interlock: 3 sessions (cache×1, db×2), 1 refused, 1.5 KiB up, 3.0 MiB down, 2 leftover processes killed; journal /j.db"
	if got != want {
		t.Errorf("summary\n got %q\nwant %q", got, want)
	}
	if got := summaryLine(engine.Tally{Sessions: 1}, 0, "/j"); got != "interlock: 1 session, 0 refused, 0 B up, 0 B down; journal /j" {
		t.Errorf("singular summary: %q", got)
	}
}
