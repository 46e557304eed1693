package postgres

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/interlock/interlock/inspect/postgres/sqlclass"
	"github.com/interlock/interlock/internal/textview"
	"github.com/interlock/interlock/model"
)

// Rules interlock applies on its own, before policy, named in every
// decision they make.
const (
	ruleParser        = "interlock.postgres.parser"
	ruleHeldRole      = "interlock.postgres.held_role"
	ruleOtherBackends = "interlock.postgres.other_backends"
	ruleCredentials   = "interlock.postgres.credentials"
	rulePortal        = "interlock.postgres.portal"
)

// plain says a statement may be judged and forwarded while earlier ones
// are still running, and later ones judged before it is answered: it
// provably only reads, changes no name the session's model tracks and
// cannot change the catalog, and it does not commit.
func plain(c *sqlclass.Class) bool {
	if !c.ReadOnly || c.Catalog || c.Opaque {
		return false
	}
	switch c.Kind {
	case "prepare", "deallocate", "declare_cursor", "close_cursor", "discard", "commit", "prepare_transaction", "execute":
		return c.Kind == "execute" && c.Inner == nil
	}
	return true
}

// noBlockKinds cannot run inside a transaction block: interlock cannot
// hold them in one to read their effects.
var noBlockKinds = map[string]bool{
	"vacuum": true, "create_database": true, "drop_database": true, "alter_system": true,
	"create_tablespace": true, "drop_tablespace": true, "create_subscription": true,
	"alter_subscription": true, "drop_subscription": true, "commit_prepared": true,
	"rollback_prepared": true, "discard": true, "reindex": true, "cluster": true,
}

// wrappable says the statement can run inside a transaction interlock
// holds. CONCURRENTLY forms and the kinds above cannot.
func wrappable(c *sqlclass.Class, text string) bool {
	if noBlockKinds[c.Kind] {
		return false
	}
	return !strings.Contains(strings.ToLower(text), "concurrently")
}

// guard refuses text the parser could read differently from the server:
// under a client_encoding that can hide quotes, under
// standard_conforming_strings off, and, right after a statement that may
// have changed either inside the same pipeline segment (whose
// ReadyForQuery, and so whose ParameterStatus, has not come), any text
// whose reading depends on them.
func (s *session) guard(text string) string {
	if s.badEncoding.Load() {
		return "the session's client_encoding can hide quotes from interlock's statement parser; use UTF8"
	}
	if s.scsOff.Load() && strings.ContainsRune(text, '\\') {
		return "standard_conforming_strings is off, so backslashes in this statement could be read differently by the server than by interlock's parser"
	}
	if s.uncertain == s.seg && dependsOnSettings(text) {
		return "an earlier statement of this pipeline segment may have changed standard_conforming_strings or client_encoding, and this statement's reading depends on them (it holds a backslash or a non-ASCII byte); send a Sync before it"
	}
	return ""
}

// dependsOnSettings: a backslash is read differently under
// standard_conforming_strings off, and a byte above 0x7f can start a
// multibyte character that swallows a quote. Plain ASCII without a
// backslash reads the same under every setting.
func dependsOnSettings(text string) bool {
	for i := 0; i < len(text); i++ {
		if text[i] == '\\' || text[i] >= 0x80 {
			return true
		}
	}
	return false
}

// builtin applies interlock's own rules, which protect the parser's view
// of the session and the credential interlock holds. It returns nil when
// none refuses the statement.
func (s *session) builtin(text string, c *sqlclass.Class, params []model.PGParam) *model.Decision {
	deny := func(rule, format string, a ...any) *model.Decision {
		return &model.Decision{Action: model.Deny, Rule: rule, Reason: fmt.Sprintf(format, a...)}
	}
	for _, set := range c.Settings {
		switch set.Name {
		case "standard_conforming_strings":
			if !set.Reset && !isOn(set.Value) {
				return deny(ruleParser, "standard_conforming_strings must stay on through interlock: with it off, backslashes can hide statements from interlock's parser")
			}
		case "client_encoding":
			if !set.Reset && (set.Value == "" || unsafeEncoding(set.Value)) {
				return deny(ruleParser, "client_encoding %q is not supported through interlock: its multibyte characters can hide quotes from the statement parser; use UTF8", set.Value)
			}
		}
	}
	for _, r := range c.Roles {
		switch {
		case r.Spec == "current_user" || r.Spec == "session_user" || r.Spec == "current_role" || r.Spec == "all":
			return deny(ruleHeldRole, "ALTER ROLE %s would change the role interlock logs in as (%s): its password and settings are interlock's, not the session's", strings.ToUpper(r.Spec), s.t.user)
		case r.Name == s.t.user:
			return deny(ruleHeldRole, "role %s is the role interlock logs in as: its password, settings and name are interlock's, not the session's", r.Name)
		}
	}
	own := backendOwner{tgid: s.origin.Identity.Kernel.TGID, uid: s.origin.Identity.Kernel.UID}
	for _, sig := range c.Signals {
		pid := sig.PID
		if sig.Param > 0 && sig.Param <= len(params) && params[sig.Param-1].Value != nil {
			pid, _ = strconv.ParseInt(*params[sig.Param-1].Value, 10, 64)
		}
		switch {
		case sig.Self, pid == int64(s.upstreamPID):
		case pid > 0 && pid < 1<<32 && s.h.sameProcess(s.t.name, uint32(pid), own):
			// A backend of another session of the same process.
		default:
			who := "a backend the statement does not name"
			if pid != 0 {
				who = fmt.Sprintf("backend %d", pid)
			}
			return deny(ruleOtherBackends, "%s of %s: every session through interlock shares the held role, so a session may signal only its own backend and those of its own process's sessions", sig.Func, who)
		}
	}
	if c.Opaque && mentionsSignal(text) {
		return deny(ruleOtherBackends, "the statement runs code that calls a backend signal function; interlock cannot tell whose backend")
	}
	if c.DatabaseAccess {
		return deny(ruleHeldRole, "the statement changes who may connect to a database (connection limit, allowed connections or its name), which can lock out the logins of interlock itself")
	}
	if c.ConnSecrets {
		return deny(ruleCredentials, "a literal password in a connection string or user mapping would hand a credential to the session; interlock holds the credentials")
	}
	return nil
}

func mentionsSignal(text string) bool {
	l := strings.ToLower(text)
	return strings.Contains(l, "pg_terminate_backend") || strings.Contains(l, "pg_cancel_backend") || strings.Contains(l, "pg_signal_backend")
}

func isOn(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "on", "true", "yes", "1", "t", "y":
		return true
	}
	return false
}

// verdict is what judging a statement decided, with the data flow of its
// output when mask rules cover columns.
type verdict struct {
	model.Decision
	flow *sqlclass.Flow
}

func (v verdict) allowed() bool { return v.Action == model.Allow || v.Action == model.Mask }

func denied(rule, reason string) verdict {
	return verdict{Decision: model.Decision{Action: model.Deny, Rule: rule, Reason: reason}}
}

// decide judges one statement: interlock's guard and built-in rules, then
// policy, then, under column mask rules, the data flow of what it returns.
// Anything but allow (or mask) refuses it.
func (s *session) decide(text string, c *sqlclass.Class) verdict {
	return s.decideWith(text, c, nil)
}

// decideWith is decide for a statement with bound parameters.
func (s *session) decideWith(text string, c *sqlclass.Class, params []model.PGParam) verdict {
	d := s.decidePolicy(text, c, params)
	if !d.allowed() {
		return d
	}
	d = s.withSessionColumns(d)
	if d.Mask == nil || !columnRules(d.Mask) {
		return d
	}
	return s.judgeFlow(c, d)
}

// withSessionColumns adds to a decision the column rules that cover the
// session but did not match the statement (a mask rule that lists other
// kinds): a column rule protects its columns in every statement, or a
// DELETE ... RETURNING, a copy or a rename of another kind would carry
// the values out.
func (s *session) withSessionColumns(d verdict) verdict {
	sm := s.masks.Load()
	if sm == nil || !columnRules(sm) || s.h.masker == nil {
		return d
	}
	var add []model.MaskRule
	for _, r := range sm.Rules {
		if len(r.Columns) > 0 && !hasMaskRule(d.Mask, r.Rule) {
			add = append(add, model.MaskRule{Rule: r.Rule, Columns: r.Columns, Live: r.Live})
		}
	}
	if len(add) == 0 {
		return d
	}
	spec := &model.MaskSpec{}
	if d.Mask != nil {
		spec.Rules = append(spec.Rules, d.Mask.Rules...)
	}
	spec.Rules = append(spec.Rules, add...)
	d.Mask = spec
	if d.Action == model.Allow {
		d.Action = model.Mask
		d.Reason = strings.TrimSuffix(d.Reason, ", results masked") + ", results masked by the column rules that cover the session"
	}
	return d
}

func hasMaskRule(spec *model.MaskSpec, name string) bool {
	if spec == nil {
		return false
	}
	for _, r := range spec.Rules {
		if r.Rule == name {
			return true
		}
	}
	return false
}

func (s *session) decidePolicy(text string, c *sqlclass.Class, params []model.PGParam) verdict {
	if r := s.guard(text); r != "" {
		return denied(ruleParser, r)
	}
	if d := s.builtin(text, c, params); d != nil {
		return verdict{Decision: *d}
	}
	if s.decider == nil {
		return verdict{Decision: model.Decision{Action: model.Allow, Rule: "default"}}
	}
	d := s.decider.Decide(s.decisionCtx(), sqlclass.Operation(text, c))
	if d.Mask != nil {
		s.refreshMasks()
	}
	switch {
	case d.Action == model.Deny:
		return verdict{Decision: d}
	case d.Action == model.Allow && (d.Mask == nil || len(d.Mask.Rules) == 0):
		return verdict{Decision: d}
	case d.Action == model.Allow || d.Action == model.Mask:
		// Masking fails closed: what cannot be masked is not sent. COPY
		// rows and function call results are not masked, so they are
		// refused.
		if s.h.masker == nil {
			return denied(d.Rule, "the result must be masked, and no masker is configured")
		}
		for _, k := range c.Kinds {
			switch k {
			case "copy_to":
				return denied(d.Rule, "COPY output cannot be masked; select the rows instead")
			case "function_call":
				return denied(d.Rule, "fast-path function results cannot be masked")
			}
		}
		if d.Mask == nil {
			return denied(d.Rule, "a mask decision without mask rules")
		}
		return verdict{Decision: d}
	}
	if d.Reason == "" {
		d.Reason = "the operation was not approved"
	}
	d.Action = model.Deny
	return verdict{Decision: d}
}

// columnRules says a mask spec masks columns (not only content).
func columnRules(spec *model.MaskSpec) bool {
	for _, r := range spec.Rules {
		if len(r.Columns) > 0 {
			return true
		}
	}
	return false
}

// maskRuleNames names the rules of a spec that mask columns.
func maskRuleNames(spec *model.MaskSpec) string {
	var names []string
	for _, r := range spec.Rules {
		if len(r.Columns) > 0 {
			names = append(names, r.Rule)
		}
	}
	return strings.Join(names, ",")
}

// judgeFlow works out, under column mask rules, which output columns are
// computed from a masked one; a statement whose data flow interlock cannot
// follow, or that would copy a masked value into storage or a side
// effect, is refused naming the mask rule.
func (s *session) judgeFlow(c *sqlclass.Class, d verdict) verdict {
	rule := maskRuleNames(d.Mask)
	if c.Opaque {
		return denied(rule, "the statement runs code that is not built in (or reaches relations whose code interlock does not read), which could return masked columns in other forms; masking cannot follow it, so it is refused")
	}
	var flow sqlclass.Flow
	switch {
	case c.Kind == "fetch" || c.Kind == "move":
		// A cursor's rows are its query's.
		s.mu.Lock()
		cur := s.cursors[c.Cursor]
		s.mu.Unlock()
		if cur == nil || cur.run == nil || cur.run.flow == nil {
			return denied(rule, fmt.Sprintf("cursor %q was not declared by a statement interlock judged under the mask rules", c.Cursor))
		}
		flow = *cur.run.flow
	default:
		flow = sqlclass.AnalyzeFlow(c, flowResolver{s: s, spec: d.Mask})
	}
	switch {
	case flow.Refuse != "":
		return denied(rule, "masking cannot follow the data flow: "+flow.Refuse)
	case flow.Stored != "":
		return denied(rule, "the statement would copy a masked column out of reach of masking ("+flow.Stored+")")
	}
	d.flow = &flow
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
	if d.Request != "" {
		// The requester can name it to whoever decided.
		msg += " (approval request " + d.Request + ")"
	}
	e := errorResponse("ERROR", "42501", textview.Escape(msg))
	e.Detail = "The statement did not reach the server."
	return e
}

// stmtRecord builds the pg.statement record of a statement: its exact
// text (lossless when it is not UTF-8), with password literals replaced
// by their keyed hashes (the payload). prepared is the text of the SQL
// PREPARE an EXECUTE runs ("" for none); wrapped says the statement runs
// in a transaction interlock holds.
func (s *session) stmtRecord(text string, c *sqlclass.Class, d model.Decision, proto, stmtName, portal string, params []model.PGParam, prepared string, wrapped bool) model.Record {
	now := time.Now()
	st := model.PGStatement{SQL: text, Protocol: proto, StatementName: stmtName, Portal: portal, Params: params,
		Kinds: c.Kinds, Tables: c.Tables, ReadOnly: c.ReadOnly, Decision: d, StartNS: now.UnixNano(),
		Prepared: prepared, Wrapped: wrapped}
	rec := model.Record{Kind: model.KindPGStatement, Session: s.id, Time: now}
	if c.Secrets || c.ConnSecrets || (c.Inner != nil && c.Inner.Secrets) {
		redact := func(v string) (string, []string) {
			red, originals, ok := sqlclass.Redact(v)
			if !ok {
				// It did not scan: keep none of it rather than a password.
				return "[redacted: the statement holds a password and did not scan]", []string{v}
			}
			return red, originals
		}
		red, originals := redact(text)
		st.SQL = red
		if prepared != "" {
			// An EXECUTE's class is its prepared statement's: the
			// password is in the PREPARE's text.
			var more []string
			st.Prepared, more = redact(prepared)
			originals = append(originals, more...)
		}
		st.Redacted = len(originals)
		if s.h.masker != nil {
			var hashes []byte
			for _, o := range originals {
				hashes = append(hashes, s.h.masker.Hash([]byte(o))...)
			}
			rec.Payload = hashes
		}
	}
	if !utf8.ValidString(text) && st.Redacted == 0 {
		st.SQLBase64 = base64.StdEncoding.EncodeToString([]byte(text))
		st.SQL = strings.ToValidUTF8(text, "\uFFFD")
	}
	if spec := s.masks.Load(); spec != nil && s.h.masker != nil {
		// Under detectors, what they find in the statement and its
		// parameters is not journaled either (keyed hashes instead).
		hashes, _ := rec.Payload.([]byte)
		scrub := func(v string) string {
			out, ok := s.h.masker.Scrub(spec, v)
			if !ok {
				return v
			}
			for _, f := range s.h.masker.Detect(specDetectors(spec), []byte(v)) {
				hashes = append(hashes, s.h.masker.Hash([]byte(v[f.Start:f.End]))...)
				st.Redacted++
			}
			return out
		}
		st.SQL = scrub(st.SQL)
		if st.SQLBase64 != "" && st.SQL != strings.ToValidUTF8(text, "\uFFFD") {
			st.SQLBase64 = ""
		}
		// The PREPARE an EXECUTE runs was scrubbed in its own record; so
		// is its text here.
		st.Prepared = scrub(st.Prepared)
		if len(st.Params) > 0 {
			ps := make([]model.PGParam, len(st.Params))
			for i, p := range st.Params {
				if p.Value != nil {
					v := scrub(*p.Value)
					p.Value = &v
				}
				ps[i] = p
			}
			st.Params = ps
		}
		if len(hashes) > 0 {
			rec.Payload = hashes
		}
	}
	if d.Action != model.Allow && d.Action != model.Mask {
		de := denyError(d)
		st.SQLState, st.Error = de.Code, de.Message
	}
	rec.Data = st
	return rec
}

// scope is where a statement's effects land: at once, or at the COMMIT of
// the client's transaction block, or at the COMMIT of a transaction
// interlock holds around autocommit statements.
type scope uint8

const (
	scopeNow scope = iota
	scopeBlock
	scopeWrap
)

// record journals a statement before it is forwarded: committed for a
// read-only statement (which is forwarded while it commits: its answer is
// held until then), and for one whose effects wait for a COMMIT that
// interlock sees (held: it runs in a transaction block, the client's or
// one interlock holds, and all its effects are transactional); synced for
// anything that may take effect at once. Refusals are synced.
func (s *session) record(text string, c *sqlclass.Class, v verdict, proto, stmtName, portal string, params []model.PGParam, prep *prepared, sc scope) (*run, error) {
	d := v.Decision
	prepText := ""
	if prep != nil && prep.sql {
		prepText = prep.text
	}
	// Built whole in one go: boxing the statement into the record twice
	// cost an allocation and a copy of it per statement.
	rec := s.stmtRecord(text, c, d, proto, stmtName, portal, params, prepText,
		sc == scopeWrap && (d.Action == model.Allow || d.Action == model.Mask))
	held := sc != scopeNow
	r := &run{mask: d.Mask, text: text, class: c, flow: v.flow}
	dur := model.Synced
	pipelined := false
	switch {
	case d.Action != model.Allow && d.Action != model.Mask:
		r.deny = denyError(d)
	case c.ReadOnly && !c.Commits():
		dur, pipelined = model.Committed, true
	case c.Commits():
		if !s.txDirty() {
			dur = model.Committed
		}
	case held && c.Transactional:
		dur = model.Committed
	}
	if dur == model.Synced && s.uw.Buffered() > 0 {
		// Let what is already queued go while the fsync is awaited.
		if err := s.uw.Flush(); err != nil {
			return nil, err
		}
	}
	if pipelined {
		// The server may run it while its record commits; the server
		// loop holds whatever it answers until then (pipeline.go).
		r.pend = model.Start(s.ctx, s.h.journal, rec, dur)
		s.addPending(r.pend)
	} else {
		seq, err := s.h.journal.Append(s.ctx, rec, dur)
		if err != nil {
			return nil, &journalError{err}
		}
		r.seq = seq
	}
	r.start = time.Now()
	if s.t.results == "rows" && r.deny == nil {
		r.rec = &rowRec{max: s.t.rowsMax}
	}
	return r, nil
}

// txAtSegment is the transaction status the next message of this segment
// runs in, from the last ReadyForQuery and the transaction control sent
// earlier in the segment.
func (s *session) txAtSegment() byte {
	switch {
	case s.segEnd:
		return 'I'
	case s.segBegin:
		return 'T'
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.txStatus
}
