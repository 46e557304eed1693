package sqlclass

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

// stripTrees copies a class without its parse trees, which differ between
// texts of one shape (their constants) and are not part of the verdict.
func stripTrees(c *Class) *Class {
	if c == nil {
		return nil
	}
	out := *c
	out.tree = nil
	out.Inner = stripTrees(c.Inner)
	return &out
}

// sameAsFresh checks that what a classifier with a warm cache says about
// text is what a parse of text alone says.
func sameAsFresh(t *testing.T, c *Classifier, text string) {
	t.Helper()
	got := c.Parse(text)
	var fresh Classifier
	want := fresh.Parse(text)
	if len(got.Stmts) != len(want.Stmts) {
		t.Errorf("%q: %d statements from the cache, %d from a fresh parse", text, len(got.Stmts), len(want.Stmts))
		return
	}
	for i := range got.Stmts {
		g, w := got.Stmts[i], want.Stmts[i]
		if g.Text != w.Text || g.Head != w.Head || g.End != w.End {
			t.Errorf("%q: statement %d at %d..%d %q from the cache, %d..%d %q fresh", text, i, g.Head, g.End, g.Text, w.Head, w.End, w.Text)
		}
		if gc, wc := stripTrees(g.Class), stripTrees(w.Class); !reflect.DeepEqual(gc, wc) {
			t.Errorf("%q: statement %d classed from the cache as\n  %+v\nfresh as\n  %+v", text, i, gc, wc)
		}
	}
}

// TestShapeCacheNeverConfuses warms the cache with one text, then asks
// about another that has the same shape but for a detail that changes
// its class: the answer must be the other text's own.
func TestShapeCacheNeverConfuses(t *testing.T) {
	for _, tc := range []struct{ name, warm, ask string }{
		// A DO body or a function body is a string the grammar does
		// not read as a constant; its PASSWORD clause is redacted.
		{"do body", `DO 'BEGIN PERFORM 1; END'`, `DO 'BEGIN ALTER ROLE app PASSWORD ''hunter2''; END'`},
		{"do body dollar", `DO $$BEGIN PERFORM 1; END$$`, `DO $$BEGIN ALTER ROLE app PASSWORD 'hunter2'; END$$`},
		{"function body", `CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'`, `CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'ALTER ROLE app PASSWORD ''x'''`},
		// A constant that holds SQL with a password is read by the walk.
		{"sql in a constant", `SELECT run_sql('SELECT 1')`, `SELECT run_sql('ALTER ROLE app PASSWORD ''hunter2''')`},
		{"password in any case", `SELECT run_sql('SELECT 1')`, `SELECT run_sql('alter role app PassWord ''hunter2''')`},
		// EXPLAIN's options are not constants: ANALYZE runs the DELETE.
		{"explain analyze", `EXPLAIN (ANALYZE 'off') DELETE FROM t WHERE id = 1`, `EXPLAIN (ANALYZE 'on') DELETE FROM t WHERE id = 2`},
		{"explain analyze number", `EXPLAIN (ANALYZE 0) DELETE FROM t WHERE id = 1`, `EXPLAIN (ANALYZE 1) DELETE FROM t WHERE id = 2`},
		// A typmod that picks the type: float(10) is float4, float(30)
		// float8.
		{"float precision", `SELECT x::float(10) FROM t WHERE id = 1`, `SELECT x::float(30) FROM t WHERE id = 2`},
		// Settings and signals depend on their values.
		{"setting", `SET standard_conforming_strings = 'on'`, `SET standard_conforming_strings = 'off'`},
		{"setting number", `SET extra_float_digits = 1`, `SET extra_float_digits = 3`},
		{"signal", `SELECT pg_terminate_backend(123)`, `SELECT pg_terminate_backend(456)`},
		{"dblink", `SELECT dblink_exec('host=db', 'SELECT 1')`, `SELECT dblink_exec('host=db password=x', 'SELECT 1')`},
		// Identifiers are not literals: quoting one changes its name.
		{"quoted identifier", `SELECT a FROM accounts WHERE id = 1`, `SELECT a FROM "Accounts" WHERE id = 2`},
		{"identifier or string", `SELECT 'x' FROM t WHERE id = 1`, `SELECT "x" FROM t WHERE id = 2`},
		// Escape strings and unicode escapes: the scanner reads none.
		{"escape string", `SELECT 'a' FROM t WHERE id = 1`, `SELECT E'a\'; DELETE FROM t; --' FROM t WHERE id = 1`},
		{"escape string lower", `SELECT 'a' FROM t WHERE id = 1`, `SELECT e'a\'; DELETE FROM t; --' FROM t WHERE id = 1`},
		{"unicode escape", `SELECT 'a' FROM t WHERE id = 1`, `SELECT U&'\0061' FROM t WHERE id = 1`},
		{"unicode uescape", `SELECT 'a' FROM t WHERE id = 1`, `SELECT U&'!0061' UESCAPE '!' FROM t WHERE id = 1`},
		{"unicode identifier", `SELECT a FROM t WHERE id = 1`, `SELECT U&"!0061" UESCAPE '!' FROM t WHERE id = 1`},
		{"bit string", `SELECT 'a' FROM t WHERE id = 1`, `SELECT B'1' FROM t WHERE id = 1`},
		{"national string", `SELECT 'a' FROM t WHERE id = 1`, `SELECT N'a' FROM t WHERE id = 1`},
		// With standard_conforming_strings off the server would read
		// this as a string and a DELETE; the parser reads it with it on.
		{"backslash", `SELECT 'a' FROM t WHERE id = 1`, `SELECT 'a\'; DELETE FROM t; --' FROM t WHERE id = 1`},
		// Dollar quotes and comments that hide a statement.
		{"dollar quote", `SELECT 'a', 1`, `SELECT $$a$$, 1`},
		{"dollar tag", `SELECT 'a', 1`, `SELECT $q$ $$; DELETE FROM t; $$ $q$, 1`},
		{"nested comment", `SELECT 1 /* x */`, `SELECT 1 /* /* */ ; DELETE FROM t; /* */ */`},
		{"nested comment 2", `SELECT 1 /* /* */ */ , 2`, `SELECT 1 /* /* */ ; DELETE FROM t --*/`},
		{"quote in comment", `SELECT 1 /* ' */ , 2 -- '`, `SELECT 1 /* ' */ ; DELETE FROM t -- '`},
		{"quote in line comment", "SELECT 1 -- '\n, 2", "SELECT 1 -- '\n; DELETE FROM t"},
		{"comment in string", `SELECT '/*', 1 -- */`, `SELECT '/*' ; DELETE FROM t -- */`},
		{"dash dash in string", "SELECT '--', 1", "SELECT '--'; DELETE FROM t"},
		// 'a' newline 'b' is one string in PostgreSQL.
		{"continued string", "SELECT 'a'\n'b' FROM t", "SELECT 'a'\n'b'; DELETE FROM t"},
		{"continued after comment", "SELECT 'a' -- c\n'b' FROM t", "SELECT 'a' -- c\n'b'; DELETE FROM t"},
		// Number forms that PostgreSQL versions read differently, and
		// the integer/float split at int32.
		{"hex", `SELECT 12 FROM t`, `SELECT 0x1F FROM t`},
		{"underscore", `SELECT 12 FROM t`, `SELECT 1_000 FROM t`},
		{"exponent", `SELECT 1.5 FROM t`, `SELECT 1.5e3 FROM t`},
		{"int32 edge", `SELECT x FROM t LIMIT 2147483647`, `SELECT x FROM t LIMIT 2147483648`},
		{"leading zeros", `SELECT x FROM t LIMIT 00000000001`, `SELECT x FROM t LIMIT 99999999999`},
		{"float", `SELECT x FROM t WHERE a = 1`, `SELECT x FROM t WHERE a = 1.5`},
		{"trailing dot", `SELECT x FROM t WHERE a = 1`, `SELECT x FROM t WHERE a = 1.`},
		{"dot number", `SELECT x FROM t WHERE a = 1`, `SELECT x FROM t WHERE a = .5`},
		{"junk after number", `SELECT 1 FROM t`, `SELECT 1abc FROM t`},
		// A unary minus folds into the constant.
		{"negative", `SELECT x FROM t WHERE a = 5`, `SELECT x FROM t WHERE a = -5`},
		{"negative fold", `SELECT x FROM t WHERE a = -5`, `SELECT x FROM t WHERE a = -6`},
		{"negative fold spaced", "SELECT x FROM t WHERE a = -\n 5", "SELECT x FROM t WHERE a = -\n 6"},
		{"binary or unary minus", `SELECT x FROM t WHERE a = b - 5`, `SELECT x FROM t WHERE a = b + -5`},
		{"minus run into operator", `SELECT x FROM t WHERE a =-5`, `SELECT x FROM t WHERE a =-6`},
		{"double negation", `SELECT x FROM t WHERE a = - -5`, `SELECT x FROM t WHERE a = - -6`},
		{"minus comment number", `SELECT x FROM t WHERE a = -/* c */5`, `SELECT x FROM t WHERE a = -/* c */6`},
		{"negative int32 edge", `SELECT x FROM t WHERE a = -2147483647`, `SELECT x FROM t WHERE a = -2147483648`},
		{"negative float", `SELECT x FROM t WHERE a = -1.5`, `SELECT x FROM t WHERE a = -2.5`},
		{"negative string", `SELECT x FROM t WHERE a = -'5'`, `SELECT x FROM t WHERE a = -'6'`},
		{"negative signal", `SELECT pg_terminate_backend(-1)`, `SELECT pg_terminate_backend(-2)`},
		{"negative setting", `SET extra_float_digits = -1`, `SET extra_float_digits = -15`},
		{"negative fetch", `FETCH -5 FROM c`, `FETCH -6 FROM c`},
		{"negative sequence step", `ALTER SEQUENCE s INCREMENT BY -1`, `ALTER SEQUENCE s INCREMENT BY -2`},
		{"negative limit", `SELECT x FROM t LIMIT -1`, `SELECT x FROM t LIMIT -2`},
		// Parameters are not literals.
		{"parameter", `SELECT x FROM t WHERE a = 1`, `SELECT x FROM t WHERE a = $1`},
		{"parameter junk", `SELECT x FROM t WHERE a = $1`, `SELECT x FROM t WHERE a = $1abc`},
		// NUL ends a C string: the parser sees the text before it.
		{"nul", "SELECT 1 FROM t", "SELECT 1 FROM t\x00; DELETE FROM t"},
		{"nul in string", "SELECT 'a' FROM t", "SELECT 'a\x00'; DELETE FROM t; --' FROM t"},
		{"control byte", "SELECT 1 FROM t", "SELECT 1 FROM t\x01"},
		// A key marker written in the text.
		{"marker in text", "SELECT 's' FROM t", "SELECT \x00s FROM t"},
		// Statements split differently.
		{"two statements", `SELECT 1`, `SELECT 1; SELECT 2`},
		{"semicolon in string", `SELECT 'a;b'`, `SELECT 'a'; DELETE FROM t; SELECT 'b'`},
		// FETCH's count and COPY's file are not constants.
		{"fetch", `FETCH 5 FROM c`, `FETCH 6 FROM c`},
		{"copy file", `COPY t TO '/tmp/a'`, `COPY t TO '/tmp/b'`},
		{"typed literal", `SELECT date '2024-01-01' FROM t`, `SELECT date 'today' FROM t`},
		{"interval", `SELECT interval '1' day FROM t`, `SELECT interval '1' second(3) FROM t`},
		{"prepare", `PREPARE p AS SELECT x FROM t WHERE a = 1`, `PREPARE p AS SELECT x FROM t WHERE a = 2`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c Classifier
			sameAsFresh(t, &c, tc.warm)
			sameAsFresh(t, &c, tc.ask)
			// And the other way round.
			var d Classifier
			sameAsFresh(t, &d, tc.ask)
			sameAsFresh(t, &d, tc.warm)
		})
	}
}

func TestShapeSecretsNotShared(t *testing.T) {
	var c Classifier
	c.Parse(`DO 'BEGIN PERFORM 1; END'`)
	st := c.Parse(`DO 'BEGIN ALTER ROLE app PASSWORD ''hunter2''; END'`).Stmts[0]
	if !st.Secrets {
		t.Errorf("a DO body with a PASSWORD clause lost its secret after a harmless DO body")
	}
	c.Parse(`SELECT run_sql('SELECT 1')`)
	if st := c.Parse(`SELECT run_sql('ALTER ROLE app PASSWORD ''hunter2''')`).Stmts[0]; !st.Secrets {
		t.Errorf("a constant with a PASSWORD clause lost its secret after a harmless one")
	}
	c.Parse(`EXPLAIN (ANALYZE 'off') DELETE FROM t`)
	if st := c.Parse(`EXPLAIN (ANALYZE 'on') DELETE FROM t`).Stmts[0]; Static(st.Class).ReadOnly {
		t.Errorf("EXPLAIN ANALYZE DELETE judged read-only after EXPLAIN (ANALYZE off)")
	}
}

func TestShapeOf(t *testing.T) {
	for _, tc := range []struct {
		text, key string
		ok        bool
	}{
		{"SELECT abalance FROM pgbench_accounts WHERE aid = 4711;", "SELECT abalance FROM pgbench_accounts WHERE aid = #i;", true},
		{"SELECT 'it''s', 1.5, 2147483648, 007 -- c\n", "SELECT #s, #f, #f, #i -- c\n", true},
		{`SELECT "a""b", x$1, $2 FROM t WHERE a = 'x' /* /* 'y' */ */`, `SELECT "a""b", x$1, $2 FROM t WHERE a = #s /* /* 'y' */ */`, true},
		{"SELECT a FROM t", "", false}, // no literal: the exact text is the key
		{"SELECT $1", "", false},
		{"SELECT E'x'", "", false},
		{"SELECT 'a\\b'", "", false},
		{"SELECT $$x$$", "", false},
		{"SELECT 1 /* open", "", false},
		{"SELECT 'open", "", false},
		{`SELECT "open`, "", false},
		{"SELECT 'a' 'b'", "", false},
		{"SELECT 1\x00", "", false},
		{"SELECT 1e5", "", false},
		{"SELECT 1..2", "", false},
		{"SELECT .5", "", false},
	} {
		key, _, ok := shapeOf(tc.text, nil, nil)
		got := strings.ReplaceAll(string(key), "\x00", "#")
		if ok != tc.ok || ok && got != tc.key {
			t.Errorf("shapeOf(%q) = %q, %v; want %q, %v", tc.text, got, ok, tc.key, tc.ok)
		}
	}
}

func TestShapeCacheParsesOnce(t *testing.T) {
	var c Classifier
	for i := 0; i < 100; i++ {
		c.Parse(fmt.Sprintf("SELECT abalance FROM pgbench_accounts WHERE aid = %d;", i*7919))
		c.Parse(fmt.Sprintf("SELECT name FROM users WHERE email = 'user%d@example.com' LIMIT %d", i, i+1))
	}
	if n := c.Parses(); n != 2 {
		t.Errorf("%d full parses for two shapes", n)
	}
	// pgbench's TPC-B: a unary minus folded into a constant is still a
	// constant of the shape.
	before := c.Parses()
	for i := 0; i < 100; i++ {
		c.Parse(fmt.Sprintf("UPDATE pgbench_accounts SET abalance = abalance + -%d WHERE aid = %d;", i*37+1, i*7919))
		c.Parse(fmt.Sprintf("INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (%d, 1, %d, -%d, CURRENT_TIMESTAMP);", i%10+1, i*7919, i*37+1))
	}
	if n := c.Parses() - before; n != 2 {
		t.Errorf("%d full parses for two shapes with negative numbers", n)
	}
	// A literal the grammar does not read as a constant keeps its text
	// out of the shape cache: each text is parsed.
	for i := 0; i < 3; i++ {
		c.Parse(fmt.Sprintf("FETCH %d FROM c", i+1))
	}
	if n := c.Parses(); n != 7 {
		t.Errorf("%d full parses, want 7 (FETCH counts are not shared)", n)
	}
}

// TestShapeCacheRandom: random statements built from pieces that scanners
// get wrong (quotes, comments, dollar signs, escapes, numbers run into
// names), asked of one warm classifier, are classed as a fresh parse
// classes each.
func TestShapeCacheRandom(t *testing.T) {
	pieces := []string{
		"SELECT ", "DELETE FROM t", " FROM t", " WHERE a = ", "1", "2", "42", "2147483648", "1.5", "-", "'x'", "'y''z'",
		"''", "'", "\"", "\"q\"", "E", "e", "U&", "B", "$", "$1", "$$", "$a$", "/*", "*/", "--", "\n", " ", ";",
		"\\", ",", "(", ")", "::int", "float(", "10", "30", "password", " PASSWORD ", "ALTER ROLE x", "DO ",
		"EXPLAIN (ANALYZE ", "on", "off", "x", "_", ".", "0x", "f(", "pg_terminate_backend(", "LIMIT ",
	}
	r := rand.New(rand.NewPCG(1, 2))
	var c Classifier
	texts := make([]string, 0, 4000)
	for i := 0; i < 4000; i++ {
		var b strings.Builder
		b.WriteString(pieces[r.IntN(3)])
		for n := r.IntN(10); n > 0; n-- {
			b.WriteString(pieces[r.IntN(len(pieces))])
		}
		texts = append(texts, b.String())
	}
	// Each shape's texts again with other numbers and strings.
	for i := 0; i < 2000; i++ {
		s := texts[r.IntN(len(texts))]
		s = strings.NewReplacer("1", "7", "'x'", "'w'", "42", "43", "1.5", "2.5").Replace(s)
		texts = append(texts, s)
	}
	for _, s := range texts {
		sameAsFresh(t, &c, s)
		if t.Failed() {
			return
		}
	}
}

func FuzzShapeCache(f *testing.F) {
	for _, s := range []string{
		"SELECT abalance FROM pgbench_accounts WHERE aid = 1",
		"SELECT 'a' FROM t WHERE b = 2 -- c",
		"DO 'BEGIN PERFORM 1; END'",
		"EXPLAIN (ANALYZE 'off') DELETE FROM t",
		"SELECT 1 /* /* */ */ , 2",
	} {
		f.Add(s, s)
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		var c Classifier
		sameAsFresh(t, &c, a)
		sameAsFresh(t, &c, b)
	})
}

func TestCacheBounded(t *testing.T) {
	const budget = 8 << 20
	c := Classifier{budget: budget}
	// Statements with big trees, each of its own shape or text.
	for i := 0; i < 120; i++ {
		c.Parse(fmt.Sprintf("SELECT %s1 FROM t%d WHERE a = 1", strings.Repeat("a+", 100), i))
		c.Parse(fmt.Sprintf("SELECT %s1 FROM u%d", strings.Repeat("b*", 100), i))
	}
	entries, bytes := c.CacheStats()
	if bytes > budget {
		t.Errorf("the caches hold an estimated %d bytes, over their bound of %d", bytes, budget)
	}
	if entries == 0 || entries >= 240 {
		t.Errorf("%d entries cached: the bound did not apply", entries)
	}
	// Texts longer than cacheMaxText are not kept.
	long := "SELECT 1 FROM t WHERE a IN (" + strings.Repeat("1,", cacheMaxText) + "1)"
	before, _ := c.CacheStats()
	c.Parse(long)
	n := c.Parses()
	c.Parse(long)
	if c.Parses() != n+1 {
		t.Errorf("a text of %d bytes was cached", len(long))
	}
	if after, _ := c.CacheStats(); after > before {
		t.Errorf("a text of %d bytes added a cache entry", len(long))
	}
}

func TestLRUKeepsRecent(t *testing.T) {
	c := newLRU[int](16 * 100)
	c.put("hot", 0, 90)
	for i := 0; i < 1000; i++ {
		if _, ok := c.get("hot"); !ok {
			t.Fatalf("the entry in use was dropped after %d others", i)
		}
		c.put(fmt.Sprint(i), i, 90)
		if _, b := c.stats(); b > 1600 {
			t.Fatalf("%d bytes held, bound 1600", b)
		}
	}
	if _, ok := c.get("0"); ok {
		t.Errorf("the oldest entry is still held")
	}
	c.put("huge", 1, 1600/16+1)
	if _, ok := c.get("huge"); ok {
		t.Errorf("an entry over a sixteenth of the bound was cached")
	}
}

// BenchmarkParseSimple is pgbench -S in the simple protocol: a new aid in
// every text, one shape.
func BenchmarkParseSimple(b *testing.B) {
	var c Classifier
	texts := make([]string, 1024)
	for i := range texts {
		texts[i] = fmt.Sprintf("SELECT abalance FROM pgbench_accounts WHERE aid = %d;", i*7919%1000000)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if p := c.Parse(texts[i%len(texts)]); p.Stmts[0].Kind != "select" {
			b.Fatal(p.Stmts[0].Kind)
		}
	}
}

// BenchmarkParseSame is the extended protocol's Parse of one text.
func BenchmarkParseSame(b *testing.B) {
	var c Classifier
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		c.Parse("SELECT abalance FROM pgbench_accounts WHERE aid = $1;")
	}
}
