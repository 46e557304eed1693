package pgxsuite

import (
	"os"
	"slices"
	"testing"
)

// TestHarness checks the harness's own parsing and comparison on made-up
// output; it needs nothing but the go command.
func TestHarness(t *testing.T) {
	tmp := os.TempDir()
	out := func(lines ...string) []byte {
		var b []byte
		for _, l := range lines {
			b = append(b, l+"\n"...)
		}
		return b
	}
	direct, err := parseTest2JSON("example.com/p", out(
		"=== RUN   TestA",
		"--- PASS: TestA (0.00s)",
		"=== RUN   TestB",
		"=== RUN   TestB/one",
		"=== RUN   TestB/two",
		"--- PASS: TestB (0.00s)",
		"    --- PASS: TestB/one (0.00s)",
		"    --- PASS: TestB/two (0.00s)",
		"=== RUN   TestC",
		"    c_test.go:1: not here",
		"--- SKIP: TestC (0.00s)",
		"=== RUN   TestD",
		"=== RUN   TestD/file="+tmp+"/TestD123456/001/x.conf",
		"--- PASS: TestD (0.00s)",
		"    --- PASS: TestD/file="+tmp+"/TestD123456/001/x.conf (0.00s)",
		"PASS",
	))
	if err != nil {
		t.Fatal(err)
	}
	through, err := parseTest2JSON("example.com/p", out(
		"=== RUN   TestA",
		"    a_test.go:9: boom",
		"--- FAIL: TestA (0.00s)",
		"=== RUN   TestB",
		"=== RUN   TestB/one",
		"=== RUN   TestB/two",
		"    b_test.go:3: by design",
		"--- FAIL: TestB (0.00s)",
		"    --- PASS: TestB/one (0.00s)",
		"    --- FAIL: TestB/two (0.00s)",
		"=== RUN   TestD",
		"=== RUN   TestD/file="+tmp+"/TestD987/001/x.conf",
		"--- PASS: TestD (0.00s)",
		"    --- PASS: TestD/file="+tmp+"/TestD987/001/x.conf (0.00s)",
		"=== RUN   TestE",
		"FAIL",
	))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]status{"TestA": pass, "TestB/two": pass, "TestC": skip, "TestD/file=$TMPDIR/x.conf": pass} {
		if got := direct.status(name); got != want {
			t.Errorf("direct %s: %s, want %s", name, got, want)
		}
	}
	for name, want := range map[string]status{"TestA": fail, "TestB": fail, "TestB/two": fail, "TestC": absent, "TestD/file=$TMPDIR/x.conf": pass, "TestE": missing} {
		if got := through.status(name); got != want {
			t.Errorf("through %s: %s, want %s", name, got, want)
		}
	}
	if got := interesting(through.Tests["TestA"].Output); !slices.Contains(got, "    a_test.go:9: boom") {
		t.Errorf("TestA's output: %q", got)
	}

	s := suite{name: "p"}
	saved := excluded
	defer func() { excluded = saved }()
	excluded = map[string]string{}
	if got, want := regressions(s, direct, through), []string{"TestA", "TestB", "TestB/two"}; !slices.Equal(got, want) {
		t.Errorf("regressions %q, want %q", got, want)
	}
	// Excluding the failing subtest excuses its parent too.
	excluded = map[string]string{"p/TestB/two": "by design"}
	if got, want := regressions(s, direct, through), []string{"TestA"}; !slices.Equal(got, want) {
		t.Errorf("with TestB/two excluded: regressions %q, want %q", got, want)
	}
	raw := []byte("=== RUN   TestX\npanic: test timed out after 4m0s\n\trunning tests:\n\t\tTestX (3m59s)\n\t\tTestX/sub (3m59s)\n\ngoroutine 1 [running]:\n")
	if got, want := timedOut(raw), []string{"TestX", "TestX/sub"}; !slices.Equal(got, want) {
		t.Errorf("timedOut %q, want %q", got, want)
	}
	if got, want := topLevel([]string{"TestA", "TestB/two", "TestB/one"}), []string{"TestA", "TestB"}; !slices.Equal(got, want) {
		t.Errorf("topLevel %q", got)
	}
}
