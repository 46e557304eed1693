package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/test/e2e/pgtest"
)

// webhookSink is a local HTTP server that records the approval requests
// interlock posts.
type webhookSink struct {
	mu  sync.Mutex
	ids []string
	url string
}

func startWebhook(t *testing.T) *webhookSink {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w := &webhookSink{url: "http://" + ln.Addr().String() + "/hook"}
	srv := &http.Server{Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		var ev struct {
			Request model.ApprovalRequest `json:"request"`
		}
		b, _ := io.ReadAll(r.Body)
		json.Unmarshal(b, &ev)
		w.mu.Lock()
		w.ids = append(w.ids, ev.Request.ID)
		w.mu.Unlock()
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return w
}

func (w *webhookSink) got() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.ids...)
}

// psqlRun is psql under `interlock run`, fed a script.
type psqlRun struct {
	cmd         *exec.Cmd
	out, stderr bytes.Buffer
}

func startPsql(t *testing.T, e *env, srv *pgtest.Server, script string) *psqlRun {
	t.Helper()
	p := &psqlRun{}
	p.cmd = exec.Command(interlockBin, "run", "-q", "-c", e.cfgPath, "--", filepath.Join(srv.BinDir, "psql"), "-X", "-v", "VERBOSITY=verbose",
		"-v", "ON_ERROR_STOP=0", "-A", "-t", conninfo(srv, "sslmode=disable"))
	p.cmd.Stdin = strings.NewReader(script)
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *psqlRun) wait(t *testing.T) (string, string) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		p.cmd.Process.Kill()
		t.Fatalf("psql did not finish: %s %s", p.out.String(), p.stderr.String())
	}
	return p.out.String(), p.stderr.String()
}

// waitRequest waits until one approval request for rule is pending and
// returns its id (listed as the approver user "daemon").
func waitRequest(t *testing.T, e *env, rule string) string {
	t.Helper()
	var id string
	waitFor(t, func() bool {
		o, _, code := asUser(t, "daemon", "approvals", "list", "-c", e.cfgPath, "--json")
		if code != 0 {
			return false
		}
		var l pendingList
		json.Unmarshal([]byte(o), &l)
		for _, p := range l {
			if p.Request.Rule == rule {
				id = p.Request.ID
				return true
			}
		}
		return false
	})
	return id
}

const policyRules = `policy:
  webhook:
    url: %s
  rules:
    - name: no-drop-db
      match: {operation: {kinds: [drop_database]}}
      action: deny
      reason: databases are dropped by hand
    - name: hold-unbounded-delete
      match: {operation: {kinds: [delete], no_where: true}}
      action: review
      review: {approvers: [daemon], timeout: 30s}
    - name: hold-unbounded-update
      match: {operation: {kinds: [update], no_where: true}}
      action: review
      review: {approvers: [daemon], timeout: 2s}
    - name: hold-truncate
      match: {operation: {kinds: [truncate]}}
      action: review
      review: {approvers: [daemon], scope: session, timeout: 30s}
    - name: hold-index
      match: {operation: {kinds: [create_index]}}
      action: review
      review: {approvers: [daemon], scope: ttl, ttl: 3s, timeout: 30s}
    - name: pii
      match: {targets: [db]}
      action: mask
      mask: {columns: [customers.email], detectors: [card]}
`

// TestPolicyPostgres: the issue 6 controls on a live psql session against
// a real PostgreSQL: a deny naming its rule, holds released by another
// user, self-approval refused, timeouts, session and ttl grants, the
// webhook, masking (aliases included, timestamps left alone, no original
// in the journal), and `policy test` agreeing with the proxy.
func TestPolicyPostgres(t *testing.T) {
	srv := requirePG(t)
	hook := startWebhook(t)
	if out, err := srv.PSQL(pgtest.AppDB,
		"CREATE TABLE customers(id int, email text, card text, created_ms bigint, note text)",
		"INSERT INTO customers VALUES (1, 'jane@example.com', '4111 1111 1111 1111', 1732612345678, 'pays with 5555555555554444')",
		"CREATE TABLE t(id int)", "INSERT INTO t SELECT generate_series(1, 5)",
		"CREATE TABLE t2(id int)", "CREATE TABLE t3(id int)",
		"GRANT ALL ON customers, t, t2 TO "+pgtest.AppUser, "ALTER TABLE t3 OWNER TO "+pgtest.AppUser, "ALTER TABLE t2 OWNER TO "+pgtest.AppUser); err != nil {
		t.Fatalf("setup: %v %s", err, out)
	}
	e := newEnv(t, []target{pgTarget(t, "db", srv.Addr(), pgtest.AppPassword, "")}, fmt.Sprintf(policyRules, hook.url))

	t.Run("deny names the rule", func(t *testing.T) {
		out, stderr := startPsql(t, e, srv, "DROP DATABASE appdb;\nSELECT 'alive';\n").wait(t)
		if !strings.Contains(stderr, "42501") || !strings.Contains(stderr, "no-drop-db") || !strings.Contains(out, "alive") {
			t.Errorf("stdout %q stderr %q", out, stderr)
		}
	})

	t.Run("held delete released by another user", func(t *testing.T) {
		p := startPsql(t, e, srv, "DELETE FROM t;\nSELECT 'left ' || count(*) FROM t;\n")
		id := waitRequest(t, e, "hold-unbounded-delete")

		// While it is held, other sessions run normally.
		start := time.Now()
		out, stderr := startPsql(t, e, srv, "SELECT 'other session ' || count(*) FROM t;\n").wait(t)
		if !strings.Contains(out, "other session 5") || time.Since(start) > 20*time.Second {
			t.Errorf("another session during the hold: %q %q after %s", out, stderr, time.Since(start))
		}
		// The requester's uid (root runs psql) cannot approve.
		if _, stderr, code := e.interlock("approvals", "approve", id, "-c", e.cfgPath); code != 77 || !strings.Contains(stderr, "same uid") {
			t.Errorf("self-approval: exit %d %s", code, stderr)
		}
		if o, stderr, code := asUser(t, "daemon", "approvals", "approve", id, "-c", e.cfgPath, "--reason", "cleanup ticket 7"); code != 0 {
			t.Fatalf("approve: %d %s %s", code, o, stderr)
		}
		out, stderr = p.wait(t)
		if !strings.Contains(out, "left 0") {
			t.Errorf("the approved DELETE did not run: %q %q", out, stderr)
		}
		r, _, ok := e.findStatement("DELETE FROM t")
		if !ok || r.St.Decision.Request != id || r.Res == nil || r.Res.Rows != 5 {
			t.Errorf("journaled DELETE %+v %+v", r.St.Decision, r.Res)
		}
	})

	t.Run("timeout denies", func(t *testing.T) {
		out, stderr := startPsql(t, e, srv, "UPDATE t2 SET id = 1;\nSELECT 'after';\n").wait(t)
		if !strings.Contains(stderr, "42501") || !strings.Contains(stderr, "no decision within") || !strings.Contains(out, "after") {
			t.Errorf("timed-out update: %q %q", out, stderr)
		}
	})

	t.Run("session grant", func(t *testing.T) {
		p := startPsql(t, e, srv, "TRUNCATE t2;\nTRUNCATE t2;\nSELECT 'truncated twice';\n")
		id := waitRequest(t, e, "hold-truncate")
		if _, stderr, code := asUser(t, "daemon", "approvals", "approve", id, "-c", e.cfgPath); code != 0 {
			t.Fatal(stderr)
		}
		out, stderr := p.wait(t)
		if !strings.Contains(out, "truncated twice") || strings.Contains(stderr, "ERROR") {
			t.Errorf("session grant: %q %q", out, stderr)
		}
		requests, granted := 0, 0
		sts, _ := e.pgStatements()
		for _, s := range sts {
			if s.St.SQL == "TRUNCATE t2" && s.St.Decision.Grant == id {
				granted++
			}
		}
		for _, r := range entriesOf[model.ApprovalRequest](e, model.KindApprovalRequest) {
			if r.Rule == "hold-truncate" {
				requests++
			}
		}
		if requests != 1 || granted != 1 {
			t.Errorf("two TRUNCATEs: %d requests, %d through the grant (want 1 and 1)", requests, granted)
		}
		waitFor(t, func() bool {
			for _, en := range e.entries() {
				if en.Kind == model.KindGrantExpired && strings.Contains(string(en.Data), id) {
					return true
				}
			}
			return false
		})
	})

	t.Run("ttl grant expires", func(t *testing.T) {
		// Three psql sessions of one job (one `interlock run`): the first
		// is held and approved; the second, within the ttl, goes through
		// on the grant; the third, after it expired, is held again.
		psql := filepath.Join(srv.BinDir, "psql")
		ci := conninfo(srv, "sslmode=disable")
		script := fmt.Sprintf(`%[1]s -X -A -t "%[2]s" -c 'CREATE INDEX i1 ON t3(id)' && echo first &&
%[1]s -X -A -t "%[2]s" -c 'CREATE INDEX i2 ON t3(id)' && echo second &&
sleep 4 && %[1]s -X -A -t "%[2]s" -c 'CREATE INDEX i3 ON t3(id)'; echo third $?`, psql, ci)
		cmd := exec.Command(interlockBin, "run", "-q", "-c", e.cfgPath, "--", "sh", "-c", script)
		var out, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		id := waitRequest(t, e, "hold-index")
		if _, stderr, code := asUser(t, "daemon", "approvals", "approve", id, "-c", e.cfgPath); code != 0 {
			t.Fatal(stderr)
		}
		id3 := ""
		deadline := time.Now().Add(20 * time.Second)
		for id3 == "" && time.Now().Before(deadline) {
			o, _, _ := asUser(t, "daemon", "approvals", "list", "-c", e.cfgPath, "--json")
			var l pendingList
			json.Unmarshal([]byte(o), &l)
			for _, p := range l {
				if p.Request.Rule == "hold-index" && p.Request.ID != id {
					id3 = p.Request.ID
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
		if id3 == "" {
			t.Fatalf("the third index was never held: %q %q", out.String(), stderr.String())
		}
		if !strings.Contains(out.String(), "second") {
			t.Errorf("the second index, within the ttl, did not go through: %q %q", out.String(), stderr.String())
		}
		expired := false
		for _, en := range e.entries() {
			expired = expired || (en.Kind == model.KindGrantExpired && strings.Contains(string(en.Data), id))
		}
		if !expired {
			t.Errorf("the ttl grant expired without a grant.expired entry")
		}
		if _, se, code := asUser(t, "daemon", "approvals", "deny", id3, "-c", e.cfgPath, "--reason", "not today"); code != 0 {
			t.Fatal(se)
		}
		cmd.Wait()
		if !strings.Contains(stderr.String(), "not today") || !strings.Contains(out.String(), "third 1") {
			t.Errorf("denied third index: %q %q", out.String(), stderr.String())
		}
	})

	t.Run("webhook heard every request", func(t *testing.T) {
		var want []string
		for _, r := range entriesOf[model.ApprovalRequest](e, model.KindApprovalRequest) {
			want = append(want, r.ID)
		}
		waitFor(t, func() bool { return len(hook.got()) >= len(want) })
		got := strings.Join(hook.got(), ",")
		for _, id := range want {
			if !strings.Contains(got, id) {
				t.Errorf("webhook missed request %s", id)
			}
		}
		if len(want) < 4 {
			t.Errorf("only %d approval requests journaled", len(want))
		}
	})

	t.Run("masking", func(t *testing.T) {
		out, stderr := startPsql(t, e, srv, "SELECT * FROM customers;\nSELECT email AS contact, created_ms FROM customers;\n").wait(t)
		if strings.Contains(out, "jane@example.com") || strings.Contains(out, "4111 1111 1111 1111") || strings.Contains(out, "5555555555554444") {
			t.Errorf("unmasked values reached psql: %q", out)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 2 {
			t.Fatalf("psql output %q %q", out, stderr)
		}
		if want := "1|****|****-****-****-1111|1732612345678|pays with ****-****-****-4444"; lines[0] != want {
			t.Errorf("SELECT *:\n got %q\nwant %q", lines[0], want)
		}
		if want := "****|1732612345678"; lines[1] != want {
			t.Errorf("aliased column:\n got %q\nwant %q", lines[1], want)
		}
		masks := entriesOf[model.PGMask](e, model.KindPGMask)
		var email, card bool
		for _, m := range masks {
			email = email || (m.Rule == "pii" && m.Column == "public.customers.email" && m.Count == 1)
			card = card || (m.Rule == "pii" && m.Detector == "card")
		}
		if !email || !card {
			t.Errorf("masking decisions not journaled: %+v", masks)
		}
		raw, err := os.ReadFile(e.journal)
		if err != nil {
			t.Fatal(err)
		}
		wal, _ := os.ReadFile(e.journal + "-wal")
		if bytes.Contains(append(raw, wal...), []byte("jane@example.com")) {
			t.Errorf("the journal holds an original value")
		}
	})

	t.Run("policy test agrees", func(t *testing.T) {
		for sql, want := range map[string]string{
			"DROP DATABASE appdb":      "deny",
			"DELETE FROM t":            "review",
			"DELETE FROM t WHERE id=1": "mask",
			"SELECT * FROM customers":  "mask",
		} {
			out, stderr, code := e.interlock("policy", "test", "-c", e.cfgPath, "--target", "db", "--uid", "0", "--sql", sql, "--json")
			if code != 0 {
				t.Fatalf("policy test: %d %s", code, stderr)
			}
			var res []struct {
				Decision model.Decision `json:"decision"`
			}
			json.Unmarshal([]byte(out), &res)
			if len(res) != 1 || string(res[0].Decision.Action) != want {
				t.Errorf("policy test %q: %s, want %s", sql, out, want)
			}
		}
		// And the proxy's decisions in the journal match.
		for sql, want := range map[string]model.Action{"DROP DATABASE appdb": model.Deny, "SELECT * FROM customers": model.Mask} {
			if r, _, ok := e.findStatement(sql); !ok || r.St.Decision.Action != want {
				t.Errorf("proxy decided %q as %+v, want %s", sql, r.St.Decision, want)
			}
		}
	})
}
