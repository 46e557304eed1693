package postgres

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/interlock/interlock/inspect"
	"github.com/interlock/interlock/inspect/postgres/sqlclass"
	"github.com/interlock/interlock/model"
	"github.com/jackc/pgx/v5/pgproto3"
)

// The start of a session: the client's startup judged, interlock's own
// login to the target, the session.open record, and the handshake the
// client sees.

// run logs in upstream, journals the session and serves it.
func (s *session) run(ctx context.Context, st *startup) (out inspect.Outcome) {
	h, t := s.h, s.t
	open := model.SessionOpen{
		Postgres: &model.PGStartup{
			User: st.params["user"], Database: st.params["database"], Application: st.params["application_name"],
			ProtocolVersion: versionString(st.version), ClientTLS: st.tls,
		},
	}
	for k, v := range st.params {
		switch k {
		case "user", "database", "application_name":
		default:
			if open.Postgres.Params == nil {
				open.Postgres.Params = map[string]string{}
			}
			open.Postgres.Params[k] = v
		}
	}
	refuse := func(code string, d model.Decision, err error) inspect.Outcome {
		s.sess.Open(ctx, d, open)
		sendFatal(s.client, &fatal{code: code, msg: err.Error()})
		return inspect.Outcome{Refused: true, Err: err}
	}
	denied := func(rule, reason string) model.Decision {
		return model.Decision{Action: model.Deny, Rule: rule, Reason: reason}
	}
	if replicationRequested(st.params["replication"]) {
		err := fmt.Errorf("replication connections are not supported through interlock (target %s)", t.name)
		return refuse("0A000", denied("interlock.postgres.replication", err.Error()), err)
	}
	if u := st.params["user"]; u != t.user {
		err := fmt.Errorf("interlock holds no credentials for database user %q on target %s; connect as %q", u, t.name, t.user)
		return refuse("28000", denied("interlock.postgres.user", err.Error()), err)
	}
	if enc := st.params["client_encoding"]; unsafeEncoding(enc) {
		err := fmt.Errorf("client_encoding %s is not supported through interlock: its multibyte characters can hide quotes from the statement parser; use UTF8", enc)
		return refuse("0A000", denied("interlock.postgres.encoding", err.Error()), err)
	}
	decision := model.Decision{Action: model.Allow, Rule: "default"}
	if h.policy != nil {
		decision = h.policy.DecideConnect(ctx, s.origin)
	}
	if decision.Action != model.Allow {
		return refuse("42501", decision, fmt.Errorf("connection to target %s denied by interlock rule %q: %s", t.name, decision.Rule, decision.Reason))
	}

	params := map[string]string{}
	for k, v := range st.params {
		switch k {
		case "user", "database", "replication":
		default:
			params[k] = v
		}
	}
	s.database = st.params["database"] // startup.decode made it the user's when none was given
	hc, err := t.connect(ctx, s.origin.OrigDst, s.database, params)
	if err != nil {
		code := "08001"
		var ue *upstreamError
		if errors.As(err, &ue) {
			code = ue.code
		}
		s.log.Info("upstream login failed", "err", err)
		return refuse(code, decision, err)
	}
	s.up = hc.Conn
	defer s.up.Close()
	open.Postgres.UpstreamTLS = hc.TLSConfig != nil
	open.Postgres.UpstreamPID = hc.PID
	s.upstreamPID = hc.PID
	open.Postgres.ServerVersion = hc.ParameterStatuses["server_version"]
	// The parser must read statements as the server does: a session that
	// starts with settings it cannot follow (a role-level setting, a
	// client option) is refused.
	if v := hc.ParameterStatuses["standard_conforming_strings"]; v != "" && v != "on" {
		s.up.Close()
		err := fmt.Errorf("the server starts this session with standard_conforming_strings %s, under which backslashes in string literals can hide statements from interlock's parser; the session is refused (turn the setting on for role %s)", v, t.user)
		return refuse("0A000", denied("interlock.postgres.parser", err.Error()), err)
	}
	if enc := hc.ParameterStatuses["client_encoding"]; unsafeEncoding(enc) {
		s.up.Close()
		err := fmt.Errorf("the server starts this session with client_encoding %s, whose multibyte characters can hide quotes from interlock's parser; the session is refused (use UTF8)", enc)
		return refuse("0A000", denied("interlock.postgres.parser", err.Error()), err)
	}
	s.serverMajor = serverMajor(open.Postgres.ServerVersion)
	if major := s.serverMajor; major > sqlclass.GrammarVersion {
		s.log.Warn("the server is newer than interlock's SQL grammar: statements of its newer syntax are unknown to interlock and refused by default",
			"server_version", open.Postgres.ServerVersion, "grammar", sqlclass.GrammarVersion)
	}

	// The open record grants the client the target: synced first.
	if err := s.sess.Open(ctx, decision, open); err != nil {
		s.log.Error("refusing session: the journal cannot record it", "err", err)
		sendFatal(s.client, &fatal{code: "58030", msg: "interlock cannot record this session; it is refused"})
		return inspect.Outcome{Refused: true, Err: fmt.Errorf("journal session open: %w", err)}
	}

	owner := backendOwner{tgid: s.origin.Identity.Kernel.TGID, uid: s.origin.Identity.Kernel.UID}
	h.addBackend(t.name, hc.PID, owner)
	defer h.dropBackend(t.name, hc.PID)

	entry := &cancelEntry{session: s.id, target: t.name, uid: s.origin.Identity.Kernel.UID, upstream: s.origin.OrigDst, pid: hc.PID, secret: hc.SecretKey}
	secret, key := h.cancels.mint(entry, st.version >= proto32)
	defer h.cancels.drop(key)

	s.cw = bufio.NewWriterSize(s.client, bufSize)
	var buf []byte
	if npv := st.negotiate(); npv != nil {
		buf, _ = npv.Encode(buf)
	}
	buf, _ = (&pgproto3.AuthenticationOk{}).Encode(buf)
	names := make([]string, 0, len(hc.ParameterStatuses))
	for k := range hc.ParameterStatuses {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		buf, _ = (&pgproto3.ParameterStatus{Name: k, Value: hc.ParameterStatuses[k]}).Encode(buf)
		s.paramStatus(k, hc.ParameterStatuses[k])
	}
	buf, _ = (&pgproto3.BackendKeyData{ProcessID: hc.PID, SecretKey: secret}).Encode(buf)
	tx := hc.TxStatus
	if tx == 0 {
		tx = 'I'
	}
	s.txStatus = tx
	buf, _ = (&pgproto3.ReadyForQuery{TxStatus: tx}).Encode(buf)
	if _, err := s.client.Write(buf); err != nil {
		return inspect.Outcome{Err: fmt.Errorf("write to client: %w", err)}
	}
	s.client.SetDeadline(time.Time{})
	s.log.Debug("postgres session open", "user", t.user, "database", st.params["database"], "upstream_pid", hc.PID, "client_tls", st.tls, "upstream_tls", open.Postgres.UpstreamTLS)

	return s.serve(ctx)
}

func unsafeEncoding(enc string) bool {
	switch normEncoding(enc) {
	case "sjis", "shiftjis", "shiftjis2004", "big5", "gbk", "uhc", "gb18030", "johab", "win936", "win950", "win949", "win1361", "cp932", "mskanji":
		return true
	}
	return false
}

func normEncoding(enc string) string {
	out := make([]byte, 0, len(enc))
	for i := 0; i < len(enc); i++ {
		c := enc[i]
		switch {
		case c >= 'A' && c <= 'Z':
			out = append(out, c+'a'-'A')
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
			out = append(out, c)
		}
	}
	return string(out)
}

// serverMajor is the major version of a server_version ("15.18 (Debian
// ...)" is 15).
func serverMajor(v string) int {
	n := 0
	for _, c := range v {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + int(c-'0')
	}
	return n
}
