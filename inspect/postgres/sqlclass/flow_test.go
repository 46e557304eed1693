package sqlclass

import (
	"strings"
	"testing"
)

// fakeCatalog: customers(id, name, email, card) with email and card
// masked; orders(id, customer_id, note); v_cust a view over customers;
// v_safe a view of the id only; v_nested a view over v_cust.
type fakeCatalog map[string]*Relation

func (f fakeCatalog) Relations(r Ref) ([]*Relation, error) {
	if rel, ok := f[r.Name]; ok {
		return []*Relation{rel}, nil
	}
	return nil, nil
}

func testCatalog() fakeCatalog {
	return fakeCatalog{
		"customers": {Name: "public.customers", Kind: 'r', Columns: []string{"id", "name", "email", "card"}, Masked: []bool{false, false, true, true}},
		"orders":    {Name: "public.orders", Kind: 'r', Columns: []string{"id", "customer_id", "note"}, Masked: []bool{false, false, false}},
		"v_cust":    {Name: "public.v_cust", Kind: 'v', Columns: []string{"id", "contact"}, Definition: "SELECT id, lower(email) AS contact FROM customers"},
		"v_safe":    {Name: "public.v_safe", Kind: 'v', Columns: []string{"id", "name"}, Definition: "SELECT id, name FROM customers"},
		"v_nested":  {Name: "public.v_nested", Kind: 'v', Columns: []string{"contact"}, Definition: "SELECT contact FROM v_cust"},
	}
}

func flowOf(t *testing.T, sql string) Flow {
	t.Helper()
	var c Classifier
	p := c.Parse(sql)
	if len(p.Stmts) != 1 {
		t.Fatalf("%q: %d statements", sql, len(p.Stmts))
	}
	return AnalyzeFlow(p.Stmts[0].Class, testCatalog())
}

func taintString(f Flow) string {
	var b strings.Builder
	for _, t := range f.Columns {
		if t {
			b.WriteByte('M')
		} else {
			b.WriteByte('.')
		}
	}
	if f.Unsure {
		b.WriteString("?")
	}
	return b.String()
}

func TestFlowDerivations(t *testing.T) {
	for _, tc := range []struct{ sql, want string }{
		{"SELECT id, name FROM customers", ".."},
		{"SELECT id, email FROM customers", ".M"},
		{"SELECT * FROM customers", "..MM"},
		{"SELECT c.* FROM customers c", "..MM"},
		{"SELECT upper(email) FROM customers", "M"},
		{"SELECT email || '' AS x, id FROM customers", "M."},
		{"SELECT substr(card, 1, 4), substr(card, 5, 4) FROM customers", "MM"},
		{"SELECT translate(email, 'a', 'b'), reverse(email) FROM customers", "MM"},
		{"SELECT encode(convert_to(email, 'UTF8'), 'base64') FROM customers", "M"},
		{"SELECT email::bytea, card::text::int8 FROM customers", "MM"},
		{"SELECT t FROM customers t", "M"},
		{"SELECT ROW(t.*) FROM customers t", "M"},
		{"SELECT ROW(email) FROM customers", "M"},
		{"SELECT row_to_json(c) FROM customers c", "M"},
		{"SELECT array_agg(email), string_agg(card, ','), count(*) FROM customers", "MM."},
		{"SELECT json_agg(c.email) FROM customers c", "M"},
		{"SELECT (SELECT email FROM customers LIMIT 1)", "M"},
		{"SELECT (SELECT max(id) FROM customers)", "."},
		{"SELECT id, note FROM orders UNION SELECT id, email FROM customers", ".M"},
		{"SELECT note FROM orders EXCEPT SELECT email FROM customers", "M"},
		{"WITH x AS (SELECT email AS e FROM customers) SELECT e FROM x", "M"},
		{"WITH x(a, b) AS (SELECT id, card FROM customers) SELECT b, a FROM x", "M."},
		{"SELECT s.x FROM (SELECT email AS x, id FROM customers) s", "M"},
		{"SELECT s.i FROM (SELECT email AS x, id AS i FROM customers) s", "."},
		{"SELECT contact FROM v_cust", "M"},
		{"SELECT id FROM v_cust", "."},
		{"SELECT * FROM v_nested", "M"},
		{"SELECT * FROM v_safe", ".."},
		{"SELECT x FROM unnest(ARRAY[(SELECT email FROM customers LIMIT 1)]) AS x", "M"},
		{"SELECT regexp_split_to_table(email, '@') FROM customers", "M"},
		{"SELECT to_tsvector(email) FROM customers", "M"},
		{"SELECT o.note, c.name FROM orders o JOIN customers c ON c.id = o.customer_id", ".."},
		{"SELECT o.note, c.email FROM orders o JOIN customers c ON c.id = o.customer_id", ".M"},
		{"SELECT j.* FROM (orders o JOIN customers c ON true) AS j", ".....MM"},
		{"SELECT CASE WHEN email LIKE 'a%' THEN 1 ELSE 0 END FROM customers", "M"},
		{"SELECT id FROM customers WHERE email LIKE 'a%'", "."},
		{"INSERT INTO orders (note) VALUES ('x') RETURNING id, note", ".."},
		{"DELETE FROM customers WHERE id = 1 RETURNING email", "M"},
		{"UPDATE customers SET name = 'x' WHERE id = 2 RETURNING card, name", "M."},
	} {
		f := flowOf(t, tc.sql)
		if f.Refuse != "" || f.Stored != "" {
			t.Errorf("%q: refuse %q stored %q", tc.sql, f.Refuse, f.Stored)
			continue
		}
		if got := taintString(f); got != tc.want {
			t.Errorf("%q: flow %s, want %s", tc.sql, got, tc.want)
		}
	}
}

func TestFlowStoredAndRefused(t *testing.T) {
	for _, tc := range []struct{ sql, stored, refuse string }{
		{"CREATE TEMP TABLE x AS SELECT email FROM customers", "CREATE TABLE AS", ""},
		{"CREATE TEMP TABLE x AS SELECT id FROM customers", "", ""},
		{"SELECT email INTO TEMP x FROM customers", "SELECT INTO", ""},
		{"INSERT INTO orders (note) SELECT email FROM customers", "INSERT ... SELECT into orders", ""},
		{"INSERT INTO orders (note) SELECT name FROM customers", "", ""},
		{"UPDATE orders SET note = (SELECT card FROM customers LIMIT 1)", "UPDATE ... SET note from a masked value", ""},
		{"COPY customers TO STDOUT", "COPY of a masked column", ""},
		{"COPY (SELECT upper(email) FROM customers) TO STDOUT", "COPY of a masked column", ""},
		{"COPY (SELECT id FROM customers) TO STDOUT", "", ""},
		{"SELECT set_config('application_name', email, false) FROM customers", "set_config() of a masked value", ""},
		{"SELECT pg_notify('ch', card) FROM customers", "pg_notify() of a masked value", ""},
		{"SELECT table_to_xml('customers', true, false, '')", "", "table_to_xml() reads relations"},
		{"SELECT query_to_xml('select 1', true, false, '')", "", "query_to_xml() reads relations"},
		{"SELECT * FROM nowhere", "", "relation nowhere is not in the catalog"},
		{"DO $$ BEGIN RAISE NOTICE 'x'; END $$", "", "its code is not visible"},
	} {
		f := flowOf(t, tc.sql)
		if tc.stored != "" && f.Stored != tc.stored {
			t.Errorf("%q: stored %q, want %q", tc.sql, f.Stored, tc.stored)
		}
		if tc.stored == "" && f.Stored != "" {
			t.Errorf("%q: stored %q, want none", tc.sql, f.Stored)
		}
		if tc.refuse != "" && !strings.Contains(f.Refuse, tc.refuse) {
			t.Errorf("%q: refuse %q, want %q", tc.sql, f.Refuse, tc.refuse)
		}
		if tc.refuse == "" && f.Refuse != "" {
			t.Errorf("%q: refused %q", tc.sql, f.Refuse)
		}
	}
}

func TestFlowAmbiguousRelations(t *testing.T) {
	var c Classifier
	two := multiCatalog{"customers": {
		{Name: "a.customers", Columns: []string{"id", "email"}, Masked: []bool{false, true}},
		{Name: "b.customers", Columns: []string{"email", "id"}, Masked: []bool{false, false}},
	}}
	f := AnalyzeFlow(c.Parse("SELECT * FROM customers").Stmts[0].Class, two)
	if !f.Unsure || !f.Any() {
		t.Errorf("columns in a different order in two schemas: %s, want unsure", taintString(f))
	}
	f = AnalyzeFlow(c.Parse("SELECT email FROM customers").Stmts[0].Class, two)
	if got := taintString(f); got != "M" {
		t.Errorf("a column masked in one schema's relation of that name: %s", got)
	}
}

type multiCatalog map[string][]*Relation

func (m multiCatalog) Relations(r Ref) ([]*Relation, error) { return m[r.Name], nil }

// schemaCatalog answers SchemaMasked: public holds customers.
type schemaCatalog struct{ fakeCatalog }

func (schemaCatalog) SchemaMasked(schema string) (bool, error) { return schema == "public", nil }

func TestFlowSchemaChanges(t *testing.T) {
	for _, tc := range []struct {
		sql    string
		refuse bool
		stored bool
	}{
		{sql: "ALTER TABLE customers RENAME TO clients", refuse: true},
		{sql: "ALTER TABLE customers RENAME COLUMN email TO contact", refuse: true},
		{sql: "ALTER TABLE public.customers RENAME card TO pan", refuse: true},
		{sql: "ALTER TABLE customers RENAME COLUMN name TO full_name"},
		{sql: "ALTER TABLE orders RENAME TO purchases"},
		{sql: "ALTER VIEW v_cust RENAME TO v_other", refuse: true},
		{sql: "ALTER TABLE customers SET SCHEMA elsewhere", refuse: true},
		{sql: "ALTER TABLE orders SET SCHEMA elsewhere"},
		{sql: "ALTER SCHEMA public RENAME TO old", refuse: true},
		{sql: "ALTER SCHEMA scratch RENAME TO old"},
		{sql: "ALTER TABLE customers ADD COLUMN shadow text GENERATED ALWAYS AS (reverse(email)) STORED", stored: true},
		{sql: "ALTER TABLE customers ADD COLUMN upper_name text GENERATED ALWAYS AS (upper(name)) STORED"},
		{sql: "ALTER TABLE customers ALTER COLUMN name TYPE text USING email", stored: true},
		{sql: "ALTER TABLE customers ALTER COLUMN email TYPE varchar USING lower(email)"},
		{sql: "ALTER TABLE customers ALTER COLUMN name SET EXPRESSION AS (card)", stored: true},
		{sql: "ALTER TABLE customers INHERIT people", refuse: true},
		{sql: "ALTER TABLE orders INHERIT people"},
		{sql: "ALTER TABLE everyone ATTACH PARTITION customers FOR VALUES FROM (0) TO (10)", refuse: true},
		{sql: "ALTER TABLE everyone ATTACH PARTITION orders FOR VALUES FROM (0) TO (10)"},
		{sql: "CREATE TRIGGER t AFTER UPDATE ON customers FOR EACH ROW EXECUTE FUNCTION f()", refuse: true},
		{sql: "CREATE TRIGGER t AFTER UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION f()"},
		{sql: "CREATE RULE r AS ON UPDATE TO customers DO ALSO NOTIFY x", refuse: true},
		{sql: "CREATE PUBLICATION p FOR TABLE orders, customers", refuse: true},
		{sql: "CREATE PUBLICATION p FOR TABLE orders"},
		{sql: "CREATE PUBLICATION p FOR ALL TABLES", refuse: true},
		{sql: "CREATE PUBLICATION p FOR TABLES IN SCHEMA public", refuse: true},
		{sql: "ALTER PUBLICATION p ADD TABLE customers", refuse: true},
		// A relation the catalog does not have yet (made in this
		// transaction) holds no masked column.
		{sql: "ALTER TABLE fresh RENAME TO fresher"},
		{sql: "SELECT histogram_bounds FROM pg_stats", refuse: true},
	} {
		var c Classifier
		p := c.Parse(tc.sql)
		if len(p.Stmts) != 1 {
			t.Fatalf("%q: %d statements", tc.sql, len(p.Stmts))
		}
		cat := testCatalog()
		cat["pg_stats"] = &Relation{Name: "pg_catalog.pg_stats", Kind: 'v', Columns: []string{"histogram_bounds"}, Definition: "SELECT 1 AS histogram_bounds"}
		f := AnalyzeFlow(p.Stmts[0].Class, schemaCatalog{cat})
		if (f.Refuse != "") != tc.refuse || (f.Stored != "") != tc.stored {
			t.Errorf("%q: refuse %q, stored %q; want refused %v, stored %v", tc.sql, f.Refuse, f.Stored, tc.refuse, tc.stored)
		}
	}
	// Without a SchemaResolver, a schema rename is refused.
	var c Classifier
	p := c.Parse("ALTER SCHEMA scratch RENAME TO old")
	if f := AnalyzeFlow(p.Stmts[0].Class, testCatalog()); f.Refuse == "" {
		t.Errorf("schema rename without a schema resolver: not refused")
	}
}

func TestFlowTouches(t *testing.T) {
	for sql, want := range map[string]bool{
		"SELECT email::int FROM customers":          true,
		"SELECT id FROM customers WHERE id = 4":     true,
		"SELECT contact FROM v_cust":                true,
		"SELECT id FROM v_safe":                     true, // the view reads customers
		"SELECT note FROM orders":                   false,
		"SELECT 1":                                  false,
		"UPDATE orders SET note = 'x' WHERE id = 1": false,
	} {
		if got := flowOf(t, sql).Touches; got != want {
			t.Errorf("%q: touches %v, want %v", sql, got, want)
		}
	}
}
