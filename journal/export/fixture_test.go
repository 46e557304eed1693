package export

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/interlock/interlock/journal"
	"github.com/interlock/interlock/journal/evidence"
	"github.com/interlock/interlock/model"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// fixture writes a real journal through the real writer: two postgres
// sessions with statements and results, an ssh session with a pty and
// terminal output, approvals and a denial, then closes it (which signs
// the final checkpoint).
type fixture struct {
	dir, path string
	signer    *journal.Signer
	sessions  []string
	base      time.Time
}

func newFixture(t testing.TB, sessions int) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{dir: dir, path: filepath.Join(dir, "journal.db"), base: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	j, err := journal.Open(context.Background(), journal.Options{Path: f.path, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	at := func(s int) time.Time { return f.base.Add(time.Duration(s) * time.Second) }
	app := func(rec model.Record) uint64 {
		t.Helper()
		seq, err := j.Append(context.Background(), rec, model.Committed)
		if err != nil {
			t.Fatal(err)
		}
		return seq
	}
	sec := 0
	for i := range sessions {
		id := fmt.Sprintf("pg-%02d", i)
		f.sessions = append(f.sessions, id)
		sec += 10
		open := model.SessionOpen{
			Target:  model.Target{Name: "db", Protocol: model.ProtoPostgres, Address: "127.0.0.2:5432"},
			OrigDst: netip.MustParseAddrPort("127.0.0.2:5432"), Client: netip.MustParseAddrPort(fmt.Sprintf("127.0.0.1:%d", 40000+i)),
			Identity: model.Identity{Kernel: model.KernelFacts{TGID: uint32(100 + i), UID: 1000, Comm: "psql"},
				Proc: &model.ProcFacts{Exe: "/usr/bin/psql", ExeSHA256: "ab12", User: "ci", SystemdUnit: "runner.service"}},
			Decision: model.Decision{Action: model.Allow, Rule: "ci-read"},
			Postgres: &model.PGStartup{User: "app", Database: "prod", ProtocolVersion: "3.0"},
		}
		// One principal of each kind: a person who became root through
		// sudo, with an agent; a verified CI job; a job whose token was
		// refused, left with what its environment claims.
		switch i {
		case 0:
			login, audit := uint32(1000), uint32(3)
			open.Identity.Human = &model.Human{LoginUID: &login, LoginUser: "alice", SessionID: &audit, Provenance: model.ProvProc,
				Chain: []model.UserHop{{PID: 90, Via: "sudo", FromUID: 1000, FromUser: "alice", ToUID: 0, ToUser: "root"}}}
			open.Identity.Agent = &model.Agent{Name: "claude", PID: 80, Exe: "/usr/bin/claude", MatchedBy: "exe", Provenance: model.ProvProc}
		case 1:
			open.Identity.Workload = &model.Workload{Provenance: model.ProvVerified, Platform: "github", Issuer: "https://token.actions.githubusercontent.com",
				Claims: map[string]string{"repository": "acme/billing", "ref": "refs/heads/main"}}
		case 2:
			open.Identity.Workload = &model.Workload{Provenance: model.ProvClaimed, Platform: "github", Error: "token signature invalid",
				Claims: map[string]string{"repository": "=acme/x (verified)", "ref": "main"}}
		}
		app(model.Record{Kind: model.KindSessionOpen, Session: id, Time: at(sec), Data: open})
		st := app(model.Record{Kind: model.KindPGStatement, Session: id, Time: at(sec + 1), Data: model.PGStatement{
			SQL: "SELECT email FROM users WHERE id = $1", Protocol: "extended", Kinds: []string{"select"}, Tables: []string{"users"}, ReadOnly: true,
			Decision: model.Decision{Action: model.Mask, Rule: "mask-email", Mask: &model.MaskSpec{Rules: []model.MaskRule{{Rule: "mask-email", Detectors: []string{"email"}}}}},
		}})
		// Something outside the session in between: a session's bundle
		// keeps it as a leaf hash only.
		app(model.Record{Kind: model.KindAnomaly, Time: at(sec + 1), Data: model.Anomaly{Reason: "no origin"}})
		app(model.Record{Kind: model.KindPGResult, Session: id, Time: at(sec + 2), Data: model.PGResult{Statement: st, Tag: "SELECT 1", Rows: 1, DurationNS: 1500},
			Payload: []byte(`[["x***@example.com"]]`)})
		app(model.Record{Kind: model.KindPGMask, Session: id, Time: at(sec + 2), Data: model.PGMask{Statement: st, Rule: "mask-email", Column: "users.email", Detector: "email", Count: 1},
			Payload: make([]byte, 16)})
		app(model.Record{Kind: model.KindPGStatement, Session: id, Time: at(sec + 3), Data: model.PGStatement{
			SQL: "=DROP TABLE users <script>", Protocol: "simple", Kinds: []string{"drop_table"}, Tables: []string{"users"},
			Decision: model.Decision{Action: model.Deny, Rule: "no-ddl", Reason: "DDL needs approval"},
		}})
		app(model.Record{Kind: model.KindApprovalRequest, Session: id, Time: at(sec + 4), Data: model.ApprovalRequest{
			ID: fmt.Sprintf("req-%d", i), Requester: open.Identity, Target: "db", Operation: model.Operation{Protocol: model.ProtoPostgres, Kind: "drop_table", Text: "DROP TABLE users"},
			Rule: "no-ddl", Approvers: []string{"dba"}, Needed: 1, Scope: "operation", TimeoutNS: int64(time.Minute)}})
		app(model.Record{Kind: model.KindApprovalDecision, Session: id, Time: at(sec + 5), Data: model.ApprovalDecision{
			ID: fmt.Sprintf("req-%d", i), Approver: model.Identity{Kernel: model.KernelFacts{UID: 1001}}, Verdict: model.VerdictDeny, Reason: "not today"}})
		app(model.Record{Kind: model.KindSessionClose, Session: id, Time: at(sec + 6), Data: model.SessionClose{BytesUp: 100, BytesDown: 200, DurationNS: int64(6 * time.Second)}})
	}
	id := "ssh-01"
	f.sessions = append(f.sessions, id)
	sec += 10
	app(model.Record{Kind: model.KindSessionOpen, Session: id, Time: at(sec), Data: model.SessionOpen{
		Target: model.Target{Name: "host", Protocol: model.ProtoSSH}, OrigDst: netip.MustParseAddrPort("127.0.0.3:22"),
		Client: netip.MustParseAddrPort("127.0.0.1:50000"), Decision: model.Decision{Action: model.Allow},
		SSH: &model.SSHStartup{User: "deploy", AuthMethod: "publickey"}}})
	app(model.Record{Kind: model.KindSSHChannel, Session: id, Time: at(sec), Data: model.SSHChannel{Channel: 0, Type: "session", Decision: model.Decision{Action: model.Allow}}})
	app(model.Record{Kind: model.KindSSHRequest, Session: id, Time: at(sec), Data: model.SSHRequest{Channel: 0, Type: "pty-req", Term: "xterm", Cols: 80, Rows: 24, Decision: model.Decision{Action: model.Allow}, OffsetNS: 1000}})
	app(model.Record{Kind: model.KindSSHRequest, Session: id, Time: at(sec), Data: model.SSHRequest{Channel: 0, Type: "shell", Decision: model.Decision{Action: model.Allow}, OffsetNS: 2000}})
	for k := range 5 {
		j.Post(model.Record{Kind: model.KindSSHIO, Session: id, Time: at(sec + 1 + k), Data: model.SSHIO{Channel: 0, Stream: "o", OffsetNS: int64(k+1) * 1e9, Bytes: 6},
			Payload: []byte(fmt.Sprintf("line%d\n", k))})
	}
	zero := 0
	app(model.Record{Kind: model.KindSSHExit, Session: id, Time: at(sec + 7), Data: model.SSHExit{Channel: 0, ExitStatus: &zero, OffsetNS: 7e9}})
	app(model.Record{Kind: model.KindSessionClose, Session: id, Time: at(sec + 8), Data: model.SessionClose{DurationNS: int64(8 * time.Second)}})
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if f.signer, err = journal.LoadSigner(filepath.Join(dir, journal.KeyFile)); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) export(t testing.TB, sel journal.Selection) (string, *evidence.Manifest) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "bundle.tar.gz")
	m, err := Bundle(context.Background(), out, Options{Journal: f.path, Selection: sel, Signer: f.signer})
	if err != nil {
		t.Fatalf("Bundle: %v", err)
	}
	return out, m
}

func recordForTest() model.Record { return model.Record{Kind: "later", Data: 1} }
