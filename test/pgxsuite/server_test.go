package pgxsuite

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/interlock/interlock/redirector"
	"github.com/interlock/interlock/test/e2e/pgtest"
)

const (
	// host is the server's loopback address, apart from the 127.0.0.2
	// the end-to-end tests use.
	host = "127.0.0.6"
	// dbName is the database pgx's CI creates (ci/setup_test.bash).
	dbName = "pgx_test"
	// role is the role the suites log in as, directly and through
	// interlock. It is an ordinary role (no SUPERUSER, CREATEDB or
	// CREATEROLE) that owns pgx_test; pgx's CI uses superusers, but no test
	// of pgconn or the root package needs one: hstore and ltree are
	// created for it, it may SET log_statement (GRANT SET ON PARAMETER,
	// new in PostgreSQL 15; TestConnPing sets it), and the rest (temporary
	// and ordinary tables, types, domains, large objects, LISTEN/NOTIFY,
	// pg_terminate_backend of its own sessions) an owner of the database
	// may do.
	role         = "pgx_suite"
	rolePassword = "pgx-suite-secret-pw-4e1a"
)

// startServer starts PostgreSQL 15 and prepares pgx_test as
// testsetup/postgresql_setup.sql in pgx's module does: the hstore and ltree
// extensions, the uint64 domain, and the role with special characters in
// its name (it only has to exist).
func startServer(t *testing.T) *pgtest.Server {
	t.Helper()
	srv, err := pgtest.Start(pgtest.Options{Host: host})
	if err != nil {
		t.Fatalf("start PostgreSQL: %v", err)
	}
	t.Cleanup(srv.Stop)
	if out, err := srv.PSQL("postgres",
		fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s'", role, rolePassword),
		fmt.Sprintf("CREATE DATABASE %s OWNER %s", dbName, role),
		fmt.Sprintf("GRANT SET ON PARAMETER log_statement TO %s", role),
	); err != nil {
		t.Fatalf("create role and database: %v: %s", err, out)
	}
	if out, err := srv.PSQL(dbName,
		"CREATE EXTENSION hstore",
		"CREATE EXTENSION ltree",
		"CREATE DOMAIN uint64 AS numeric(20,0)",
		fmt.Sprintf("ALTER DOMAIN uint64 OWNER TO %s", role),
		`CREATE ROLE " tricky, ' } "" \ test user " PASSWORD 'secret'`,
	); err != nil {
		t.Fatalf("prepare %s: %v: %s", dbName, err, out)
	}
	return srv
}

// suiteVars are the PGX_TEST_* variables of a run, as pgx's CI sets them
// for PostgreSQL 15 (.github/workflows/ci.yml), all on the server's own
// address, for the role above. Directly they carry its password and trust
// the server's CA (caFile); through interlock (caFile is interlock's CA)
// they carry no password: interlock holds it. sslmode=prefer is pgx's
// default: TLS with the server directly, TLS with interlock's own
// certificate through interlock.
//
// Not set, so their tests skip in both runs: the unix socket (interlock
// intercepts TCP), md5 and plain password logins (other roles than the one
// interlock holds credentials for), client certificates, OAuth, PgBouncer
// and CockroachDB/CrateDB.
func suiteVars(srv *pgtest.Server, direct bool, caFile string) []string {
	base := fmt.Sprintf("host=%s port=%d user=%s dbname=%s", srv.Host, srv.Port, role, dbName)
	if direct {
		base += " password=" + rolePassword
	}
	verify := fmt.Sprintf(" sslmode=verify-full sslrootcert=%s", caFile)
	return []string{
		"PGX_TEST_DATABASE=" + base + " sslmode=prefer",
		"PGX_TEST_TCP_CONN_STRING=" + base + " sslmode=prefer",
		"PGX_TEST_SCRAM_PASSWORD_CONN_STRING=" + base + " sslmode=prefer channel_binding=disable",
		"PGX_TEST_TLS_CONN_STRING=" + base + verify + " channel_binding=disable",
		"PGX_TEST_SCRAM_PLUS_CONN_STRING=" + base + verify + " channel_binding=require",
	}
}

// interlockSetup is one interlock configuration and where it keeps things.
type interlockSetup struct {
	config string // the config file
	dir    string // state, journal and sockets below it
	caFile string // interlock's CA, which clients verifying TLS must trust
}

// interlockConfig writes a config with one postgres target for the server
// holding the role's password, its state and journal in dir.
func interlockConfig(t *testing.T, srv *pgtest.Server, dir string) interlockSetup {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	pwFile := filepath.Join(dir, "db.password")
	if err := os.WriteFile(pwFile, []byte(rolePassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var rnd [4]byte
	rand.Read(rnd[:])
	pin := "/sys/fs/bpf/interlock-pgxsuite-" + hex.EncodeToString(rnd[:])
	t.Cleanup(func() {
		if _, err := os.Stat(pin); err == nil {
			if err := redirector.DetachPinned(pin); err != nil {
				t.Logf("clean pins %s: %v", pin, err)
			}
		}
	})
	cfg := strings.Join([]string{
		"state_dir: " + filepath.Join(dir, "state"),
		"journal:",
		"  path: " + filepath.Join(dir, "journal.db"),
		"control:",
		"  socket: " + filepath.Join(dir, "run", "ctl.sock"),
		"bpf:",
		"  pin_path: " + pin,
		"log:",
		"  level: warn",
		"  format: text",
		"targets:",
		"  - name: pgx",
		"    protocol: postgres",
		fmt.Sprintf("    address: %q", srv.Addr()),
		"    credentials:",
		"      user: " + role,
		"      password_file: " + pwFile,
		"",
	}, "\n")
	path := filepath.Join(dir, "interlock.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return interlockSetup{config: path, dir: dir, caFile: filepath.Join(dir, "state", "tls", "ca.crt")}
}
