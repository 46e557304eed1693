package journal

// The write path's statements run on the driver connection itself, inside
// database/sql's Conn.Raw. database/sql costs a few microseconds per call
// (its locks, argument conversion, a Rows or Result to allocate), which was
// most of what a BEGIN, a COMMIT or a head check cost; and go-sqlite3
// resets, binds and steps a statement in one cgo crossing only when it is
// called through its driver interfaces with positional arguments.

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"

	sqlite3 "github.com/mattn/go-sqlite3"
)

// rawConn is the writer's view of its driver connection. Its statements
// are prepared once per connection and live until the connection is
// discarded; sc is set only while a Raw call runs.
type rawConn struct {
	sc    *sqlite3.SQLiteConn
	stmts map[string]driver.Stmt
	args  []driver.NamedValue
	dest  []driver.Value
}

// withRaw runs fn with the driver connection, which database/sql lends
// only for the length of the call.
func (w *writer) withRaw(fn func(rc *rawConn) error) error {
	return w.conn.Raw(func(dc any) error {
		sc, ok := dc.(*sqlite3.SQLiteConn)
		if !ok {
			return fmt.Errorf("driver connection is %T, not sqlite3", dc)
		}
		w.rc.sc = sc
		defer func() { w.rc.sc = nil }()
		return fn(&w.rc)
	})
}

// stmt returns the statement for q, prepared on first use.
func (rc *rawConn) stmt(q string) (driver.Stmt, error) {
	if s, ok := rc.stmts[q]; ok {
		return s, nil
	}
	s, err := rc.sc.Prepare(q)
	if err != nil {
		return nil, fmt.Errorf("prepare %q: %w", q, err)
	}
	if rc.stmts == nil {
		rc.stmts = map[string]driver.Stmt{}
	}
	rc.stmts[q] = s
	return s, nil
}

// bind sets rc.args to vals as positional arguments, the form go-sqlite3
// binds in the same cgo crossing as the step.
func (rc *rawConn) bind(vals ...driver.Value) []driver.NamedValue {
	rc.args = rc.args[:0]
	for i, v := range vals {
		rc.args = append(rc.args, driver.NamedValue{Ordinal: i + 1, Value: v})
	}
	return rc.args
}

// run executes q with args, which the caller built with the ordinals
// 1..n. It goes through Query because go-sqlite3 fuses reset, bind and
// step there (Exec binds each argument in a cgo call of its own); Next
// makes sure the statement ran to its end whatever the driver does
// eagerly.
func (rc *rawConn) run(q string, args []driver.NamedValue) error {
	s, err := rc.stmt(q)
	if err != nil {
		return err
	}
	rows, err := s.(driver.StmtQueryContext).QueryContext(context.Background(), args)
	if err != nil {
		return err
	}
	err = rows.Next(nil)
	if cerr := rows.Close(); errors.Is(err, io.EOF) {
		err = cerr
	} else if err == nil {
		err = fmt.Errorf("%q returned a row", q)
	}
	return err
}

// exec runs q with positional arguments vals.
func (rc *rawConn) exec(q string, vals ...driver.Value) error {
	return rc.run(q, rc.bind(vals...))
}

// queryRow reads the first row of q into rc.dest (ncol columns); found is
// false when there is none. The values are the driver's: int64, []byte
// (a copy), string, nil.
func (rc *rawConn) queryRow(q string, ncol int, vals ...driver.Value) (found bool, err error) {
	s, err := rc.stmt(q)
	if err != nil {
		return false, err
	}
	rows, err := s.(driver.StmtQueryContext).QueryContext(context.Background(), rc.bind(vals...))
	if err != nil {
		return false, err
	}
	rc.dest = append(rc.dest[:0], make([]driver.Value, ncol)...)
	err = rows.Next(rc.dest)
	cerr := rows.Close()
	switch {
	case errors.Is(err, io.EOF):
		return false, cerr
	case err != nil:
		return false, err
	}
	return true, cerr
}

// close finalizes the statements; the connection must not be in use.
func (rc *rawConn) close() {
	for q, s := range rc.stmts {
		s.Close()
		delete(rc.stmts, q)
	}
}
