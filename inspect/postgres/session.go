package postgres

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/interlock/interlock/inspect"
	"github.com/interlock/interlock/inspect/postgres/sqlclass"
	"github.com/interlock/interlock/model"
)

// session is one client session: two goroutines, one per direction. The
// client goroutine judges, journals and forwards what the client sends,
// and queues what it expects back (an item per message that gets an
// answer); the server goroutine matches the server's answers to those
// items, records outcomes, advances the session's model and forwards them.
//
// The model (prepared statements, portals, cursors, settings, the
// transaction's state) advances only on the server's answers. A statement
// that is not a plain read is a barrier: the client goroutine judges the
// next message only once the server answered it, so no setting or name
// can change between judging a statement and the server running it. A
// transaction that is not provably read-only runs inside a transaction
// interlock holds, whose effects interlock reads from the server before
// the COMMIT goes through (gate.go).
type session struct {
	h        *Handler
	t        *target
	database string
	id       string
	origin   model.Origin
	log      *slog.Logger
	start    time.Time
	ctx      context.Context
	trust    *trustState
	// serverMajor is the server's major version (0: unknown).
	serverMajor int
	// upstreamPID is the server backend's pid: the one backend the
	// session may signal.
	upstreamPID uint32

	client, up net.Conn
	cr, ur     *reader
	uw         *bufio.Writer // to the server; the client goroutine's
	// cwMu guards cw and the hold: while hold is set, what the server
	// sends the client waits in held until a gate decides (heldOver: it
	// outgrew maxHeld and was let through).
	cwMu     sync.Mutex
	cw       *bufio.Writer // to the client
	hold     bool
	held     []byte
	heldOver bool

	q queue

	// mu guards the model the two goroutines share, and cond signals the
	// client goroutine when the server answered a segment (answered) or
	// the session ended.
	mu       sync.Mutex
	cond     *sync.Cond
	answered uint64
	ended    bool
	// done is closed when the session ends.
	done    chan struct{}
	stmts   nameSpace[*prepared]
	portals nameSpace[*run]
	cursors map[string]*sqlCursor
	// txStatus is the last ReadyForQuery's status.
	txStatus byte
	// tx is what interlock knows of the transaction the server has open.
	tx txFacts
	// fxPrepared and beginPrepared: interlock's effects statement
	// (fxName) and its BEGIN are prepared on the server.
	fxPrepared, beginPrepared bool
	// statsDirty: a transaction that wrote ended without a gate (rolled
	// back), so the server's per-transaction counters may still hold its
	// rows until they are flushed.
	statsDirty bool

	// The client goroutine's own state.
	seg uint64 // the segment being sent; Query, FunctionCall and Sync end one
	// barrier is the segment of the newest statement that is not a plain
	// read: a message of a later segment is judged once it is answered.
	barrier uint64
	// uncertain is the segment in which a statement that is not a plain
	// read ran before the segment's end: the settings the parser depends
	// on are not known until its ReadyForQuery.
	uncertain uint64
	// segBegin and segEnd: the segment began or ended a transaction block
	// (BEGIN, or COMMIT/ROLLBACK) before its current message.
	segBegin, segEnd bool
	// segWrap: this segment runs in a transaction interlock holds; a BEGIN
	// goes before its Sync and the gate after it.
	segWrap bool
	// probe and fxName name interlock's own statements (random per
	// session): the failing statement sent in place of a denied one, and
	// the effects query of a gate inside a segment.
	probe, fxName string

	// The server goroutine's own state.
	open    map[*run]struct{}
	results []model.Record

	// masks are the mask rules that cover the session (nil: none), for
	// scrubbing what the server sends outside rows.
	masks atomic.Pointer[model.MaskSpec]

	// scsOff and badEncoding are set from the server's ParameterStatus.
	scsOff, badEncoding atomic.Bool

	bytesUp, bytesDown atomic.Int64

	// idle ends the session when the client leaves it idle (idle.go).
	idle idleWatch
}

// txFacts is what interlock knows of the server's open transaction.
type txFacts struct {
	// dirty: a statement that is not provably read-only ran in it, so its
	// COMMIT goes through a gate.
	dirty bool
	// wrapped: interlock began it (the client thinks it is in autocommit).
	wrapped bool
	// opaque: a statement whose effects the text does not show ran in it.
	opaque bool
	// catalog: a statement that may change the catalog ran in it (see
	// trustState); overlay is what it may have defined.
	catalog bool
	overlay txOverlay
	// stmts are the pg.statement entries of its statements that are not
	// plain reads.
	stmts []uint64
	rows  int64
	// committing: its end is on its way to the server and the target's
	// catalog trust was told (trustState.committingStart).
	committing bool
}

// field is one result column.
type field struct {
	name   string
	oid    uint32
	format int16
	// table and attnum name the column's source (0 for a computed one),
	// whatever the query called it: masking rules resolve through them.
	table  uint32
	attnum int16
}

// run is one execution of a statement: a simple-query statement, a bound
// portal, or a function call. Once queued, only the server goroutine
// touches it (but for text and class, set before).
type run struct {
	seq   uint64
	start time.Time
	rows  int64
	// text and class are what was judged; the tag the server reports must
	// fit the class.
	text    string
	class   *sqlclass.Class
	fields  []field
	formats []int16 // result formats asked in Bind
	rec     *rowRec
	// deny is the error the client gets instead of the server's when the
	// statement was denied and a probe sent in its place.
	deny     *pgproto3.ErrorResponse
	executed bool
	done     bool
	// mask is what policy asked to mask in the result; plan is set once
	// the columns are known (nil when none needs masking).
	mask *model.MaskSpec
	// flow is the data flow of its output under column mask rules.
	flow    *sqlclass.Flow
	planned bool
	plan    inspect.RowMasker
	// described: the client goroutine knows the server will describe
	// the result before its rows (a Describe, or columns known at Bind);
	// only the client goroutine touches it.
	described bool
	// row and out are reused from row to row of a masked (or recorded)
	// result.
	row pgproto3.DataRow
	out []byte
}

// errTerminate is the client's Terminate: a clean end.
var errTerminate = errors.New("client terminated the session")

// journalError is a failed journal write: the statement it describes must
// not reach the server, and the session ends.
type journalError struct{ err error }

func (e *journalError) Error() string {
	return "the journal cannot record the statement: " + e.err.Error()
}
func (e *journalError) Unwrap() error { return e.err }

// contradiction is the server reporting something interlock did not
// judge: the session ends, fail closed.
type contradiction struct{ msg string }

func (e *contradiction) Error() string { return "interlock ended the session: " + e.msg }

func limitsClient(typ byte) (int, bool) {
	switch typ {
	case 'Q', 'P':
		return maxText, false
	case 'B', 'F', 'd':
		return maxWhole, true
	case 'E', 'D', 'C', 'S', 'H', 'X', 'c', 'f':
		return maxWhole, false
	}
	return -1, false
}

func limitsServer(typ byte) (int, bool) {
	switch typ {
	case 'D', 'd', 'V':
		return maxWhole, true
	case 'p', 'R', 'K', 'v', 'W':
		return -1, false // authentication, keys and replication after login: not expected
	}
	return maxServerWhole, false
}

// run logs in upstream, journals the session and serves it.
func (s *session) run(ctx context.Context, st *startup) (out inspect.Outcome) {
	h, t := s.h, s.t
	open := model.SessionOpen{
		Target: s.origin.Target, OrigDst: s.origin.OrigDst, Client: s.origin.Client, Identity: s.origin.Identity,
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
		open.Decision = d
		if _, jerr := h.journal.Append(ctx, model.Record{Kind: model.KindSessionOpen, Session: s.id, Time: s.origin.Accepted, Data: open}, model.Synced); jerr != nil {
			s.log.Error("journal refused session", "err", jerr)
		}
		sendFatal(s.client, &fatal{code: code, msg: err.Error()})
		o := inspect.Outcome{Refused: true, Err: err}
		h.closeRecord(ctx, s.id, s.start, o)
		return o
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
	open.Decision = decision

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
	if _, err := h.journal.Append(ctx, model.Record{Kind: model.KindSessionOpen, Session: s.id, Time: s.origin.Accepted, Data: open}, model.Synced); err != nil {
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
		o := inspect.Outcome{Err: fmt.Errorf("write to client: %w", err)}
		h.closeRecord(ctx, s.id, s.start, o)
		return o
	}
	s.client.SetDeadline(time.Time{})
	s.log.Debug("postgres session open", "user", t.user, "database", st.params["database"], "upstream_pid", hc.PID, "client_tls", st.tls, "upstream_tls", open.Postgres.UpstreamTLS)

	out = s.serve(ctx)
	h.closeRecord(ctx, s.id, s.start, out)
	return out
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

// serve runs the two directions until the session ends.
func (s *session) serve(ctx context.Context) inspect.Outcome {
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.ctx = cctx
	s.cr = newReader(s.client, "client", limitsClient)
	s.ur = newReader(s.up, "server", limitsServer)
	s.uw = bufio.NewWriterSize(s.up, bufSize)
	s.stmts = newNameSpace[*prepared]()
	s.portals = newNameSpace[*run]()
	s.cursors = map[string]*sqlCursor{}
	s.cond = sync.NewCond(&s.mu)
	s.done = make(chan struct{})
	s.open = map[*run]struct{}{}
	s.seg = 1
	var rnd [8]byte
	rand.Read(rnd[:])
	s.probe = "interlock_denied_" + hex.EncodeToString(rnd[:])
	s.fxName = "interlock_effects_" + hex.EncodeToString(rnd[:])
	s.refreshMasks()
	defer s.endModel()

	type end struct {
		server bool
		err    error
	}
	ends := make(chan end, 2)
	var once sync.Once
	var stopped atomic.Bool
	shut := func() {
		once.Do(func() {
			s.client.Close()
			s.up.Close()
		})
	}
	go func() {
		select {
		case <-ctx.Done():
			stopped.Store(true)
			shut()
		case <-cctx.Done():
		}
	}()
	go func() { ends <- end{server: true, err: s.serverLoop()} }()
	go func() { ends <- end{err: s.clientLoop()} }()
	if s.idle.limit > 0 {
		go s.watchIdle(cctx, shut)
	}

	first := <-ends
	var result error
	switch {
	case stopped.Load():
		result = fmt.Errorf("session ended by interlock: %w", context.Cause(ctx))
	case first.server:
		result = s.serverEnded(first.err)
	default:
		result = s.clientEnded(first.err)
	}
	if s.idle.fired.Load() {
		result = s.idleErr()
	}
	shut()
	s.endModel()
	<-ends
	if stopped.Load() {
		result = fmt.Errorf("session ended by interlock: %w", context.Cause(ctx))
	}
	// Whatever was still owed an answer never completed.
	for _, it := range s.q.pendingItems() {
		for _, r := range it.runs {
			if r != nil && !r.done && r.deny == nil {
				s.finish(r, "", nil, "the session ended before the statement completed")
			}
		}
	}
	for r := range s.open {
		if !r.done {
			s.finish(r, "", nil, "the session ended before the statement completed")
		}
	}
	s.postResults()
	return inspect.Outcome{BytesUp: s.bytesUp.Load(), BytesDown: s.bytesDown.Load(), Err: result}
}

// clientEnded handles the end of the client direction: a Terminate or a
// vanished client is a normal end; anything else is told to the client.
func (s *session) clientEnded(err error) error {
	switch {
	case errors.Is(err, errTerminate):
		return nil
	case quietEnd(err):
		s.terminateUpstream()
		return nil
	}
	s.log.Info("postgres session ended", "side", "client", "err", err)
	s.fatalToClient(err)
	s.terminateUpstream()
	return err
}

// serverEnded handles the end of the server direction.
func (s *session) serverEnded(err error) error {
	// What the server said before it went (a FATAL error) reaches the
	// client even when a gate was holding it.
	s.letHeldGo()
	if quietEnd(err) {
		s.cwMu.Lock()
		s.cw.Flush()
		s.cwMu.Unlock()
		return errors.New("the server closed the connection")
	}
	s.log.Info("postgres session ended", "side", "server", "err", err)
	s.fatalToClient(err)
	s.terminateUpstream()
	return err
}

func quietEnd(err error) bool {
	return err == nil || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

func (s *session) fatalToClient(err error) {
	s.cwMu.Lock()
	defer s.cwMu.Unlock()
	var je *journalError
	if errors.As(err, &je) {
		err = &fatal{code: "58030", msg: "interlock could not record the statement, so it was not run; the session is closed"}
	}
	s.cw.Flush()
	s.client.SetWriteDeadline(time.Now().Add(time.Second))
	sendFatal(s.client, err)
}

func (s *session) terminateUpstream() {
	s.up.SetWriteDeadline(time.Now().Add(time.Second))
	s.up.Write([]byte{'X', 0, 0, 0, 4})
}

// endModel wakes a client goroutine waiting for the server, and gives
// back the session's hold on the target's catalog trust: the session
// ended, so whatever transaction it had open is gone.
func (s *session) endModel() {
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return
	}
	s.ended = true
	close(s.done)
	catalog := s.tx.catalog
	s.tx = txFacts{}
	s.cond.Broadcast()
	s.mu.Unlock()
	if catalog && s.trust != nil {
		s.trust.release()
	}
}

// waitAnswered blocks until the server has answered segment n (flushing
// what is buffered for it first), or the session ends.
func (s *session) waitAnswered(n uint64) error {
	s.mu.Lock()
	done := s.answered >= n || s.ended
	s.mu.Unlock()
	if done {
		return s.endedErr()
	}
	if err := s.uw.Flush(); err != nil {
		return err
	}
	s.mu.Lock()
	for s.answered < n && !s.ended {
		s.cond.Wait()
	}
	s.mu.Unlock()
	return s.endedErr()
}

func (s *session) endedErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return net.ErrClosed
	}
	return nil
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
