package adversarial

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/interlock/interlock/test/adversarial/rawpg"
)

// Class 5: every watched session logs in as the one role interlock holds,
// so a session can change that role for everyone: its password (then
// interlock's own logins fail), its settings (search_path, role, ... for
// every later session), and it can signal the other sessions' backends.
// A session may signal its own backend and those of the other sessions of
// its own client process (a client cancelling or ending its own
// connections); the backends of another process's sessions, in another
// `interlock run` or in the same one, are refused.
// Passwords a session writes in SQL (CREATE ROLE ... PASSWORD, dblink and
// postgres_fdw connection strings) must not be kept in the journal. After
// each case interlock's own new login must still work (runCase checks it
// for every case).

// roleChanged: the held role's password or settings changed.
func roleChanged(c *caseRun) string {
	pw, settings := c.roleState()
	switch {
	case pw != c.basePW:
		return "the held role's password was changed"
	case settings != c.baseSettings:
		return fmt.Sprintf("the held role's settings changed from %q to %q", c.baseSettings, settings)
	}
	return ""
}

// The victims of the signalling cases: a session of another client
// process under an `interlock run` of its own (another job), one of
// another client process in the case's run, and another session of the
// attacker's own process (see sessionsPerProcess).
const (
	otherJobSession = procOtherJob * sessionsPerProcess
	sameJobSession  = procSameJob * sessionsPerProcess
	sameProcSession = 1
)

// otherBackendGone: the other session's backend was terminated (as noted
// by checkOther right after the attack, while that session was still
// open).
func otherBackendGone(c *caseRun) string {
	if c.vars["other"] == "gone" {
		return fmt.Sprintf("the backend of the other session (session %s, pid %s) was terminated", c.vars["otherSession"], c.vars["otherPID"])
	}
	return ""
}

// checkOther notes whether the other session's backend is still there.
func checkOther(c *caseRun) {
	time.Sleep(100 * time.Millisecond)
	if n := c.sql("SELECT count(*) FROM pg_stat_activity WHERE pid = " + c.vars["otherPID"]); n != "1" {
		c.vars["other"] = "gone"
	}
}

// startOther opens session n, the victim, and notes its backend pid.
func startOther(c *caseRun, n int) string {
	c.connect(n, nil)
	r := c.send(n, q("SELECT pg_backend_pid()"))
	if got := rows(r); len(got) == 1 {
		c.vars["otherSession"] = strconv.Itoa(n)
		c.vars["otherPID"] = got[0]
		return got[0]
	}
	c.t.Fatalf("session %d: pg_backend_pid(): %s", n, summarize(r))
	return ""
}

// secretInJournal: a secret reached the journal's files.
func secretInJournal(secret string) func(c *caseRun) string {
	return func(c *caseRun) string {
		files, _ := filepath.Glob(c.journalPath + "*")
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				continue
			}
			if bytes.Contains(b, []byte(secret)) {
				return fmt.Sprintf("the password literal %q is in the journal file %s", secret, filepath.Base(f))
			}
		}
		return ""
	}
}

func init() {
	add(
		advCase{
			name: "c5-alter-role-password", class: 5, effect: roleChanged, mode: mustRefuse,
			run: func(c *caseRun) { c.send(0, q(c.expand("ALTER ROLE {{role}} PASSWORD 'attacker-pw-1'"))) },
		},
		advCase{
			name: "c5-alter-user-current-user-password", class: 5, effect: roleChanged, mode: mustRefuse,
			run: func(c *caseRun) { c.send(0, q("ALTER USER CURRENT_USER WITH PASSWORD 'attacker-pw-2'")) },
		},
		advCase{
			name: "c5-alter-role-session-user-encrypted-password", class: 5, effect: roleChanged, mode: mustRefuse,
			run: func(c *caseRun) {
				c.send(0, join(extQuery("ALTER ROLE SESSION_USER ENCRYPTED PASSWORD 'md5"+strings.Repeat("0", 32)+"'"), syncMsg())...)
			},
		},
		advCase{
			name: "c5-psql-password-command", class: 5, effect: roleChanged, mode: mustRefuse,
			run: func(c *caseRun) {
				// psql hashes the password (SCRAM) and sends ALTER USER.
				c.psql("\\password\nattacker-pw-3\nattacker-pw-3\n")
			},
		},
		advCase{
			name: "c5-alter-role-set-search-path", class: 5, effect: roleChanged, mode: mustRefuse,
			run: func(c *caseRun) { c.send(0, q(c.expand("ALTER ROLE {{role}} SET search_path = evil, public"))) },
		},
		advCase{
			name: "c5-alter-role-in-database-set-role", class: 5, effect: roleChanged, mode: mustRefuse,
			super: []string{"CREATE ROLE {{role}}_alt", "GRANT {{role}}_alt TO {{role}}"},
			run: func(c *caseRun) {
				c.send(0, q(c.expand("ALTER ROLE CURRENT_USER IN DATABASE {{db}} SET role = '{{role}}_alt'")))
			},
		},
		advCase{
			name: "c5-alter-role-set-standard-conforming-strings", class: 5, effect: roleChanged, mode: mustRefuse,
			run: func(c *caseRun) { c.send(0, q("ALTER ROLE CURRENT_USER SET standard_conforming_strings = off")) },
		},
		advCase{
			name: "c5-alter-role-password-via-do-execute", class: 5, effect: roleChanged, mode: mustRefuse,
			run: func(c *caseRun) {
				c.send(0, q("DO $$BEGIN EXECUTE format('ALTER ROLE %I PASSWORD %L', current_user, 'attacker-pw-4'); END$$"))
			},
		},
		advCase{
			name: "c5-alter-role-set-via-do-execute", class: 5, effect: roleChanged, mode: mustRefuse,
			run: func(c *caseRun) {
				c.send(0, q("DO $$BEGIN EXECUTE format('ALTER ROLE %I SET search_path = evil', current_user); END$$"))
			},
		},
		advCase{
			name: "c5-alter-role-via-function", class: 5, effect: roleChanged, mode: mustRefuse,
			setup: []string{"CREATE FUNCTION setpw() RETURNS void LANGUAGE plpgsql AS $$BEGIN EXECUTE format('ALTER ROLE %I PASSWORD %L', current_user, 'attacker-pw-5'); END$$"},
			run:   func(c *caseRun) { c.send(0, q("SELECT setpw()")) },
		},
		advCase{
			name: "c5-alter-database-connection-limit-zero", class: 5, mode: mustRefuse,
			effect: func(c *caseRun) string {
				if v := c.sql("SELECT datconnlimit FROM pg_database WHERE datname = '{{db}}'"); v != "-1" {
					return "the database's connection limit is now " + v + ": the held role's later logins fail"
				}
				return ""
			},
			run: func(c *caseRun) { c.send(0, q(c.expand("ALTER DATABASE {{db}} CONNECTION LIMIT 0"))) },
		},
		advCase{
			name: "c5-terminate-another-sessions-backend", class: 5, effect: otherBackendGone, mode: mustRefuse,
			run: func(c *caseRun) {
				pid := startOther(c, otherJobSession)
				c.send(0, q("SELECT pg_terminate_backend("+pid+")"))
				checkOther(c)
			},
		},
		advCase{
			name: "c5-terminate-every-other-backend-of-the-role", class: 5, effect: otherBackendGone, mode: mustRefuse,
			run: func(c *caseRun) {
				startOther(c, otherJobSession)
				c.send(0, q("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = current_user AND pid <> pg_backend_pid()"))
				checkOther(c)
			},
		},
		advCase{
			name: "c5-terminate-another-backend-via-do", class: 5, effect: otherBackendGone, mode: mustRefuse,
			run: func(c *caseRun) {
				pid := startOther(c, otherJobSession)
				c.send(0, q("DO $$BEGIN PERFORM pg_terminate_backend("+pid+"); END$$"))
				checkOther(c)
			},
		},
		advCase{
			name: "c5-terminate-another-backend-extended-protocol", class: 5, effect: otherBackendGone, mode: mustRefuse,
			run: func(c *caseRun) {
				pid := startOther(c, otherJobSession)
				c.send(0, join(extQuery("SELECT pg_terminate_backend($1::int)", pid), syncMsg())...)
				checkOther(c)
			},
		},
		advCase{
			name: "c5-cancel-another-sessions-query", class: 5, mode: mustRefuse,
			effect: func(c *caseRun) string {
				if c.vars["canceled"] != "" {
					return "the other session's query was canceled: " + c.vars["canceled"]
				}
				return ""
			},
			run: func(c *caseRun) {
				pid := startOther(c, otherJobSession)
				c.sendOpts(otherJobSession, 0, 5*time.Second, q("SELECT pg_sleep(3) AS victim_query"))
				waitActive(c, pid)
				c.send(0, q("SELECT pg_cancel_backend("+pid+")"))
				r := c.sendOpts(otherJobSession, 1, 15*time.Second)
				for _, e := range r.Errors() {
					if e.Code == "57014" {
						c.vars["canceled"] = e.Message
					}
				}
			},
		},
		advCase{
			name: "c5-terminate-backend-of-another-process-in-the-same-run", class: 5, effect: otherBackendGone, mode: mustRefuse,
			run: func(c *caseRun) {
				pid := startOther(c, sameJobSession)
				c.send(0, q("SELECT pg_terminate_backend("+pid+")"))
				checkOther(c)
			},
		},
		advCase{
			name: "c5-terminate-another-session-of-the-same-process-is-allowed", class: 5, mode: custom,
			run: func(c *caseRun) {
				pid := startOther(c, sameProcSession)
				r := c.send(0, q("SELECT pg_terminate_backend("+pid+")"))
				if len(c.refusals()) > 0 {
					c.t.Errorf("terminating the backend of another session of the same process was refused by a rule: %s", summarize(r))
				} else if got := rows(r); len(got) != 1 || got[0] != "t" {
					c.t.Errorf("pg_terminate_backend(%s) did not answer true: %s", pid, summarize(r))
				}
				checkOther(c)
				if c.vars["other"] != "gone" {
					c.t.Errorf("the other session's backend (pid %s) is still there", pid)
				}
				if r := c.drain(sameProcSession, 5*time.Second); !hasCode(r, "57P01") {
					c.t.Errorf("the other session did not end with 57P01 (terminating connection due to administrator command): %s", summarize(r))
				}
			},
		},
		advCase{
			name: "c5-terminate-own-backend-is-allowed", class: 5, mode: custom,
			run: func(c *caseRun) {
				r := c.send(0, q("SELECT pg_terminate_backend(pg_backend_pid())"))
				if len(c.refusals()) > 0 {
					c.t.Errorf("terminating its own backend was refused by a rule: %s", summarize(r))
				}
				if !r.Closed && !hasCode(r, "57P01") {
					c.t.Errorf("pg_terminate_backend(pg_backend_pid()) did not end the session: %s", summarize(r))
				}
			},
		},
		advCase{
			name: "c5-cancel-own-backend-is-allowed", class: 5, mode: custom,
			run: func(c *caseRun) {
				r := c.send(0, q("SELECT pg_cancel_backend(pg_backend_pid())"))
				if len(c.refusals()) > 0 {
					c.t.Errorf("cancelling its own backend was refused by a rule: %s", summarize(r))
				}
				if !hasCode(r, "57014") {
					c.t.Errorf("pg_cancel_backend(pg_backend_pid()) did not cancel the statement: %s", summarize(r))
				}
				if r := c.send(0, q("SELECT 'still here'")); len(rows(r)) != 1 {
					c.t.Errorf("the session did not go on after cancelling itself: %s", summarize(r))
				}
			},
		},
		advCase{
			name: "c5-create-role-password-literal-not-journaled", class: 5, mode: harmless, noControl: true,
			super:   []string{"ALTER ROLE {{role}} CREATEROLE"},
			secrets: []string{"'role-pw-LITERAL-9a4'"},
			effect:  secretInJournal("role-pw-LITERAL-9a4"),
			run: func(c *caseRun) {
				r := c.send(0, q(c.expand("CREATE ROLE {{role}}_new LOGIN PASSWORD 'role-pw-LITERAL-9a4'")))
				if len(r.Errors()) > 0 {
					c.t.Errorf("CREATE ROLE ... PASSWORD is allowed by this policy, but: %s", summarize(r))
				}
			},
			check: func(c *caseRun) {
				if c.sql("SELECT count(*) FROM pg_roles WHERE rolname = '{{role}}_new'") != "1" {
					c.t.Errorf("the allowed CREATE ROLE did not create the role")
				}
			},
		},
		advCase{
			name: "c5-password-literal-in-extended-protocol-not-journaled", class: 5, mode: harmless, noControl: true,
			super:   []string{"ALTER ROLE {{role}} CREATEROLE"},
			secrets: []string{"'ext-pw-LITERAL-3b8'"},
			effect:  secretInJournal("ext-pw-LITERAL-3b8"),
			run: func(c *caseRun) {
				c.send(0, join(extQuery(c.expand("CREATE ROLE {{role}}_ext PASSWORD 'ext-pw-LITERAL-3b8'")), syncMsg())...)
				c.send(0, q(c.expand("ALTER ROLE {{role}}_ext PASSWORD 'ext-pw-LITERAL-3b8' VALID UNTIL 'infinity'")))
			},
		},
		advCase{
			name: "c5-password-literal-in-do-block-not-journaled", class: 5, mode: harmless, noControl: true,
			super:   []string{"ALTER ROLE {{role}} CREATEROLE"},
			secrets: []string{"$$BEGIN EXECUTE 'CREATE ROLE {{role}}_do PASSWORD ''do-pw-LITERAL-6c1'''; END$$"},
			effect:  secretInJournal("do-pw-LITERAL-6c1"),
			run: func(c *caseRun) {
				c.send(0, q(c.expand("DO $$BEGIN EXECUTE 'CREATE ROLE {{role}}_do PASSWORD ''do-pw-LITERAL-6c1'''; END$$")))
			},
		},
		advCase{
			name: "c5-dblink-connection-string-password-not-journaled", class: 5, mode: harmless, noControl: true, needs: []string{"dblink"},
			super:   []string{"CREATE ROLE {{role}}_remote LOGIN PASSWORD 'remote-pw-LITERAL-5d1'"},
			secrets: []string{"'host={{host}} port={{port}} dbname={{db}} user={{role}}_remote password=remote-pw-LITERAL-5d1'"},
			effect:  secretInJournal("remote-pw-LITERAL-5d1"),
			run: func(c *caseRun) {
				r := c.send(0, q(c.expand("SELECT * FROM dblink('host={{host}} port={{port}} dbname={{db}} user={{role}}_remote password=remote-pw-LITERAL-5d1', 'SELECT 42') AS t(x int)")))
				if got := rows(r); len(got) != 1 || got[0] != "42" {
					c.t.Logf("dblink query: %s", summarize(r))
				}
			},
		},
		advCase{
			name: "c5-postgres-fdw-user-mapping-password-not-journaled", class: 5, mode: harmless, noControl: true, needs: []string{"postgres_fdw"},
			super: []string{
				"CREATE SERVER {{role}}_srv FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host '{{host}}', port '{{port}}', dbname '{{db}}')",
				"GRANT USAGE ON FOREIGN SERVER {{role}}_srv TO {{role}}",
			},
			secrets: []string{"'fdw-pw-LITERAL-7e2'", "'fdw-pw-LITERAL-8f3'"},
			effect: func(c *caseRun) string {
				if e := secretInJournal("fdw-pw-LITERAL-7e2")(c); e != "" {
					return e
				}
				return secretInJournal("fdw-pw-LITERAL-8f3")(c)
			},
			run: func(c *caseRun) {
				c.send(0, q(c.expand("CREATE USER MAPPING FOR CURRENT_USER SERVER {{role}}_srv OPTIONS (user '{{role}}', password 'fdw-pw-LITERAL-7e2')")))
				c.send(0, q(c.expand("ALTER USER MAPPING FOR CURRENT_USER SERVER {{role}}_srv OPTIONS (SET password 'fdw-pw-LITERAL-8f3')")))
			},
		},
	)
}

// waitActive waits until the backend runs a statement.
func waitActive(c *caseRun, pid string) {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c.sql("SELECT state FROM pg_stat_activity WHERE pid = "+pid) == "active" {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Logf("backend %s never became active", pid)
}

func hasCode(r rawpg.Reply, code string) bool {
	for _, e := range r.Errors() {
		if e.Code == code {
			return true
		}
	}
	return false
}
