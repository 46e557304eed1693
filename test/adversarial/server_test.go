package adversarial

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/interlock/interlock/test/e2e/pgtest"
	"github.com/interlock/interlock/test/testenv"
)

// The PostgreSQL server the cases run against, its log, and queries as
// the superuser.

// The server, started once for the package.
var (
	srvOnce sync.Once
	srv     *pgtest.Server
	srvErr  error
	psqlBin string
)

// logPrefix marks each server log line with the backend's pid.
const logPrefix = "@@%p@@ "

func server(t *testing.T) *pgtest.Server {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.Require(t, "PostgreSQL 15", pgtest.Available())
	srvOnce.Do(func() {
		srv, srvErr = pgtest.Start(pgtest.Options{Conf: []string{
			"log_statement = 'all'",
			"log_line_prefix = '" + logPrefix + "'",
			"log_min_error_statement = error",
			"lc_messages = 'C'",
			"max_connections = 300",
		}})
		if srvErr == nil {
			psqlBin = filepath.Join(srv.BinDir, "psql")
			// Extensions some cases need, installed by the superuser in
			// template1 so that every case database has them available.
			if _, err := os.Stat("/usr/share/postgresql/15/extension/dblink.control"); err == nil {
				if out, err := srv.PSQL("template1", "CREATE EXTENSION IF NOT EXISTS dblink", "CREATE EXTENSION IF NOT EXISTS postgres_fdw"); err != nil {
					srvErr = fmt.Errorf("create extensions: %v: %s", err, out)
				}
			}
		}
	})
	if srvErr != nil {
		t.Fatalf("start PostgreSQL: %v", srvErr)
	}
	return srv
}

func serverLogPath() string { return filepath.Join(srv.Dir, "server.log") }

func logSize() int64 {
	fi, err := os.Stat(serverLogPath())
	if err != nil {
		return 0
	}
	return fi.Size()
}

// sql runs statements as the superuser in the case's database and returns
// the output (unaligned, tuples only).
func (c *caseRun) sql(stmts ...string) string {
	c.t.Helper()
	for i := range stmts {
		stmts[i] = c.expand(stmts[i])
	}
	out, err := srv.PSQL(c.db, stmts...)
	if err != nil {
		return "ERROR: " + out
	}
	return out
}
