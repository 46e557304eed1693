package postgres

import (
	"github.com/interlock/interlock/inspect/postgres/sqlclass"
)

// The session's model of the server's named objects: prepared statements
// (protocol-level and SQL PREPARE share one namespace), portals and SQL
// cursors. What the client asks for is pending until the server confirms
// it (ParseComplete, BindComplete, CloseComplete, the command tag of
// PREPARE, DEALLOCATE, DECLARE, CLOSE); what the server skips or refuses
// is dropped. A statement is judged against a pending entry only within
// the segment (up to Sync) that made it, where a failure makes the server
// skip the rest; across segments the client goroutine waits for the
// server's answer first.

// prepared is a prepared statement.
type prepared struct {
	text      string
	class     *sqlclass.Class
	paramOIDs []uint32
	fields    []field
	// sql: made by SQL PREPARE (text is the PREPARE's inner statement).
	sql bool
}

// pendingName is a change to a name the server has not answered yet: a
// definition (stmt or run set) or a removal (neither set).
type pendingName struct {
	seg  uint64
	stmt *prepared
	run  *run
}

// nameSpace is one namespace of the model. Its maps are guarded by
// session.mu: the client goroutine adds pending changes, the server
// goroutine confirms or drops them.
type nameSpace[V any] struct {
	confirmed map[string]V
	pending   map[string][]*pendingName
}

func newNameSpace[V any]() nameSpace[V] {
	return nameSpace[V]{confirmed: map[string]V{}, pending: map[string][]*pendingName{}}
}

func (n *nameSpace[V]) add(name string, p *pendingName) {
	n.pending[name] = append(n.pending[name], p)
}

// settle removes a pending change once the server answered it (or skipped
// it).
func (n *nameSpace[V]) settle(name string, p *pendingName) {
	l := n.pending[name]
	for i, q := range l {
		if q == p {
			l = append(l[:i], l[i+1:]...)
			break
		}
	}
	if len(l) == 0 {
		delete(n.pending, name)
	} else {
		n.pending[name] = l
	}
}

// last returns the newest pending change of name.
func (n *nameSpace[V]) last(name string) *pendingName {
	if l := n.pending[name]; len(l) > 0 {
		return l[len(l)-1]
	}
	return nil
}

// sqlCursor is a SQL cursor (DECLARE): a portal named after it that a FETCH
// or a protocol Execute reads.
type sqlCursor struct {
	run  *run
	hold bool
}

// lookupStmt resolves a statement name for a Bind or Describe in segment
// seg. wait is the segment whose answer must arrive before the name can
// be resolved (0: resolved). Called with s.mu held.
func (s *session) lookupStmt(name string, seg uint64) (ps *prepared, wait uint64) {
	if p := s.stmts.last(name); p != nil {
		if p.seg != seg {
			return nil, p.seg
		}
		return p.stmt, 0 // nil: closed earlier in this segment
	}
	return s.stmts.confirmed[name], 0
}

// lookupPortal resolves a portal name for an Execute in segment seg, as
// lookupStmt does; a SQL cursor of that name is its DECLARE's run.
func (s *session) lookupPortal(name string, seg uint64) (r *run, cursor bool, wait uint64) {
	if p := s.portals.last(name); p != nil {
		if p.seg != seg {
			return nil, false, p.seg
		}
		return p.run, false, 0
	}
	if r := s.portals.confirmed[name]; r != nil {
		return r, false, 0
	}
	if c := s.cursors[name]; c != nil {
		return c.run, true, 0
	}
	return nil, false, 0
}

// endTransaction forgets what the end of a transaction removes: every
// portal, and the cursors not declared WITH HOLD. Called with s.mu held.
func (s *session) endTransaction() {
	clear(s.portals.confirmed)
	for name, c := range s.cursors {
		if !c.hold {
			delete(s.cursors, name)
		}
	}
}

// onTag applies what a completed statement did to the names: PREPARE,
// DEALLOCATE, DISCARD ALL, DECLARE and CLOSE. Called with s.mu held.
func (s *session) onTag(r *run, tag string) {
	cl := r.class
	if cl == nil {
		return
	}
	switch sqlclass.TagKind(tag) {
	case "prepare":
		if cl.Prepare != "" && cl.Inner != nil {
			s.stmts.confirmed[cl.Prepare] = &prepared{text: r.text, class: cl.Inner, sql: true}
		}
	case "deallocate":
		delete(s.stmts.confirmed, cl.Prepare)
	case "deallocate_all":
		clear(s.stmts.confirmed)
		s.fxPrepared, s.beginPrepared = false, false
	case "discard_all":
		clear(s.stmts.confirmed)
		clear(s.portals.confirmed)
		clear(s.cursors)
		s.fxPrepared, s.beginPrepared = false, false
	case "declare_cursor":
		if cl.Cursor != "" {
			s.cursors[cl.Cursor] = &sqlCursor{run: r, hold: cl.Hold}
		}
	case "close_cursor":
		delete(s.cursors, cl.Cursor)
	case "close_cursor_all":
		clear(s.cursors)
	}
}
