package adversarial

// Class 11, continued: schema changes and catalog views that take masked
// values out of the rules' reach, and mask rules scoped to some statement
// kinds. Column rules name columns by table and column name; each case
// tries to make the values appear under another name, or in a place the
// statement's text does not show.

// mKindScoped masks the columns only for statements of kind select: a
// column rule still protects its columns in every statement.
const mKindScoped = `
  default: allow
  rules:
    - name: pii
      match: {targets: [db], operation: {kinds: [select]}}
      action: mask
      mask:
        columns: [customers.email, customers.card]
`

// mSchemaQualified masks columns of one schema's table only.
const mSchemaQualified = `
  default: allow
  rules:
    - name: pii
      match: {targets: [db]}
      action: mask
      mask:
        columns: [crm.accounts.email, crm.accounts.card]
`

func init() {
	add(
		// --- code that sees the rows as they are written ---
		mcase(mspec{name: "trigger-copies-rows", run: func(c *caseRun) {
			mq(c, 0, "CREATE TABLE sink3(v text)",
				"CREATE FUNCTION cp() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN INSERT INTO sink3 VALUES (reverse(NEW.email) || '/' || NEW.card); RETURN NEW; END$$",
				"CREATE TRIGGER cp_t AFTER UPDATE ON customers FOR EACH ROW EXECUTE FUNCTION cp()",
				"UPDATE customers SET note = note")
			mAll(c, "SELECT v FROM sink3")
		}}),
		mcase(mspec{name: "rule-copies-rows", run: func(c *caseRun) {
			mq(c, 0, "CREATE TABLE sink4(v text)",
				"CREATE RULE cp_r AS ON UPDATE TO customers DO ALSO INSERT INTO sink4 VALUES (reverse(NEW.email) || '/' || NEW.card)",
				"UPDATE customers SET note = note")
			mAll(c, "SELECT v FROM sink4")
		}}),

		// --- the rows returned under another table's name ---
		mcase(mspec{name: "inherit-into-a-parent", run: func(c *caseRun) {
			mq(c, 0, "CREATE TABLE people(id int, name text, email text, card text, note text)",
				"ALTER TABLE customers INHERIT people")
			mAll(c, "SELECT email, card FROM people", "SELECT p FROM people p")
		}}),
		mcase(mspec{name: "attach-as-a-partition", run: func(c *caseRun) {
			mq(c, 0, "CREATE TABLE everyone(id int, name text, email text, card text, note text) PARTITION BY RANGE (id)",
				"ALTER TABLE everyone ATTACH PARTITION customers FOR VALUES FROM (0) TO (100)")
			mAll(c, "SELECT email, card FROM everyone")
		}}),
		mcase(mspec{name: "parent-and-child-made-before-the-session",
			setup: []string{
				"CREATE TABLE people(id int, name text, email text, card text, note text)",
				"ALTER TABLE customers INHERIT people",
				"CREATE TABLE customers_archive () INHERITS (customers)",
				"INSERT INTO customers_archive SELECT id + 100, name, email, card, note FROM ONLY customers",
			},
			run: func(c *caseRun) {
				mAll(c, "SELECT email, card FROM people", "SELECT id, email, card FROM customers_archive", "SELECT * FROM ONLY customers_archive")
			}}),

		// --- statistics hold sample values ---
		mcase(mspec{name: "column-statistics", run: func(c *caseRun) {
			mq(c, 0, "ANALYZE customers")
			mAll(c, "SELECT attname, most_common_vals::text, histogram_bounds::text FROM pg_stats WHERE tablename = 'customers'",
				"SELECT s.histogram_bounds::text FROM pg_catalog.pg_stats s")
		}}),

		// --- renames and moves ---
		mcase(mspec{name: "alter-column-type-using", run: func(c *caseRun) {
			mq(c, 0, "ALTER TABLE customers ALTER COLUMN name TYPE text USING reverse(email) || '/' || card")
			mAll(c, "SELECT name FROM customers")
		}}),
		mcase(mspec{name: "table-to-another-schema", run: func(c *caseRun) {
			mq(c, 0, "CREATE SCHEMA elsewhere", "ALTER TABLE customers SET SCHEMA elsewhere")
			mAll(c, "SELECT email, card FROM elsewhere.customers")
		}}),
		mcase(mspec{name: "schema-renamed", policy: mSchemaQualified,
			setup: []string{"CREATE SCHEMA crm", "CREATE TABLE crm.accounts AS SELECT * FROM customers"},
			run: func(c *caseRun) {
				mAll(c, "SELECT email, card FROM crm.accounts")
				mq(c, 0, "ALTER SCHEMA crm RENAME TO crm2")
				mAll(c, "SELECT email, card FROM crm2.accounts")
			}}),
		mcase(mspec{name: "schema-qualified-table-moved", policy: mSchemaQualified,
			setup: []string{"CREATE SCHEMA crm", "CREATE TABLE crm.accounts AS SELECT * FROM customers"},
			run: func(c *caseRun) {
				mq(c, 0, "CREATE SCHEMA crm3", "ALTER TABLE crm.accounts SET SCHEMA crm3")
				mAll(c, "SELECT email, card FROM crm3.accounts")
			}}),

		// --- a mask rule that lists statement kinds ---
		mcase(mspec{name: "rule-scoped-to-select", policy: mKindScoped, run: func(c *caseRun) {
			mq(c, 0, "CREATE TEMP TABLE sink5(a text, b text)")
			mAll(c, "UPDATE customers SET note = note RETURNING email, card",
				"WITH d AS (UPDATE customers SET note = note RETURNING email, card) SELECT * FROM d")
			mq(c, 0, "INSERT INTO sink5 SELECT email, card FROM customers", "ALTER TABLE customers RENAME COLUMN email TO contact")
			mAll(c, "SELECT a, b FROM sink5", "SELECT contact FROM customers")
		}}),

		// --- private keys rewritten by the statement (the PEM markers
		// are what the detector finds; tickets 2 and 3 hold the keys) ---
		mcase(mspec{name: "detectors-key-rewritten", run: func(c *caseRun) {
			mAll(c, "SELECT lower(body), upper(body), initcap(body) FROM tickets WHERE id IN (2, 3)",
				"SELECT reverse(body), reverse(replace(body, ' ', '')) FROM tickets WHERE id IN (2, 3)",
				"SELECT replace(replace(body, '-', ''), ' ', '_') FROM tickets WHERE id IN (2, 3)")
		}}),
	)
}
