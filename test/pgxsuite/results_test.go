package pgxsuite

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
)

// status is a test's outcome in one run.
type status string

const (
	pass    status = "pass"
	fail    status = "fail"
	skip    status = "skip"
	missing status = "did not finish" // started, no verdict: the binary died or timed out
	absent  status = "did not run"
)

// testResult is one test (or subtest) of one run.
type testResult struct {
	Status status
	Output []string // its lines, as test2json attributed them
}

// runResult is one run of one suite.
type runResult struct {
	Tests map[string]*testResult
	// Other is output attributed to no test: the binary's own, a panic,
	// interlock's log lines between tests.
	Other []string
	// Raw is the whole combined output, for when all else fails.
	Raw []byte
	// Err is how the command ended.
	Err error
	// Killed says the command was stopped from outside, after killAfter.
	Killed bool
	// TimedOut lists the tests running when -test.timeout struck.
	TimedOut []string
}

func (r *runResult) status(name string) status {
	if tr, ok := r.Tests[name]; ok {
		return tr.Status
	}
	return absent
}

// counts tallies the run: all tests and subtests, and the top-level tests.
func (r *runResult) counts() (all, top map[status]int) {
	all, top = map[status]int{}, map[status]int{}
	for name, tr := range r.Tests {
		all[tr.Status]++
		if !strings.Contains(name, "/") {
			top[tr.Status]++
		}
	}
	return all, top
}

func countLine(c map[status]int) string {
	n := 0
	for _, v := range c {
		n += v
	}
	s := fmt.Sprintf("%d: %d pass, %d fail, %d skip", n, c[pass], c[fail], c[skip])
	if c[missing] > 0 {
		s += fmt.Sprintf(", %d did not finish", c[missing])
	}
	return s
}

// event is one line of test2json's output.
type event struct {
	Action string
	Test   string
	Output string
}

// parseTest2JSON turns a test binary's -test.v=test2json output into
// per-test results, using `go tool test2json` (which understands the
// framing markers, parallel tests' PAUSE/CONT and subtests).
func parseTest2JSON(pkg string, raw []byte) (*runResult, error) {
	cmd := exec.Command("go", "tool", "test2json", "-p", pkg)
	cmd.Stdin = bytes.NewReader(raw)
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go tool test2json: %v", exitText(err))
	}
	r := &runResult{Tests: map[string]*testResult{}, Raw: raw}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var ev event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return nil, fmt.Errorf("test2json line %q: %v", sc.Text(), err)
		}
		if ev.Test == "" {
			if ev.Action == "output" {
				r.Other = append(r.Other, strings.TrimRight(ev.Output, "\n"))
			}
			continue
		}
		ev.Test = normalizeName(ev.Test)
		tr := r.Tests[ev.Test]
		if tr == nil {
			tr = &testResult{Status: missing}
			r.Tests[ev.Test] = tr
		}
		switch ev.Action {
		case "output":
			tr.Output = append(tr.Output, strings.TrimRight(ev.Output, "\n"))
		case "pass", "fail", "skip":
			tr.Status = status(ev.Action)
		}
	}
	return r, sc.Err()
}

// interesting drops test2json's framing lines from a test's output.
func interesting(lines []string) []string {
	var out []string
	for _, l := range lines {
		t := strings.TrimSpace(l)
		if strings.HasPrefix(t, "=== RUN") || strings.HasPrefix(t, "=== PAUSE") || strings.HasPrefix(t, "=== CONT") || strings.HasPrefix(t, "=== NAME") {
			continue
		}
		out = append(out, l)
	}
	return out
}

// clip keeps the last n lines.
func clip(lines []string, n int) []string {
	if len(lines) > n {
		return append([]string{fmt.Sprintf("[... %d lines before]", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return lines
}

func indent(lines []string, prefix string) string {
	if len(lines) == 0 {
		return prefix + "(no output)\n"
	}
	var b strings.Builder
	for _, l := range lines {
		if len(l) > 1000 {
			l = fmt.Sprintf("%s…[%d bytes]", l[:1000], len(l))
		}
		b.WriteString(prefix)
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return b.String()
}

// interlockLog picks interlock's own log lines (slog text: time=... level=...)
// out of a run's combined output.
func interlockLog(raw []byte) []string {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		l := strings.TrimPrefix(sc.Text(), "\x16")
		if strings.HasPrefix(l, "time=") && strings.Contains(l, " level=") {
			out = append(out, l)
		}
	}
	return out
}

// tempName matches a t.TempDir path inside a subtest's name
// (/tmp/TestX123456789/001): it differs from run to run.
var tempName = regexp.MustCompile(`(^|[^A-Za-z0-9_])` + regexp.QuoteMeta(strings.TrimSuffix(os.TempDir(), "/")) + `/[A-Za-z0-9_.-]+/[0-9]{3}`)

// normalizeName makes test names comparable between runs.
func normalizeName(name string) string {
	return tempName.ReplaceAllString(name, "${1}$$TMPDIR")
}

// timedOut reads the tests that were running from the panic of a test
// binary whose -test.timeout struck.
func timedOut(raw []byte) []string {
	i := bytes.Index(raw, []byte("panic: test timed out after"))
	if i < 0 {
		return nil
	}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(raw[i:]))
	sc.Scan()
	if !sc.Scan() || strings.TrimSpace(sc.Text()) != "running tests:" {
		return []string{"(unknown)"}
	}
	for sc.Scan() && strings.HasPrefix(sc.Text(), "\t\t") {
		name := strings.TrimSpace(sc.Text())
		if j := strings.LastIndex(name, " ("); j > 0 {
			name = name[:j]
		}
		out = append(out, normalizeName(name))
	}
	return out
}

// timeoutView is the output of a test that was running when -test.timeout
// struck: its lines up to the panic, then the goroutines of the dump that
// run the test's own function, instead of the whole dump.
func timeoutView(r *runResult, name string, out []string) []string {
	var view []string
	for _, l := range out {
		if strings.HasPrefix(l, "panic: test timed out") {
			break
		}
		view = append(view, l)
	}
	i := bytes.Index(r.Raw, []byte("panic: test timed out"))
	if i < 0 {
		return out
	}
	top, _, _ := strings.Cut(name, "/")
	shown := 0
	for _, g := range strings.Split(string(r.Raw[i:]), "\n\n") {
		if !strings.HasPrefix(g, "goroutine ") || !strings.Contains(g, "."+top+".") && !strings.Contains(g, "."+top+"(") {
			continue
		}
		if shown++; shown > 3 {
			break
		}
		view = append(view, fmt.Sprintf("[goroutine of %s at the timeout]", top))
		view = append(view, clip(strings.Split(strings.TrimSpace(g), "\n"), 24)...)
	}
	return view
}
