package e2e

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// sessionsThrough runs n intercepted client connections with interlock run.
func sessionsThrough(t *testing.T, e *env, srv *echoServer, n int) {
	t.Helper()
	for range n {
		if out, stderr, code := e.runUnder(clientBin, "-addr", srv.addr()); code != 0 {
			t.Fatalf("run: exit %d: %s %s", code, out, stderr)
		}
	}
}

// TestJournalExportAndVerifyBundle: sessions recorded through the real
// data path are exported with the CLI; the bundle, copied with only the
// public key to a directory without database or config, verifies; one
// changed byte makes verify exit 1 and say why; OCSF export writes one
// event per session open and close.
func TestJournalExportAndVerifyBundle(t *testing.T) {
	srv := startEcho(t, "tcp4", "127.0.0.2:0")
	e := newEnv(t, []target{{name: "echo", address: srv.addr()}}, "")
	sessionsThrough(t, e, srv, 3)

	out, stderr, code := e.interlock("journal", "verify", "-c", e.cfgPath)
	if code != 0 || !strings.Contains(out, "OK") || !strings.Contains(out, "signed up to seq") {
		t.Fatalf("verify: exit %d\n%s%s", code, out, stderr)
	}
	bundle := filepath.Join(e.dir, "evidence.tar.gz")
	_, stderr, code = e.interlock("journal", "export", "-c", e.cfgPath, "--out", bundle)
	if code != 0 || !strings.Contains(stderr, "wrote "+bundle) {
		t.Fatalf("export: exit %d: %s", code, stderr)
	}

	alone := t.TempDir()
	b, err := os.ReadFile(bundle)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := os.ReadFile(filepath.Join(e.dir, "state", "journal.pub"))
	if err != nil {
		t.Fatalf("the public key is not exported beside the key: %v", err)
	}
	os.WriteFile(filepath.Join(alone, "b.tar.gz"), b, 0o644)
	os.WriteFile(filepath.Join(alone, "journal.pub"), pub, 0o644)
	verifyBundle := func() (string, int) {
		// INTERLOCK_CONFIG points nowhere useful: nothing but the files.
		cmd := []string{"journal", "verify", "--bundle", filepath.Join(alone, "b.tar.gz"), "--pubkey", filepath.Join(alone, "journal.pub"), "--json"}
		o, _, c := e.interlock(cmd...)
		return o, c
	}
	o, c := verifyBundle()
	var rep struct {
		OK     bool   `json:"ok"`
		Reason string `json:"reason"`
		Counts struct {
			Entries  int `json:"entries"`
			Sessions int `json:"sessions"`
		} `json:"counts"`
	}
	if err := json.Unmarshal([]byte(o), &rep); err != nil || c != 0 || !rep.OK || rep.Counts.Sessions != 3 {
		t.Fatalf("verify --bundle: exit %d, %v\n%s", c, err, o)
	}
	b[len(b)/2] ^= 0x20
	os.WriteFile(filepath.Join(alone, "b.tar.gz"), b, 0o644)
	o, c = verifyBundle()
	if json.Unmarshal([]byte(o), &rep); c != 1 || rep.OK || rep.Reason == "" {
		t.Fatalf("verify of a changed bundle: exit %d\n%s", c, o)
	}

	ocsf := filepath.Join(e.dir, "events.jsonl")
	if _, stderr, code := e.interlock("journal", "export", "-c", e.cfgPath, "--format", "ocsf", "--out", ocsf); code != 0 {
		t.Fatalf("export ocsf: exit %d: %s", code, stderr)
	}
	f, err := os.Open(ocsf)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	auth := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var ev struct {
			ClassUID int `json:"class_uid"`
		}
		if json.Unmarshal(sc.Bytes(), &ev) == nil && ev.ClassUID == 3002 {
			auth++
		}
	}
	if auth != 6 {
		t.Errorf("%d Authentication events, want 3 logons and 3 logoffs", auth)
	}

	// Missing inputs are exit 66.
	if _, _, code := e.interlock("journal", "verify", "--bundle", filepath.Join(alone, "nope.tar.gz")); code != 66 {
		t.Errorf("verify of a missing bundle: exit %d, want 66", code)
	}
	if _, _, code := e.interlock("journal", "verify", "-j", e.journal, "--checkpoint", filepath.Join(alone, "nope.cp")); code != 66 {
		t.Errorf("verify with a missing checkpoint: exit %d, want 66", code)
	}
	// Retention: nothing in these sessions has a payload; the journal
	// still verifies after a prune.
	if out, _, code := e.interlock("journal", "prune-payloads", "-c", e.cfgPath, "--before", "1s"); code != 0 || !strings.Contains(out, "no payloads") {
		t.Errorf("prune-payloads: exit %d: %s", code, out)
	}
}

// TestJournalStartupGuard: a journal restored from an older copy, behind
// the checkpoint interlock left beside it, stops interlock from starting,
// with a message that says what is missing; verify fails it too.
func TestJournalStartupGuard(t *testing.T) {
	srv := startEcho(t, "tcp4", "127.0.0.2:0")
	e := newEnv(t, []target{{name: "echo", address: srv.addr()}}, "")
	sessionsThrough(t, e, srv, 1)
	old, err := os.ReadFile(e.journal)
	if err != nil {
		t.Fatal(err)
	}
	sessionsThrough(t, e, srv, 2)

	if err := os.WriteFile(e.journal, old, 0o640); err != nil {
		t.Fatal(err)
	}
	os.Remove(e.journal + "-wal")
	os.Remove(e.journal + "-shm")
	_, stderr, code := e.runUnder(clientBin, "-addr", srv.addr())
	if code == 0 || !strings.Contains(stderr, "rolled back or truncated") || !strings.Contains(stderr, "are missing") {
		t.Fatalf("run on a rolled-back journal: exit %d: %s", code, stderr)
	}
	if len(srv.peers()) != 3 {
		t.Errorf("a connection went through while the journal was refused: %d peers", len(srv.peers()))
	}
	out, _, code := e.interlock("journal", "verify", "-j", e.journal)
	if code != 1 || !strings.Contains(out, "tail truncated") {
		t.Errorf("verify of the rolled-back journal: exit %d: %s", code, out)
	}
}
