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
	"github.com/interlock/interlock/model"
)

// session is one client session: two goroutines, one per direction. The
// client goroutine judges, journals and forwards what the client sends,
// and queues what it expects back (an item per message that gets an
// answer); the server goroutine matches the server's answers to those
// items, records outcomes and forwards them.
type session struct {
	h        *Handler
	t        *target
	database string
	id       string
	origin   model.Origin
	log      *slog.Logger
	start    time.Time
	ctx      context.Context

	client, up net.Conn
	cr, ur     *reader
	uw         *bufio.Writer // to the server; the client goroutine's
	cwMu       sync.Mutex
	cw         *bufio.Writer // to the client

	q queue

	// mu guards stmts, which the server goroutine completes from
	// ParameterDescription and RowDescription.
	mu    sync.Mutex
	stmts map[string]*prepared
	// portals and sqlPrepared belong to the client goroutine.
	portals     map[string]*run
	sqlPrepared map[string]*class
	// probe names the statement interlock prepares to make the server
	// fail in place of a denied one.
	probe string

	// The server goroutine's own state.
	open    map[*run]struct{}
	results []model.Record

	// scsOff and badEncoding are set from the server's ParameterStatus:
	// the parser's reading of a statement could then differ from the
	// server's, so statements are refused (see guard).
	scsOff, badEncoding atomic.Bool
	// txStatus is the last ReadyForQuery's status; txWrites says the
	// current transaction block wrote with committed-only records (the
	// client goroutine's).
	txStatus atomic.Uint32
	txWrites bool

	bytesUp, bytesDown atomic.Int64
}

// prepared is a protocol-level prepared statement.
type prepared struct {
	text      string
	class     *class
	paramOIDs []uint32
	fields    []field
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
// touches it.
type run struct {
	seq     uint64
	start   time.Time
	rows    int64
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
	mask    *model.MaskSpec
	planned bool
	plan    inspect.RowMasker
	// row and out are reused from row to row of a masked (or recorded)
	// result.
	row pgproto3.DataRow
	out []byte
}

type itemKind uint8

const (
	iQuery itemKind = iota
	iParse
	iBind
	iDescribeS
	iDescribeP
	iExecute
	iClose
	iSync
	iFunc
	iProbe // a Close and a failing Parse in place of a denied Bind
)

// item is one answer (or group of answers) the server owes the client.
type item struct {
	kind itemKind
	// runs: the statements of a Query in order; the run of a Bind,
	// Execute, Describe portal or FunctionCall.
	runs []*run
	idx  int
	// stmt, prev and name: a Parse's statement, the one it replaced, and
	// its name; a Describe statement's statement.
	stmt *prepared
	prev *prepared
	name string
	// closed: iProbe's Close has been answered.
	closed bool
	deny   *pgproto3.ErrorResponse
}

func (it *item) run() *run {
	if it.idx < len(it.runs) {
		return it.runs[it.idx]
	}
	return nil
}

// queue is the FIFO of items. After an error in the extended protocol the
// server skips everything up to the next Sync; skipping says it is doing
// so with no Sync queued yet, so items pushed meanwhile get no answer.
type queue struct {
	mu       sync.Mutex
	items    []*item
	head     int
	skipping bool
}

// push queues it and reports false when the server will skip it.
func (q *queue) push(it *item) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.skipping {
		if it.kind != iSync {
			return false
		}
		q.skipping = false
	}
	if q.head > 64 && q.head*2 > len(q.items) {
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	}
	q.items = append(q.items, it)
	return true
}

func (q *queue) first() *item {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.head < len(q.items) {
		return q.items[q.head]
	}
	return nil
}

// quiet says no outstanding item can change the transaction status: only
// Parse, Describe and Close answers are awaited.
func (q *queue) quiet() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, it := range q.items[q.head:] {
		switch it.kind {
		case iParse, iDescribeS, iDescribeP, iClose:
		default:
			return false
		}
	}
	return !q.skipping
}

func (q *queue) pop() {
	q.mu.Lock()
	q.items[q.head] = nil
	q.head++
	q.mu.Unlock()
}

// skipToSync removes the items the server skips after an error: those up
// to the next Sync, or all of them (and what comes until a Sync) when
// none is queued.
func (q *queue) skipToSync() []*item {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []*item
	for q.head < len(q.items) {
		it := q.items[q.head]
		if it.kind == iSync {
			return out
		}
		out = append(out, it)
		q.items[q.head] = nil
		q.head++
	}
	q.skipping = true
	return out
}

func (q *queue) pendingItems() []*item {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := append([]*item(nil), q.items[q.head:]...)
	q.items, q.head = nil, 0
	return out
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

	// The open record grants the client the target: synced first.
	if _, err := h.journal.Append(ctx, model.Record{Kind: model.KindSessionOpen, Session: s.id, Time: s.origin.Accepted, Data: open}, model.Synced); err != nil {
		s.log.Error("refusing session: the journal cannot record it", "err", err)
		sendFatal(s.client, &fatal{code: "58030", msg: "interlock cannot record this session; it is refused"})
		return inspect.Outcome{Refused: true, Err: fmt.Errorf("journal session open: %w", err)}
	}

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
	s.txStatus.Store(uint32(tx))
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
	s.stmts = map[string]*prepared{}
	s.portals = map[string]*run{}
	s.sqlPrepared = map[string]*class{}
	s.open = map[*run]struct{}{}
	var rnd [8]byte
	rand.Read(rnd[:])
	s.probe = "interlock_denied_" + hex.EncodeToString(rnd[:])

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
	shut()
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
