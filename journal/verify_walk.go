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
	"unsafe"

	sqlite3 "github.com/mattn/go-sqlite3"
)

// sqlWalk is every entry in order, with everything Verify checks of it.
// body, hash, tree, kind and session come as one value with their lengths:
// the driver allocates and copies every column of every row, which was
// much of the walk's cost. octet_length counts bytes whatever the type an
// edit may have given a value, and || keeps them as they are.
const sqlWalk = `SELECT seq, time_ns, octet_length(body), octet_length(hash), octet_length(tree), octet_length(kind),
	ifnull(body, x'') || ifnull(hash, x'') || ifnull(tree, x'') || ifnull(kind, '') || ifnull(session, ''),
	salt, payload FROM entries ORDER BY seq`

// row is one entry as stored. kind and session are the columns' bytes;
// time_ns is kept as the driver gives it, so that a value of another type
// (an edit) is compared as SQLite shows it, not silently converted.
type row struct {
	seq                         int64
	timeNS                      driver.Value
	kind, session               []byte
	body, hash, tree, salt, pay []byte
	computed                    []byte // reused across rows
}

// fill splits the packed columns. A length that does not fit (which only
// an edit of the table's types could make) leaves the rest empty: the
// entry then fails its checks.
func (r *row) fill(dest []driver.Value) {
	r.seq, _ = dest[0].(int64)
	r.timeNS = dest[1]
	packed := blobOf(dest[6])
	take := func(n driver.Value) []byte {
		k, _ := n.(int64)
		k = max(0, min(k, int64(len(packed))))
		b := packed[:k:k]
		packed = packed[k:]
		return b
	}
	r.body, r.hash, r.tree, r.kind = take(dest[2]), take(dest[3]), take(dest[4]), take(dest[5])
	r.session = packed
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
// or number stored there by an edit reads as its text. A string is viewed
// in place, not copied: the walk never writes to what it reads.
func blobOf(v driver.Value) []byte {
	switch x := v.(type) {
	case []byte:
		return x
	case string:
		return unsafe.Slice(unsafe.StringData(x), len(x))
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

// sameText reports whether a column's bytes are the text s.
func sameText(b []byte, s string) bool { return string(b) == s }
