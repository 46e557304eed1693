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
	// pending are the records of read-only statements forwarded while
	// they commit (pipeline.go); npending counts them for the server
	// loop's fast check, spare is the slice it reuses.
	pendMu   sync.Mutex
	pending  []func() (uint64, error)
	npending atomic.Int32
	// started is set while the client loop has started records it has
	// not told the journal to commit (model.CommitStarted).
	started bool
	spare   []func() (uint64, error)
	// sess is the engine's view of the session: its open record goes
	// through it (inspect.Lifecycle writes the close).
	sess     *inspect.Session
	h        *Handler
	t        *target
	database string
	id       string
	origin   model.Origin
	log      *slog.Logger
	ctx      context.Context
	// decideCtx is what policy decides under: ctx, carrying tellClient,
	// and cancelled once the session is ending (tell.go).
	decideCtx context.Context
	trust     *trustState
	// decider is policy's decision function for this session (it keeps
	// the session's decisions while the rules stay the same); nil
	// without a policy.
	decider model.Decider
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
	// descBody and descFields: the last RowDescription decoded (fieldsOf).
	descBody   []byte
	descFields []field

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
	// seq is the statement's entry, once recorded; read it through
	// stmtSeq, which waits for a pipelined record (pend).
	seq   uint64
	pend  func() (uint64, error)
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

// serve runs the two directions until the session ends.
func (s *session) serve(ctx context.Context) inspect.Outcome {
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.ctx = cctx
	// A statement held for review tells the client through decideCtx,
	// and its review ends as soon as either direction does: the other
	// loop waits for the one that is held.
	dctx, stopDeciding := context.WithCancel(cctx)
	defer stopDeciding()
	s.decideCtx = model.WithTeller(dctx, s.tellClient)
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
	// A panic on either loop (a bug) ends the session like an error of
	// that side, instead of the daemon.
	loop := func(server bool, f func() error) {
		go func() {
			defer func() {
				if p := recover(); p != nil {
					ends <- end{server: server, err: s.sess.Recovered(p)}
				}
			}()
			ends <- end{server: server, err: f()}
		}()
	}
	loop(true, s.serverLoop)
	loop(false, s.clientLoop)
	if s.idle.limit > 0 {
		go func() {
			defer func() {
				if p := recover(); p != nil {
					s.sess.Recovered(p)
					shut()
				}
			}()
			s.watchIdle(cctx, shut)
		}()
	}

	first := <-ends
	stopDeciding()
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
