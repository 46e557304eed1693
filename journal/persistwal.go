package journal

import (
	"context"
	"database/sql"
	"fmt"

	sqlite3 "github.com/mattn/go-sqlite3"
)

// keepWALFiles makes the writer's connection leave the -wal and -shm files
// in place when it closes, instead of deleting them after its last
// checkpoint. A reader that may not write the journal's directory (a
// member of the audit group) can open a WAL database read-only only when
// those files exist: it cannot create them, and without them SQLite
// reports "attempt to write a readonly database". They keep the database
// file's owner and mode (0640), so they give that reader nothing to write.
func keepWALFiles(ctx context.Context, c *sql.Conn) error {
	err := c.Raw(func(dc any) error {
		sc, ok := dc.(*sqlite3.SQLiteConn)
		if !ok {
			return fmt.Errorf("driver connection is %T, not sqlite3", dc)
		}
		return sc.SetFileControlInt("main", sqlite3.SQLITE_FCNTL_PERSIST_WAL, 1)
	})
	if err != nil {
		return fmt.Errorf("journal: keep the -wal and -shm files: %w", err)
	}
	return nil
}
