package postgres

import (
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/interlock/interlock/inspect/postgres/sqlclass"
	"github.com/interlock/interlock/model"
)

// probeSQL is what the server gets in place of a denied statement: it
// fails during parse analysis whatever the catalog holds (a column
// reference with no FROM clause), so the server itself aborts what
// PostgreSQL aborts after an error (the rest of the query string, the
// transaction block, the rest of the pipeline until Sync), and the
// transaction status it reports stays true. The client gets interlock's
// 42501 instead of this error.
const probeSQL = `/* interlock: denied */ SELECT "interlock: statement denied by policy"`

// wrapSuffix ends a query string that interlock holds in a transaction:
// BEGIN after the client's statements turns the implicit transaction they
// run in into a block the server leaves open, and it comes last so that
// the positions in the server's errors stay the client's.
const wrapSuffix = "\n;/* interlock: wrap */BEGIN"

// qstmt is one statement of a simple query, as judged.
type qstmt struct {
	sqlclass.Statement
	// class is the resolved class (an EXECUTE's is its prepared
	// statement's); prep the SQL PREPARE an EXECUTE runs.
	class *sqlclass.Class
	prep  *prepared
}

// classifyQuery resolves each statement of a query string: an EXECUTE
// runs what its PREPARE prepared (one earlier in the same string
// included), and every class is resolved against the catalog.
func (s *session) classifyQuery(p *sqlclass.Parsed) []qstmt {
	out := make([]qstmt, len(p.Stmts))
	var local map[string]*prepared
	for i, st := range p.Stmts {
		q := qstmt{Statement: st, class: st.Class}
		switch st.Kind {
		case "prepare":
			if st.Inner != nil {
				if local == nil {
					local = map[string]*prepared{}
				}
				local[st.Prepare] = &prepared{text: st.Text, class: st.Inner, sql: true}
			}
		case "execute":
			ps := local[st.Prepare]
			if ps == nil {
				s.mu.Lock()
				ps, _ = s.lookupStmt(st.Prepare, 0)
				s.mu.Unlock()
			}
			q.class, q.prep = executeClass(st.Class, ps), ps
		}
		q.class = s.resolve(q.class)
		out[i] = q
	}
	return out
}

// executeClass is what an EXECUTE runs: its prepared statement's class,
// or unknown when interlock does not know the statement.
func executeClass(exec *sqlclass.Class, ps *prepared) *sqlclass.Class {
	if ps == nil || ps.class == nil {
		c := sqlclass.Unknown("no prepared statement " + exec.Prepare + " is known to interlock")
		c.Kind = "execute"
		c.Kinds = []string{"execute", model.SQLKindUnknown}
		return c
	}
	out := ps.class.Clone()
	out.Kind = "execute"
	out.Kinds = append([]string{"execute"}, ps.class.Kinds...)
	out.Prepare = exec.Prepare
	return out
}

// waitBarrier makes a message of this segment wait for the answer of the
// newest earlier statement that was not a plain read.
func (s *session) waitBarrier() error {
	if s.barrier > 0 && s.barrier < s.seg {
		return s.waitAnswered(s.barrier)
	}
	return nil
}

// waitAll makes a message wait until everything before its segment was
// answered: the transaction status is then known exactly.
func (s *session) waitAll() error {
	if s.seg > 1 {
		return s.waitAnswered(s.seg - 1)
	}
	return nil
}

func (s *session) onQuery(m msg) error {
	var q pgproto3.Query
	if err := q.Decode(m.body); err != nil {
		return clientErr("%v", err)
	}
	if err := s.waitBarrier(); err != nil {
		return err
	}
	p := s.h.cls.Parse(q.String)
	stmts := s.classifyQuery(p)
	allPlain := true
	for _, st := range stmts {
		allPlain = allPlain && plain(st.class)
	}
	if allPlain {
		return s.plainQuery(q.String, stmts, m.raw)
	}
	if err := s.waitAll(); err != nil {
		return err
	}
	// What came before may have changed the catalog the classes were
	// resolved against.
	stmts = s.classifyQuery(p)
	return s.runQuery(q.String, stmts)
}

// plainQuery judges, journals and forwards a query string of plain reads
// at once; the server's answers reach the client as they come. raw is the
// client's Query message that holds text (nil: encode it): when nothing
// is denied, it goes as it came.
func (s *session) plainQuery(text string, stmts []qstmt, raw []byte) error {
	it := &item{kind: iQuery, seg: s.nextSeg()}
	it.runs = it.one[:0]
	out := text
	for i, st := range stmts {
		d := s.decide(st.Text, st.class)
		r, err := s.record(st.Text, st.class, d, "simple", "", "", nil, st.prep, scopeNow)
		if err != nil {
			return err
		}
		it.runs = append(it.runs, r)
		if r.deny != nil {
			out = denyText(text, stmts, 0, i)
			break
		}
	}
	s.queue(it)
	if raw != nil && out == text {
		_, err := s.uw.Write(raw)
		return err
	}
	return s.sendQuery(out)
}

// denyText is the query string that runs statements from..k-1 of a query
// and then makes the server fail in place of statement k.
func denyText(text string, stmts []qstmt, from, k int) string {
	if k == from {
		return probeSQL
	}
	return text[stmts[from].Head:stmts[k-1].End] + "\n;" + probeSQL
}

func (s *session) sendQuery(text string) error {
	b, err := (&pgproto3.Query{String: text}).Encode(nil)
	if err != nil {
		return err
	}
	_, err = s.uw.Write(b)
	return err
}

// pieces splits a query string's statements so that each statement that
// begins or ends a transaction is a piece of its own: interlock must see
// the transaction's state between them (a COMMIT goes through a gate).
// Runs of other statements stay together, so their implicit transaction
// is the one PostgreSQL gives them.
func pieces(stmts []qstmt) [][2]int {
	var out [][2]int
	start := 0
	for i, st := range stmts {
		if st.class.TxControl() {
			if i > start {
				out = append(out, [2]int{start, i})
			}
			out = append(out, [2]int{i, i + 1})
			start = i + 1
		}
	}
	if start < len(stmts) {
		out = append(out, [2]int{start, len(stmts)})
	}
	return out
}

// runQuery serves a query string that holds a statement which is not a
// plain read, piece by piece, with the server's state known before each:
// a piece in autocommit that may write runs in a transaction interlock
// holds (wrapSuffix) and commits only through a gate; a COMMIT of a block
// that wrote goes through a gate first. The client gets one answer for
// its one query, ending in one ReadyForQuery.
func (s *session) runQuery(text string, stmts []qstmt) error {
	ps := pieces(stmts)
	if len(ps) == 0 {
		return s.plainQuery(text, stmts, nil)
	}
	for i, pc := range ps {
		last := i == len(ps)-1
		if i > 0 {
			if err := s.waitAll(); err != nil {
				return err
			}
		}
		done, err := s.runPiece(text, stmts, pc[0], pc[1], last)
		if err != nil {
			return err
		}
		if done {
			return nil
		}
	}
	return nil
}

// runPiece judges and runs statements from..to of a query string. It
// reports done when the query ended (an error, a denial, or the last
// piece), the client having had its ReadyForQuery.
func (s *session) runPiece(text string, stmts []qstmt, from, to int, last bool) (bool, error) {
	tx := s.txAtSegment()
	it := &item{kind: iQuery, posOffset: utf8.RuneCountInString(text[:stmts[from].Head])}
	decisions := make([]verdict, 0, to-from)
	denied := -1
	var f pieceFacts
	for i := from; i < to; i++ {
		st := stmts[i]
		d := s.decide(st.Text, st.class)
		decisions = append(decisions, d)
		if d.Action != model.Allow && d.Action != model.Mask {
			denied = i
			break
		}
		f.add(st.class, st.Text)
	}
	first := stmts[from].class
	gate := denied < 0 && to-from == 1 && first.Commits() && tx == 'T' && s.commitNeedsGate()
	wrap := denied < 0 && tx == 'I' && f.writes && f.wrappable && s.needGate(f.opaque)
	sc := scopeNow
	switch {
	case wrap:
		sc = scopeWrap
	case tx == 'T':
		sc = scopeBlock
	}
	for i, d := range decisions {
		st := stmts[from+i]
		r, err := s.record(st.Text, st.class, d, "simple", "", "", nil, st.prep, sc)
		if err != nil {
			return true, err
		}
		it.runs = append(it.runs, r)
	}
	out := text[stmts[from].Head:stmts[to-1].End]
	if denied >= 0 {
		out = denyText(text, stmts, from, denied)
	}
	switch {
	case gate:
		return true, s.gateCommitQuery(it, out)
	case wrap:
		return true, s.wrapQuery(it, out, f)
	}
	// Forwarded as it is: in a block, read-only, or not wrappable.
	if denied < 0 {
		s.noteForwarded(it.runs, f, tx == 'T' || s.segBegin)
	}
	it.seg = s.nextSeg()
	for _, c := range f.classes {
		if !plain(c) {
			// The next message waits for this one's answer.
			s.barrier = it.seg
		}
	}
	if last || denied >= 0 {
		s.queue(it)
		return true, s.sendQuery(out)
	}
	it.ready = make(chan byte, 1)
	it.copyIn = make(chan struct{}, 1)
	if !s.queue(it) {
		return true, nil
	}
	if err := s.sendQuery(out); err != nil {
		return true, err
	}
	st, err := s.awaitReady(it)
	if err != nil {
		return true, err
	}
	if it.failed {
		// The rest of the string would not have run: the client gets the
		// ReadyForQuery this piece ended with.
		return true, s.readyToClient(st)
	}
	return false, nil
}

// pieceFacts sums up the forwarded statements of a piece.
type pieceFacts struct {
	writes, catalog, opaque bool
	wrappable               bool
	classes                 []*sqlclass.Class
	set                     bool
}

func (f *pieceFacts) add(c *sqlclass.Class, text string) {
	if !f.set {
		f.wrappable, f.set = true, true
	}
	f.writes = f.writes || !c.ReadOnly
	f.catalog = f.catalog || c.Catalog
	f.opaque = f.opaque || c.Opaque
	f.wrappable = f.wrappable && wrappable(c, text)
	f.classes = append(f.classes, c)
}
