package pgxsuite

// Judging the two runs: the tests that regress through interlock, the
// report that says why (the test's output, interlock's journal errors, the
// server's fatal messages), and PGXSUITE_KEEP's copy of it all.

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/interlock/interlock/journal"
	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/test/e2e/pgtest"
)

// checkDirect makes sure the direct run worked at all, and lists the tests
// that fail without interlock (they are not compared).
func checkDirect(t *testing.T, s suite, direct *runResult) {
	t.Helper()
	if len(direct.Tests) == 0 {
		t.Fatalf("the direct run of %s ran no tests (%v):\n%s", s.importPath, direct.Err, tailBytes(direct.Raw, 8000))
	}
	if _, top := direct.counts(); top[pass] < 50 {
		t.Errorf("only %d top-level tests of %s passed directly: is PGX_TEST_DATABASE reaching the server? (%v)\n%s",
			top[pass], s.importPath, direct.Err, indent(clip(direct.Other, 40), "    "))
	}
	for _, name := range slices.Sorted(maps.Keys(direct.Tests)) {
		if st := direct.Tests[name].Status; st == fail || st == missing {
			t.Logf("fails directly, not compared: %s (%s)\n%s", name, st, indent(clip(interesting(direct.Tests[name].Output), 20), "    "))
		}
	}
}

// regressions are the tests that passed directly and not through
// interlock, and are not excluded. A test whose failing subtests are all
// excluded fails because of them, and is excused with them.
func regressions(s suite, direct, through *runResult) []string {
	excused := func(name string) bool {
		if _, ok := exclusion(s, name); ok {
			return true
		}
		kids := 0
		for sub, tr := range through.Tests {
			if strings.HasPrefix(sub, name+"/") && tr.Status != pass && tr.Status != skip {
				if _, ok := exclusion(s, sub); !ok {
					return false
				}
				kids++
			}
		}
		return kids > 0
	}
	var out []string
	for _, name := range slices.Sorted(maps.Keys(direct.Tests)) {
		if direct.Tests[name].Status == pass && through.status(name) != pass && !excused(name) {
			out = append(out, name)
		}
	}
	return out
}

func topLevel(names []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, n := range names {
		top, _, _ := strings.Cut(n, "/")
		if !seen[top] {
			seen[top] = true
			out = append(out, top)
		}
	}
	return out
}

func quoteAll(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = regexp.QuoteMeta(n)
	}
	return out
}

func outputOf(r *runResult, name string) []string {
	if tr := r.Tests[name]; tr != nil {
		return tr.Output
	}
	return nil
}

// report fails for each regression, with the test's output in both runs.
// The innermost failing tests are reported; a parent on its own only when
// none of its subtests is.
func report(t *testing.T, s suite, direct, through *runResult, regs []string) {
	t.Helper()
	var leaves []string
	for _, name := range regs {
		inner := false
		for _, other := range regs {
			if strings.HasPrefix(other, name+"/") {
				inner = true
				break
			}
		}
		if !inner {
			leaves = append(leaves, name)
		}
	}
	const detailed = 25
	var unfinished []string
	shown := 0
	for _, name := range leaves {
		out := interesting(outputOf(through, name))
		if slices.Contains(through.TimedOut, name) {
			out = timeoutView(through, name, out)
		}
		if st := through.status(name); (st == absent || st == missing) && len(out) == 0 {
			unfinished = append(unfinished, name)
			continue
		}
		if shown++; shown > detailed {
			continue
		}
		t.Errorf("%s %s passes directly but not through interlock (%s)\n  directly:\n%s  through interlock:\n%s",
			s.name, name, through.status(name),
			indent(clip(interesting(outputOf(direct, name)), 15), "    "),
			indent(clip(out, 60), "    "))
	}
	if shown > detailed {
		t.Errorf("... and %d more failing through interlock (names below)", shown-detailed)
	}
	if len(through.TimedOut) > 0 {
		t.Errorf("%s: the run through interlock timed out (-test.timeout=%v); the tests running then: %s",
			s.name, suiteTimeout, strings.Join(through.TimedOut, ", "))
	}
	if len(unfinished) > 0 {
		t.Errorf("%s: %d tests that pass directly did not run or did not finish through interlock: %s",
			s.name, len(unfinished), names(unfinished, 40))
	}
	if len(regs) > 0 {
		t.Errorf("%s: %d of the %d tests and subtests that pass directly do not pass through interlock: %s",
			s.name, len(regs), countPass(direct), names(leaves, 60))
	}
}

func names(list []string, n int) string {
	if len(list) > n {
		return strings.Join(list[:n], ", ") + fmt.Sprintf(" and %d more", len(list)-n)
	}
	return strings.Join(list, ", ")
}

// diagnose logs what interlock and the server said during the runs
// through interlock: interlock's log lines, the sessions interlock ended
// with an error and its anomalies (from the journal), and the server's
// FATAL and PANIC lines.
func diagnose(t *testing.T, s suite, through *runResult, directLog, throughLog, journalPath string) {
	t.Helper()
	if l := interlockLog(through.Raw); len(l) > 0 {
		t.Logf("interlock's log during the %s run:\n%s", s.name, indent(clip(l, 80), "    "))
	}
	if len(through.Other) > 0 {
		t.Logf("output of the %s run outside any test:\n%s", s.name, indent(clip(through.Other, 40), "    "))
	}
	if l, err := journalErrors(journalPath); err != nil {
		t.Logf("read the journal %s: %v", journalPath, err)
	} else if len(l) > 0 {
		t.Logf("sessions ended with an error, and anomalies, in interlock's journal of the %s run:\n%s", s.name, indent(l, "    "))
	}
	if l := serverFatal(directLog, throughLog); len(l) > 0 {
		t.Logf("server log, FATAL and PANIC messages while the suites ran through interlock (both suites), with their count in the direct runs:\n%s", indent(clip(l, 60), "    "))
	}
}

// journalErrors summarises the journal's session.close entries that carry
// an error, and its anomaly entries: each distinct text with its count.
func journalErrors(path string) ([]string, error) {
	counts := map[string]int{}
	err := journal.Entries(context.Background(), path, 1, func(en journal.Entry) error {
		var e struct {
			Data json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal(en.Body, &e); err != nil {
			return err
		}
		switch en.Kind {
		case model.KindSessionClose:
			var sc model.SessionClose
			if json.Unmarshal(e.Data, &sc) == nil && sc.Error != "" {
				counts["session.close: "+truncate(sc.Error, 400)]++
			}
		case model.KindAnomaly:
			counts["anomaly: "+truncate(string(e.Data), 400)]++
		}
		return nil
	})
	var out []string
	for _, k := range slices.Sorted(maps.Keys(counts)) {
		out = append(out, fmt.Sprintf("%dx %s", counts[k], k))
	}
	return out, err
}

// serverFatal counts the server log's FATAL and PANIC messages in the
// runs through interlock and in the direct runs, and shows the first
// occurrence (with its DETAIL, STATEMENT...) of each message that is more
// frequent through interlock.
func serverFatal(directLog, throughLog string) []string {
	direct, _ := fatalMessages(directLog)
	through, first := fatalMessages(throughLog)
	var out []string
	for _, msg := range slices.Sorted(maps.Keys(through)) {
		out = append(out, fmt.Sprintf("%dx (directly %dx) %s", through[msg], direct[msg], truncate(msg, 300)))
		if through[msg] > direct[msg] {
			for _, l := range first[msg] {
				out = append(out, "      "+truncate(l, 300))
			}
		}
	}
	return out
}

// logPrefix is the server's log_line_prefix '%m [%p] ' (initdb's default).
var logPrefix = regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)? \S+ \[\d+\] `)

func fatalMessages(log string) (counts map[string]int, first map[string][]string) {
	counts, first = map[string]int{}, map[string][]string{}
	var cur string
	for _, l := range strings.Split(log, "\n") {
		rest := logPrefix.ReplaceAllString(l, "")
		switch {
		case strings.HasPrefix(rest, "FATAL:") || strings.HasPrefix(rest, "PANIC:"):
			cur = strings.TrimSpace(rest)
			counts[cur]++
			if counts[cur] > 1 {
				cur = ""
			}
		case cur != "" && (rest != l && (strings.HasPrefix(rest, "DETAIL:") || strings.HasPrefix(rest, "STATEMENT:") || strings.HasPrefix(rest, "HINT:") || strings.HasPrefix(rest, "CONTEXT:")) || strings.HasPrefix(l, "\t")):
		default:
			cur = ""
		}
		if cur != "" {
			first[cur] = append(first[cur], l)
		}
	}
	return counts, first
}

// keepEnv names a directory where the raw outputs, the server log and
// interlock's journals are copied for a person to read.
const keepEnv = "PGXSUITE_KEEP"

func keep(t *testing.T, dir string, direct, through map[string]*runResult, srv *pgtest.Server, tmp string) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Logf("%s: %v", keepEnv, err)
		return
	}
	for name, r := range direct {
		os.WriteFile(filepath.Join(dir, "direct-"+name+".out"), r.Raw, 0o644)
	}
	for name, r := range through {
		os.WriteFile(filepath.Join(dir, "interlock-"+name+".out"), r.Raw, 0o644)
	}
	os.WriteFile(filepath.Join(dir, "server.log"), []byte(srv.Log()), 0o644)
	for _, s := range suites {
		files, _ := filepath.Glob(filepath.Join(tmp, "interlock-"+s.name, "journal*"))
		for _, f := range files {
			if b, err := os.ReadFile(f); err == nil {
				os.WriteFile(filepath.Join(dir, s.name+"-"+filepath.Base(f)), b, 0o644)
			}
		}
	}
	t.Logf("outputs, server log and journals kept in %s", dir)
}

func countPass(r *runResult) int {
	n := 0
	for _, tr := range r.Tests {
		if tr.Status == pass {
			n++
		}
	}
	return n
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + fmt.Sprintf("…[%d bytes]", len(s))
	}
	return s
}

func tailBytes(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
