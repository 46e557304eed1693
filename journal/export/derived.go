package export

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"strconv"
	"strings"
	"time"

	"github.com/interlock/interlock/asciicast"
	"github.com/interlock/interlock/internal/textview"
	"github.com/interlock/interlock/journal"
	"github.com/interlock/interlock/journal/evidence"
	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/sessionview"
)

// The derived files (statements.csv, approvals.csv, the casts, the
// summary) are views of entries.jsonl for people. They are covered by the
// manifest and the seal like everything else, but the evidence is the
// entries: anything a view shows can be traced to an entry by its seq.

func timeString(ns int64) string { return time.Unix(0, ns).UTC().Format(time.RFC3339Nano) }

// cell is a text cell for a person reading it in a spreadsheet. The
// client's bytes are made visible (textview.EscapeMultiline: ESC, CR,
// bidi overrides and zero-width characters become \x1b, \r, \u202e...;
// a backslash is doubled so the view reads back to one text); a newline
// stays a newline, so a multi-line statement shows as multi-line in its
// quoted cell. A cell starting with = + - @ or a tab is prefixed with '
// against formula injection (Excel, LibreOffice and Sheets run such a
// cell as a formula). The exact bytes are in entries.jsonl.
func cell(s string) string {
	return formulaSafe(textview.EscapeMultiline(s))
}

// formulaSafe is cell for text a view has already escaped.
func formulaSafe(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

// statements writes statements.csv: one row per pg.statement, completed by
// its pg.result when that comes within the next pendingMax statements
// (the result follows the statement once the server answered), and by
// the principals its session.open named.
type statements struct {
	w       *csv.Writer
	pending []*stmtRow
	bySeq   map[uint64]*stmtRow
	rows    uint64
	// who is each open session's principals, from its session.open; a
	// session's statements all come between its open and its close.
	who map[string][]string
}

const pendingMax = 65536

type stmtRow struct {
	seq     uint64
	timeNS  int64
	session string
	stmt    model.PGStatement
	result  *model.PGResult
	rseq    uint64
	who     []string
}

// The principals come last, so readers that index the older columns keep
// working; they are empty when the selection left the session's open out.
var statementHeader = []string{"seq", "time", "session", "sql", "protocol", "kinds", "tables", "read_only",
	"action", "rule", "reason", "masked", "tag", "rows", "sqlstate", "error", "duration_ns", "result_seq",
	"human", "workload", "agent"}

// principalCells are the human, workload and agent of an identity as CSV
// cells: sessionview's text, already escaped, with provenance (a claimed
// workload says so), guarded against formulas.
func principalCells(id model.Identity) []string {
	agent := sessionview.AgentText(id.Agent)
	if agent != "" {
		agent += " (" + sessionview.AgentDetail(id.Agent) + ")"
	}
	return []string{
		formulaSafe(sessionview.HumanText(id.Human)),
		formulaSafe(sessionview.WorkloadText(id.Workload, 0)),
		formulaSafe(agent),
	}
}

func newStatements(w io.Writer) *statements {
	s := &statements{w: csv.NewWriter(w), bySeq: map[uint64]*stmtRow{}, who: map[string][]string{}}
	s.w.Write(statementHeader)
	return s
}

func (s *statements) add(seq uint64, p evidence.Body) error {
	switch p.Kind {
	case model.KindSessionOpen:
		var o model.SessionOpen
		if err := json.Unmarshal(p.Data, &o); err != nil {
			return fmt.Errorf("export: entry %d (%s): %w", seq, p.Kind, err)
		}
		s.who[p.Session] = principalCells(o.Identity)
		return nil
	case model.KindSessionClose:
		delete(s.who, p.Session)
		return nil
	case model.KindPGStatement:
		r := &stmtRow{seq: seq, timeNS: p.Time, session: p.Session, who: s.who[p.Session]}
		if err := json.Unmarshal(p.Data, &r.stmt); err != nil {
			return fmt.Errorf("export: entry %d (%s): %w", seq, p.Kind, err)
		}
		s.pending = append(s.pending, r)
		s.bySeq[seq] = r
	case model.KindPGResult:
		var res model.PGResult
		if err := json.Unmarshal(p.Data, &res); err != nil {
			return fmt.Errorf("export: entry %d (%s): %w", seq, p.Kind, err)
		}
		if r := s.bySeq[res.Statement]; r != nil {
			r.result, r.rseq = &res, seq
		}
	default:
		return nil
	}
	for len(s.pending) > 0 && (s.pending[0].result != nil || len(s.pending) > pendingMax) {
		if err := s.write(s.pending[0]); err != nil {
			return err
		}
		s.pending = s.pending[1:]
	}
	return nil
}

func (s *statements) write(r *stmtRow) error {
	delete(s.bySeq, r.seq)
	st := r.stmt
	tag, rows, state, errText, dur, rseq := st.Tag, st.Rows, st.SQLState, st.Error, st.DurationNS, ""
	if res := r.result; res != nil {
		tag, rows, state, errText, dur, rseq = res.Tag, res.Rows, res.SQLState, res.Error, res.DurationNS, strconv.FormatUint(r.rseq, 10)
		if res.NotRun {
			errText = "not run: " + errText
		}
	}
	principal := func(i int) string {
		if r.who == nil {
			return ""
		}
		return r.who[i]
	}
	masked := ""
	if st.Decision.Action == model.Mask || st.Decision.Mask != nil {
		masked = "yes"
	}
	s.rows++
	return s.w.Write([]string{
		strconv.FormatUint(r.seq, 10), timeString(r.timeNS), r.session, cell(st.SQL), st.Protocol,
		strings.Join(st.Kinds, " "), cell(strings.Join(st.Tables, " ")), strconv.FormatBool(st.ReadOnly),
		string(st.Decision.Action), cell(st.Decision.Rule), cell(st.Decision.Reason), masked,
		cell(tag), strconv.FormatInt(rows, 10), state, cell(errText), strconv.FormatInt(dur, 10), rseq,
		principal(0), principal(1), principal(2),
	})
}

func (s *statements) flush() error {
	for _, r := range s.pending {
		if err := s.write(r); err != nil {
			return err
		}
	}
	s.pending = nil
	s.w.Flush()
	return s.w.Error()
}

// approvals writes approvals.csv: one row per approval.request,
// approval.decision and grant.expired entry.
type approvals struct {
	w    *csv.Writer
	rows uint64
}

var approvalHeader = []string{"seq", "time", "session", "kind", "id", "verdict", "who_uid", "who_exe", "target",
	"operation", "operation_text", "rule", "approvers", "needed", "scope", "timeout_ns", "expires_ns", "reason",
	// Last, so readers that index the older columns keep working: the
	// SHA-256 of the exact operation text, which approve --expect names.
	"text_sha256",
	// The principals behind the requester or the approver.
	"who_human", "who_workload", "who_agent"}

func newApprovals(w io.Writer) *approvals {
	a := &approvals{w: csv.NewWriter(w)}
	a.w.Write(approvalHeader)
	return a
}

func who(id model.Identity) (uid, exe string) {
	uid = strconv.FormatUint(uint64(id.Kernel.UID), 10)
	if id.Proc != nil {
		exe = id.Proc.Exe
	}
	return uid, exe
}

// hubApprovers names a hub decision's approvers as the identity
// provider did: username <email> at issuer, each.
// idpApprover names someone who decided in the host's own console.
func idpApprover(a model.IdPIdentity) string {
	s := a.Username
	if a.Email != "" {
		s += " <" + a.Email + ">"
	}
	return s + " at " + a.Issuer + " (host console)"
}

func hubApprovers(h *model.HubDecision) string {
	as := h.Approvers
	if len(as) == 0 {
		as = []model.IdPIdentity{h.Approver}
	}
	var parts []string
	for _, a := range as {
		s := a.Username
		if a.Email != "" {
			s += " <" + a.Email + ">"
		}
		parts = append(parts, s+" at "+a.Issuer+" (hub)")
	}
	return strings.Join(parts, ", ")
}

func (a *approvals) add(seq uint64, p evidence.Body) error {
	row := make([]string, len(approvalHeader))
	row[0], row[1], row[2], row[3] = strconv.FormatUint(seq, 10), timeString(p.Time), p.Session, p.Kind
	switch p.Kind {
	case model.KindApprovalRequest:
		var r model.ApprovalRequest
		if err := json.Unmarshal(p.Data, &r); err != nil {
			return fmt.Errorf("export: entry %d (%s): %w", seq, p.Kind, err)
		}
		row[4] = cell(r.ID)
		row[6], row[7] = who(r.Requester)
		row[7] = cell(row[7])
		copy(row[19:], principalCells(r.Requester))
		row[8], row[9], row[10], row[11] = cell(r.Target), r.Operation.Kind, cell(r.Operation.Text), cell(r.Rule)
		row[12], row[13], row[14], row[15] = cell(strings.Join(r.Approvers, " ")), strconv.Itoa(r.Needed), cell(r.Scope), strconv.FormatInt(r.TimeoutNS, 10)
		row[18] = cell(r.TextSHA256)
	case model.KindApprovalDecision:
		var d model.ApprovalDecision
		if err := json.Unmarshal(p.Data, &d); err != nil {
			return fmt.Errorf("export: entry %d (%s): %w", seq, p.Kind, err)
		}
		row[4], row[5] = cell(d.ID), cell(d.Verdict)
		if d.IdP != nil {
			// Decided in the host's own console: the person as the
			// identity provider named them.
			row[19] = cell(idpApprover(*d.IdP))
		} else if d.Hub != nil {
			// Decided at the hub: nobody on this host, so no uid; the
			// person as the identity provider named them.
			row[19] = cell(hubApprovers(d.Hub))
		} else {
			row[6], row[7] = who(d.Approver)
			row[7] = cell(row[7])
			copy(row[19:], principalCells(d.Approver))
		}
		row[14], row[16], row[17] = cell(d.Scope), strconv.FormatInt(d.ExpiresNS, 10), cell(d.Reason)
	case model.KindApprovalRefused:
		var r model.ApprovalRefused
		if err := json.Unmarshal(p.Data, &r); err != nil {
			return fmt.Errorf("export: entry %d (%s): %w", seq, p.Kind, err)
		}
		row[4], row[5], row[17] = cell(r.ID), cell(r.Verdict), cell("refused hub decision: "+r.Why)
	case model.KindGrantExpired:
		var g model.GrantExpired
		if err := json.Unmarshal(p.Data, &g); err != nil {
			return fmt.Errorf("export: entry %d (%s): %w", seq, p.Kind, err)
		}
		row[4], row[14] = cell(g.ID), cell(g.Scope)
	default:
		return nil
	}
	a.rows++
	if err := a.w.Write(row); err != nil {
		return err
	}
	a.w.Flush()
	return a.w.Error()
}

// castName is the bundle path of a session's terminal recording: its
// first terminal channel's; channelCastName that of each later one.
func castName(session string) string { return "sessions/" + session + ".cast" }

func channelCastName(session string, channel uint32) string {
	return "sessions/" + session + "-ch" + strconv.FormatUint(uint64(channel), 10) + ".cast"
}

// writeCasts renders each channel with a pty of each selected session with asciicast.WriteChannel: the first as
// sessions/ID.cast, the others as sessions/ID-chN.cast. A channel it cannot
// render is left out with a warning in the manifest; the session's entries
// are in the bundle either way.
func (b *builder) writeCasts(last int64) error {
	var kept []string
	for _, id := range b.casts {
		if !evidence.SafeName(id) {
			b.m.Warnings = append(b.m.Warnings, fmt.Sprintf("session %q has no safe file name; its cast was not written", id))
			continue
		}
		var readErr error
		records := iter.Seq2[asciicast.Record, error](func(yield func(asciicast.Record, error) bool) {
			stop := errors.New("stop")
			err := b.snap.SessionEntries(id, last, func(e journal.Entry) error {
				if !b.sel.Matches(e.TimeNS, e.Session) {
					return nil
				}
				p, err := evidence.ParseBody(e.Body)
				if err != nil {
					return err
				}
				r := asciicast.Record{Seq: e.Seq, Kind: e.Kind, TimeNS: e.TimeNS, Data: append([]byte(nil), p.Data...)}
				if e.Payload != nil {
					r.Payload = append([]byte{}, e.Payload...)
				}
				if !yield(r, nil) {
					return stop
				}
				return nil
			})
			if err != nil && err != stop {
				readErr = err
				yield(asciicast.Record{}, err)
			}
		})
		sess, err := sessionview.Read(records, nil)
		if readErr != nil {
			return fmt.Errorf("export: session %s: %w", id, readErr)
		}
		if err != nil {
			b.m.Warnings = append(b.m.Warnings, fmt.Sprintf("%s not written: %v", castName(id), err))
			continue
		}
		var names []string
		for _, ch := range sess.Terminals() {
			if ch.PTY == nil {
				// Exec output without a terminal is in the payloads; a
				// cast of it would only double the bundle.
				continue
			}
			name := castName(id)
			if len(names) > 0 {
				name = channelCastName(id, ch.Channel)
			}
			var buf bytes.Buffer
			err := asciicast.WriteChannel(&buf, records, ch.Channel)
			switch {
			case readErr != nil:
				return fmt.Errorf("export: session %s: %w", id, readErr)
			case errors.Is(err, asciicast.ErrNoTerminal), errors.Is(err, asciicast.ErrNoChannel):
				continue
			case err != nil:
				b.m.Warnings = append(b.m.Warnings, fmt.Sprintf("%s not written: %v", name, err))
				continue
			}
			if err := b.add(name, buf.Bytes()); err != nil {
				return err
			}
			names = append(names, name)
			b.m.Counts.Casts++
		}
		if len(names) > 0 {
			kept = append(kept, id)
			b.castFiles[id] = names
		}
	}
	b.casts = kept
	return nil
}

func (b *builder) writeSummary() error {
	f, err := b.create(evidence.FileSummary)
	if err != nil {
		return err
	}
	defer f.Close()
	// A session's terminal recordings are named in its activity.
	for id, names := range b.castFiles {
		if r := b.sum.sessions[id]; r != nil {
			r.Casts = names
		}
	}
	if err := b.sum.render(f); err != nil {
		return fmt.Errorf("export: summary: %w", err)
	}
	return f.Close()
}
