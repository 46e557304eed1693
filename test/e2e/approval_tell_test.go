package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/interlock/interlock/internal/testkit"
	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/test/e2e/pgtest"
)

// lockedBuffer is a client's stderr, read by the test while the client
// still writes it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// waitTold waits until what the client printed holds every part.
func waitTold(t *testing.T, what string, buf *lockedBuffer, parts ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s := buf.String()
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(s, p)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s was not told %q while held; it printed:\n%s", what, parts, s)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// noRawControls fails when a client was sent a terminal control byte
// (the deny reason below carries ESC sequences).
func noRawControls(t *testing.T, what, s string) {
	t.Helper()
	if i := strings.IndexAny(s, "\x1b\x07\x08"); i >= 0 {
		t.Errorf("%s printed a raw control byte at %d: %q", what, i, s)
	}
}

const tellRules = `ship:
  console_url: https://console.example/ui/
policy:
  rules:
    - name: hold-deletes
      match: {operation: {kinds: [delete]}}
      action: review
      review: {approvers: [daemon], timeout: 30s}
    - name: hold-fx-updates
      match: {effects: {tables: [fx], rows_updated_over: 0}}
      action: review
      review: {approvers: [daemon], timeout: 30s}
`

// TestApprovalTellsPostgresClient: a client whose statement is held is
// told at once, while it waits, the request id, the rule, who may approve
// and where (the local command and the console link), and the deadline:
// psql prints the NOTICE on stderr before any approver acts, pgx's
// OnNotice gets it for a statement of the extended protocol and for one
// in the middle of a pipeline (whose answers all arrive in order). The
// outcome is told the same way; a denial's error names the request, and
// an approver's reason reaches the client escaped.
func TestApprovalTellsPostgresClient(t *testing.T) {
	srv := requirePG(t)
	if out, err := srv.PSQL(pgtest.AppDB, "CREATE TABLE t(id int)", "INSERT INTO t SELECT generate_series(1, 5)",
		"CREATE TABLE held(id int)", "INSERT INTO held VALUES (1), (2), (3)", "CREATE TABLE fx(id int)", "INSERT INTO fx VALUES (1)",
		"GRANT ALL ON t, held, fx TO "+pgtest.AppUser); err != nil {
		t.Fatalf("setup: %v %s", err, out)
	}
	e := newEnv(t, []target{pgTarget(t, "db", srv.Addr(), pgtest.AppPassword, "")}, tellRules)

	psql := func(script string) (*exec.Cmd, *bytes.Buffer, *lockedBuffer) {
		c := exec.Command(interlockBin, "run", "-q", "-c", e.cfgPath, "--", filepath.Join(srv.BinDir, "psql"), "-X",
			"-v", "ON_ERROR_STOP=0", "-A", "-t", conninfo(srv, "sslmode=disable"))
		c.Stdin = strings.NewReader(script)
		var out bytes.Buffer
		stderr := &lockedBuffer{}
		c.Stdout, c.Stderr = &out, stderr
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { stopRun(c) })
		return c, &out, stderr
	}

	t.Run("psql approved", func(t *testing.T) {
		c, out, stderr := psql("DELETE FROM t WHERE id = 1;\nSELECT 'left ' || count(*) FROM t;\n")
		id := waitRequest(t, e, "hold-deletes")
		// Told before anyone decides.
		waitTold(t, "psql", stderr, "NOTICE:  interlock: statement held for approval, request "+id,
			`DETAIL:  rule "hold-deletes"`, "approvers: daemon (1 needed)", "unless approved",
			"HINT:  an approver runs: interlock approvals approve "+id, "https://console.example/ui/approvals/"+id)
		if o, se, code := asUser(t, "daemon", "approvals", "approve", id, "-c", e.cfgPath); code != 0 {
			t.Fatalf("approve: %d %s %s", code, o, se)
		}
		if err := c.Wait(); err != nil {
			t.Fatalf("psql: %v %s", err, stderr)
		}
		if !strings.Contains(out.String(), "left 4") || !strings.Contains(stderr.String(), "NOTICE:  interlock: statement approved, request "+id) {
			t.Errorf("stdout %q stderr %q", out, stderr)
		}
		t.Logf("psql's stderr:\n%s", stderr)
	})

	// A transaction held at its COMMIT by an effects rule, while
	// interlock holds back the server's answers: the notice goes ahead
	// of them.
	t.Run("psql commit held by effects", func(t *testing.T) {
		c, out, stderr := psql("UPDATE fx SET id = id + 1;\nSELECT 'fx ' || id FROM fx;\n")
		id := waitRequest(t, e, "hold-fx-updates")
		waitTold(t, "psql", stderr, "NOTICE:  interlock: commit held for approval, request "+id, `rule "hold-fx-updates"`)
		if _, se, code := asUser(t, "daemon", "approvals", "approve", id, "-c", e.cfgPath); code != 0 {
			t.Fatalf("approve: %d %s", code, se)
		}
		if err := c.Wait(); err != nil {
			t.Fatalf("psql: %v %s", err, stderr)
		}
		if !strings.Contains(out.String(), "fx 2") || !strings.Contains(stderr.String(), "commit approved, request "+id) || strings.Contains(stderr.String(), "ERROR") {
			t.Errorf("stdout %q stderr %q", out, stderr)
		}
	})

	t.Run("psql denied", func(t *testing.T) {
		c, out, stderr := psql("DELETE FROM t;\nSELECT 'left ' || count(*) FROM t;\n")
		id := waitRequest(t, e, "hold-deletes")
		waitTold(t, "psql", stderr, "request "+id)
		if _, se, code := asUser(t, "daemon", "approvals", "deny", id, "-c", e.cfgPath, "--reason", "not today\x1b[2K\rapproved"); code != 0 {
			t.Fatalf("deny: %d %s", code, se)
		}
		c.Wait()
		se := stderr.String()
		if !strings.Contains(out.String(), "left 4") || !strings.Contains(se, "NOTICE:  interlock: statement denied, request "+id) ||
			!strings.Contains(se, `ERROR:  statement denied by interlock rule "hold-deletes": not today\x1b[2K\rapproved (approval request `+id+")") {
			t.Errorf("stdout %q stderr %q", out, se)
		}
		noRawControls(t, "psql", se)
	})

	t.Run("pgx extended and pipelined", func(t *testing.T) {
		c := exec.Command(interlockBin, "run", "-q", "-c", e.cfgPath, "--", pgclientBin, "-mode", "notice",
			"-dsn", conninfo(srv, "sslmode=disable password="+pgtest.AppPassword))
		var out bytes.Buffer
		stderr := &lockedBuffer{}
		c.Stdout, c.Stderr = &out, stderr
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { stopRun(c) })
		for range 2 {
			id := waitRequest(t, e, "hold-deletes")
			waitTold(t, "pgx", stderr, `"message":"interlock: statement held for approval, request `+id+`"`,
				"interlock approvals approve "+id)
			if _, se, code := asUser(t, "daemon", "approvals", "approve", id, "-c", e.cfgPath); code != 0 {
				t.Fatalf("approve: %d %s", code, se)
			}
			waitTold(t, "pgx", stderr, "approved, request "+id)
		}
		if err := c.Wait(); err != nil {
			t.Fatalf("pgclient: %v %s %s", err, out.String(), stderr)
		}
		var r struct{ Steps map[string]string }
		json.Unmarshal(out.Bytes(), &r)
		if r.Steps["extended"] != "ok DELETE 1" || r.Steps["pipeline"] != "ok 10,ok DELETE 1,ok 30" || r.Steps["left"] != "1" {
			t.Errorf("pgx saw %v", r.Steps)
		}
		notices := 0
		sc := bufio.NewScanner(strings.NewReader(stderr.String()))
		for sc.Scan() {
			var n struct{ Severity, Code, Message string }
			if json.Unmarshal(sc.Bytes(), &n) == nil && n.Severity == "NOTICE" && n.Code == "00000" && strings.HasPrefix(n.Message, "interlock: ") {
				notices++
			}
		}
		if notices != 4 {
			t.Errorf("pgx got %d notices, want 4 (held and approved, twice):\n%s", notices, stderr)
		}
	})
	// Adversarial: a client that stops reading (a result larger than the
	// sockets hold, then a held DELETE) cannot keep its review pending:
	// the notice cannot reach it, so its session is ended and the review
	// with it, well within the rule's 30 s timeout.
	t.Run("client that does not read", func(t *testing.T) {
		c := exec.Command(interlockBin, "run", "-q", "-c", e.cfgPath, "--", pgclientBin, "-mode", "noread",
			"-dsn", conninfo(srv, "sslmode=disable password="+pgtest.AppPassword))
		stderr := &lockedBuffer{}
		c.Stderr = stderr
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { stopRun(c) })
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("client stderr: %s", stderr)
				for _, en := range e.entries() {
					t.Logf("entry %d %s %.300s", en.Seq, en.Kind, en.Data)
				}
			}
		})
		id := waitRequest(t, e, "hold-deletes")
		start := time.Now()
		testkit.WaitFor(t, 15*time.Second, 100*time.Millisecond, func() bool {
			for _, p := range pendingOf(t, e) {
				if p.Request.ID == id {
					return false
				}
			}
			return true
		})
		t.Logf("the review ended %s after it was listed", time.Since(start).Round(time.Millisecond))
		ended := false
		for _, d := range entriesOf[model.ApprovalDecision](e, model.KindApprovalDecision) {
			ended = ended || d.ID == id && d.Verdict == model.VerdictDeny && strings.Contains(d.Reason, "session ended")
		}
		if !ended {
			t.Errorf("request %s was not closed as the session ended", id)
		}
		if r, _, ok := e.lookupStatement("DELETE FROM held WHERE id = 3"); ok && r.St.Decision.Action != model.Deny {
			t.Errorf("the DELETE of the client that does not read went through: %+v", r.St.Decision)
		}
	})

	t.Run("pgbench pipeline", func(t *testing.T) {
		script := filepath.Join(t.TempDir(), "held.sql")
		if err := os.WriteFile(script, []byte("\\startpipeline\nSELECT 1;\nDELETE FROM held WHERE id = 3;\nSELECT 2;\n\\endpipeline\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		c := exec.Command(interlockBin, "run", "-q", "-c", e.cfgPath, "--", filepath.Join(srv.BinDir, "pgbench"), "-n", "-t", "1",
			"-M", "extended", "-f", script, conninfo(srv, "sslmode=disable password="+pgtest.AppPassword))
		var out bytes.Buffer
		stderr := &lockedBuffer{}
		c.Stdout, c.Stderr = &out, stderr
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { stopRun(c) })
		id := waitRequest(t, e, "hold-deletes")
		waitTold(t, "pgbench", stderr, "held for approval, request "+id)
		if _, se, code := asUser(t, "daemon", "approvals", "approve", id, "-c", e.cfgPath); code != 0 {
			t.Fatalf("approve: %d %s", code, se)
		}
		if err := c.Wait(); err != nil {
			t.Fatalf("pgbench: %v %s %s", err, out.String(), stderr)
		}
		if !strings.Contains(out.String(), "number of transactions actually processed: 1/1") || !strings.Contains(out.String(), "number of failed transactions: 0") {
			t.Errorf("pgbench: %s %s", out.String(), stderr)
		}
		t.Logf("pgbench's stderr:\n%s", stderr)
	})
}

// TestApprovalTellsSSHClient: an ssh exec held for review is told on its
// stderr, while it waits, the request id, the rule, who may approve and
// where; then the outcome. A denial's message names the request.
func TestApprovalTellsSSHClient(t *testing.T) {
	st := startSSHD(t)
	d := st.dir
	e := newSSHEnv(t, st, sshTargetOpts{extra: fmt.Sprintf(
		`exec: {mode: allowlist, allow: ["true"], unlisted: review, review: {approvers: [daemon], timeout: 30s}}`),
		global: "ship:\n  console_url: https://console.example/ui\n" + fmt.Sprintf(`policy:
  rules:
    - name: hold-secret-reads
      match: {operation: {kinds: [sftp], paths: ["%s/secret/*"]}}
      action: review
      review: {approvers: [daemon], timeout: 30s}
`, d)})
	const rule = "targets.box.exec-allowlist"
	start := func(cmd string) (*exec.Cmd, *lockedBuffer) {
		c := exec.Command(interlockBin, append([]string{"run", "-q", "-c", e.cfgPath, "--"}, st.sshArgv(cmd)...)...)
		stderr := &lockedBuffer{}
		c.Stderr = stderr
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { stopRun(c) })
		return c, stderr
	}

	t.Run("approved", func(t *testing.T) {
		c, stderr := start("touch " + d + "/told-1")
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("ssh's stderr: %s", stderr)
			}
		})
		id := waitRequest(t, e, rule)
		waitTold(t, "ssh", stderr, "interlock: exec held for approval, request "+id+"\r\n",
			`interlock:   rule "`+rule+`"`, "approvers: daemon (1 needed)",
			"interlock approvals approve "+id, "https://console.example/ui/approvals/"+id)
		if _, se, code := asUser(t, "daemon", "approvals", "approve", id, "-c", e.cfgPath); code != 0 {
			t.Fatalf("approve: %d %s", code, se)
		}
		if err := c.Wait(); err != nil {
			t.Fatalf("the approved exec: %v %s", err, stderr)
		}
		if !strings.Contains(stderr.String(), "interlock: exec approved, request "+id) {
			t.Errorf("stderr %q", stderr)
		}
		t.Logf("ssh's stderr:\n%s", stderr)
	})

	// An sftp read held while the transfer's subsystem runs: the message
	// goes on the sftp channel's stderr, which sftp shows.
	t.Run("sftp held", func(t *testing.T) {
		if err := os.MkdirAll(filepath.Join(d, "secret"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "secret", "k"), []byte("held file\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		local := filepath.Join(t.TempDir(), "k")
		argv := append(append([]string{"sftp"}, st.clientOpts("")...), "-P", strconv.Itoa(st.port), "root@127.0.0.3:"+d+"/secret/k", local)
		c := exec.Command(interlockBin, append([]string{"run", "-q", "-c", e.cfgPath, "--"}, argv...)...)
		stderr := &lockedBuffer{}
		c.Stderr = stderr
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { stopRun(c) })
		id := waitRequest(t, e, "hold-secret-reads")
		waitTold(t, "sftp", stderr, "interlock: sftp held for approval, request "+id, "interlock approvals approve "+id)
		if _, se, code := asUser(t, "daemon", "approvals", "approve", id, "-c", e.cfgPath); code != 0 {
			t.Fatalf("approve: %d %s", code, se)
		}
		if err := c.Wait(); err != nil {
			t.Fatalf("sftp: %v %s", err, stderr)
		}
		if b, _ := os.ReadFile(local); string(b) != "held file\n" || !strings.Contains(stderr.String(), "interlock: sftp approved, request "+id) {
			t.Errorf("sftp got %q; stderr %q", b, stderr)
		}
	})

	t.Run("denied", func(t *testing.T) {
		c, stderr := start("touch " + d + "/told-2")
		id := waitRequest(t, e, rule)
		waitTold(t, "ssh", stderr, "request "+id)
		if _, se, code := asUser(t, "daemon", "approvals", "deny", id, "-c", e.cfgPath, "--reason", "no\x1b]0;x\x07"); code != 0 {
			t.Fatalf("deny: %d %s", code, se)
		}
		err := c.Wait()
		se := stderr.String()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 126 ||
			!strings.Contains(se, "interlock: exec denied, request "+id) || !strings.Contains(se, "(approval request "+id+")") {
			t.Errorf("the denied exec: %v %q", err, se)
		}
		noRawControls(t, "ssh", se)
		absent(t, filepath.Join(d, "told-2"))
	})
}

// pendingOf is what the approver user "daemon" lists.
func pendingOf(t *testing.T, e *env) pendingList {
	t.Helper()
	var l pendingList
	if o, _, code := asUser(t, "daemon", "approvals", "list", "-c", e.cfgPath, "--json"); code == 0 {
		json.Unmarshal([]byte(o), &l)
	}
	return l
}
