package postgres

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/interlock/interlock/model"
)

// probeSQL is what the server gets in place of a denied statement: it
// fails during parse analysis whatever the catalog holds (a column
// reference with no FROM clause), so the server itself aborts what PostgreSQL
// aborts after an error (the rest of the query string, the transaction
// block, the rest of the pipeline until Sync), and the transaction status
// it reports stays true. The client gets interlock's 42501 instead of
// this error.
const probeSQL = `SELECT "interlock: statement denied by policy"`

const (
	maxName    = 64 << 10
	maxPortals = 4096
)

// clientLoop handles what the client sends until it ends.
func (s *session) clientLoop() error {
	for {
		m, err := s.cr.next()
		if err != nil {
			return err
		}
		if m.stream {
			s.bytesUp.Add(int64(m.n) + 5)
		} else {
			s.bytesUp.Add(int64(len(m.raw)))
		}
		switch m.typ {
		case 'Q':
			err = s.onQuery(m)
		case 'P':
			err = s.onParse(m)
		case 'B':
			err = s.onBind(m)
		case 'D':
			err = s.onDescribe(m)
		case 'E':
			err = s.onExecute(m)
		case 'C':
			err = s.onClose(m)
		case 'S':
			s.q.push(&item{kind: iSync})
			err = s.forward(m)
		case 'H':
			if err = s.forward(m); err == nil {
				err = s.uw.Flush()
			}
		case 'd', 'c', 'f':
			err = s.forward(m)
		case 'F':
			err = s.onFunctionCall(m)
		case 'X':
			s.forward(m)
			s.uw.Flush()
			return errTerminate
		default:
			return clientErr("unexpected message type %q", printable(m.typ))
		}
		if err != nil {
			return err
		}
		if s.cr.buffered() == 0 {
			if err := s.uw.Flush(); err != nil {
				return err
			}
		}
	}
}

// forward passes a message on unchanged (streaming it when it is large).
func (s *session) forward(m msg) error {
	if !m.stream {
		_, err := s.uw.Write(m.raw)
		return err
	}
	var hdr [5]byte
	if _, err := s.uw.Write(header(hdr[:0], m.typ, m.n)); err != nil {
		return err
	}
	n, err := io.CopyN(s.uw, s.cr.br, int64(m.n))
	if err != nil && n < int64(m.n) {
		return clientErr("truncated message")
	}
	return err
}

func (s *session) send(msg pgproto3.FrontendMessage) error {
	b, err := msg.Encode(nil)
	if err != nil {
		return err
	}
	_, err = s.uw.Write(b)
	return err
}

// guard refuses what the parser could read differently from the server.
func (s *session) guard(text string) string {
	if s.badEncoding.Load() {
		return "the session's client_encoding can hide quotes from interlock's statement parser; use UTF8"
	}
	if s.scsOff.Load() && strings.ContainsRune(text, '\\') {
		return "standard_conforming_strings is off, so backslashes in this statement could be read differently by the server than by interlock's parser"
	}
	return ""
}

// decide asks policy about one statement. Anything but allow refuses it.
func (s *session) decide(text string, cl *class) model.Decision {
	if r := s.guard(text); r != "" {
		return model.Decision{Action: model.Deny, Rule: "interlock.postgres.parser", Reason: r}
	}
	if s.h.policy == nil {
		return model.Decision{Action: model.Allow, Rule: "default"}
	}
	op := model.Operation{Protocol: model.ProtoPostgres, Kind: cl.kind, Text: text, Kinds: cl.kinds,
		Tables: cl.tables, ReadOnly: cl.readOnly, NoWhere: cl.noWhere}
	d := s.h.policy.Decide(s.ctx, s.origin, op)
	switch {
	case d.Action == model.Deny:
		return d
	case d.Action == model.Allow && (d.Mask == nil || len(d.Mask.Rules) == 0):
		return d
	case d.Action == model.Allow || d.Action == model.Mask:
		// Masking fails closed: what cannot be masked is not sent. COPY
		// rows and function call results are not masked, so they are
		// refused.
		if s.h.masker == nil {
			return model.Decision{Action: model.Deny, Rule: d.Rule, Reason: "the result must be masked, and no masker is configured"}
		}
		for _, k := range cl.kinds {
			switch k {
			case "copy_to", "copy":
				return model.Decision{Action: model.Deny, Rule: d.Rule, Reason: "COPY output cannot be masked; select the rows instead"}
			case "function_call":
				return model.Decision{Action: model.Deny, Rule: d.Rule, Reason: "fast-path function results cannot be masked"}
			}
		}
		if d.Mask == nil {
			return model.Decision{Action: model.Deny, Rule: d.Rule, Reason: "a mask decision without mask rules"}
		}
		return d
	}
	if d.Reason == "" {
		d.Reason = "the operation was not approved"
	}
	d.Action = model.Deny
	return d
}

func denyError(d model.Decision) *pgproto3.ErrorResponse {
	msg := "statement denied by interlock"
	if d.Rule != "" {
		msg += fmt.Sprintf(" rule %q", d.Rule)
	}
	if d.Reason != "" {
		msg += ": " + d.Reason
	}
	e := errorResponse("ERROR", "42501", msg)
	e.Detail = "The statement did not reach the server."
	return e
}

// record journals a statement before it is forwarded: committed for a
// read-only statement, synced for anything that may write.
func (s *session) record(text string, cl *class, d model.Decision, proto, stmtName, portal string, params []model.PGParam) (*run, error) {
	now := time.Now()
	st := model.PGStatement{SQL: text, Protocol: proto, StatementName: stmtName, Portal: portal, Params: params,
		Kinds: cl.kinds, Tables: cl.tables, ReadOnly: cl.readOnly, Decision: d, StartNS: now.UnixNano()}
	r := &run{mask: d.Mask}
	var dur model.Durability
	if d.Action != model.Allow && d.Action != model.Mask {
		r.deny = denyError(d)
		st.SQLState, st.Error = r.deny.Code, r.deny.Message
		dur = model.Synced
	} else {
		dur = s.durability(cl)
	}
	if dur == model.Synced && s.uw.Buffered() > 0 {
		// Let what is already queued go while the fsync is awaited.
		if err := s.uw.Flush(); err != nil {
			return nil, err
		}
	}
	seq, err := s.h.journal.Append(s.ctx, model.Record{Kind: model.KindPGStatement, Session: s.id, Time: now, Data: st}, dur)
	if err != nil {
		return nil, &journalError{err}
	}
	r.seq = seq
	r.start = time.Now()
	if s.t.results == "rows" && r.deny == nil {
		r.rec = &rowRec{max: s.t.rowsMax}
	}
	return r, nil
}

// durability is how far a statement's record must reach the disk before
// the statement is forwarded. A read-only statement: committed. A
// statement that may write: synced, except inside a transaction block
// when all its effects are transactional: they take effect only at
// COMMIT, so the COMMIT of a block that wrote is synced instead (and the
// fsync of its record makes every earlier record durable too). If
// interlock dies before the COMMIT, the server rolls the block back.
func (s *session) durability(cl *class) model.Durability {
	switch cl.kind {
	case "commit", "prepare_transaction":
		if s.txWrites {
			s.txWrites = false
			return model.Synced
		}
		return model.Committed
	case "rollback":
		s.txWrites = false
	}
	if cl.readOnly {
		return model.Committed
	}
	if cl.transactional && s.inBlock() {
		s.txWrites = true
		return model.Committed
	}
	return model.Synced
}

// inBlock says the next statement runs inside a transaction block: the
// last ReadyForQuery said so, and nothing that could change it is still
// outstanding.
func (s *session) inBlock() bool {
	if s.txStatus.Load() != 'T' {
		s.txWrites = false
		return false
	}
	return s.q.quiet()
}

// resolve completes what the text alone cannot say: an EXECUTE runs what
// its PREPARE prepared.
func (s *session) resolve(cl *class) *class {
	if cl.kind != "execute" {
		return cl
	}
	inner := s.sqlPrepared[cl.prepare]
	if inner == nil {
		return &class{kind: "execute", kinds: []string{"execute", "unknown"}, prepare: cl.prepare}
	}
	out := *inner
	out.kind = "execute"
	out.kinds = append([]string{"execute"}, inner.kinds...)
	return &out
}

// trackPrepare follows SQL-level PREPARE and DEALLOCATE.
func (s *session) trackPrepare(cl *class) {
	switch cl.kind {
	case "prepare":
		if cl.inner != nil {
			s.sqlPrepared[cl.prepare] = cl.inner
		}
	case "deallocate":
		if cl.prepare == "*" {
			clear(s.sqlPrepared)
		} else {
			delete(s.sqlPrepared, cl.prepare)
		}
	case "discard":
		clear(s.sqlPrepared)
	}
}

// queue pushes it; when the server will skip it (an earlier error in the
// pipeline), its runs are recorded as not run at once.
func (s *session) queue(it *item) {
	if s.q.push(it) {
		return
	}
	for _, r := range it.runs {
		if r != nil && r.deny == nil && !r.done {
			r.done = true
			s.h.journal.Post(resultRecord(s, r, model.PGResult{Statement: r.seq, NotRun: true,
				Error: "not run: an earlier message of the pipeline failed"}))
		}
	}
}

func (s *session) onQuery(m msg) error {
	var q pgproto3.Query
	if err := q.Decode(m.body); err != nil {
		return clientErr("%v", err)
	}
	p := s.h.cls.parse(q.String)
	it := &item{kind: iQuery}
	out := m.raw
	for i, st := range p.stmts {
		cl := s.resolve(st.class)
		d := s.decide(st.text, cl)
		r, err := s.record(st.text, cl, d, "simple", "", "", nil)
		if err != nil {
			return err
		}
		it.runs = append(it.runs, r)
		if r.deny != nil {
			// The statements before run; the probe fails in place of this
			// one, and what follows would not have run anyway.
			text := probeSQL
			if i > 0 {
				text = q.String[:p.stmts[i-1].end] + ";\n" + probeSQL
			}
			out, _ = (&pgproto3.Query{String: text}).Encode(nil)
			break
		}
		s.trackPrepare(cl)
	}
	s.queue(it)
	_, err := s.uw.Write(out)
	return err
}
