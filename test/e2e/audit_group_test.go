package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// auditGID is the audit group of these tests: a gid no name is given to,
// so the test adds no group to the host (the package names it interlock).
const auditGID = 4242

// asAuditor runs interlock as nobody, a member of the audit group or not.
func asAuditor(t *testing.T, member bool, args ...string) (string, string, int) {
	t.Helper()
	groups := "65534"
	if member {
		groups += "," + strconv.Itoa(auditGID)
	}
	argv := append([]string{"--reuid=65534", "--regid=65534", "--groups=" + groups, interlockBin}, args...)
	return runCmd(t, exec.Command("setpriv", argv...))
}

// TestAuditGroupReadsLiveJournal: with the state directory laid out as the
// package makes it (root:interlock, 2750), a member of the audit group
// lists sessions, verifies and exports the journal without root while the
// daemon writes it; the journal's files stay unwritable to the member, and
// a user outside the group reads nothing.
func TestAuditGroupReadsLiveJournal(t *testing.T) {
	srv := startEcho(t, "tcp4", "127.0.0.2:0")
	e := newEnv(t, []target{{name: "echo", address: srv.addr()}}, "")
	stateDir := filepath.Join(e.dir, "audited")
	if err := os.Mkdir(stateDir, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(stateDir, 0, auditGID); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(stateDir, 0o750|os.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(e.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	journal := filepath.Join(stateDir, "journal.db")
	s := strings.Replace(string(cfg), "state_dir: "+filepath.Join(e.dir, "state"), "state_dir: "+stateDir, 1)
	s = strings.Replace(s, "path: "+e.journal, "path: "+journal, 1)
	if err := os.WriteFile(e.cfgPath, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	e.journal = journal
	e.startDaemon()
	if out, stderr, code := e.runUnder(clientBin, "-addr", srv.addr()); code != 0 {
		t.Fatalf("run: exit %d: %s %s", code, out, stderr)
	}

	// The daemon's files: the group may read the journal, not write it;
	// private keys are root's alone.
	for _, f := range []string{"journal.db", "journal.db-wal", "journal.db-shm", "journal.pub", "journal.key"} {
		fi, err := os.Stat(filepath.Join(stateDir, f))
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		want := os.FileMode(0o640)
		if strings.HasSuffix(f, ".key") {
			want = 0o600
		} else if strings.HasSuffix(f, ".pub") {
			want = 0o644
		}
		if fi.Mode().Perm() != want || fileGID(fi) != auditGID {
			t.Errorf("%s: mode %v gid %d, want %v gid %d", f, fi.Mode().Perm(), fileGID(fi), want, auditGID)
		}
	}

	// Reads while the daemon goes on writing.
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			e.runUnder(clientBin, "-addr", srv.addr())
		}
	}()
	var list []struct {
		ID string `json:"id"`
	}
	for i := 0; i < 3; i++ {
		out, stderr, code := asAuditor(t, true, "sessions", "list", "--json", "-j", journal)
		if code != 0 {
			t.Fatalf("sessions list as a member: exit %d: %s", code, stderr)
		}
		if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) == 0 {
			t.Fatalf("sessions list as a member: %v: %s", err, out)
		}
		if _, stderr, code := asAuditor(t, true, "journal", "verify", "-q", "-j", journal); code != 0 {
			t.Fatalf("journal verify as a member: exit %d: %s", code, stderr)
		}
	}
	close(stop)
	wg.Wait()
	outDir := filepath.Join(e.dir, "auditor")
	os.Mkdir(outDir, 0o777)
	os.Chmod(outDir, 0o777)
	ocsf := filepath.Join(outDir, "session.ocsf.jsonl")
	if _, stderr, code := asAuditor(t, true, "journal", "export", "-q", "-c", e.cfgPath, "-j", journal, "--session", list[0].ID[:13],
		"--format", "ocsf", "-o", ocsf); code != 0 {
		t.Fatalf("journal export --format ocsf as a member: exit %d: %s", code, stderr)
	}
	if b, err := os.ReadFile(ocsf); err != nil || !strings.Contains(string(b), list[0].ID) {
		t.Errorf("the member's OCSF export lacks the session: %v\n%s", err, b)
	}
	if out, stderr, code := asAuditor(t, true, "sessions", "show", "-j", journal, list[0].ID); code != 0 || !strings.Contains(out, "echo") {
		t.Errorf("sessions show as a member: exit %d: %s %s", code, out, stderr)
	}
	// A sealed bundle needs the signing key, which the member may not read:
	// the refusal says what to do.
	_, stderr, code := asAuditor(t, true, "journal", "export", "-q", "-c", e.cfgPath, "-j", journal, "-o", filepath.Join(outDir, "b.tar.gz"))
	if code != 77 || !strings.Contains(stderr, "only root may read") || !strings.Contains(stderr, "--format ocsf") {
		t.Errorf("sealed export as a member: exit %d: %s", code, stderr)
	}

	// Nothing the member can write.
	for _, f := range []string{"journal.db", "journal.db-wal", "journal.db-shm", "journal.pub", "new-file"} {
		p := filepath.Join(stateDir, f)
		cmd := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--groups=65534,"+strconv.Itoa(auditGID),
			"sh", "-c", `echo x >> "$1"`, "sh", p)
		if out, err := cmd.CombinedOutput(); err == nil {
			t.Errorf("a member of the audit group wrote %s: %s", p, out)
		}
	}
	cmd := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--groups=65534,"+strconv.Itoa(auditGID),
		"sqlite3", journal, "DELETE FROM entries")
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Errorf("a member of the audit group deleted entries: %s", out)
	}
	// Outside the group: nothing.
	if _, stderr, code := asAuditor(t, false, "sessions", "list", "-j", journal); code == 0 || !strings.Contains(stderr, "permission denied") {
		t.Errorf("a user outside the audit group listed sessions: exit %d: %s", code, stderr)
	}
	// And the journal still verifies, with every run's session.
	out, stderr, code := e.interlock("journal", "verify", "-j", journal)
	if code != 0 {
		t.Fatalf("journal verify as root: %s %s", out, stderr)
	}
	if n := len(e.sessions()); n < 2 {
		t.Errorf("%d sessions journaled", n)
	}
}

func fileGID(fi os.FileInfo) int {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Gid)
	}
	return -1
}
