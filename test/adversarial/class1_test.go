package adversarial

import "fmt"

// Class 1: the proxy's model of the session built from what the client
// sent rather than what the server confirmed. The server keeps a
// prepared statement, an unnamed statement or a portal the client's later
// messages seemed to replace (the replacing message failed, or came after
// an error and before Sync, which the server skips), so a Bind or EXECUTE
// that interlock would judge by the harmless text runs the forbidden one.

const policyDenyDeleteDrop = `
  rules:
    - name: no-delete-orders
      match: {operation: {kinds: [delete], tables: [orders]}}
      action: deny
    - name: no-drop-table
      match: {operation: {kinds: [drop_table]}}
      action: deny
`

var class1Rules = []string{"no-delete-orders", "no-drop-table"}

// ordersIntact: orders still has its 5 rows.
func ordersIntact(c *caseRun) string {
	return rowsIntact(c, "orders", 5)
}

func rowsIntact(c *caseRun, table string, want int) string {
	got := c.sql("SELECT count(*) FROM " + table)
	if got != fmt.Sprint(want) {
		return fmt.Sprintf("%s has %s rows (was %d)", table, short(got, 200), want)
	}
	return ""
}

// relExists says whether a relation exists (as the superuser sees it).
func relGone(c *caseRun, rel string) string {
	if got := c.sql("SELECT to_regclass('" + rel + "') IS NOT NULL"); got != "t" {
		return rel + " was dropped"
	}
	return ""
}

func victimIntact(c *caseRun) string { return relGone(c, "public.victim") }

func init() {
	add(
		advCase{
			name: "c1-parse-existing-name-then-bind", class: 1, policy: policyDenyDeleteDrop, rules: class1Rules, effect: ordersIntact,
			run: func(c *caseRun) {
				c.send(0, parse("s1", "DELETE FROM orders"), syncMsg())
				c.send(0, parse("s1", "SELECT 1"), syncMsg()) // 42P05: s1 exists; the server keeps the DELETE
				c.send(0, bind("", "s1"), describeP(""), execute("", 0), syncMsg())
			},
		},
		advCase{
			name: "c1-parse-existing-name-same-pipeline", class: 1, policy: policyDenyDeleteDrop, rules: class1Rules, effect: ordersIntact,
			run: func(c *caseRun) {
				c.send(0, parse("s1", "DELETE FROM orders"), syncMsg())
				// The Parse fails; the Bind and Execute behind it are skipped.
				c.send(0, parse("s1", "SELECT 1"), bind("", "s1"), execute("", 0), syncMsg())
				c.send(0, bind("", "s1"), execute("", 0), syncMsg())
			},
		},
		advCase{
			name: "c1-close-skipped-after-parse-error", class: 1, policy: policyDenyDeleteDrop, rules: class1Rules, effect: ordersIntact,
			run: func(c *caseRun) {
				c.send(0, parse("s2", "DELETE FROM orders"), syncMsg())
				// A syntax error, then a Close and a re-Parse of s2 the
				// server skips until Sync.
				c.send(0, parse("bad", "SELEC 1"), closeS("s2"), parse("s2", "SELECT 2"), syncMsg())
				c.send(0, bind("", "s2"), execute("", 0), syncMsg())
			},
		},
		advCase{
			name: "c1-close-skipped-after-bind-error", class: 1, policy: policyDenyDeleteDrop, rules: class1Rules, effect: ordersIntact,
			run: func(c *caseRun) {
				c.send(0, parse("p1", "SELECT $1::int"), parse("s4", "DELETE FROM orders WHERE id > 0"), syncMsg())
				// Bind with no parameter for $1: the server refuses the
				// Bind and skips the Close and the Parse behind it.
				c.send(0, bind("", "p1"), closeS("s4"), parse("s4", "SELECT 4"), syncMsg())
				c.send(0, bind("", "s4"), execute("", 0), syncMsg())
			},
		},
		advCase{
			name: "c1-unnamed-parse-skipped", class: 1, policy: policyDenyDeleteDrop, rules: class1Rules, effect: ordersIntact,
			run: func(c *caseRun) {
				c.send(0, parse("", "DELETE FROM orders"), syncMsg())
				// The named Parse fails; the unnamed Parse behind it is
				// skipped, so the unnamed statement is still the DELETE.
				c.send(0, parse("bad", "SELEC"), parse("", "SELECT 5"), syncMsg())
				c.send(0, bind("", ""), execute("", 0), syncMsg())
			},
		},
		advCase{
			name: "c1-sql-prepare-existing-pipelined-execute", class: 1, policy: policyDenyDeleteDrop, rules: class1Rules, effect: ordersIntact,
			run: func(c *caseRun) {
				c.send(0, parse("p", "DELETE FROM orders"), syncMsg())
				// Two Query messages in one write: the PREPARE fails (p
				// exists), the EXECUTE runs the DELETE.
				c.send(0, q("PREPARE p AS SELECT 1"), q("EXECUTE p"))
			},
		},
		advCase{
			name: "c1-sql-prepare-existing-same-string", class: 1, policy: policyDenyDeleteDrop, rules: class1Rules, effect: ordersIntact, mode: harmless, noControl: true,
			run: func(c *caseRun) {
				c.send(0, parse("p", "DELETE FROM orders"), syncMsg())
				// One query string: the failed PREPARE aborts the rest, so
				// the EXECUTE never runs; the journal must say so.
				c.send(0, q("PREPARE p AS SELECT 1; EXECUTE p"))
			},
		},
		advCase{
			name: "c1-deallocate-fails-in-aborted-transaction", class: 1, policy: policyDenyDeleteDrop, rules: class1Rules, effect: ordersIntact,
			run: func(c *caseRun) {
				c.send(0, parse("d1", "DELETE FROM orders"), syncMsg())
				c.send(0, q("BEGIN"), q("SELECT 1/0"), q("DEALLOCATE d1"), q("ROLLBACK"))
				c.send(0, bind("", "d1"), execute("", 0), syncMsg())
			},
		},
		advCase{
			name: "c1-deallocate-skipped-in-failed-query", class: 1, policy: policyDenyDeleteDrop, rules: class1Rules, effect: ordersIntact,
			run: func(c *caseRun) {
				c.send(0, parse("d2", "DELETE FROM orders"), syncMsg())
				c.send(0, q("SELECT 1/0; DEALLOCATE d2"))
				c.send(0, parse("d2", "SELECT 2"), syncMsg())
				c.send(0, bind("", "d2"), execute("", 0), syncMsg())
			},
		},
		advCase{
			name: "c1-sql-deallocate-then-prepare-existing", class: 1, policy: policyDenyDeleteDrop, rules: class1Rules, effect: ordersIntact,
			run: func(c *caseRun) {
				c.send(0, parse("d3", "DELETE FROM orders"), syncMsg())
				// DEALLOCATE of a name that does not exist fails; the
				// PREPARE of d3 fails too; EXECUTE runs the DELETE.
				c.send(0, q("DEALLOCATE d3x"), q("PREPARE d3 AS SELECT 3"), q("EXECUTE d3"))
			},
		},
		advCase{
			name: "c1-prepared-statement-survives-rollback", class: 1, policy: policyDenyDeleteDrop, rules: class1Rules, effect: ordersIntact,
			run: func(c *caseRun) {
				c.send(0, q("BEGIN"))
				c.send(0, parse("r1", "DELETE FROM orders"), syncMsg())
				// Prepared statements are not transactional.
				c.send(0, q("ROLLBACK"))
				c.send(0, parse("r1", "SELECT 1"), syncMsg())
				c.send(0, bind("", "r1"), execute("", 0), syncMsg())
			},
		},
		advCase{
			name: "c1-discard-all-fails-in-query-string", class: 1, policy: policyDenyDeleteDrop, rules: class1Rules, effect: ordersIntact,
			run: func(c *caseRun) {
				c.send(0, parse("da", "DELETE FROM orders"), syncMsg())
				// DISCARD ALL cannot run inside the implicit transaction
				// of a multi-statement query: nothing is discarded.
				c.send(0, q("SELECT 1; DISCARD ALL"))
				c.send(0, parse("da", "SELECT 1"), syncMsg())
				c.send(0, bind("", "da"), execute("", 0), syncMsg())
			},
		},
		advCase{
			name: "c1-portal-reused-across-syncs", class: 1, policy: policyDenyDeleteDrop, rules: class1Rules, effect: ordersIntact,
			run: func(c *caseRun) {
				c.send(0, parse("x", "DELETE FROM orders RETURNING id"), syncMsg())
				c.send(0, parse("x", "SELECT 1"), syncMsg())
				c.send(0, q("BEGIN"))
				c.send(0, bind("p", "x"), execute("p", 1), syncMsg())
				c.send(0, execute("p", 0), syncMsg())
				c.send(0, q("COMMIT"))
			},
		},
		advCase{
			name: "c1-sql-prepare-then-protocol-bind", class: 1, policy: policyDenyDeleteDrop, rules: class1Rules, effect: ordersIntact,
			run: func(c *caseRun) {
				c.send(0, q("PREPARE sp AS DELETE FROM orders"))
				c.send(0, bind("", "sp"), execute("", 0), syncMsg())
			},
		},
		advCase{
			name: "c1-protocol-parse-then-sql-execute", class: 1, policy: policyDenyDeleteDrop, rules: class1Rules, effect: ordersIntact,
			run: func(c *caseRun) {
				c.send(0, parse("pe", "DELETE FROM orders"), syncMsg())
				c.send(0, q("EXECUTE pe"))
			},
		},
		advCase{
			name: "c1-sql-execute-folds-identifier-case", class: 1, policy: policyDenyDeleteDrop, rules: class1Rules, effect: ordersIntact,
			run: func(c *caseRun) {
				// EXECUTE X runs x: SQL folds unquoted names to lower case;
				// protocol names are taken as they are.
				c.send(0, parse("x", "DELETE FROM orders"), parse("X", "SELECT 1"), syncMsg())
				c.send(0, q("EXECUTE X"))
			},
		},
		advCase{
			name: "c1-sql-execute-quoted-name", class: 1, policy: policyDenyDeleteDrop, rules: class1Rules, effect: ordersIntact,
			run: func(c *caseRun) {
				c.send(0, parse("Y", "DELETE FROM orders"), parse("y", "SELECT 1"), syncMsg())
				c.send(0, q(`EXECUTE "Y"`))
			},
		},
		advCase{
			name: "c1-portal-close-and-bind-skipped-after-error", class: 1, effect: tokenLeaked, mode: harmless, rules: []string{"mask-token"},
			setup:  secretsSetup,
			policy: policyMaskToken,
			run: func(c *caseRun) {
				c.send(0, q("DECLARE p CURSOR WITH HOLD FOR SELECT token FROM secrets"))
				c.send(0, parse("sb", "SELECT 'plain'::text AS token"), syncMsg())
				// The Close and the re-Bind of p are skipped: the portal p
				// still reads the tokens.
				c.send(0, parse("bad", "SELEC"), closeP("p"), bind("p", "sb"), syncMsg())
				c.send(0, describeP("p"), execute("p", 0), syncMsg())
			},
		},
		advCase{
			name: "c1-sql-cursor-executed-over-protocol", class: 1, effect: tokenLeaked, mode: harmless, rules: []string{"mask-token"},
			setup:  secretsSetup,
			policy: policyMaskToken,
			run: func(c *caseRun) {
				c.send(0, q("BEGIN"))
				c.send(0, q("DECLARE c CURSOR FOR SELECT id, token FROM secrets"))
				// The portal of a SQL cursor, run with a protocol Execute
				// and no Bind or Describe interlock could have seen.
				c.send(0, execute("c", 0), syncMsg())
				c.send(0, q("COMMIT"))
			},
		},
		advCase{
			name: "c1-sql-cursor-described-and-fetched-over-protocol", class: 1, effect: tokenLeaked, mode: harmless, rules: []string{"mask-token"},
			setup:  secretsSetup,
			policy: policyMaskToken,
			run: func(c *caseRun) {
				c.send(0, q("DECLARE c CURSOR WITH HOLD FOR SELECT token, id FROM secrets"))
				c.send(0, describeP("c"), execute("c", 1), syncMsg())
				c.send(0, execute("c", 0), syncMsg())
			},
		},
	)
}

var secretsSetup = []string{
	"CREATE TABLE secrets(id int, token text)",
	"INSERT INTO secrets VALUES (1, 'tok-SECRET-one'), (2, 'tok-SECRET-two')",
}

const policyMaskToken = `
  rules:
    - name: mask-token
      match: {targets: [db]}
      action: mask
      mask: {columns: [secrets.token]}
`

// tokenLeaked: an unmasked token reached the client.
var tokenLeaked = leaked("tok-SECRET")
