// Package adversarial is the suite of issue 10: PostgreSQL controls that a
// watched session cannot talk its way around, and a journal that records
// what the server ran.
//
// Every case is an attack by the watched process. It runs against a real
// PostgreSQL 15 (started once for the package, with log_statement = all),
// through the interlock binary built from this tree, with a raw-protocol
// client (advclient) or psql inside `interlock run`'s cgroup. Each case has
// a database and a login role of its own (the role is the one interlock
// holds the credentials of), so cases cannot interfere, and two run at a
// time. A case may open sessions in other client processes too: one under
// an `interlock run` of its own (another job), or another process of the
// case's run (see sessionsPerProcess).
//
// The contract every case checks:
//
//   - EITHER the forbidden effect did not happen (checked as the superuser
//     over the unix socket, which is not intercepted) and the client got
//     an ErrorResponse naming the rule (`rule "<name>"`, SQLSTATE 42501),
//     or interlock ended the session (FATAL "interlock ended the session"
//     and an anomaly record);
//   - OR the effect happened, and the journal names the statement the
//     server ran, exactly.
//
// Cases whose effect policy must stop (mode mustRefuse) do not accept the
// second branch. Whatever the branch, the journal must agree with the
// server's own log: every statement the server logged for a session's
// backend (postgres.upstream_pid of session.open) appears, in order, in
// the journal of the session's run as a pg.statement whose sql (or
// prepared_sql, or the bytes of sql_b64) is exactly the logged text;
// interlock's own statements begin with "/* interlock:" and its additions
// to a client's query string with "\n;/* interlock:", and are left out of
// the comparison.
package adversarial

import (
	"flag"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/interlock/interlock/internal/testkit"
	"github.com/interlock/interlock/test/adversarial/rawpg"
	"github.com/interlock/interlock/test/testenv"
)

var (
	binDir       string
	interlockBin string
	advclientBin string
	buildErr     error

	controlFlag = flag.Bool("adv.control", os.Getenv("ADV_CONTROL") != "0",
		"also run every attack directly against PostgreSQL (no interlock) and check that it has its effect there (ADV_CONTROL=0 turns it off)")
)

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	if os.Geteuid() != 0 {
		if testenv.CI() {
			fmt.Fprintln(os.Stderr, "adversarial: these tests need root (CI=true: failing, not skipping)")
			return 1
		}
		fmt.Fprintln(os.Stderr, "adversarial: skipped: not root")
		return 0
	}
	var err error
	binDir, err = os.MkdirTemp("", "interlock-adv-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "adversarial:", err)
		return 1
	}
	defer os.RemoveAll(binDir)
	os.Chmod(binDir, 0o755)
	interlockBin = filepath.Join(binDir, "interlock")
	advclientBin = filepath.Join(binDir, "advclient")
	// interlock is built from the tree under test, as test/e2e does.
	// ADV_INTERLOCK names a binary to test instead (for instance one built
	// from another commit while this tree does not build).
	builds := map[string]string{interlockBin: "../../cmd/interlock", advclientBin: "./advclient"}
	if b := os.Getenv("ADV_INTERLOCK"); b != "" {
		interlockBin = b
		builds = map[string]string{advclientBin: "./advclient"}
		fmt.Fprintf(os.Stderr, "adversarial: testing %s (ADV_INTERLOCK), not a build of this tree\n", b)
	}
	for _, tool := range []string{"runuser", "setsid"} {
		if _, err := exec.LookPath(tool); err != nil {
			fmt.Fprintf(os.Stderr, "adversarial: %s is missing (util-linux; make test installs it): %v\n", tool, err)
			if testenv.CI() {
				return 1
			}
			return 0
		}
	}
	for out, pkg := range builds {
		cmd := exec.Command("go", "build", "-o", out, pkg)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "adversarial: build %s: %v\n", pkg, err)
			return 1
		}
	}
	return m.Run()
}

// outcome modes.
type mode int

const (
	// either: refused (the rule named) or the session ended by interlock,
	// or the effect happened and the journal names exactly what ran.
	either mode = iota
	// mustRefuse: the effect must not happen at all.
	mustRefuse
	// harmless: the server itself cannot be made to do it (for instance a
	// SET in the same query string as the statement it would change); the
	// effect must not happen, no refusal is needed, and the journal must
	// still agree with the server.
	harmless
	// custom: the case's own checks decide; the verdict applies the
	// journal oracle only.
	custom
)

func (m mode) String() string {
	return [...]string{"either", "must-refuse", "harmless", "custom"}[m]
}

// advCase is one row of the table.
type advCase struct {
	name  string
	class int
	// super runs as the superuser in the case's database, then setup as
	// the case's role (the role interlock logs in as); both after the
	// common tables (orders with 5 rows, victim, audit) exist.
	super []string
	setup []string
	// policy is the YAML under `policy:`, indented by two spaces; the
	// target (named db) gets targetYAML indented by four.
	policy     string
	targetYAML string
	// startup parameters of session 0 beyond user and database.
	startup map[string]string
	// run is what the client does.
	run func(c *caseRun)
	// effect returns "" when the forbidden effect did not happen, else
	// what happened.
	effect func(c *caseRun) string
	// rules a refusal may name (any rule when empty).
	rules []string
	mode  mode
	// check holds the case's own checks.
	check func(c *caseRun)
	// noDB: the case runs no session (configuration checks).
	noDB bool
	// noControl: the attack is not expected to work directly either
	// (harmless cases, and cases whose effect needs interlock).
	noControl bool
	// needs names the extensions the case needs.
	needs []string
	// loginMayBeRefused: the attack starts at login (a setting the session
	// starts with); interlock refusing the login blocks it.
	loginMayBeRefused bool
	// secrets are literals (as written in the SQL, quotes included) that
	// must not reach the journal: the journal may replace them, and only
	// them, in the text it records.
	secrets []string
}

var cases []advCase

func add(cs ...advCase) { cases = append(cases, cs...) }

// caseRun is one run of a case.
type caseRun struct {
	t      *testing.T
	cs     *advCase
	idx    int
	direct bool

	role, db, password string
	dir, cfgPath       string
	journalPath, pin   string
	logStart           int64

	// runs are the running `interlock run`s by client process (procMain,
	// procOtherJob), jobs every one started, in order; started marks the
	// client processes started (see sessionsPerProcess). directs are the
	// sessions of a control run.
	runs    map[int]*clientProc
	jobs    []*clientProc
	started map[int]bool
	directs map[int]*rawpg.Conn

	mu         sync.Mutex
	transcript []string
	replies    []rawpg.Reply
	outputs    []string // psql stderr and stdout
	runStderr  string
	// jobStderr is the stderr of the other jobs' `interlock run`s.
	jobStderr  map[int]string
	loginError string
	// loginRefused is interlock's FATAL when it refused session 0's login
	// (cases with loginMayBeRefused).
	loginRefused string

	// the journals, read once the runs have ended: the case's run's
	// (entries) and the other jobs' (jobEntries, by client process).
	jOnce      sync.Once
	entries    []jEntry
	jobEntries map[int][]jEntry

	// the held role's password hash and settings after setup.
	basePW, baseSettings string
	vars                 map[string]string
	hung                 map[int]bool
}

// --- running cases ---

func TestAdversarial(t *testing.T) {
	server(t)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server log tail:\n%s", testkit.Tail(srv.Log(), 3000))
		}
		srv.Stop()
	})
	seen := map[string]bool{}
	counts := map[int]int{}
	for i := range cases {
		cs := &cases[i]
		if seen[cs.name] {
			t.Fatalf("two cases named %s", cs.name)
		}
		seen[cs.name] = true
		counts[cs.class]++
		idx := i
		t.Run(cs.name, func(t *testing.T) {
			t.Parallel()
			runCase(t, cs, idx, false)
		})
		if *controlFlag && !cs.noDB && !cs.noControl && (cs.effect != nil || cs.mode == custom) {
			t.Run("control-"+cs.name, func(t *testing.T) {
				t.Parallel()
				runCase(t, cs, idx, true)
			})
		}
	}
	var cl []string
	for k := range counts {
		cl = append(cl, fmt.Sprintf("class %d: %d", k, counts[k]))
	}
	sort.Strings(cl)
	t.Logf("%d cases (%s)", len(cases), strings.Join(cl, ", "))
}

func runCase(t *testing.T, cs *advCase, idx int, direct bool) {
	for _, ext := range cs.needs {
		_, err := os.Stat("/usr/share/postgresql/15/extension/" + ext + ".control")
		testenv.Require(t, "the "+ext+" extension (postgresql-15 contrib)", err)
	}
	c := newRun(t, cs, idx, direct)
	if cs.noDB {
		cs.run(c)
		return
	}
	c.prepare()
	c.writeConfig(cs.policy)
	c.logStart = logSize()
	if !direct {
		c.start()
	}
	c.connect(0, cs.startup)
	if c.loginRefused == "" {
		cs.run(c)
	}
	if direct {
		for n := range c.directs {
			c.closeSession(n)
		}
		if cs.effect != nil && cs.mode != custom {
			if eff := cs.effect(c); eff == "" {
				t.Errorf("CONTROL: the attack has no effect even without interlock (the case does not test what it says):%s", c.transcriptText())
			} else {
				t.Logf("control: without interlock the attack works: %s", eff)
			}
		}
		return
	}
	// Interlock's own logins still work after the attack.
	rep := c.callSession(99, map[string]any{"op": "connect", "addr": srv.Addr(), "params": c.startupParams(nil)}, 20*time.Second)
	c.record("session 99: connect (interlock's own login still works?)", rep.Reply)
	if c.loginRefused != "" {
		// The setup itself makes logins unsafe (a role setting); the
		// refusal of session 0 already said so.
	} else if rep.Err != "" {
		t.Errorf("LOGIN BROKEN: after the attack interlock cannot log in to the target any more: %s", summarize(rep.Reply))
	} else if r := c.send(99, q("SELECT 1 AS alive")); len(rows(r)) != 1 || rows(r)[0] != "1" {
		t.Errorf("LOGIN BROKEN: after the attack a new session through interlock cannot run SELECT 1: %s", summarize(r))
	}
	c.stop()
	verdict(c)
	if cs.check != nil {
		cs.check(c)
	}
	if t.Failed() || testing.Verbose() && os.Getenv("ADV_VERBOSE") == "1" {
		t.Logf("transcript:%s\njournal:%s\nserver log of the case's backends:%s\ninterlock run stderr (tail):\n%s",
			c.transcriptText(), c.journalSummary(), c.sessionLog(80), testkit.Tail(c.runStderr, 2500))
		for _, p := range slices.Sorted(maps.Keys(c.jobStderr)) {
			t.Logf("interlock run stderr of client process %d (tail):\n%s", p, testkit.Tail(c.jobStderr[p], 1500))
		}
	}
}
