package sqlclass

import (
	"fmt"
	"strings"
	"testing"

	pg "github.com/pganalyze/pg_query_go/v6"

	"github.com/interlock/interlock/model"
)

func TestClassify(t *testing.T) {
	var c Classifier
	for _, tc := range []struct {
		sql      string
		kinds    string
		tables   string
		readOnly bool // after Static
		noWhere  bool
	}{
		{"SELECT 1", "select", "", true, false},
		{"SELECT * FROM accounts a JOIN public.users u ON u.id = a.uid", "select", "accounts,public.users", true, false},
		{"SELECT nextval('s')", "select,update", "", false, false},
		{"SELECT set_config('search_path', 'x', false)", "select,set", "", false, false},
		{"SELECT pg_sleep(1)", "select", "", true, false},
		{"SELECT my_func(1)", "select,opaque", "", false, false},
		{"SELECT lower(name) FROM t FOR UPDATE", "select,lock", "t", false, false},
		{"SELECT * INTO copy FROM t", "create_table_as,select", "copy,t", false, false},
		{"WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", "select,delete", "t", false, true},
		{"UPDATE t SET a = 1", "update", "t", false, true},
		{"UPDATE t SET a = 1 WHERE id = 2", "update", "t", false, false},
		{"DELETE FROM t WHERE id = 1", "delete", "t", false, false},
		{"DELETE FROM t WHERE true", "delete", "t", false, false},
		{"INSERT INTO t SELECT * FROM u", "insert,select", "t,u", false, false},
		{"MERGE INTO t USING u ON t.id = u.id WHEN MATCHED THEN DELETE", "merge,delete", "t,u", false, false},
		{"DROP DATABASE appdb", "drop_database", "", false, false},
		{"DROP TABLE a, s.b", "drop_table", "a,s.b", false, false},
		{"DROP SCHEMA s CASCADE", "drop_schema", "", false, false},
		{"DROP OWNED BY app", "drop_owned", "", false, false},
		{"TRUNCATE t", "truncate", "t", false, false},
		{"COPY t FROM STDIN", "copy_from", "t", false, false},
		{"COPY t TO STDOUT", "copy_to", "t", true, false},
		{"COPY t TO '/tmp/x'", "copy_to,opaque", "t", false, false},
		{"COPY t FROM PROGRAM 'rm -rf /'", "copy_from,opaque", "t", false, false},
		{"COPY (SELECT * FROM t) TO STDOUT", "copy_to,select", "t", true, false},
		{"BEGIN", "begin", "", true, false},
		{"COMMIT", "commit", "", true, false},
		{"SET search_path = x", "set", "", false, false},
		{"SHOW search_path", "show", "", true, false},
		{"EXPLAIN DELETE FROM t", "explain,delete", "t", true, true},
		{"EXPLAIN ANALYZE DELETE FROM t", "explain,delete", "t", false, true},
		{"DO $$ BEGIN NULL; END $$", "do,opaque", "", false, false},
		{"CALL p()", "call,opaque", "", false, false},
		{"CREATE INDEX i ON t(a)", "create_index", "t", false, false},
		{"ALTER TABLE t ADD COLUMN c int", "alter_table", "t", false, false},
		{"ALTER TABLE t RENAME COLUMN a TO b", "alter_table", "t", false, false},
		{"ALTER TABLE t RENAME TO u", "alter_table", "t", false, false},
		{"ALTER TABLE t OWNER TO bob", "alter_table", "t", false, false},
		{"ALTER FUNCTION f() OWNER TO bob", "alter_function", "", false, false},
		{"GRANT SELECT ON t TO bob", "grant", "t", false, false},
		{"LISTEN ch", "listen", "", true, false},
		{"NOTIFY ch", "notify", "", false, false},
		{"VACUUM t", "vacuum", "t", false, false},
		{"PREPARE p AS DELETE FROM t", "prepare,delete", "t", true, true},
		{"CREATE EVENT TRIGGER e ON ddl_command_start EXECUTE FUNCTION f()", "create_event_trigger", "", false, false},
		{"CREATE OPERATOR === (leftarg = int, rightarg = int, function = f)", "create_operator", "", false, false},
		{"ALTER ROLE app PASSWORD 'x'", "alter_role", "", false, false},
		{"SELEC 1", "unknown", "", false, false},
	} {
		p := c.Parse(tc.sql)
		if len(p.Stmts) != 1 {
			t.Errorf("%q: %d statements", tc.sql, len(p.Stmts))
			continue
		}
		cl := Static(p.Stmts[0].Class)
		if got := strings.Join(cl.Kinds, ","); got != tc.kinds {
			t.Errorf("%q: kinds %s, want %s", tc.sql, got, tc.kinds)
		}
		if got := strings.Join(cl.Tables, ","); got != tc.tables {
			t.Errorf("%q: tables %s, want %s", tc.sql, got, tc.tables)
		}
		if cl.ReadOnly != tc.readOnly || cl.NoWhere != tc.noWhere {
			t.Errorf("%q: read_only %v no_where %v", tc.sql, cl.ReadOnly, cl.NoWhere)
		}
		for _, k := range cl.Kinds {
			if !model.IsSQLKind(k) {
				t.Errorf("%q: kind %q is not in model.SQLKinds", tc.sql, k)
			}
		}
	}
}

func TestRefs(t *testing.T) {
	var c Classifier
	cl := c.Parse("UPDATE s.t SET a = upper(b::evil) FROM u WHERE t.id BETWEEN 1 AND 2 AND x = ANY(SELECT y FROM v) AND f === g").Stmts[0].Class
	str := func(rs []Ref) string {
		var out []string
		for _, r := range rs {
			out = append(out, r.String())
		}
		return strings.Join(out, ",")
	}
	for what, got := range map[string]string{
		"funcs":  str(cl.Funcs),
		"ops":    str(cl.Ops),
		"casts":  str(cl.Casts),
		"reads":  str(cl.Reads),
		"writes": str(cl.Writes),
	} {
		want := map[string]string{"funcs": "upper", "ops": ">=,<=,=,===", "casts": "evil", "reads": "v,u", "writes": "s.t"}[what]
		if got != want {
			t.Errorf("%s: %q, want %q", what, got, want)
		}
	}
	sig := c.Parse("SELECT pg_terminate_backend(4242), pg_cancel_backend(pg_backend_pid()), pg_terminate_backend(pid) FROM pg_stat_activity").Stmts[0].Class
	if len(sig.Signals) != 3 || sig.Signals[0].PID != 4242 || !sig.Signals[1].Self || sig.Signals[2].PID != 0 || sig.Signals[2].Self {
		t.Errorf("signals %+v", sig.Signals)
	}
	// The shape cache must not hand one pid's class to another.
	other := c.Parse("SELECT pg_terminate_backend(4343), pg_cancel_backend(pg_backend_pid()), pg_terminate_backend(pid) FROM pg_stat_activity").Stmts[0].Class
	if other.Signals[0].PID != 4343 {
		t.Errorf("shape cache reused a literal-dependent class: %+v", other.Signals)
	}
	roles := c.Parse("ALTER USER CURRENT_USER WITH PASSWORD 'p'").Stmts[0].Class
	if len(roles.Roles) != 1 || roles.Roles[0].Spec != "current_user" || !roles.Secrets {
		t.Errorf("roles %+v secrets %v", roles.Roles, roles.Secrets)
	}
	if r := c.Parse("ALTER ROLE ALL SET search_path = x").Stmts[0].Roles; len(r) != 1 || r[0].Spec != "all" {
		t.Errorf("ALTER ROLE ALL: %+v", r)
	}
	if r := c.Parse("ALTER ROLE app RENAME TO bob").Stmts[0].Roles; len(r) != 1 || r[0].Name != "app" {
		t.Errorf("rename: %+v", r)
	}
	if !c.Parse("SELECT dblink_exec('host=x password=y', 'DELETE FROM t')").Stmts[0].ConnSecrets {
		t.Errorf("dblink password not seen")
	}
	if c.Parse("SELECT dblink_exec('host=x', 'DELETE FROM t')").Stmts[0].ConnSecrets {
		t.Errorf("dblink without password seen as secret")
	}
	if !c.Parse("CREATE USER MAPPING FOR app SERVER s OPTIONS (user 'u', password 'p')").Stmts[0].ConnSecrets {
		t.Errorf("user mapping password not seen")
	}
	set := c.Parse("SET standard_conforming_strings = off").Stmts[0].Settings
	if len(set) != 1 || set[0].Name != "standard_conforming_strings" || set[0].Value != "off" {
		t.Errorf("settings %+v", set)
	}
	if set := c.Parse("SET NAMES 'SJIS'").Stmts[0].Settings; len(set) != 1 || set[0].Name != "client_encoding" || set[0].Value != "SJIS" {
		t.Errorf("SET NAMES: %+v", set)
	}
	if set := c.Parse("RESET ALL").Stmts[0].Settings; len(set) != 1 || set[0].Name != "" || !set[0].Reset {
		t.Errorf("RESET ALL: %+v", set)
	}
	d := c.Parse("DECLARE c CURSOR WITH HOLD FOR SELECT 1").Stmts[0].Class
	if d.Cursor != "c" || !d.Hold {
		t.Errorf("declare: %q hold %v", d.Cursor, d.Hold)
	}
	if cl := c.Parse("CLOSE ALL").Stmts[0]; cl.Cursor != "*" {
		t.Errorf("close all: %q", cl.Cursor)
	}
	if cl := c.Parse("WITH x AS (SELECT 1) SELECT * FROM x").Stmts[0]; len(cl.Reads) != 0 {
		t.Errorf("a CTE read as a relation: %v", cl.Reads)
	}
}

func TestSplitAndCache(t *testing.T) {
	var c Classifier
	p := c.Parse("SELECT 1; INSERT INTO t VALUES (';'); -- x\n DROP TABLE t")
	if len(p.Stmts) != 3 || p.Stmts[1].Text != "INSERT INTO t VALUES (';')" || p.Stmts[2].Kind != "drop_table" {
		t.Fatalf("split: %+v", p.Stmts)
	}
	if p.Stmts[0].End != len("SELECT 1") {
		t.Errorf("end %d", p.Stmts[0].End)
	}
	if len(c.Parse("").Stmts) != 0 || len(c.Parse(" ; ").Stmts) != 0 {
		t.Errorf("empty queries have statements")
	}
	before := c.Parses()
	for i := 0; i < 50; i++ {
		c.Parse("SELECT abalance FROM pgbench_accounts WHERE aid = " + strings.Repeat("7", i%9+1))
	}
	if n := c.Parses() - before; n != 1 {
		t.Errorf("%d full parses for statements differing only in a constant, want 1", n)
	}
	if c.Parse("SELECT abalance FROM pgbench_accounts WHERE aid = 1 OR true").Stmts[0].Kind != "select" || c.Parses()-before != 2 {
		t.Errorf("shape cache confused two statements")
	}
	for _, q := range []string{"SELECT 1 ; -- done", "SELECT 2 ; -- done"} {
		if st := c.Parse(q).Stmts; len(st) != 1 || st[0].Text != q[:len("SELECT 1")] || st[0].End != len("SELECT 1 ") {
			t.Errorf("%q: %+v", q, st)
		}
	}
	// One parse failure makes the whole string one unknown statement.
	if p := c.Parse("DELETE FROM t; SELEC 1"); len(p.Stmts) != 1 || p.Stmts[0].Kind != model.SQLKindUnknown {
		t.Errorf("a bad neighbour split off: %+v", p.Stmts)
	}
}

// TestEveryStatementHasAKind ties the classifier to the one list of kinds:
// every statement node of the parser, and every object type a DROP, an
// ALTER or a rename can name, gives a kind of model.SQLKinds.
func TestEveryStatementHasAKind(t *testing.T) {
	n := &pg.Node{}
	od := n.ProtoReflect().Descriptor().Oneofs().Get(0)
	internal := map[string]bool{"raw_stmt": true, "return_stmt": true, "plassign_stmt": true,
		"set_operation_stmt": true, "replica_identity_stmt": true}
	for i := 0; i < od.Fields().Len(); i++ {
		f := od.Fields().Get(i)
		name := string(f.Name())
		if !strings.HasSuffix(name, "_stmt") || internal[name] {
			continue
		}
		m := n.ProtoReflect().New()
		m.Set(f, m.NewField(f))
		k := stmtKind(m.Interface().(*pg.Node))
		if !model.IsSQLKind(k) || k == model.SQLKindUnknown {
			t.Errorf("%s: kind %q", name, k)
		}
	}
	for v := range pg.ObjectType_name {
		ot := pg.ObjectType(v)
		for _, verb := range []string{"create", "alter", "drop"} {
			if k := objKind(verb, ot); !model.IsSQLKind(k) {
				t.Errorf("%s %s: kind %q", verb, ot, k)
			}
		}
	}
}

// TestTagKindCounted: the one-word tags answered from countedTags name
// the kind the general reading of a tag gives.
func TestTagKindCounted(t *testing.T) {
	for word := range countedTags {
		for _, tag := range []string{word, word + " 1", word + " 0 1", word + " 12 345", word + "  7", word + " 1 ",
			word + "\t1", word + " 1a", word + " ALL", word + " 1 ALL", word + "S 1", " " + word} {
			if got, want := TagKind(tag), tagKind(tag); got != want {
				t.Errorf("TagKind(%q) = %q, want %q", tag, got, want)
			}
		}
	}
}

func TestTagFits(t *testing.T) {
	var c Classifier
	for _, tc := range []struct {
		sql, tag string
		fits     bool
	}{
		{"SELECT 1", "SELECT 1", true},
		{"SELECT 1", "DROP TABLE", false},
		{"SELECT 1", "DELETE 3", false},
		{"INSERT INTO t VALUES (1)", "INSERT 0 1", true},
		{"DELETE FROM t", "DELETE 10", true},
		{"WITH d AS (DELETE FROM t RETURNING 1) SELECT * FROM d", "SELECT 4", true},
		{"SELECT * INTO u FROM t", "SELECT 4", true},
		{"CREATE TABLE u AS SELECT 1", "SELECT 1", true},
		{"CREATE MATERIALIZED VIEW m AS SELECT 1", "SELECT 1", true},
		{"COMMIT", "ROLLBACK", true},
		{"COMMIT", "DELETE 1", false},
		{"BEGIN", "BEGIN", true},
		{"START TRANSACTION", "START TRANSACTION", true},
		{"ROLLBACK TO SAVEPOINT s", "ROLLBACK", true},
		{"RELEASE s", "RELEASE", true},
		{"COPY t FROM STDIN", "COPY 3", true},
		{"TRUNCATE t", "TRUNCATE TABLE", true},
		{"LOCK t", "LOCK TABLE", true},
		{"DISCARD ALL", "DISCARD ALL", true},
		{"DEALLOCATE ALL", "DEALLOCATE ALL", true},
		{"CLOSE ALL", "CLOSE CURSOR ALL", true},
		{"CREATE USER bob", "CREATE ROLE", true},
		{"CREATE SERVER s FOREIGN DATA WRAPPER w", "CREATE SERVER", true},
		{"ALTER MATERIALIZED VIEW m RENAME TO n", "ALTER MATERIALIZED VIEW", true},
		{"ALTER TABLE t RENAME COLUMN a TO b", "ALTER TABLE", true},
		{"REFRESH MATERIALIZED VIEW m", "REFRESH MATERIALIZED VIEW", true},
		{"SELEC 1", "DROP TABLE", true},
	} {
		cl := c.Parse(tc.sql).Stmts[0].Class
		if got := TagFits(tc.tag, cl); got != tc.fits {
			t.Errorf("%q answered %q: fits %v, want %v (tag kind %q)", tc.sql, tc.tag, got, tc.fits, TagKind(tc.tag))
		}
	}
}

// TestSubscriptionPasswordRedacted: a subscription's connection string is
// not a node the walk visits; its password must still keep the statement
// out of the journal as written.
func TestSubscriptionPasswordRedacted(t *testing.T) {
	var c Classifier
	for _, sql := range []string{
		"CREATE SUBSCRIPTION s CONNECTION 'host=x password=hunter2' PUBLICATION p",
		"ALTER SUBSCRIPTION s CONNECTION 'host=x password=hunter2'",
		"CREATE SUBSCRIPTION s CONNECTION 'postgresql://u:hunter2@x/db' PUBLICATION p",
	} {
		if st := c.Parse(sql).Stmts[0]; !st.Secrets {
			t.Errorf("%q: no secret to redact", sql)
		}
		if out, _, ok := Redact(sql); !ok || strings.Contains(out, "hunter2") {
			t.Errorf("%q redacted as %q", sql, out)
		}
	}
	if st := c.Parse("CREATE SUBSCRIPTION s CONNECTION 'host=x' PUBLICATION p").Stmts[0]; st.Secrets {
		t.Errorf("a connection string without a password marked secret")
	}
}

func TestRedact(t *testing.T) {
	for _, tc := range []struct{ in, out, orig string }{
		{"ALTER ROLE app PASSWORD 'hunter2'", "ALTER ROLE app PASSWORD " + Redacted, "'hunter2'"},
		{"CREATE ROLE x LOGIN ENCRYPTED PASSWORD 'SCRAM-SHA-256$4096:abc'", "CREATE ROLE x LOGIN ENCRYPTED PASSWORD " + Redacted, "'SCRAM-SHA-256$4096:abc'"},
		{"SELECT dblink_exec('host=h password=pw', 'x')", "SELECT dblink_exec(" + Redacted + ", 'x')", "'host=h password=pw'"},
		{"CREATE USER MAPPING FOR app SERVER s OPTIONS (user 'u', password /* c */ 'p')", "CREATE USER MAPPING FOR app SERVER s OPTIONS (user 'u', password /* c */ " + Redacted + ")", "'p'"},
		{"SELECT 'reset your password'", "SELECT 'reset your password'", ""},
		{"SELECT dblink('postgresql://u:pw@h/db', 'x')", "SELECT dblink(" + Redacted + ", 'x')", "'postgresql://u:pw@h/db'"},
		{"SELECT 1", "SELECT 1", ""},
	} {
		out, origs, ok := Redact(tc.in)
		if !ok || out != tc.out || strings.Join(origs, "|") != tc.orig {
			t.Errorf("%q: %q %q %v", tc.in, out, origs, ok)
		}
	}
	if _, _, ok := Redact("SELECT 'unterminated"); ok {
		fmt.Println("note: scanner accepted an unterminated literal")
	}
}

func TestMinServer(t *testing.T) {
	var c Classifier
	for sql, want := range map[string]int{
		"SELECT 31":                   0,
		"SELECT 0x1F":                 16,
		"SELECT 1_000":                16,
		"SELECT 'a_1_2', x0x1 FROM t": 0,
		"SELECT json_scalar(1)":       17,
		"SELECT json_object('a': 1)":  16,
		"SELECT * FROM system_user":   16,
		"SELECT 1 IS JSON":            16,
		"SELECT * FROM json_table('[]', '$' COLUMNS (a int PATH '$'))": 17,
	} {
		got := c.Parse(sql).Stmts[0].MinServer
		if got != want {
			t.Errorf("%q: MinServer %d, want %d", sql, got, want)
		}
	}
	// The shape cache must not carry one statement's literal form to
	// another.
	c.Parse("SELECT 1 FROM t WHERE a = 5")
	if got := c.Parse("SELECT 1 FROM t WHERE a = 0x5").Stmts[0].MinServer; got != 16 {
		t.Errorf("0x5 after 5: MinServer %d", got)
	}
}

func TestRedactInsideCode(t *testing.T) {
	for _, tc := range []struct{ in, out, orig string }{
		{`DO $$BEGIN EXECUTE 'ALTER ROLE x PASSWORD ''pw-1'''; END$$`, `DO $$BEGIN EXECUTE 'ALTER ROLE x PASSWORD ''[redacted]'''; END$$`, "pw-1"},
		{`DO $x$BEGIN ALTER ROLE x PASSWORD 'pw-2'; END$x$`, `DO $x$BEGIN ALTER ROLE x PASSWORD '[redacted]'; END$x$`, "pw-2"},
	} {
		out, origs, ok := Redact(tc.in)
		if !ok || out != tc.out || strings.Join(origs, "|") != tc.orig {
			t.Errorf("%q: %q %q %v", tc.in, out, origs, ok)
		}
	}
}
