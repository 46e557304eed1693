// Package pgxsuite uses a peer's test suite as a regression harness: pgx
// v5's own tests of pgconn and of its root package (from the module cache,
// the version in interlock's go.mod) run twice against one real PostgreSQL
// 15, directly and under `interlock run` through a postgres target, and
// every test that passes directly must pass through interlock too, apart
// from the exclusions listed below with their reasons.
//
// It needs root (PostgreSQL's initdb through runuser, interlock's BPF
// hooks), the Go toolchain, PostgreSQL 15's server binaries and, the first
// time, the module proxy for pgx's test dependencies; under CI=true a
// missing one fails the test instead of skipping it.
//
// The test binaries are built with `go test -c` inside pgx's module
// directory and kept in $(go env GOCACHE)/../interlock-pgxsuite, keyed by
// pgx's version and the Go toolchain; interlock is built from this tree
// every time. PGXSUITE_KEEP=DIR keeps the raw outputs of the runs, the
// server's log and interlock's journals in DIR.
package pgxsuite

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/interlock/interlock/internal/cgroupfs"
	"github.com/interlock/interlock/test/e2e/pgtest"
	"github.com/interlock/interlock/test/testenv"
)

const pgxPath = "github.com/jackc/pgx/v5"

// suite is one of pgx's packages whose tests run.
type suite struct {
	name       string // short name: binary name, subtest name, exclusion key prefix
	importPath string
	rel        string // directory inside pgx's module
}

var suites = []suite{
	{name: "pgconn", importPath: pgxPath + "/pgconn", rel: "pgconn"},
	{name: "pgx", importPath: pgxPath, rel: "."},
}

// excluded lists the tests that cannot pass through interlock by design,
// keyed by suite name and test name ("pgconn/TestX" or "pgx/TestY/sub"),
// each with its reason. Excluding a test excludes its subtests. An entry
// whose test passes through interlock again is reported, so that the list
// only ever holds what is still needed.
var excluded = map[string]string{
	"pgconn/TestConnectTLS/WithChannelBinding": "channel_binding=require makes pgx insist that the server " +
		"authenticated it with SCRAM-SHA-256-PLUS; through interlock the client does not authenticate at all " +
		"(interlock answers AuthenticationOk: the process attributed by the kernel is the identity, and the " +
		"password stays with interlock, docs/postgres.md \"The client needs no password\"); interlock's own " +
		"login to the server does use channel binding",
	"pgx/TestConnSimpleProtocolRefusesNonStandardConformingStrings": "the test turns " +
		"standard_conforming_strings off; interlock refuses that (rule interlock.postgres.parser, " +
		"docs/postgres.md): with it off, backslashes in string literals could make the server read a " +
		"statement differently from interlock's parser",
	"pgconn/TestConnectProtocolVersion32": "interlock serves protocol 3.2 to a client that asks for it, " +
		"with a 32-byte cancel key it mints itself, whatever the server speaks (docs/postgres.md, " +
		"\"Protocol 3.2 is served as 3.2\"; the upstream leg is 3.0); the test expects the 4-byte key " +
		"of a server older than PostgreSQL 18",
}

// Time bounds: each suite's binary gets -test.timeout, and the command is
// killed a little after that if it still runs.
const (
	suiteTimeout = 4 * time.Minute
	killAfter    = suiteTimeout + 30*time.Second
	// maxRetry is the most top-level tests tried a second time.
	maxRetry = 10
)

func TestPgxSuite(t *testing.T) {
	checkExclusions(t)
	testenv.RequireRoot(t)
	_, err := exec.LookPath("go")
	testenv.Require(t, "the Go toolchain", err)
	testenv.Require(t, "PostgreSQL 15", pgtest.Available())
	_, err = cgroupfs.Root()
	testenv.Require(t, "cgroup v2 (interlock run)", err)

	start := time.Now()
	since := func() time.Duration { return time.Since(start).Round(time.Millisecond) }
	tmp := t.TempDir()
	os.Chmod(tmp, 0o755)

	mod := findPGX(t)
	t.Logf("pgx %s in %s", mod.Version, mod.Dir)
	cache := cacheDir(t, mod)
	bins := map[string]string{}
	for _, s := range suites {
		bins[s.name] = buildSuite(t, mod, cache, tmp, s)
	}
	ilk := buildInterlock(t, tmp)
	t.Logf("built (binaries cached in %q): %v", cache, since())

	srv := startServer(t)
	t.Logf("PostgreSQL 15 on %s: %v", srv.Addr(), since())
	// One interlock configuration (state, journal, pins) per suite: the
	// two runs through interlock go on at the same time.
	cfgs := map[string]interlockSetup{}
	for _, s := range suites {
		cfgs[s.name] = interlockConfig(t, srv, filepath.Join(tmp, "interlock-"+s.name))
	}
	directCmd := func(s suite, extra ...string) *exec.Cmd {
		cmd := exec.Command(bins[s.name], append(testArgs(), extra...)...)
		cmd.Env = suiteEnv(suiteVars(srv, true, srv.CAFile))
		return cmd
	}
	throughCmd := func(s suite, extra ...string) *exec.Cmd {
		argv := append([]string{"run", "-q", "-c", cfgs[s.name].config, "--", bins[s.name]}, testArgs()...)
		cmd := exec.Command(ilk, append(argv, extra...)...)
		cmd.Env = suiteEnv(suiteVars(srv, false, cfgs[s.name].caFile))
		return cmd
	}

	// The two packages run side by side, as `go test ./...` runs them in
	// pgx's CI; the direct runs first, then the runs through interlock
	// (the same package twice at once would collide on the tables its
	// tests create).
	logStart := len(srv.Log())
	direct := runAll(t, "direct", directCmd, mod)
	t.Logf("direct runs done: %v", since())
	logMid := len(srv.Log())
	through := runAll(t, "interlock", throughCmd, mod)
	t.Logf("runs through interlock done: %v", since())
	if dir := os.Getenv(keepEnv); dir != "" {
		t.Cleanup(func() { keep(t, dir, direct, through, srv, tmp) })
	}

	for _, s := range suites {
		t.Run(s.name, func(t *testing.T) {
			d, th := direct[s.name], through[s.name]
			checkDirect(t, s, d)
			if len(th.Tests) == 0 {
				t.Fatalf("the run of %s through interlock ran no tests (%v):\n%s", s.importPath, th.Err, tailBytes(th.Raw, 8000))
			}
			regs := regressions(s, d, th)
			// Only a few failures of a run that ended by itself are worth a
			// second try; a run that timed out or lost most of its tests
			// would only time out again.
			if tops := topLevel(regs); len(regs) > 0 && len(tops) <= maxRetry && len(th.TimedOut) == 0 && !th.Killed {
				// A second try, through interlock, of the top-level tests
				// that did not pass: a test that passes now is reported as
				// flaky (timing on a loaded machine), not as a regression.
				t.Logf("trying again through interlock: %s", strings.Join(tops, " "))
				again := runSuite(throughCmd(s, "-test.run=^("+strings.Join(quoteAll(tops), "|")+")$"), filepath.Join(mod.Dir, s.rel), s.importPath)
				var still []string
				for _, name := range regs {
					if again.status(name) == pass {
						t.Logf("FLAKY through interlock: %s failed (%s), then passed on the second try; first try:\n%s",
							name, th.status(name), indent(clip(interesting(outputOf(th, name)), 30), "    "))
						continue
					}
					still = append(still, name)
				}
				regs = still
			}
			report(t, s, d, th, regs)
			if len(regs) > 0 {
				log := srv.Log()
				diagnose(t, s, th, log[logStart:logMid], log[logMid:], filepath.Join(cfgs[s.name].dir, "journal.db"))
			}
			staleExclusions(t, s, d, th)
		})
	}
	t.Logf("total: %v", since())
}

// testArgs are the suite binaries' flags. PGXSUITE_RUN=REGEXP runs only
// the tests it matches (for a developer chasing one failure; the
// comparison then covers only those).
func testArgs() []string {
	args := []string{"-test.v=test2json", "-test.count=1", "-test.timeout=" + suiteTimeout.String()}
	if re := os.Getenv(runEnv); re != "" {
		args = append(args, "-test.run="+re)
	}
	return args
}

const runEnv = "PGXSUITE_RUN"

// suiteEnv is the environment of a suite's binary: ours without anything
// libpq-like that could lend it a password or change its connections
// (and without other PGX_ variables), and the run's PGX_TEST_* variables.
func suiteEnv(vars []string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, vars...)
}

// runAll runs every suite at once, each in its package's source directory
// (as go test does), its stdout and stderr combined, and parses the
// results.
func runAll(t *testing.T, how string, mk func(suite, ...string) *exec.Cmd, mod pgxModule) map[string]*runResult {
	t.Helper()
	res := map[string]*runResult{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, s := range suites {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := runSuite(mk(s), filepath.Join(mod.Dir, s.rel), s.importPath)
			mu.Lock()
			res[s.name] = r
			mu.Unlock()
		}()
	}
	wg.Wait()
	for _, s := range suites {
		r := res[s.name]
		all, top := r.counts()
		t.Logf("%-6s %-9s top-level %s; with subtests %s (exit: %v)", s.name, how, countLine(top), countLine(all), r.Err)
	}
	return res
}

func runSuite(cmd *exec.Cmd, dir, pkg string) *runResult {
	ctx, cancel := context.WithTimeout(context.Background(), killAfter)
	defer cancel()
	var out bytes.Buffer
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = &out, &out
	// Its own process group, so that the binary under interlock run goes
	// too if it must be killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return &runResult{Tests: map[string]*testResult{}, Err: err}
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var runErr error
	select {
	case runErr = <-done:
	case <-ctx.Done():
		// interlock run passes SIGTERM on to the binary and then ends the
		// run's cgroup; SIGKILL to the group if that does not do.
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case runErr = <-done:
		case <-time.After(15 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			runErr = <-done
		}
		runErr = errors.Join(fmt.Errorf("stopped after %v", killAfter), runErr)
	}
	r, err := parseTest2JSON(pkg, out.Bytes())
	if err != nil {
		r = &runResult{Tests: map[string]*testResult{}, Raw: out.Bytes(), Err: err}
	}
	r.Err = errors.Join(runErr, r.Err)
	r.Killed = ctx.Err() != nil
	r.TimedOut = timedOut(r.Raw)
	return r
}

// exclusion returns the reason a test, or a test it belongs to, is excluded.
func exclusion(s suite, name string) (string, bool) {
	for n := name; ; {
		if why, ok := excluded[s.name+"/"+n]; ok {
			return why, true
		}
		i := strings.LastIndexByte(n, '/')
		if i < 0 {
			return "", false
		}
		n = n[:i]
	}
}

// checkExclusions makes sure every exclusion names a suite and gives a
// reason.
func checkExclusions(t *testing.T) {
	t.Helper()
	for _, key := range slices.Sorted(maps.Keys(excluded)) {
		known := false
		for _, s := range suites {
			if strings.HasPrefix(key, s.name+"/Test") {
				known = true
			}
		}
		if !known {
			t.Errorf("exclusion %q: keys are SUITE/TestName with SUITE one of pgconn, pgx", key)
		}
		if strings.TrimSpace(excluded[key]) == "" {
			t.Errorf("exclusion %q has no reason", key)
		}
	}
}

// staleExclusions reports the exclusions no longer needed: their test
// passes through interlock, or no longer exists.
func staleExclusions(t *testing.T, s suite, direct, through *runResult) {
	t.Helper()
	for _, key := range slices.Sorted(maps.Keys(excluded)) {
		name, ok := strings.CutPrefix(key, s.name+"/")
		if !ok {
			continue
		}
		switch d, th := direct.status(name), through.status(name); {
		case d == absent && th == absent:
			t.Errorf("exclusion %q names a test that did not run (renamed or removed in %s?): remove it", key, s.importPath)
		case d == pass && th == pass:
			t.Errorf("exclusion %q is no longer needed: the test passes through interlock (reason was: %s)", key, excluded[key])
		case d != pass:
			t.Logf("exclusion %q: the test did not pass directly either (%s)", key, d)
		default:
			t.Logf("excluded: %s %s (%s through interlock): %s", s.name, name, th, excluded[key])
		}
	}
}
