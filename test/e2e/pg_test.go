package e2e

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/interlock/interlock/internal/testkit"
	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/test/e2e/pgtest"
	"github.com/interlock/interlock/test/testenv"
)

// The PostgreSQL end-to-end tests: a real PostgreSQL 15 on 127.0.0.2
// (scram-sha-256 logins, TLS on), real clients (psql, pgbench, a pgx
// program) under `interlock run`, with no password on the client side.

var (
	pgclientOnce sync.Once
	pgclientBin  string
	pgclientErr  error
)

// requirePG starts the server for one test, or skips (fails under CI).
func requirePG(t *testing.T) *pgtest.Server {
	t.Helper()
	testenv.Require(t, "PostgreSQL 15", pgtest.Available())
	srv, err := pgtest.Start(pgtest.Options{})
	if err != nil {
		t.Fatalf("start PostgreSQL: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server log:\n%s", testkit.Tail(srv.Log(), 4000))
		}
		srv.Stop()
	})
	pgclientOnce.Do(func() {
		pgclientBin = filepath.Join(binDir, "pgclient")
		cmd := exec.Command("go", "build", "-o", pgclientBin, "./pgclient")
		if out, err := cmd.CombinedOutput(); err != nil {
			pgclientErr = fmt.Errorf("build pgclient: %v: %s", err, out)
		}
	})
	if pgclientErr != nil {
		t.Fatal(pgclientErr)
	}
	return srv
}

// pgTarget is a postgres target holding the app role's credentials.
func pgTarget(t *testing.T, name, addr, password, extra string) target {
	t.Helper()
	pw := filepath.Join(t.TempDir(), name+".password")
	if err := os.WriteFile(pw, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	y := fmt.Sprintf("credentials:\n      user: %s\n      password_file: %s", pgtest.AppUser, pw)
	if extra != "" {
		y += "\n    " + extra
	}
	return target{name: name, address: addr, protocol: "postgres", extra: y}
}

func conninfo(srv *pgtest.Server, extra string) string {
	return fmt.Sprintf("host=%s port=%d user=%s dbname=%s %s", srv.Host, srv.Port, pgtest.AppUser, pgtest.AppDB, extra)
}

// pgRecord is a pg.statement entry with its pg.result and its session.
type pgRecord struct {
	Seq     uint64
	Session string
	St      model.PGStatement
	Res     *model.PGResult
}

func (e *env) pgStatements() ([]pgRecord, map[string]model.SessionOpen) {
	e.t.Helper()
	var out []pgRecord
	idx := map[uint64]int{}
	opens := map[string]model.SessionOpen{}
	for _, en := range e.entries() {
		switch en.Kind {
		case model.KindSessionOpen:
			var so model.SessionOpen
			json.Unmarshal(en.Data, &so)
			opens[en.Session] = so
		case model.KindPGStatement:
			var st model.PGStatement
			if err := json.Unmarshal(en.Data, &st); err != nil {
				e.t.Fatalf("pg.statement %d: %v", en.Seq, err)
			}
			idx[en.Seq] = len(out)
			out = append(out, pgRecord{Seq: en.Seq, Session: en.Session, St: st})
		case model.KindPGResult:
			var r model.PGResult
			if err := json.Unmarshal(en.Data, &r); err != nil {
				e.t.Fatalf("pg.result %d: %v", en.Seq, err)
			}
			if i, ok := idx[r.Statement]; ok {
				out[i].Res = &r
			}
		}
	}
	return out, opens
}

// findStatement finds the first pg.statement of text sql, with its result
// and its session's open record, waiting for them: the daemon's writer
// moves records from its commit log into SQLite every flush_interval and
// at each session's end, and this process reads SQLite, so the records of a
// client that has just exited may be one flush away (the session's end
// races the test's read). A statement that stays without a result is
// returned as found after a second.
func (e *env) findStatement(sql string) (pgRecord, model.SessionOpen, bool) {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var foundAt time.Time
	for {
		r, so, ok := e.lookupStatement(sql)
		now := time.Now()
		if ok && foundAt.IsZero() {
			foundAt = now
		}
		if ok && (r.Res != nil || now.Sub(foundAt) > time.Second) || now.After(deadline) {
			return r, so, ok
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// lookupStatement is findStatement without the wait, for a statement that
// may rightly be absent.
func (e *env) lookupStatement(sql string) (pgRecord, model.SessionOpen, bool) {
	e.t.Helper()
	sts, opens := e.pgStatements()
	for _, s := range sts {
		if s.St.SQL == sql {
			return s, opens[s.Session], true
		}
	}
	return pgRecord{}, model.SessionOpen{}, false
}

func TestPostgres(t *testing.T) {
	srv := requirePG(t)
	psql := filepath.Join(srv.BinDir, "psql")
	pgbench := filepath.Join(srv.BinDir, "pgbench")
	e := newEnv(t, []target{pgTarget(t, "db", srv.Addr(), pgtest.AppPassword,
		"deny_statements: [drop_database]\n    record_results: rows")}, "")

	t.Run("psql", func(t *testing.T) {
		data := filepath.Join(e.dir, "in.tsv")
		os.WriteFile(data, []byte("1\tone\n2\ttwo\n3\tthree\n"), 0o644)
		outFile := filepath.Join(e.dir, "out.tsv")
		script := fmt.Sprintf(`CREATE TABLE items(id int, name text); INSERT INTO items VALUES (10, 'ten'); SELECT count(*) AS n FROM items;
\copy items from '%s'
\copy (SELECT * FROM items ORDER BY id) to '%s'
DROP DATABASE appdb;
SELECT 'still here' AS alive;
`, data, outFile)
		cmd := exec.Command(interlockBin, "run", "-c", e.cfgPath, "--", psql, "-X", "-v", "VERBOSITY=verbose", conninfo(srv, "sslmode=disable"))
		cmd.Stdin = strings.NewReader(script)
		out, stderr, code := runCmd(t, cmd)
		if code != 0 {
			t.Fatalf("psql exited %d: %s %s", code, out, stderr)
		}
		if !strings.Contains(out, "still here") || !strings.Contains(stderr, "42501") || !strings.Contains(stderr, "deny_statements") {
			t.Errorf("denied DROP DATABASE, then the next statement: stdout %q stderr %q", out, stderr)
		}
		got, _ := os.ReadFile(outFile)
		if string(got) != "1\tone\n2\ttwo\n3\tthree\n10\tten\n" {
			t.Errorf("\\copy out wrote %q", got)
		}
		for _, sql := range []string{"CREATE TABLE items(id int, name text)", "INSERT INTO items VALUES (10, 'ten')", "SELECT count(*) AS n FROM items",
			"COPY  items FROM STDIN", "COPY  ( SELECT * FROM items ORDER BY id ) TO STDOUT", "DROP DATABASE appdb", "SELECT 'still here' AS alive"} {
			r, so, ok := e.findStatement(sql)
			if !ok {
				sts, _ := e.pgStatements()
				var all []string
				for _, s := range sts {
					all = append(all, s.St.SQL)
				}
				t.Errorf("no journal entry for %q; have %q", sql, all)
				continue
			}
			if so.Identity.Proc == nil || so.Identity.Proc.Exe != psql || so.Identity.Kernel.Comm != "psql" {
				t.Errorf("%q: session identity %+v", sql, so.Identity)
			}
			if r.St.Decision.Action == model.Deny {
				if sql != "DROP DATABASE appdb" || r.St.SQLState != "42501" {
					t.Errorf("%q denied: %+v", sql, r.St)
				}
				continue
			}
			if r.Res == nil || r.Res.SQLState != "" {
				t.Errorf("%q: result %+v", sql, r.Res)
			}
		}
		if r, _, _ := e.findStatement("COPY  items FROM STDIN"); r.Res == nil || r.Res.Rows != 3 || r.St.ReadOnly {
			t.Errorf("copy in: %+v %+v", r.St, r.Res)
		}
		if r, _, _ := e.findStatement("SELECT count(*) AS n FROM items"); r.Res == nil || r.Res.RowsRecorded != 1 || !r.St.ReadOnly {
			t.Errorf("select: %+v %+v", r.St, r.Res)
		}
	})

	t.Run("cancel", func(t *testing.T) {
		cmd := exec.Command(interlockBin, "run", "-c", e.cfgPath, "--", psql, "-X", "-c", "SELECT pg_sleep(30) AS cancel_me", conninfo(srv, "sslmode=prefer"))
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		active := func() string {
			s, _ := srv.PSQL("postgres", "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(30) AS cancel_me%' AND state = 'active'")
			return s
		}
		for active() != "1" {
			if time.Since(start) > 15*time.Second {
				t.Fatalf("the query never ran: %s", out.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
		child := childOf(t, cmd.Process.Pid)
		if err := syscall.Kill(child, syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			t.Fatalf("psql did not return after the cancel: %s", out.String())
		}
		if !strings.Contains(out.String(), "canceling statement due to user request") {
			t.Errorf("psql output: %s", out.String())
		}
		if time.Since(start) > 20*time.Second {
			t.Errorf("cancel took %v", time.Since(start))
		}
		if n := active(); n != "0" {
			t.Errorf("pg_sleep still active on the server after the cancel (%s)", n)
		}
		cancels := entriesOf[model.PGCancel](e, model.KindPGCancel)
		if len(cancels) != 1 || !cancels[0].Forwarded || cancels[0].Session == "" || cancels[0].Identity.Kernel.Comm != "psql" {
			t.Errorf("pg.cancel records: %+v", cancels)
		}
	})

	t.Run("listen-notify", func(t *testing.T) {
		cmd := exec.Command(interlockBin, "run", "-c", e.cfgPath, "--", psql, "-X", "-c", "LISTEN jobs", "-c", "SELECT pg_sleep(3)", "-c", "SELECT 1", conninfo(srv, "sslmode=require"))
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Notify once psql has listened and sleeps: a notification sent
		// before its LISTEN is not delivered (a slow start is not a bug).
		testkit.WaitFor(t, 20*time.Second, 20*time.Millisecond, func() bool {
			n, _ := srv.PSQL(pgtest.AppDB, "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query = 'SELECT pg_sleep(3)'")
			return n == "1"
		})
		if o, err := srv.PSQL(pgtest.AppDB, "NOTIFY jobs, 'job 42 ready'"); err != nil {
			t.Fatalf("notify: %v %s", err, o)
		}
		if err := cmd.Wait(); err != nil {
			t.Fatalf("psql: %v: %s", err, out.String())
		}
		if !strings.Contains(out.String(), `Asynchronous notification "jobs" with payload "job 42 ready" received`) {
			t.Errorf("psql did not get the notification: %s", out.String())
		}
		if _, _, ok := e.findStatement("LISTEN jobs"); !ok {
			t.Errorf("LISTEN not journaled")
		}
	})

	t.Run("sslmodes", func(t *testing.T) {
		for _, mode := range []string{"disable", "prefer", "require"} {
			q := "SELECT 'mode " + mode + "'"
			out, stderr, code := e.runUnder(psql, "-X", "-At", "-c", q, conninfo(srv, "sslmode="+mode))
			if code != 0 || strings.TrimSpace(out) != "mode "+mode {
				t.Errorf("sslmode=%s: exit %d: %s %s", mode, code, out, stderr)
				continue
			}
			_, so, ok := e.findStatement(q)
			if !ok || so.Postgres == nil || so.Postgres.ClientTLS != (mode != "disable") || !so.Postgres.UpstreamTLS {
				t.Errorf("sslmode=%s: session %+v", mode, so.Postgres)
			}
		}
		// verify-full against interlock's own CA.
		ca := filepath.Join(e.dir, "state", "tls", "ca.crt")
		out, stderr, code := e.runUnder(psql, "-X", "-At", "-c", "SELECT 'verified'", conninfo(srv, "sslmode=verify-full sslrootcert="+ca))
		if code != 0 || strings.TrimSpace(out) != "verified" {
			t.Errorf("sslmode=verify-full with interlock's CA: exit %d: %s %s", code, out, stderr)
		}
		// A job that is not root cannot read state_dir; it uses the copy
		// published beside the control socket.
		published := filepath.Join(filepath.Dir(e.socket), "postgres-ca.crt")
		q := "SELECT 'verified as nobody'"
		out, stderr, code = e.runUnder("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
			"env", "HOME=/nonexistent", psql, "-X", "-At", "-c", q, conninfo(srv, "sslmode=verify-full sslrootcert="+published))
		if code != 0 || strings.TrimSpace(out) != "verified as nobody" {
			t.Errorf("sslmode=verify-full as nobody with %s: exit %d: %s %s", published, code, out, stderr)
		}
		if _, so, ok := e.findStatement(q); !ok || so.Postgres == nil || !so.Postgres.ClientTLS || so.Identity.Kernel.UID != 65534 {
			t.Errorf("the non-root verify-full session is not journaled as such: %+v", so)
		}
	})

	t.Run("pgx", func(t *testing.T) {
		cmd := exec.Command(interlockBin, "run", "-c", e.cfgPath, "--", pgclientBin, "-mode", "pgx", "-big-mib", "64",
			"-dsn", conninfo(srv, "sslmode=prefer"))
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		mem := sampleMemory(cmd.Process.Pid)
		err := cmd.Wait()
		baseline, peak := mem()
		if err != nil {
			t.Fatalf("pgclient: %v: %s %s", err, out.String(), testkit.Tail(errb.String(), 3000))
		}
		if peak == 0 {
			t.Fatalf("interlock's memory was never sampled")
		}
		var r struct {
			Steps map[string]string `json:"steps"`
		}
		json.Unmarshal(out.Bytes(), &r)
		if r.Steps["prepared"] != "ok" || !strings.HasPrefix(r.Steps["batch"], "ok,23505,") || r.Steps["recovered"] != "ok" || r.Steps["big"] != "ok" {
			t.Errorf("pgx steps %v", r.Steps)
		}
		t.Logf("interlock memory: VmRSS at start %d KiB, VmHWM %d KiB, while a 64 MiB bytea row went both ways", baseline, peak)
		if peak-baseline > 48<<10 {
			t.Errorf("interlock's peak RSS grew by %d KiB while a 64 MiB row passed: it is not streaming", peak-baseline)
		}
		r2, _, ok := e.findStatement("INSERT INTO items VALUES (4, 'big', 0, $1)")
		if !ok || len(r2.St.Params) != 1 || r2.St.Params[0].Value == nil || len(*r2.St.Params[0].Value) > 2000 || r2.St.Params[0].Format != "binary" {
			t.Errorf("big insert record %+v", r2.St.Params)
		}
		r3, _, ok := e.findStatement("INSERT INTO items VALUES ($1, $2, $3, $4)")
		if !ok || len(r3.St.Params) != 4 || r3.St.StatementName != "ins" || r3.St.Params[1].Value == nil || *r3.St.Params[1].Value != "one" {
			t.Errorf("prepared insert record %+v", r3.St)
		}
	})

	t.Run("pgbench", func(t *testing.T) {
		ci := conninfo(srv, "sslmode=disable")
		if out, stderr, code := e.runUnder(pgbench, "-i", "-s", "1", "-q", ci); code != 0 {
			t.Fatalf("pgbench -i: %s %s", out, stderr)
		}
		for _, mode := range []string{"simple", "extended", "prepared"} {
			out, stderr, code := e.runUnder(pgbench, "-M", mode, "-c", "2", "-t", "40", "-n", ci)
			if code != 0 || !strings.Contains(out, "number of transactions actually processed: 80/80") ||
				!strings.Contains(out, "number of failed transactions: 0") {
				t.Errorf("pgbench -M %s: exit %d\n%s\n%s", mode, code, out, stderr)
			}
		}
	})

	t.Run("wrong-held-password", func(t *testing.T) {
		bad := newEnv(t, []target{pgTarget(t, "db", srv.Addr(), "not-the-password", "")}, "")
		out, stderr, code := bad.runUnder(psql, "-X", "-c", "SELECT 1", conninfo(srv, "sslmode=disable"))
		if code == 0 || !strings.Contains(stderr, "password authentication failed") || !strings.Contains(stderr, "credentials interlock holds") {
			t.Errorf("wrong held password: exit %d %s %s", code, out, stderr)
		}
		if strings.Contains(stderr, "not-the-password") {
			t.Errorf("the held password reached the client")
		}
	})

	t.Run("malformed", func(t *testing.T) {
		badAddr := garbageServer(t)
		cgPath, cgDir := makeCgroup(t, "pg-malformed")
		fz := newEnv(t, []target{
			pgTarget(t, "db", srv.Addr(), pgtest.AppPassword, "tls: disable"),
			pgTarget(t, "garbage", badAddr, "x", "tls: disable"),
		}, fmt.Sprintf("intercept:\n  cgroups: [%s]\n", cgPath))
		d := fz.startDaemon()
		defer func() {
			if strings.Contains(d.stderr.String(), "panicked") {
				t.Errorf("a session panicked in the daemon:\n%s", testkit.Tail(d.stderr.String(), 4000))
			}
		}()
		out, stderr, code := runCmd(t, inCgroup(t, cgDir, pgclientBin, "-mode", "fuzz", "-n", "300", "-bad", badAddr, "-dsn", conninfo(srv, "sslmode=disable")))
		// Every malformed session must have logged in first, or the
		// malformed messages never reached interlock's parser.
		if code != 0 || !strings.Contains(out, `"healthy":"ok"`) || !strings.Contains(out, `"malformed_sessions":"300"`) {
			t.Errorf("fuzz client: exit %d %s %s", code, out, stderr)
		}
	})
}

// garbageServer accepts any login, then answers the first message with
// malformed bytes.
func garbageServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.3:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	answers := [][]byte{
		[]byte("D\xff\xff\xff\xff"), []byte("Z\x00\x00\x00\x04"), []byte("T\x00\x00\x00\x06\x00\x05"),
		[]byte("E\x00\x00\x00\x05\x00"), []byte("R\x00\x00\x00\x08\x00\x00\x00\x00"), []byte("C\x00\x00\x00\x05S"),
	}
	n := 0
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n++
			go func(n int) {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				var hdr [4]byte
				if _, err := io.ReadFull(c, hdr[:]); err != nil {
					return
				}
				l := binary.BigEndian.Uint32(hdr[:])
				if l < 8 || l > 10000 {
					return
				}
				io.CopyN(io.Discard, c, int64(l-4))
				login := []byte{'R', 0, 0, 0, 8, 0, 0, 0, 0, 'K', 0, 0, 0, 12, 0, 0, 0, 7, 1, 2, 3, 4, 'Z', 0, 0, 0, 5, 'I'}
				c.Write(login)
				var b [1]byte
				c.Read(b[:])
				c.Write(answers[n%len(answers)])
			}(n)
		}
	}()
	return ln.Addr().String()
}

// childOf returns the first child process of pid.
func childOf(t *testing.T, pid int) int {
	t.Helper()
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, f := range tasks {
		b, _ := os.ReadFile(f)
		for _, s := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(s); err == nil {
				return c
			}
		}
	}
	t.Fatalf("no child of %d", pid)
	return 0
}

// sampleMemory polls a process's VmRSS and VmHWM until the returned
// function is called; it reports the first VmRSS seen and the last VmHWM.
func sampleMemory(pid int) func() (baseline, peak int) {
	var mu sync.Mutex
	baseline, peak := 0, 0
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
			if err == nil {
				rss, hwm := statusKB(b, "VmRSS:"), statusKB(b, "VmHWM:")
				mu.Lock()
				if baseline == 0 && rss > 20<<10 {
					baseline = rss
				}
				if hwm > peak {
					peak = hwm
				}
				mu.Unlock()
			}
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	return func() (int, int) {
		close(stop)
		<-done
		mu.Lock()
		defer mu.Unlock()
		return baseline, peak
	}
}

func statusKB(b []byte, key string) int {
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, key) {
			n, _ := strconv.Atoi(strings.Fields(strings.TrimPrefix(l, key))[0])
			return n
		}
	}
	return 0
}

// TestDoctorChecksPostgresTargets: doctor logs in to each postgres target
// with the credential interlock holds; a wrong one fails the target by
// name and says what to fix, a right one passes.
func TestDoctorChecksPostgresTargets(t *testing.T) {
	srv := requirePG(t)
	type doctorCheck struct{ Name, Status, Detail, Fix string }
	doctor := func(password string) (int, []doctorCheck, string) {
		e := newEnv(t, []target{pgTarget(t, "db", srv.Addr(), password, "tls: disable")}, "")
		out, _, code := e.interlock("doctor", "-c", e.cfgPath, "--json")
		var checks []doctorCheck
		if err := json.Unmarshal([]byte(out), &checks); err != nil {
			t.Fatalf("doctor --json: %v\n%s", err, out)
		}
		var mine []doctorCheck
		for _, c := range checks {
			if c.Name == "target db" {
				mine = append(mine, c)
			}
		}
		return code, mine, out
	}
	code, checks, out := doctor("not-the-password")
	if code != 1 || len(checks) != 1 || checks[0].Status != "fail" ||
		!strings.Contains(checks[0].Detail, "credentials interlock holds") || !strings.Contains(checks[0].Fix, ".password") {
		t.Errorf("doctor with a wrong held password: exit %d, want 1 and a failed target naming the credential file:\n%s", code, out)
	}
	_, checks, out = doctor(pgtest.AppPassword)
	ok := false
	for _, c := range checks {
		if c.Status == "fail" {
			t.Errorf("doctor with the right password failed the target: %+v", c)
		}
		ok = ok || strings.Contains(c.Detail, "logs in as "+pgtest.AppUser)
	}
	if !ok {
		t.Errorf("doctor with the right password did not report the login:\n%s", out)
	}
}
