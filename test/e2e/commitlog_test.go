package e2e

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/interlock/interlock/journal"
	"github.com/interlock/interlock/model"
)

// TestCommitLogHandOver: an `interlock run` writes its journal alone,
// through the commit log; a second `interlock run` on the same journal,
// started by the job, makes it flush and step down to SQLite (the second
// would wait for busy_timeout, 10 s, and fail otherwise). The sessions
// before, during and after are all there, in one chain that verifies.
func TestCommitLogHandOver(t *testing.T) {
	srv := startEcho(t, "tcp4", "127.0.0.2:0")
	e := newEnv(t, []target{{name: "echo", address: srv.addr()}}, "")
	script := fmt.Sprintf("%[1]s -addr %[2]s >/dev/null && %[3]s run -c %[4]s -- %[1]s -addr %[2]s >/dev/null && %[1]s -addr %[2]s >/dev/null",
		clientBin, srv.addr(), interlockBin, e.cfgPath)
	start := time.Now()
	out, stderr, code := e.runUnder("/bin/sh", "-c", script)
	if code != 0 {
		t.Fatalf("run exited %d: %s %s", code, out, stderr)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the two runs took %s: the inner one waited for the journal", took)
	}
	// Outer: client, inner run (its upstream), client; inner: client.
	var opens []uint64
	for _, en := range e.entries() {
		if en.Kind == model.KindSessionOpen {
			opens = append(opens, en.Seq)
		}
	}
	if len(opens) != 4 {
		t.Fatalf("%d session.open entries (%v), want 4", len(opens), opens)
	}
	if vout, _, code := e.interlock("journal", "verify", "-j", e.journal); code != 0 {
		t.Errorf("journal written by two runs by turns does not verify: %s", vout)
	}
	if _, err := os.Stat(e.journal + journal.LogSuffix); err != nil {
		t.Errorf("no commit log beside the journal: %v", err)
	}
}
