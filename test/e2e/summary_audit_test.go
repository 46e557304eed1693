package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/interlock/interlock/internal/testkit"
	"github.com/interlock/interlock/journal/evidence"
	"github.com/interlock/interlock/test/browsertest"
	"github.com/interlock/interlock/test/e2e/pgtest"
)

// TestSummaryAuditInBrowser: real psql and ssh sessions through
// interlock (statements allowed, masked, denied and approved; an ssh
// command run and one refused; a shell; an scp upload and an sftp
// download), exported with `interlock journal export`, and the bundle's
// summary.html read in headless Chromium at 1366x768: each operation is
// listed with the action it got (a plain SELECT in a session a mask rule
// covers is allow, not mask), the files are listed with their sizes, no
// masked value appears, and nothing is wider than the screen. It keeps
// screenshots in INTERLOCK_ARTIFACTS.
func TestSummaryAuditInBrowser(t *testing.T) {
	srv := requirePG(t)
	st := startSSHD(t)
	if out, err := srv.PSQL(pgtest.AppDB, "CREATE TABLE customers(id int, email text)", "INSERT INTO customers VALUES (1, 'jane.masked@example.com')",
		"CREATE TABLE t(id int)", "INSERT INTO t SELECT generate_series(1, 3)", "GRANT ALL ON customers, t TO "+pgtest.AppUser); err != nil {
		t.Fatalf("setup: %v %s", err, out)
	}
	box := target{name: "box", address: st.addr(), protocol: "ssh", extra: fmt.Sprintf(
		"credentials:\n      user: root\n      key_file: %s\n    known_hosts: %s\n    host_key_file: %s", st.credKey.Path, st.knownHosts, st.hostKey.Path)}
	e := newEnv(t, []target{pgTarget(t, "db", srv.Addr(), pgtest.AppPassword, ""), box}, `policy:
  rules:
    - name: no-drop
      match: {operation: {kinds: [drop_table]}}
      action: deny
      reason: tables are dropped by migrations
    - name: hold-deletes
      match: {operation: {kinds: [delete]}}
      action: review
      review: {approvers: [daemon], timeout: 30s}
    - name: pii
      match: {targets: [db]}
      action: mask
      mask: {columns: [customers.email]}
    - name: no-rm
      match: {protocols: [ssh], operation: {commands: ["rm *"]}}
      action: deny
`)

	// PostgreSQL: a plain read, a masked read, a denied DROP, an
	// approved DELETE.
	p := startPsql(t, e, srv, "SELECT 'plain-read';\nSELECT email FROM customers;\nDROP TABLE t;\nDELETE FROM t WHERE id = 1;\n")
	id := waitRequest(t, e, "hold-deletes")
	if _, se, code := asUser(t, "daemon", "approvals", "approve", id, "-c", e.cfgPath, "--reason", "ticket 12"); code != 0 {
		t.Fatalf("approve: %d %s", code, se)
	}
	if out, se := p.wait(t); !strings.Contains(out, "plain-read") || strings.Contains(out, "jane.masked") || !strings.Contains(se, "no-drop") {
		t.Fatalf("psql: %q %q", out, se)
	}

	// SSH: a command, a refused one, a shell, an scp upload (sftp since
	// OpenSSH 9), an sftp download.
	local := t.TempDir()
	remote := filepath.Join(st.dir, "files")
	os.Mkdir(remote, 0o755)
	if err := os.WriteFile(filepath.Join(local, "report.csv"), []byte(strings.Repeat("a,b,c\n", 1000)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(remote, "dump.sql"), []byte(strings.Repeat("-- dump\n", 512)), 0o644); err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(st.port)
	scp := append(append([]string{"scp"}, st.clientOpts("")...), "-P", port, filepath.Join(local, "report.csv"), "root@127.0.0.3:"+remote+"/report.csv")
	sftp := append(append([]string{"sftp"}, st.clientOpts("")...), "-P", port, "root@127.0.0.3:"+remote+"/dump.sql", local+"/dump.sql")
	if o, se, code := e.runUnder(st.sshArgv("echo audit-visible")...); code != 0 || !strings.Contains(o, "audit-visible") {
		t.Fatalf("ssh echo: %d %q %q", code, o, se)
	}
	if _, _, code := e.runUnder(st.sshArgv("rm -rf " + remote)...); code != 126 {
		t.Errorf("the refused rm exited %d, want 126", code)
	}
	shell := exec.Command(interlockBin, append([]string{"run", "-q", "-c", e.cfgPath, "--"}, append(st.sshArgv()[:1], append([]string{"-tt"}, st.sshArgv()[1:]...)...)...)...)
	shell.Stdin = strings.NewReader("echo shell-visible\nexit\n")
	if o, se, code := runCmd(t, shell); code != 0 {
		t.Fatalf("ssh shell: %d %q %q", code, o, se)
	}
	for _, argv := range [][]string{scp, sftp} {
		if o, se, code := e.runUnder(argv...); code != 0 {
			t.Fatalf("%s: %d %q %q", argv[0], code, o, se)
		}
	}

	bundle := filepath.Join(t.TempDir(), "bundle.tar.gz")
	if _, se, code := e.interlock("journal", "export", "-q", "-c", e.cfgPath, "-o", bundle); code != 0 {
		t.Fatalf("journal export: %d %s", code, se)
	}
	html := testkit.ReadTarGz(t, bundle)[evidence.FileSummary]
	if strings.Contains(string(html), "jane.masked") {
		t.Error("summary.html shows a masked value")
	}
	page := filepath.Join(t.TempDir(), "summary.html")
	if err := os.WriteFile(page, html, 0o644); err != nil {
		t.Fatal(err)
	}

	ctx := browsertest.Chrome(t, 1366, 768, time.Minute)
	if err := chromedp.Do(ctx, chromedp.Navigate("file://"+page), chromedp.WaitReady(chromedp.CSS("#activity"))); err != nil {
		t.Fatalf("chromium: load %s: %v", page, err)
	}
	type op struct{ Seq, Kind, Outcome, Shown, Text string }
	type facts struct {
		Viewport, PageWidth int
		Wide                []string
		Ops                 []op
		Files               []string
		Casts               []string
	}
	dom, err := chromedp.Run(ctx, chromedp.Evaluate[facts](`(() => ({
	Viewport: window.innerWidth, PageWidth: document.scrollingElement.scrollWidth,
	Wide: [...document.querySelectorAll('table')].filter(t => t.scrollWidth > t.clientWidth + 1 || t.getBoundingClientRect().right > window.innerWidth)
		.map(t => (t.id || t.className) + ' ' + t.scrollWidth + '>' + t.clientWidth),
	Ops: [...document.querySelectorAll('tr[data-outcome]')].map(tr => ({Seq: tr.id, Kind: tr.dataset.kind, Outcome: tr.dataset.outcome,
		Shown: tr.querySelector('td.act').innerText, Text: tr.querySelector('td .op').innerText})),
	Files: [...document.querySelectorAll('table.files tr[data-path]')].map(tr => tr.innerText.replace(/\s+/g, ' ')),
	Casts: [...document.querySelectorAll('a[href^="sessions/"]')].map(a => a.closest('section').querySelector('tr[data-kind]').dataset.kind + ' ' + a.getAttribute('href')),
}))()`))
	if err != nil {
		t.Fatalf("chromium: read the page: %v", err)
	}
	js, _ := json.MarshalIndent(dom, "", " ")
	t.Logf("DOM: %s", js)
	browsertest.Screenshot(t, ctx, "summary-1366x768-top", false)
	if err := chromedp.Do(ctx, chromedp.Navigate("file://"+page+"#activity")); err != nil {
		t.Fatal(err)
	}
	browsertest.Screenshot(t, ctx, "summary-1366x768-activity", false)
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(() => { document.querySelector('table.files').closest('section').scrollIntoView(); return true })()`)); err != nil {
		t.Fatal(err)
	}
	browsertest.Screenshot(t, ctx, "summary-1366x768-files", false)
	browsertest.Screenshot(t, ctx, "summary-1366x768-full", true)

	if dom.Viewport != 1366 || dom.PageWidth > dom.Viewport {
		t.Errorf("the page is %d px wide in a %d px viewport", dom.PageWidth, dom.Viewport)
	}
	if len(dom.Wide) > 0 {
		t.Errorf("tables wider than their place: %q", dom.Wide)
	}
	outcome := func(kind, text string) string {
		for _, o := range dom.Ops {
			if o.Kind == kind && strings.Contains(o.Text, text) {
				if o.Shown != o.Outcome {
					t.Errorf("%s %q: the action column shows %q, the row says %q", kind, text, o.Shown, o.Outcome)
				}
				return o.Outcome
			}
		}
		return "(not listed)"
	}
	for _, c := range []struct{ kind, text, want string }{
		{"sql", "SELECT 'plain-read'", "allow"},
		{"sql", "SELECT email FROM customers", "mask"},
		{"sql", "DROP TABLE t", "deny"},
		{"sql", "DELETE FROM t WHERE id = 1", "review: approved"},
		{"exec", "echo audit-visible", "allow"},
		{"exec", "rm -rf " + remote, "deny"},
		{"shell", "", "allow"},
		{"subsystem", "sftp", "allow"},
		{"sftp", "open " + remote + "/report.csv", "allow"},
		{"sftp", "open " + remote + "/dump.sql", "allow"},
	} {
		if got := outcome(c.kind, c.text); got != c.want {
			t.Errorf("%s %q: %q, want %q", c.kind, c.text, got, c.want)
		}
	}
	// The shell's session names its terminal recording in the bundle.
	if len(dom.Casts) != 1 || !strings.HasPrefix(dom.Casts[0], "shell sessions/") || !strings.HasSuffix(dom.Casts[0], ".cast") {
		t.Errorf("terminal recordings linked: %q, want the shell's", dom.Casts)
	}
	files := strings.Join(dom.Files, "\n")
	for _, w := range []string{"sftp upload " + remote + "/report.csv 6000 allow", "sftp download " + remote + "/dump.sql 4096 allow"} {
		if !strings.Contains(files, w) {
			t.Errorf("files transferred lack %q:\n%s", w, files)
		}
	}
}
