package adversarial

import (
	"fmt"
	"strings"

	"github.com/interlock/interlock/test/adversarial/rawpg"
)

// Class 7: the journal is exact. Statements in a non-UTF-8 client encoding
// are recorded byte for byte (sql_b64); pg.result carries the server's
// CommandComplete tag and row count; a long session mixing every way of
// running a statement is matched statement by statement against the
// server's log (runCase applies that oracle to every case); a Bind with
// 40,000 parameters goes through and is journaled.

var notesSetup = []string{"CREATE TABLE notes(t text)"}

// exactBytes: a pg.statement records these bytes exactly.
func exactBytes(c *caseRun, want []byte) {
	for _, s := range c.statements() {
		if s.text() == string(want) {
			return
		}
	}
	var got []string
	for _, s := range c.statements() {
		got = append(got, fmt.Sprintf("sql=%q sql_b64=%q", s.SQL, s.SQLB64))
	}
	c.t.Errorf("NOT LOSSLESS: no pg.statement records the bytes %q exactly (sql, or sql_b64 for non-UTF-8); have %v", want, got)
}

// wantResult: the statement's pg.result has this tag and row count.
func wantResult(c *caseRun, sql, tag string, rows int64) {
	recs := c.find(sql)
	if len(recs) != 1 {
		c.t.Errorf("want one pg.statement %q, have %d", sql, len(recs))
		return
	}
	r := recs[0].Res
	if r == nil || r.Tag != tag || r.Rows != rows {
		c.t.Errorf("pg.result of %q: %+v; want tag %q and %d rows", sql, r, tag, rows)
	}
}

var tagStmts = []struct {
	sql, tag string
	rows     int64
}{
	{"INSERT INTO t7 SELECT g, 'v' FROM generate_series(1, 3) g", "INSERT 0 3", 3},
	{"UPDATE t7 SET v = 'w' WHERE id <= 2", "UPDATE 2", 2},
	{"DELETE FROM t7 WHERE id = 1", "DELETE 1", 1},
	{"MERGE INTO t7 USING (VALUES (2), (3), (4)) s(id) ON t7.id = s.id WHEN MATCHED THEN UPDATE SET v = 'm' WHEN NOT MATCHED THEN INSERT VALUES (s.id, 'n')", "MERGE 3", 3},
	{"SELECT * FROM t7 ORDER BY id", "SELECT 3", 3},
}

func checkTags(c *caseRun) {
	for _, s := range tagStmts {
		wantResult(c, s.sql, s.tag, s.rows)
	}
}

func init() {
	latin1 := map[string]string{"client_encoding": "LATIN1"}
	add(
		advCase{
			name: "c7-latin1-simple-query-recorded-losslessly", class: 7, mode: custom, setup: notesSetup, startup: latin1,
			run: func(c *caseRun) {
				r := c.send(0, qraw([]byte("INSERT INTO notes VALUES ('caf\xe9 cr\xe8me')")))
				if len(r.Errors()) > 0 {
					c.t.Errorf("LATIN1 insert: %s", summarize(r))
				}
			},
			check: func(c *caseRun) {
				if got := c.sql("SELECT t FROM notes"); got != "café crème" {
					c.t.Errorf("the server stored %q", got)
				}
				exactBytes(c, []byte("INSERT INTO notes VALUES ('caf\xe9 cr\xe8me')"))
			},
		},
		advCase{
			name: "c7-latin1-extended-recorded-losslessly", class: 7, mode: custom, setup: notesSetup, startup: latin1,
			run: func(c *caseRun) {
				b := rawpg.Msg{T: "B", BinParams: [][]byte{[]byte("\xe9t\xe9")}}
				c.send(0, parseRaw("", []byte("INSERT INTO notes VALUES ('\xfcber ' || $1)")), b, execute("", 0), syncMsg())
			},
			check: func(c *caseRun) {
				if got := c.sql("SELECT t FROM notes"); got != "über été" {
					c.t.Errorf("the server stored %q", got)
				}
				exactBytes(c, []byte("INSERT INTO notes VALUES ('\xfcber ' || $1)"))
			},
		},
		advCase{
			name: "c7-latin1-multi-statement-recorded-losslessly", class: 7, mode: custom, setup: notesSetup, startup: latin1,
			run: func(c *caseRun) {
				c.send(0, qraw([]byte("INSERT INTO notes VALUES ('\xe0 la'); INSERT INTO notes VALUES ('ma\xf1ana')")))
			},
			check: func(c *caseRun) {
				// One record per statement, or (when interlock cannot
				// split the text) one for the whole string: lossless
				// either way.
				whole := []byte("INSERT INTO notes VALUES ('\xe0 la'); INSERT INTO notes VALUES ('ma\xf1ana')")
				for _, s := range c.statements() {
					if s.text() == string(whole) {
						c.t.Logf("journaled as one record for the whole query string")
						return
					}
				}
				exactBytes(c, []byte("INSERT INTO notes VALUES ('\xe0 la')"))
				exactBytes(c, []byte("INSERT INTO notes VALUES ('ma\xf1ana')"))
			},
		},
		advCase{
			name: "c7-result-tags-simple-protocol", class: 7, mode: custom, setup: []string{"CREATE TABLE t7(id int PRIMARY KEY, v text)"},
			run: func(c *caseRun) {
				for _, s := range tagStmts {
					c.send(0, q(s.sql))
				}
			},
			check: checkTags,
		},
		advCase{
			name: "c7-result-tags-extended-protocol", class: 7, mode: custom, setup: []string{"CREATE TABLE t7(id int PRIMARY KEY, v text)"},
			run: func(c *caseRun) {
				var msgs []rawpg.Msg
				for _, s := range tagStmts {
					msgs = append(msgs, extQuery(s.sql)...)
				}
				c.send(0, append(msgs, syncMsg())...)
			},
			check: checkTags,
		},
		advCase{
			name: "c7-result-tags-one-query-string", class: 7, mode: custom, setup: []string{"CREATE TABLE t7(id int PRIMARY KEY, v text)"},
			run: func(c *caseRun) {
				var parts []string
				for _, s := range tagStmts {
					parts = append(parts, s.sql)
				}
				c.send(0, q(strings.Join(parts, "; ")))
			},
			check: checkTags,
		},
		advCase{
			name: "c7-copy-from-stdin-pipelined-row-count", class: 7, mode: custom, setup: notesSetup,
			run: func(c *caseRun) {
				// The COPY data right behind the Query, in the same write.
				c.send(0, q("COPY notes FROM STDIN"), rawpg.Msg{T: "d", Data: []byte("a\n")}, rawpg.Msg{T: "d", Data: []byte("b\nc\n")}, rawpg.Msg{T: "c"})
			},
			check: func(c *caseRun) { wantResult(c, "COPY notes FROM STDIN", "COPY 3", 3) },
		},
		advCase{
			name: "c7-copy-from-stdin-after-copy-in-response", class: 7, mode: custom, setup: notesSetup,
			run: func(c *caseRun) {
				// As psql does: the data follows the CopyInResponse.
				c.send(0, q("COPY notes FROM STDIN"), rawpg.Msg{T: "d", Data: []byte("a\nb\n"), OnCopyIn: true}, rawpg.Msg{T: "d", Data: []byte("c\n")}, rawpg.Msg{T: "c"})
			},
			check: func(c *caseRun) { wantResult(c, "COPY notes FROM STDIN", "COPY 3", 3) },
		},
		advCase{
			name: "c7-portal-suspended-and-run-on-is-one-statement", class: 7, mode: custom,
			run: func(c *caseRun) {
				c.send(0, parse("", "SELECT g FROM generate_series(1, 5) g"), bind("", ""), execute("", 2), execute("", 2), execute("", 0), syncMsg())
			},
			check: func(c *caseRun) {
				if recs := c.find("SELECT g FROM generate_series(1, 5) g"); len(recs) != 1 {
					c.t.Errorf("a portal run in three Executes: %d pg.statement entries, want 1", len(recs))
				}
			},
		},
		advCase{
			name: "c7-sql-execute-records-what-was-prepared", class: 7, mode: custom,
			run: func(c *caseRun) {
				c.send(0, q("PREPARE p7(int) AS SELECT $1 + 1"))
				c.send(0, q("EXECUTE p7(41)"))
			},
			check: func(c *caseRun) {
				recs := c.find("EXECUTE p7(41)")
				if len(recs) != 1 || !strings.Contains(recs[0].prepared(), "SELECT $1 + 1") {
					c.t.Errorf("EXECUTE p7(41): want prepared_sql naming SELECT $1 + 1; got %+v", recs)
				}
			},
		},
		advCase{
			name: "c7-comments-and-whitespace-between-statements", class: 7, mode: custom,
			run: func(c *caseRun) {
				c.send(0, q("/* lead */ SELECT 1 ;\n-- between\n  SELECT 2;;; SELECT /* mid */ 3\n;\t"))
			},
		},
		advCase{
			name: "c7-one-mib-statement-recorded-exactly", class: 7, mode: custom, setup: notesSetup,
			run: func(c *caseRun) {
				c.send(0, q("INSERT INTO notes VALUES ('"+strings.Repeat("x", 1<<20)+"')"))
			},
			check: func(c *caseRun) {
				want := "INSERT INTO notes VALUES ('" + strings.Repeat("x", 1<<20) + "')"
				if len(c.find(want)) != 1 {
					c.t.Errorf("the 1 MiB statement is not journaled exactly")
				}
			},
		},
		advCase{
			name: "c7-bind-with-40000-parameters", class: 7, mode: custom, setup: []string{"CREATE TABLE big(n int)"},
			run: func(c *caseRun) {
				sql := bigInsert(40000)
				types := make([]uint32, 40000)
				for i := range types {
					types[i] = 23
				}
				r := c.sendOpts(0, -1, 60e9, rawpg.Msg{T: "P", SQL: sql, Types: types}, rawpg.Msg{T: "B", GenParams: 40000}, execute("", 0), syncMsg())
				if t := tags(r); len(t) != 1 || t[0] != "INSERT 0 40000" {
					c.t.Errorf("the 40,000-parameter INSERT: %s", summarize(r))
				}
			},
			check: func(c *caseRun) {
				if n := c.sql("SELECT count(*) FROM big"); n != "40000" {
					c.t.Errorf("big has %s rows, want 40000", n)
				}
				recs := c.find(bigInsert(40000))
				if len(recs) != 1 {
					c.t.Errorf("the 40,000-parameter statement is not journaled exactly (%d records)", len(recs))
					return
				}
				if len(recs[0].Params) != 40000 {
					c.t.Logf("the record holds %d of the 40,000 parameters", len(recs[0].Params))
				}
				if recs[0].Res == nil || recs[0].Res.Rows != 40000 {
					c.t.Errorf("pg.result of the 40,000-parameter INSERT: %+v", recs[0].Res)
				}
			},
		},
		advCase{
			name: "c7-client-statement-wearing-interlocks-marker", class: 7, policy: policyDenyDeleteDrop, rules: class1Rules, mode: mustRefuse, effect: ordersIntact,
			run: func(c *caseRun) {
				// Interlock's own statements begin with this comment; a
				// client's must still be judged and journaled as the
				// client's.
				c.send(0, q("/* interlock: maintenance */ DELETE FROM orders WHERE id = 1"))
				c.send(0, join(extQuery("/* interlock: effects */ DELETE FROM orders WHERE id = 2"), syncMsg())...)
			},
			check: func(c *caseRun) {
				for _, sql := range []string{"/* interlock: maintenance */ DELETE FROM orders WHERE id = 1", "/* interlock: effects */ DELETE FROM orders WHERE id = 2"} {
					if len(c.find(sql)) != 1 {
						c.t.Errorf("the client's statement %q is not journaled as one", sql)
					}
				}
			},
		},
		advCase{
			name: "c7-client-query-carrying-interlocks-suffix", class: 7, policy: policyDenyDeleteDrop, rules: class1Rules, mode: mustRefuse, effect: ordersIntact,
			run: func(c *caseRun) {
				c.send(0, q("SELECT 1\n;/* interlock: check */ DELETE FROM orders WHERE id = 3"))
			},
			check: func(c *caseRun) {
				if len(c.find("/* interlock: check */ DELETE FROM orders WHERE id = 3"))+len(c.find("DELETE FROM orders WHERE id = 3")) == 0 {
					c.t.Errorf("the DELETE the client appended after interlock's marker is not journaled")
				}
			},
		},
		advCase{
			name: "c7-long-mixed-session", class: 7, mode: custom,
			setup: []string{"CREATE TABLE m(id int PRIMARY KEY, v text)", "CREATE FUNCTION bump(int) RETURNS int LANGUAGE sql AS $$UPDATE m SET v = v || '+' WHERE id = $1; SELECT $1$$"},
			run:   longSession,
		},
	)
}

func bigInsert(n int) string {
	var b strings.Builder
	b.WriteString("INSERT INTO big SELECT unnest(ARRAY[")
	for i := 1; i <= n; i++ {
		if i > 1 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "$%d", i)
	}
	b.WriteString("]::int[])")
	return b.String()
}

// longSession runs every way of running a statement, errors included.
func longSession(c *caseRun) {
	for i := 1; i <= 20; i++ {
		c.send(0, q(fmt.Sprintf("INSERT INTO m VALUES (%d, 'v%d')", i, i)))
	}
	for i := 0; i < 10; i++ {
		c.send(0, q(fmt.Sprintf("UPDATE m SET v = v || 'u' WHERE id = %d; SELECT v FROM m WHERE id = %d; SELECT count(*) FROM m", i+1, i+1)))
	}
	c.send(0, parse("upd", "UPDATE m SET v = $2 WHERE id = $1"), parse("sel", "SELECT v FROM m WHERE id = $1"), syncMsg())
	for i := 1; i <= 15; i++ {
		c.send(0, bind("", "upd", fmt.Sprint(i), fmt.Sprintf("x%d", i)), execute("", 0), bind("", "sel", fmt.Sprint(i)), describeP(""), execute("", 0), syncMsg())
	}
	for i := 0; i < 10; i++ {
		c.send(0, join(extQuery("SELECT bump($1::int)", fmt.Sprint(i+1)), syncMsg())...)
	}
	c.send(0, q("PREPARE pm(int) AS SELECT v FROM m WHERE id = $1"))
	for i := 1; i <= 5; i++ {
		c.send(0, q(fmt.Sprintf("EXECUTE pm(%d)", i)))
	}
	c.send(0, q("DEALLOCATE pm"))
	c.send(0, q("BEGIN"), q("SAVEPOINT s1"), q("UPDATE m SET v = 'rolled' WHERE id = 1"), q("ROLLBACK TO SAVEPOINT s1"), q("DECLARE cur CURSOR FOR SELECT id FROM m ORDER BY id"), q("FETCH 3 FROM cur"), q("FETCH 2 FROM cur"), q("CLOSE cur"), q("COMMIT"))
	c.send(0, q("SELECT 1/0"))
	c.send(0, q("SELECT 1; SELECT 1/0; SELECT 3"))
	c.send(0, join(extQuery("SELECT 10"), extQuery("INSERT INTO m VALUES (1, 'dup')"), extQuery("SELECT 12"), syncMsg())...)
	c.send(0, q("COPY m TO STDOUT"))
	c.send(0, q("SET work_mem = '8MB'"), q("SHOW work_mem"), q("RESET work_mem"))
	c.send(0, q("DO $$BEGIN PERFORM 1; END$$"))
	c.send(0, q(";"))
	c.send(0, q(""))
	c.send(0, q("BEGIN; INSERT INTO m VALUES (200, 'tx'); COMMIT"))
	c.send(0, q("WITH w AS (UPDATE m SET v = 'cte' WHERE id = 2 RETURNING id) SELECT * FROM w"))
	c.send(0, q("SELECT v FROM m WHERE v LIKE E'%\\\\%' OR v = $$dollar$$ OR v = 'it''s'"))
	c.send(0, q("SELECT 'multi\nline\n\tstatement' AS x"))
	c.send(0, q("DELETE FROM m WHERE id >= 200"))
	c.send(0, q("SELECT count(*) FROM m"))
	// Last, as a hang here must not hide the rest.
	c.send(0, q("COPY m (id, v) FROM STDIN"), rawpg.Msg{T: "d", Data: []byte("100\tcopied\n101\tcopied\n"), OnCopyIn: true}, rawpg.Msg{T: "c"})
}
