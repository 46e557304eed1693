package postgres

import (
	"strings"
	"testing"
)

func TestClassify(t *testing.T) {
	var c classifier
	for _, tc := range []struct {
		sql      string
		kinds    string
		tables   string
		readOnly bool
		noWhere  bool
	}{
		{"SELECT 1", "select", "", true, false},
		{"SELECT * FROM accounts a JOIN public.users u ON u.id = a.uid", "select", "accounts,public.users", true, false},
		{"SELECT nextval('s')", "select", "", false, false},
		{"SELECT pg_sleep(1)", "select", "", true, false},
		{"SELECT lower(name) FROM t FOR UPDATE", "select", "t", false, false},
		{"SELECT * INTO copy FROM t", "create_table_as,select", "copy,t", false, false},
		{"WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", "select,delete", "t", false, true},
		{"UPDATE t SET a = 1", "update", "t", false, true},
		{"UPDATE t SET a = 1 WHERE id = 2", "update", "t", false, false},
		{"DELETE FROM t WHERE id = 1", "delete", "t", false, false},
		{"INSERT INTO t SELECT * FROM u", "insert,select", "t,u", false, false},
		{"DROP DATABASE appdb", "drop_database", "", false, false},
		{"DROP TABLE a, s.b", "drop_table", "a,s.b", false, false},
		{"TRUNCATE t", "truncate", "t", false, false},
		{"COPY t FROM STDIN", "copy_from", "t", false, false},
		{"COPY t TO STDOUT", "copy_to", "t", true, false},
		{"COPY t TO '/tmp/x'", "copy_to", "t", false, false},
		{"COPY (SELECT * FROM t) TO STDOUT", "copy_to,select", "t", true, false},
		{"BEGIN", "begin", "", true, false},
		{"COMMIT", "commit", "", true, false},
		{"SET search_path = x", "set", "", false, false},
		{"SHOW search_path", "show", "", true, false},
		{"EXPLAIN DELETE FROM t", "explain,delete", "t", true, true},
		{"EXPLAIN ANALYZE DELETE FROM t", "explain,delete", "t", false, true},
		{"DO $$ BEGIN NULL; END $$", "do", "", false, false},
		{"CALL p()", "call", "", false, false},
		{"CREATE INDEX i ON t(a)", "create_index", "t", false, false},
		{"ALTER TABLE t ADD COLUMN c int", "alter_table", "t", false, false},
		{"GRANT SELECT ON t TO bob", "grant", "t", false, false},
		{"LISTEN ch", "listen", "", true, false},
		{"NOTIFY ch", "notify", "", false, false},
		{"VACUUM t", "vacuum", "t", false, false},
		{"PREPARE p AS DELETE FROM t", "prepare,delete", "t", true, true},
		{"CREATE EVENT TRIGGER e ON ddl_command_start EXECUTE FUNCTION f()", "create_event_trig", "", false, false},
		{"SELEC 1", "unknown", "", false, false},
	} {
		p := c.parse(tc.sql)
		if len(p.stmts) != 1 {
			t.Errorf("%q: %d statements", tc.sql, len(p.stmts))
			continue
		}
		cl := p.stmts[0].class
		if got := strings.Join(cl.kinds, ","); got != tc.kinds {
			t.Errorf("%q: kinds %s, want %s", tc.sql, got, tc.kinds)
		}
		if got := strings.Join(cl.tables, ","); got != tc.tables {
			t.Errorf("%q: tables %s, want %s", tc.sql, got, tc.tables)
		}
		if cl.readOnly != tc.readOnly || cl.noWhere != tc.noWhere {
			t.Errorf("%q: read_only %v no_where %v", tc.sql, cl.readOnly, cl.noWhere)
		}
	}
}

func TestSplitAndCache(t *testing.T) {
	var c classifier
	p := c.parse("SELECT 1; INSERT INTO t VALUES (';'); -- x\n DROP TABLE t")
	if len(p.stmts) != 3 || p.stmts[1].text != "INSERT INTO t VALUES (';')" || p.stmts[2].kind != "drop_table" {
		t.Fatalf("split: %+v", p.stmts)
	}
	if p.stmts[0].end != len("SELECT 1") {
		t.Errorf("end %d", p.stmts[0].end)
	}
	if len(c.parse("").stmts) != 0 || len(c.parse(" ; ").stmts) != 0 {
		t.Errorf("empty queries have statements")
	}
	before := c.parses.Load()
	for i := 0; i < 50; i++ {
		c.parse("SELECT abalance FROM pgbench_accounts WHERE aid = " + strings.Repeat("7", i%9+1))
	}
	if n := c.parses.Load() - before; n != 1 {
		t.Errorf("%d full parses for statements differing only in a constant, want 1", n)
	}
	// A different shape is a different entry.
	if c.parse("SELECT abalance FROM pgbench_accounts WHERE aid = 1 OR true").stmts[0].kind != "select" || c.parses.Load()-before != 2 {
		t.Errorf("shape cache confused two statements")
	}
	// A statement found by its shape reads as a parsed one does: without
	// what follows it.
	for _, q := range []string{"SELECT 1 ; -- done", "SELECT 2 ; -- done"} {
		if st := c.parse(q).stmts; len(st) != 1 || st[0].text != q[:len("SELECT 1")] || st[0].end != len("SELECT 1 ") {
			t.Errorf("%q: %+v", q, st)
		}
	}
}

func TestRenderValues(t *testing.T) {
	s, cut := render(23, true, []byte{0, 0, 1, 0}, 4)
	if s != "256" || cut {
		t.Errorf("int4: %q", s)
	}
	// numeric 12.3456 (base-10000 digits 12 and 0x0D80 = 3456) at dscale 2
	s, _ = render(1700, true, []byte{0, 2, 0, 0, 0, 0, 0, 2, 0, 12, 13, 128}, 12)
	if s != "12.35" {
		t.Errorf("numeric rendered %q, want 12.35", s)
	}
	s, cut = render(25, false, []byte(strings.Repeat("x", 2000)), 5000)
	if !cut || !strings.HasSuffix(s, "…[5000 bytes]") || len(s) > maxValue+32 {
		t.Errorf("cut value %q", s[len(s)-30:])
	}
}
