package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/interlock/interlock/model"
)

// TestJournalVerifyDetectsTampering: verify passes on a real journal; after
// one byte of one entry is changed with the sqlite3 CLI, it fails, exits 1
// and names that sequence number.
func TestJournalVerifyDetectsTampering(t *testing.T) {
	srv := startEcho(t, "tcp4", "127.0.0.2:0")
	e := newEnv(t, []target{{name: "echo", address: srv.addr()}}, "")
	for i := 0; i < 3; i++ {
		if out, stderr, code := e.runUnder(clientBin, "-addr", srv.addr()); code != 0 {
			t.Fatalf("run: %s %s", out, stderr)
		}
	}
	out, _, code := e.interlock("journal", "verify", "-j", e.journal)
	if code != 0 || !strings.Contains(out, "OK") {
		t.Fatalf("verify of an untouched journal: exit %d, %s", code, out)
	}

	// Pick a session.open in the middle and change one character of its
	// target name inside the stored (hashed) bytes.
	var seq uint64
	for _, en := range e.entries() {
		if en.Kind == model.KindSessionOpen {
			seq = en.Seq
		}
	}
	if seq == 0 {
		t.Fatal("no session.open entry")
	}
	sql := fmt.Sprintf(`UPDATE entries SET body = CAST(replace(CAST(body AS TEXT), '"name":"echo"', '"name":"echp"') AS BLOB) WHERE seq = %d;`, seq)
	if b, err := exec.Command("sqlite3", e.journal, sql).CombinedOutput(); err != nil {
		t.Fatalf("sqlite3: %v %s", err, b)
	}
	out, _, code = e.interlock("journal", "verify", "-j", e.journal)
	if code != 1 {
		t.Errorf("verify of a tampered journal exited %d, want 1: %s", code, out)
	}
	if !strings.Contains(out, fmt.Sprintf("FAILED at seq %d", seq)) {
		t.Errorf("verify does not name seq %d: %s", seq, out)
	}
	jout, _, _ := e.interlock("journal", "verify", "-j", e.journal, "--json")
	if !strings.Contains(jout, fmt.Sprintf(`"first_bad_seq": %d`, seq)) {
		t.Errorf("verify --json does not name seq %d: %s", seq, jout)
	}
}

// TestNonRootRunExplains: as an unprivileged user, interlock run exits 77
// and names the missing capabilities.
func TestNonRootRunExplains(t *testing.T) {
	e := newEnv(t, nil, "")
	cmd := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
		interlockBin, "run", "-c", e.cfgPath, "--", "true")
	_, stderr, code := runCmd(t, cmd)
	if code != 77 {
		t.Errorf("exit %d, want 77: %s", code, stderr)
	}
	for _, want := range []string{"CAP_BPF", "CAP_NET_ADMIN", "CAP_SYS_ADMIN", "run it as root"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("message does not mention %s: %s", want, stderr)
		}
	}
	// Capabilities missing in part are named in part.
	cmd = exec.Command("setpriv", "--inh-caps=-all", "--bounding-set=-bpf", interlockBin, "run", "-c", e.cfgPath, "--", "true")
	_, stderr, code = runCmd(t, cmd)
	if code != 77 || !strings.Contains(stderr, "CAP_BPF") || strings.Contains(stderr, "CAP_NET_ADMIN,") {
		t.Errorf("without CAP_BPF only: exit %d, %s", code, stderr)
	}
}

// TestBrokenConfig: a broken config makes run and daemon exit 78 and name
// the file, line and key.
func TestBrokenConfig(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name, body, want string
	}{
		{"unknown key", "journal:\n  path: /tmp/x.db\n  sync: normal\n  syncc: always\n", `:4: journal.syncc`},
		{"bad value", "targets:\n  - name: db\n    protocol: tcp\n    address: db.internal:99999\n", `:4: targets[0].address`},
		{"syntax", "journal:\n  path: [\n", `:2`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_")+".yaml")
			if err := os.WriteFile(p, []byte(c.body), 0o644); err != nil {
				t.Fatal(err)
			}
			for _, args := range [][]string{{"run", "-c", p, "--", "true"}, {"daemon", "-c", p}} {
				_, stderr, code := runCmd(t, exec.Command(interlockBin, args...))
				if code != 78 {
					t.Errorf("%s: exit %d, want 78: %s", args[0], code, stderr)
				}
				if !regexp.MustCompile(regexp.QuoteMeta(p) + regexp.QuoteMeta(c.want)).MatchString(stderr) {
					t.Errorf("%s: error %q does not name %s%s", args[0], stderr, p, c.want)
				}
			}
		})
	}
	_, stderr, code := runCmd(t, exec.Command(interlockBin, "run", "-c", filepath.Join(dir, "missing.yaml"), "--", "true"))
	if code != 66 || !strings.Contains(stderr, "missing.yaml") {
		t.Errorf("missing config: exit %d, %s", code, stderr)
	}
}

// TestDoctor: on this machine every check passes, and --json is parseable.
func TestDoctor(t *testing.T) {
	e := newEnv(t, []target{{name: "x", address: "127.0.0.2:1"}}, "")
	out, _, code := e.interlock("doctor", "-c", e.cfgPath)
	if code != 0 {
		t.Fatalf("doctor exit %d:\n%s", code, out)
	}
	for _, want := range []string{"kernel", "cgroup2", "privileges", "bpf programs", "config", "journal"} {
		if !strings.Contains(out, "] "+want) {
			t.Errorf("doctor output lacks %q:\n%s", want, out)
		}
	}
	_, stderr, code := runCmd(t, exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", interlockBin, "doctor", "-c", e.cfgPath))
	if code != 1 {
		t.Errorf("doctor as nobody: exit %d, want 1: %s", code, stderr)
	}
}
