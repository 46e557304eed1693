package journal

// Verify's walk over every entry, stepped on the driver connection:
// go-sqlite3 steps a row and reads all its columns in one cgo crossing
// there, where database/sql would add its own conversion of every column
// of every row.

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"strconv"

	sqlite3 "github.com/mattn/go-sqlite3"
)

// sqlWalk is every entry in order, with everything Verify checks of it.
const sqlWalk = `SELECT seq, time_ns, kind, session, body, hash, tree, salt, payload FROM entries ORDER BY seq`

// row is one entry as stored. The helper columns are kept as the driver
// gives them so that a value of another type (an edit) is compared as
// SQLite would show it, not silently converted.
type row struct {
	seq                         int64
	timeNS, kind, session       driver.Value
	body, hash, tree, salt, pay []byte
	computed                    []byte // reused across rows
	dest                        []driver.Value
}

func (r *row) fill(dest []driver.Value) {
	r.seq, _ = dest[0].(int64)
	r.timeNS, r.kind, r.session = dest[1], dest[2], dest[3]
	r.body, r.hash, r.tree = blobOf(dest[4]), blobOf(dest[5]), blobOf(dest[6])
	r.salt, r.pay = blobOf(dest[7]), blobOf(dest[8])
}

// walkEntries runs fn with a function that reads the next entry (false at
// the end), inside the reader's transaction.
func walkEntries(conn *sql.Conn, fn func(next func(*row) (bool, error)) error) error {
	return conn.Raw(func(dc any) error {
		sc, ok := dc.(*sqlite3.SQLiteConn)
		if !ok {
			return fmt.Errorf("journal: driver connection is %T, not sqlite3", dc)
		}
		st, err := sc.Prepare(sqlWalk)
		if err != nil {
			return fmt.Errorf("journal: read entries: %w", err)
		}
		defer st.Close()
		// No context: a cancellable one makes the driver arm a watcher for
		// every step. The walk checks ctx itself now and then.
		rows, err := st.(driver.StmtQueryContext).QueryContext(context.Background(), nil)
		if err != nil {
			return fmt.Errorf("journal: read entries: %w", err)
		}
		defer rows.Close()
		dest := make([]driver.Value, 9)
		return fn(func(r *row) (bool, error) {
			err := rows.Next(dest)
			if errors.Is(err, io.EOF) {
				return false, nil
			}
			if err != nil {
				return false, err
			}
			r.fill(dest)
			return true, nil
		})
	})
}

// blobOf is v's bytes as SQLite would give them for a BLOB column: a TEXT
// or number stored there by an edit reads as its text.
func blobOf(v driver.Value) []byte {
	switch x := v.(type) {
	case []byte:
		return x
	case string:
		return []byte(x)
	case int64:
		return strconv.AppendInt(nil, x, 10)
	case float64:
		return strconv.AppendFloat(nil, x, 'g', -1, 64)
	}
	return nil
}

// sameInt reports whether a column holds the integer n (as an integer, or
// as the text of one).
func sameInt(v driver.Value, n int64) bool {
	switch x := v.(type) {
	case int64:
		return x == n
	case string, []byte:
		var num [20]byte
		return string(blobOf(x)) == string(strconv.AppendInt(num[:0], n, 10))
	}
	return false
}

// sameText reports whether a column holds the text s (NULL reads as "").
func sameText(v driver.Value, s string) bool {
	switch x := v.(type) {
	case string:
		return x == s
	case []byte:
		return string(x) == s
	case nil:
		return s == ""
	}
	return false
}
