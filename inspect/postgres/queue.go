package postgres

import (
	"sync"

	"github.com/jackc/pgx/v5/pgproto3"
)

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
	iProbe  // a Close and a failing Parse in place of a denied message
	iHidden // a message of interlock's own: its answers never reach the client
)

// item is one answer (or group of answers) the server owes the client.
type item struct {
	kind itemKind
	// runs: the statements of a Query in order; the run of a Bind,
	// Execute, Describe portal or FunctionCall.
	runs []*run
	idx  int
	// one holds runs when there is one run (most items): the slice then
	// costs no allocation of its own.
	one [1]*run
	// stmt is a Describe statement's statement.
	stmt *prepared
	// name and pend: the name a Parse, Bind or Close changes and the
	// pending change it made (confirmed or dropped on the answer).
	name string
	pend *pendingName
	// closeKind is a Close's object type.
	closeKind byte
	// closed: iProbe's Close has been answered.
	closed bool
	deny   *pgproto3.ErrorResponse
	// seg is the segment an item that ends one (Query, Sync,
	// FunctionCall, a hidden Query) ends.
	seg uint64
	// ready, when set, gets the ReadyForQuery status of an item that ends
	// a segment instead of the client: interlock continues the exchange
	// (a gate, the next piece of a split query).
	ready chan byte
	// copyIn is told each time the server starts a COPY FROM STDIN of
	// this item, so that a client goroutine waiting for ready forwards
	// the client's rows meanwhile.
	copyIn chan struct{}
	// wrapped: a Query whose text interlock extended with a BEGIN; the
	// BEGIN's CommandComplete is swallowed.
	wrapped bool
	// posOffset is added to the position of an error in a piece of a
	// split query string.
	posOffset int
	// hidden holds what interlock's own messages got back.
	hidden *hidden
	// failed: the server answered it with an error.
	failed bool
}

// only makes r the item's one run.
func (it *item) only(r *run) *item {
	it.one[0] = r
	it.runs = it.one[:]
	return it
}

func (it *item) run() *run {
	if it.idx < len(it.runs) {
		return it.runs[it.idx]
	}
	return nil
}

// ends says the item ends a segment: its answer ends with ReadyForQuery.
func (it *item) ends() bool {
	switch it.kind {
	case iQuery, iSync, iFunc:
		return true
	case iHidden:
		return it.hidden.query
	}
	return false
}

// hidden is what the server answered to one of interlock's own messages
// (a simple Query, or one message of an extended-protocol exchange).
type hidden struct {
	query bool // a simple Query: answered until ReadyForQuery
	// expect is the answer an extended message gets ('1' ParseComplete,
	// '2' BindComplete, '3' CloseComplete, 'C' for an Execute).
	expect byte
	rows   [][][]byte
	tags   []string
	err    *pgproto3.ErrorResponse
	status byte
	// done is closed when the answer is complete (nil: nobody waits).
	done chan struct{}
	// flushes: the query makes the server flush its per-transaction
	// counters (pg_stat_force_next_flush).
	flushes bool
	// prepares, for a Parse of interlock's own, is the session flag
	// (guarded by session.mu) its ParseComplete sets.
	prepares *bool
	// describes, for a Describe of interlock's own before an Execute
	// whose rows must be masked, is the run whose columns it learns. Its
	// error is the client's: the Execute would have got it.
	describes *run
}

func (h *hidden) finish() {
	if h.done != nil {
		select {
		case <-h.done:
		default:
			close(h.done)
		}
	}
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
