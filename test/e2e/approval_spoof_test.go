package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/test/e2e/pgtest"
)

// TestApprovalSpoofShowsTheWholeCommand (issue 13): an ssh exec held by a
// review rule whose command is a harmless first line, a newline and a
// second command, an escape sequence that would hide text on the
// approver's terminal, and more than 200 bytes. The approver's views
// show all of it with visible escapes; an approval bound to another text
// (--expect) is refused and runs nothing; one bound to the exact text's
// SHA-256 runs exactly that text.
func TestApprovalSpoofShowsTheWholeCommand(t *testing.T) {
	st := startSSHD(t)
	cgPath, cgDir := makeCgroup(t, "approval-spoof")
	e := newSSHEnv(t, st, sshTargetOpts{global: fmt.Sprintf(`intercept:
  cgroups: [%s]
policy:
  rules:
    - name: hold-exec
      match: {protocols: [ssh], operation: {kinds: [exec]}}
      action: review
      review:
        approvers: [daemon]
        timeout: 60s
        require_expect: true
`, cgPath)})
	e.startDaemon()
	sock := filepath.Join(filepath.Dir(e.socket), "approvals.sock")

	marker := filepath.Join(st.dir, "second-command-ran")
	tail := strings.Repeat("A", 220)
	command := "true first\ntouch " + marker + " # \x1b[8mhidden\x1b[0m " + tail
	sum := sha256.Sum256([]byte(command))
	hash := hex.EncodeToString(sum[:])
	firstSum := sha256.Sum256([]byte("true first"))
	firstLineHash := hex.EncodeToString(firstSum[:])

	client := inCgroup(t, cgDir, st.sshArgv(command)...)
	var out, errOut bytes.Buffer
	client.Stdout, client.Stderr = &out, &errOut
	if err := client.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Process.Kill(); client.Wait() })

	var list pendingList
	waitFor(t, func() bool { list = pendingAt(t, sock); return len(list) == 1 })
	req := list[0].Request
	if req.Operation.Text != command || req.TextSHA256 != hash {
		t.Fatalf("the request carries text %q sha256 %s, want %q %s", req.Operation.Text, req.TextSHA256, command, hash)
	}

	// The list: one row whose cell says the text goes on, and a note
	// naming the command that prints it whole. No raw ESC anywhere.
	o, stderr, code := asUser(t, "daemon", "approvals", "list", "--socket", sock)
	if code != 0 {
		t.Fatalf("approvals list: exit %d %s", code, stderr)
	}
	if strings.Contains(o, "\x1b") {
		t.Errorf("approvals list prints a raw ESC:\n%q", o)
	}
	if !strings.Contains(o, "true first (+1 line, ") || !strings.Contains(o, "interlock approvals show "+req.ID) {
		t.Errorf("approvals list hides that the command goes on:\n%s", o)
	}

	// show: every line, escaped, the whole tail, the hash.
	o, stderr, code = asUser(t, "daemon", "approvals", "show", req.ID, "--socket", sock)
	if code != 0 {
		t.Fatalf("approvals show: exit %d %s", code, stderr)
	}
	if strings.Contains(o, "\x1b") {
		t.Errorf("approvals show prints a raw ESC:\n%q", o)
	}
	for _, want := range []string{
		"1| true first\n",
		"2| touch " + marker + ` # \x1b[8mhidden\x1b[0m ` + tail + "\n",
		fmt.Sprintf("%d bytes, 2 lines, sha256 %s", len(command), hash),
		"--expect " + hash,
	} {
		if !strings.Contains(o, want) {
			t.Errorf("approvals show lacks %q:\n%s", want, o)
		}
	}

	// A malformed hash is a usage error; the hash of what a cut view
	// showed (the first line) is refused. Neither runs anything.
	// The rule requires --expect: a blind approval approves nothing.
	if _, stderr, code := asUser(t, "daemon", "approvals", "approve", req.ID, "--socket", sock, "--reason", "lgtm"); code != 64 || !strings.Contains(stderr, "requires approving with --expect") {
		t.Errorf("approve without --expect under require_expect: exit %d %s", code, stderr)
	}
	if _, stderr, code := asUser(t, "daemon", "approvals", "approve", req.ID, "--socket", sock, "--expect", "WRONG"); code != 64 || !strings.Contains(stderr, "not a SHA-256") {
		t.Errorf("approve --expect WRONG: exit %d %s", code, stderr)
	}
	if _, stderr, code := asUser(t, "daemon", "approvals", "approve", req.ID, "--socket", sock, "--expect", firstLineHash); code != 1 || !strings.Contains(stderr, "does not have the SHA-256 you expected") {
		t.Errorf("approve with the first line's hash: exit %d %s", code, stderr)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("the second command ran on a refused approval")
	}
	if st.started("command") != 0 {
		t.Fatal("sshd started a command before the approval")
	}
	o, _, _ = asUser(t, "daemon", "approvals", "list", "--socket", sock, "--json")
	list = nil
	json.Unmarshal([]byte(o), &list)
	if len(list) != 1 || list[0].Request.ID != req.ID || list[0].Request.TextSHA256 != hash {
		t.Fatalf("a refused approval changed the pending set: %s", o)
	}

	// The exact hash approves, and exactly that text runs.
	if o, stderr, code := asUser(t, "daemon", "approvals", "approve", req.ID, "--socket", sock, "--expect", hash, "--reason", "read all of it"); code != 0 {
		t.Fatalf("approve --expect <hash>: exit %d %s %s", code, o, stderr)
	}
	if err := client.Wait(); err != nil {
		t.Fatalf("ssh after approval: %v\nstdout: %s\nstderr: %s", err, out.String(), errOut.String())
	}
	if _, err := os.Stat(marker); err != nil {
		t.Errorf("the approved command did not run in full: %v", err)
	}
	var ran []string
	for _, q := range entriesOf[model.SSHRequest](e, model.KindSSHRequest) {
		if q.Type == "exec" {
			ran = append(ran, q.Command)
		}
	}
	if len(ran) != 1 || ran[0] != command {
		t.Errorf("journaled execs %q, want exactly %q", ran, command)
	}
	var decided bool
	for _, d := range entriesOf[model.ApprovalDecision](e, model.KindApprovalDecision) {
		if d.ID == req.ID {
			if decided || d.Verdict != model.VerdictApprove {
				t.Errorf("decision %+v (a refused approval must not be journaled as one)", d)
			}
			decided = true
		}
	}
	if !decided {
		t.Error("the approval was not journaled")
	}
}

// TestApprovalSpoofShowsTheWholeStatement is the same for SQL: a held
// DELETE whose first line deletes one row and whose second line, with an
// escape sequence and a 220-byte comment, deletes them all. show prints
// every line escaped; the first line's hash approves nothing; the exact
// text's hash runs exactly that statement.
func TestApprovalSpoofShowsTheWholeStatement(t *testing.T) {
	srv := requirePG(t)
	if out, err := srv.PSQL(pgtest.AppDB, "CREATE TABLE spoof(id int, note text)",
		"INSERT INTO spoof SELECT g, 'x' FROM generate_series(1, 3) g", "GRANT ALL ON spoof TO "+pgtest.AppUser); err != nil {
		t.Fatalf("setup: %v %s", err, out)
	}
	e := newEnv(t, []target{pgTarget(t, "db", srv.Addr(), pgtest.AppPassword, "")}, `policy:
  rules:
    - name: hold-delete
      match: {operation: {kinds: [delete]}}
      action: review
      review: {approvers: [daemon], timeout: 60s}
`)
	tail := strings.Repeat("A", 220)
	p := startPsql(t, e, srv, "DELETE FROM spoof WHERE id = 1\n  OR note <> '\x1b[8m' /* "+tail+" */;\nSELECT 'left ' || count(*) FROM spoof;\n")
	id := waitRequest(t, e, "hold-delete")

	o, _, _ := asUser(t, "daemon", "approvals", "list", "-c", e.cfgPath, "--json")
	var list pendingList
	json.Unmarshal([]byte(o), &list)
	if len(list) != 1 {
		t.Fatalf("pending: %s", o)
	}
	text := list[0].Request.Operation.Text
	sum := sha256.Sum256([]byte(text))
	hash := hex.EncodeToString(sum[:])
	if !strings.Contains(text, "\x1b[8m") || !strings.Contains(text, tail) || list[0].Request.TextSHA256 != hash {
		t.Fatalf("the request carries %q (sha256 %s), not the statement sent", text, list[0].Request.TextSHA256)
	}

	// Short ids (issue 14): a unique prefix names the request; an
	// empty one names nothing.
	if _, stderr, code := asUser(t, "daemon", "approvals", "approve", "", "-c", e.cfgPath, "--expect", hash); code != 64 {
		t.Errorf("approve with an empty id: exit %d %s", code, stderr)
	}
	o, stderr, code := asUser(t, "daemon", "approvals", "show", id[:8], "-c", e.cfgPath)
	if code != 0 {
		t.Fatalf("approvals show: exit %d %s", code, stderr)
	}
	if strings.Contains(o, "\x1b") {
		t.Errorf("approvals show prints a raw ESC:\n%q", o)
	}
	for _, want := range []string{"1| DELETE FROM spoof WHERE id = 1\n", `2|   OR note <> '\x1b[8m' /* ` + tail + " */", "--expect " + hash} {
		if !strings.Contains(o, want) {
			t.Errorf("approvals show lacks %q:\n%s", want, o)
		}
	}
	o, _, _ = asUser(t, "daemon", "approvals", "list", "-c", e.cfgPath)
	if strings.Contains(o, "\x1b") || !strings.Contains(o, "DELETE FROM spoof WHERE id = 1 (+1 line, ") {
		t.Errorf("approvals list:\n%q", o)
	}

	first := sha256.Sum256([]byte("DELETE FROM spoof WHERE id = 1"))
	if _, stderr, code := asUser(t, "daemon", "approvals", "approve", id, "-c", e.cfgPath, "--expect", hex.EncodeToString(first[:])); code != 1 || !strings.Contains(stderr, "does not have the SHA-256 you expected") {
		t.Errorf("approve with the first line's hash: exit %d %s", code, stderr)
	}
	if o, stderr, code := asUser(t, "daemon", "approvals", "approve", id[:8], "-c", e.cfgPath, "--expect", hash); code != 0 {
		t.Fatalf("approve %s --expect <hash>: exit %d %s %s", id[:8], code, o, stderr)
	}
	out, stderr := p.wait(t)
	if !strings.Contains(out, "left 0") {
		t.Errorf("the approved statement did not run in full: %q %q", out, stderr)
	}
	if r, _, ok := e.findStatement(text); !ok || r.St.Decision.Request != id || r.Res == nil || r.Res.Rows != 3 {
		t.Errorf("journaled DELETE %+v %+v (found %v)", r.St.Decision, r.Res, ok)
	}
}

// TestApprovalSpoofPrefixSwap: ids made within the same minute share
// their first characters. The approver reads request A under a prefix;
// the session withdraws A and asks B, which the same prefix now names
// alone. Approving by that prefix without --expect is refused (exit 64),
// with A's hash it is refused as another text (exit 1), and B never runs.
func TestApprovalSpoofPrefixSwap(t *testing.T) {
	st := startSSHD(t)
	cgPath, cgDir := makeCgroup(t, "approval-swap")
	e := newSSHEnv(t, st, sshTargetOpts{global: fmt.Sprintf(`intercept:
  cgroups: [%s]
policy:
  rules:
    - name: hold-exec
      match: {protocols: [ssh], operation: {kinds: [exec]}}
      action: review
      review:
        approvers: [daemon]
        timeout: 60s
`, cgPath)})
	e.startDaemon()
	sock := filepath.Join(filepath.Dir(e.socket), "approvals.sock")
	pending := func() pendingList { return pendingAt(t, sock) }
	hold := func(command string) (*exec.Cmd, model.ApprovalRequest) {
		c := inCgroup(t, cgDir, st.sshArgv(command)...)
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Process.Kill(); c.Wait() })
		var list pendingList
		waitFor(t, func() bool { list = pending(); return len(list) == 1 && list[0].Request.Operation.Text == command })
		return c, list[0].Request
	}

	benign := "true read-only"
	a, reqA := hold(benign)
	// The session withdraws A: its client goes away.
	a.Process.Kill()
	a.Wait()
	waitFor(t, func() bool { return len(pending()) == 0 })

	marker := filepath.Join(st.dir, "swapped-command-ran")
	_, reqB := hold("touch " + marker)
	n := 0
	for n < len(reqA.ID) && n < len(reqB.ID) && reqA.ID[n] == reqB.ID[n] {
		n++
	}
	if n == 0 {
		t.Fatalf("ids %s and %s share no prefix", reqA.ID, reqB.ID)
	}
	prefix := reqB.ID[:n]

	if _, stderr, code := asUser(t, "daemon", "approvals", "approve", prefix, "--socket", sock, "--reason", "read it"); code != 64 || !strings.Contains(stderr, "needs --expect") {
		t.Errorf("approve %s (A's prefix, now B's) without --expect: exit %d %s", prefix, code, stderr)
	}
	sumA := sha256.Sum256([]byte(benign))
	if _, stderr, code := asUser(t, "daemon", "approvals", "approve", prefix, "--socket", sock, "--expect", hex.EncodeToString(sumA[:])); code != 1 {
		t.Errorf("approve %s with A's hash: exit %d %s", prefix, code, stderr)
	}
	if l := pending(); len(l) != 1 || l[0].Request.ID != reqB.ID {
		t.Fatalf("B is no longer held: %+v", l)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("B ran without an approval of its text")
	}
	for _, d := range entriesOf[model.ApprovalDecision](e, model.KindApprovalDecision) {
		if d.ID == reqB.ID && d.Verdict == model.VerdictApprove {
			t.Errorf("an approval of B was journaled: %+v", d)
		}
	}
}
