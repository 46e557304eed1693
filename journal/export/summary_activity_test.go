package export

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/interlock/interlock/journal/evidence"
	"github.com/interlock/interlock/model"
)

// activitySummary feeds a summary the entries of a postgres session and
// an ssh session, as the handlers journal them, and renders it.
func activitySummary(t *testing.T) string {
	t.Helper()
	s := newSummary(&evidence.Manifest{})
	seq := uint64(0)
	add := func(session, kind string, data any) uint64 {
		seq++
		b, err := json.Marshal(data)
		if err != nil {
			t.Fatal(err)
		}
		s.add(seq, evidence.Body{Seq: seq, Time: int64(seq) * 1e9, Kind: kind, Session: session, Data: b})
		return seq
	}
	spec := &model.MaskSpec{Rules: []model.MaskRule{{Rule: "pii", Columns: []string{"customers.email"}}}}
	// Every allowed statement of a session a mask rule covers is decided
	// mask, as policy does.
	masked := model.Decision{Action: model.Mask, Rule: "pii", Reason: "allowed by rule read, results masked", Mask: spec}
	add("pg", model.KindSessionOpen, model.SessionOpen{Target: model.Target{Name: "db", Protocol: model.ProtoPostgres},
		Decision: model.Decision{Action: model.Allow}})
	st := add("pg", model.KindPGStatement, model.PGStatement{SQL: "SELECT 1", Decision: masked})
	add("pg", model.KindPGResult, model.PGResult{Statement: st, Tag: "SELECT 1", Rows: 1})
	st = add("pg", model.KindPGStatement, model.PGStatement{SQL: "SELECT email FROM customers", Decision: masked})
	add("pg", model.KindPGResult, model.PGResult{Statement: st, Tag: "SELECT 2", Rows: 2})
	add("pg", model.KindPGMask, model.PGMask{Statement: st, Rule: "pii", Column: "customers.email", Count: 2})
	add("pg", model.KindPGStatement, model.PGStatement{SQL: "DROP TABLE customers;\n\x1b[8mhidden", Decision: model.Decision{Action: model.Deny, Rule: "no-ddl", Reason: "DDL"}})
	add("pg", model.KindApprovalRequest, model.ApprovalRequest{ID: "req-1", Rule: "hold-deletes", Operation: model.Operation{Kind: "delete", Text: "DELETE FROM t"}})
	add("pg", model.KindApprovalDecision, model.ApprovalDecision{ID: "req-1", Verdict: model.VerdictApprove})
	add("pg", model.KindPGStatement, model.PGStatement{SQL: "DELETE FROM t", Decision: model.Decision{Action: model.Mask, Rule: "hold-deletes", Request: "req-1", Mask: spec}})
	add("pg", model.KindApprovalRequest, model.ApprovalRequest{ID: "req-2", Rule: "hold-deletes"})
	add("pg", model.KindApprovalDecision, model.ApprovalDecision{ID: "req-2", Verdict: model.VerdictTimeout, Reason: "no decision within 30s"})
	add("pg", model.KindPGStatement, model.PGStatement{SQL: "DELETE FROM u", Decision: model.Decision{Action: model.Deny, Rule: "hold-deletes", Request: "req-2", Reason: "no decision within 30s"}})

	add("ssh", model.KindSessionOpen, model.SessionOpen{Target: model.Target{Name: "box", Protocol: model.ProtoSSH}, Decision: model.Decision{Action: model.Allow}})
	add("ssh", model.KindSSHChannel, model.SSHChannel{Channel: 0, Type: "session", Decision: model.Decision{Action: model.Allow}})
	add("ssh", model.KindSSHRequest, model.SSHRequest{Channel: 0, Type: "env", Env: "LANG=C", Decision: model.Decision{Action: model.Allow}})
	add("ssh", model.KindSSHRequest, model.SSHRequest{Channel: 0, Type: "exec", Command: "cat /etc/app.conf", Decision: model.Decision{Action: model.Mask, Rule: "secrets", Mask: spec}})
	add("ssh", model.KindSSHIO, model.SSHIO{Channel: 0, Stream: "o", Bytes: 300})
	add("ssh", model.KindSSHMask, model.MaskDecision{Rule: "secrets", Column: "channel 0 output", Detector: "aws_key", Count: 1})
	zero := 0
	add("ssh", model.KindSSHExit, model.SSHExit{Channel: 0, ExitStatus: &zero})
	add("ssh", model.KindSSHRequest, model.SSHRequest{Channel: 1, Type: "exec", Command: "rm -rf /srv", Decision: model.Decision{Action: model.Deny, Rule: "targets.box.exec-allowlist"}})
	add("ssh", model.KindSSHRequest, model.SSHRequest{Channel: 2, Type: "exec", Command: "scp -t /srv/upload.tar", Decision: model.Decision{Action: model.Allow, Rule: "scp"}})
	add("ssh", model.KindSSHIO, model.SSHIO{Channel: 2, Stream: "i", Bytes: 4096})
	add("ssh", model.KindSSHRequest, model.SSHRequest{Channel: 3, Type: "subsystem", Command: "sftp", Decision: model.Decision{Action: model.Allow}})
	add("ssh", model.KindSSHSFTP, model.SSHSFTP{Channel: 3, Op: "open", Path: "/srv/db.dump", Flags: []string{"read"}, Status: "ok", Decision: model.Decision{Action: model.Allow}})
	add("ssh", model.KindSSHSFTP, model.SSHSFTP{Channel: 3, Op: "close", Path: "/srv/db.dump", BytesRead: 1048576, Status: "ok", Decision: model.Decision{Action: model.Allow}})
	var b bytes.Buffer
	if err := s.render(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestSummaryActivityActions: each operation shows the action it got. A
// statement decided mask shows mask only when masking recorded values
// masked; otherwise allow (the bug where every statement showed mask).
func TestSummaryActivityActions(t *testing.T) {
	out := activitySummary(t)
	row := regexp.MustCompile(`<tr id="e(\d+)" data-kind="([^"]*)" data-outcome="([^"]*)">`)
	got := map[string]string{}
	for _, m := range row.FindAllStringSubmatch(out, -1) {
		got[m[1]] = m[2] + " " + m[3]
	}
	want := map[string]string{
		"2":  "sql allow",
		"4":  "sql mask",
		"7":  "sql deny",
		"10": "sql review: approved",
		"13": "sql review: denied",
		"17": "exec mask",
		"21": "exec deny",
		"22": "exec allow",
		"24": "subsystem allow",
		"25": "sftp allow",
		"26": "sftp allow",
	}
	for seq, w := range want {
		if got[seq] != w {
			t.Errorf("entry %s: %q, want %q", seq, got[seq], w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("operation rows %v, want %v", got, want)
	}
	for _, w := range []string{
		"Masking decisions (2)", "2 masked by pii in customers.email", "1 masked by secrets in channel 0 output (aws_key)",
		"SELECT 2 (2 rows)", "mask rule pii covered its output; nothing was masked", "exit status 0", "0 bytes in, 300 bytes out",
		// The approvals link to the operation they held.
		`<a href="#e10">→ 10</a>`, `<a href="#e13">→ 13</a>`, `<a href="#s-pg">pg</a>`,
		// Files: the scp upload sized by its stream, the sftp download
		// by the close's count, each with the open's or exec's action.
		`<tr data-path="/srv/upload.tar"><td><a href="#e22">22</a></td><td>scp</td><td>upload</td>`, "<td>4096</td>",
		`<tr data-path="/srv/db.dump"><td><a href="#e26">26</a></td><td>sftp</td><td>download</td>`, "<td>1048576</td>",
		"DROP TABLE customers;\n" + `\x1b[8mhidden`,
	} {
		if !strings.Contains(out, w) {
			t.Errorf("summary.html lacks %q", w)
		}
	}
	// Each entry has one anchor: its operation's row, or its row in the
	// approvals or masking table.
	ids := map[string]int{}
	for _, m := range regexp.MustCompile(` id="(e\d+)"`).FindAllStringSubmatch(out, -1) {
		ids[m[1]]++
	}
	for id, n := range ids {
		if n != 1 {
			t.Errorf("anchor %s appears %d times", id, n)
		}
	}
	for _, id := range []string{"e8", "e9", "e6"} {
		if ids[id] != 1 {
			t.Errorf("entry %s (an approval or masking entry) has no anchor", id)
		}
	}
	if strings.Contains(out, "\x1b") {
		t.Error("summary.html holds a raw ESC")
	}
	// An env request that was allowed is no operation worth a row; the
	// session channel neither.
	if strings.Contains(out, "LANG=C") {
		t.Error("an allowed env request is listed")
	}
}
