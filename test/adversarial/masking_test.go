package adversarial

import (
	"fmt"
	"time"

	"github.com/interlock/interlock/test/adversarial/rawpg"
)

// Class 11 (issue 11): masking that fails closed. No masked value, or
// anything computed from it, reaches the client or the journal. The data,
// the policy and the contract are in masking_harness_test.go; the forms
// of an original the scanner looks for in masking_scan_test.go.
//
// Most statements run three ways (mAll): a simple Query, the extended
// protocol with text results, and with binary results.

func init() {
	add(
		// --- the columns themselves ---
		mcase(mspec{name: "direct-columns", run: func(c *caseRun) {
			mAll(c, "SELECT id, name, email, card, note FROM customers ORDER BY id", "SELECT * FROM customers", "TABLE customers")
		}}),
		mcase(mspec{name: "column-aliases", run: func(c *caseRun) {
			mAll(c, "SELECT email AS x, card AS note, id AS email FROM customers c",
				`SELECT c.email AS "customers.id", c.card AS "name" FROM customers AS c`,
				"SELECT x.e, x.k FROM customers AS x(i, n, e, k)")
		}}),
		mcase(mspec{name: "distinct-group-order", run: func(c *caseRun) {
			mAll(c, "SELECT DISTINCT email, card FROM customers",
				"SELECT email, card, count(*) FROM customers GROUP BY email, card ORDER BY email",
				"SELECT DISTINCT ON (card) card, email FROM customers ORDER BY card")
		}}),

		// --- expressions over a masked column ---
		mcase(mspec{name: "expr-upper", run: func(c *caseRun) {
			mAll(c, "SELECT upper(email), upper(card) FROM customers")
		}}),
		mcase(mspec{name: "expr-lower-initcap", run: func(c *caseRun) {
			mAll(c, "SELECT lower(email), lower(card), initcap(email) FROM customers")
		}}),
		mcase(mspec{name: "expr-concat-empty", run: func(c *caseRun) {
			mAll(c, "SELECT email || '', card || '', '' || email, concat(email, ''), concat_ws('', card) FROM customers")
		}}),
		mcase(mspec{name: "expr-substr-pieces", run: func(c *caseRun) {
			mAll(c, "SELECT substr(email, 1, 6), substr(email, 7, 6), substr(card, 1, 9), right(card, 10), left(email, 5) FROM customers",
				"SELECT split_part(email, '@', 1), substring(email from '^[^@]+'), substr(card, 6, 4) FROM customers",
				"SELECT string_to_array(email, NULL), regexp_split_to_array(card, '') FROM customers")
		}}),
		mcase(mspec{name: "expr-translate-replace", run: func(c *caseRun) {
			mAll(c, "SELECT translate(email, '@.-', '#,_'), translate(card, ' -', '..'), replace(email, '@', ' at ') FROM customers")
		}}),
		mcase(mspec{name: "expr-reverse", run: func(c *caseRun) {
			mAll(c, "SELECT reverse(email), reverse(card) FROM customers")
		}}),
		mcase(mspec{name: "expr-encode-base64", run: func(c *caseRun) {
			mAll(c, "SELECT encode(convert_to(email, 'UTF8'), 'base64'), encode(card::bytea, 'base64') FROM customers")
		}}),
		mcase(mspec{name: "expr-encode-hex", run: func(c *caseRun) {
			mAll(c, "SELECT encode(convert_to(email, 'UTF8'), 'hex'), encode(card::bytea, 'hex'), encode(convert_to(upper(email), 'UTF8'), 'hex') FROM customers")
		}}),
		mcase(mspec{name: "expr-format-quote-pad", run: func(c *caseRun) {
			mAll(c, "SELECT format('%s|%s', email, card), quote_literal(email), quote_ident(card), lpad(card, 30, '*'), overlay(email placing '' from 1 for 0) FROM customers")
		}}),
		mcase(mspec{name: "expr-case-coalesce", run: func(c *caseRun) {
			mAll(c, "SELECT CASE WHEN id > 0 THEN email END, coalesce(card, ''), nullif(email, ''), greatest(card, '') FROM customers")
		}}),
		mcase(mspec{name: "window-functions", run: func(c *caseRun) {
			mAll(c, "SELECT first_value(email) OVER (ORDER BY id DESC), lag(card) OVER (ORDER BY id), nth_value(email, 2) OVER () FROM customers")
		}}),

		// --- casts ---
		mcase(mspec{name: "cast-bytea", run: func(c *caseRun) {
			mAll(c, "SELECT email::bytea, card::bytea, convert_to(email, 'LATIN1') FROM customers")
		}}),
		mcase(mspec{name: "cast-text-types", run: func(c *caseRun) {
			mAll(c, "SELECT email::varchar(100), card::char(40), email::name, CAST(card AS text), email::text, card::varchar FROM customers")
		}}),
		mcase(mspec{name: "cast-json-xml", run: func(c *caseRun) {
			mAll(c, `SELECT to_json(email), to_jsonb(card), ('"' || email || '"')::json, xmlelement(name e, email), card::xml FROM customers`)
		}}),

		// --- whole rows and row values ---
		mcase(mspec{name: "whole-row", run: func(c *caseRun) {
			mAll(c, "SELECT t FROM customers t", "SELECT (t).email, (t).card FROM customers t", "SELECT t::text FROM customers t")
		}}),
		mcase(mspec{name: "row-constructors", run: func(c *caseRun) {
			mAll(c, "SELECT ROW(t.*) FROM customers t", "SELECT ROW(email, card) FROM customers", "SELECT ROW(email) FROM customers",
				"SELECT ROW(id, ROW(card)) FROM customers")
		}}),
		mcase(mspec{name: "row-to-json", run: func(c *caseRun) {
			mAll(c, "SELECT row_to_json(t) FROM customers t", "SELECT row_to_json(ROW(email, card)) FROM customers")
		}}),
		mcase(mspec{name: "to-json-jsonb", run: func(c *caseRun) {
			mAll(c, "SELECT to_json(t), to_jsonb(t) FROM customers t",
				"SELECT to_jsonb(t) ->> 'email', to_jsonb(t) -> 'card' FROM customers t",
				"SELECT key, value FROM customers t, jsonb_each_text(to_jsonb(t))",
				"SELECT jsonb_path_query(to_jsonb(t), '$.email') FROM customers t")
		}}),
		mcase(mspec{name: "json-build-object", run: func(c *caseRun) {
			mAll(c, "SELECT json_build_object('e', email, 'c', card), jsonb_build_object('e', email), json_build_array(email, card) FROM customers")
		}}),

		// --- aggregates ---
		mcase(mspec{name: "agg-array-agg", run: func(c *caseRun) {
			mAll(c, "SELECT array_agg(email), array_agg(card ORDER BY id) FROM customers")
		}}),
		mcase(mspec{name: "agg-string-agg", run: func(c *caseRun) {
			mAll(c, "SELECT string_agg(email, ','), string_agg(card, ' | ') FROM customers")
		}}),
		mcase(mspec{name: "agg-json-agg", run: func(c *caseRun) {
			mAll(c, "SELECT json_agg(email), jsonb_agg(card), json_agg(t), jsonb_object_agg(id, email) FROM customers t")
		}}),
		mcase(mspec{name: "agg-min-max", run: func(c *caseRun) {
			mAll(c, "SELECT min(email), max(email), min(card), max(card) FROM customers", "SELECT max(email), max(card) FROM customers GROUP BY id")
		}}),

		// --- subqueries, set operations, CTEs ---
		mcase(mspec{name: "scalar-subquery", run: func(c *caseRun) {
			mAll(c, "SELECT (SELECT email FROM customers c WHERE c.id = o.id), (SELECT card FROM customers c WHERE c.id = o.id) FROM orders o",
				"SELECT id, (SELECT c2.email FROM customers c2 WHERE c2.id = c.id) FROM customers c")
		}}),
		mcase(mspec{name: "subquery-lateral", run: func(c *caseRun) {
			mAll(c, "SELECT * FROM (SELECT email AS a, card AS b FROM customers) s",
				"SELECT x, y FROM customers c, LATERAL (SELECT c.email, c.card) s(x, y)")
		}}),
		mcase(mspec{name: "union", run: func(c *caseRun) {
			mAll(c, "SELECT email FROM customers UNION SELECT note FROM orders", "SELECT card FROM customers UNION ALL SELECT note FROM orders")
		}}),
		mcase(mspec{name: "intersect", run: func(c *caseRun) {
			mAll(c, "SELECT email, card FROM customers INTERSECT SELECT email, card FROM customers c JOIN orders o USING (id)")
		}}),
		mcase(mspec{name: "except", run: func(c *caseRun) {
			mAll(c, "SELECT email, card FROM customers EXCEPT SELECT note, note FROM orders")
		}}),
		mcase(mspec{name: "cte", run: func(c *caseRun) {
			mAll(c, "WITH x AS (SELECT email AS e, card AS k FROM customers) SELECT e, k FROM x",
				"WITH x AS MATERIALIZED (SELECT email, card FROM customers) SELECT * FROM x",
				"WITH RECURSIVE r(e, n) AS (SELECT email, 1 FROM customers UNION ALL SELECT e, n + 1 FROM r WHERE n < 2) SELECT e FROM r")
		}}),

		// --- copies: views, tables, renames ---
		mcase(mspec{name: "view-plain", run: func(c *caseRun) {
			mq(c, 0, "CREATE TEMP VIEW mv AS SELECT id, email, card FROM customers")
			mAll(c, "SELECT * FROM mv")
		}}),
		mcase(mspec{name: "view-nested-renamed", run: func(c *caseRun) {
			mq(c, 0, "CREATE VIEW mv1 AS SELECT id, email AS contact, card AS pan FROM customers", "CREATE VIEW mv2 AS SELECT contact AS a, pan AS b FROM mv1")
			mAll(c, "SELECT * FROM mv2", "SELECT a, b FROM mv2")
		}}),
		mcase(mspec{name: "materialized-view", run: func(c *caseRun) {
			mq(c, 0, "CREATE MATERIALIZED VIEW mm AS SELECT email, card FROM customers")
			mAll(c, "SELECT * FROM mm")
		}}),
		mcase(mspec{name: "create-temp-table-as", run: func(c *caseRun) {
			mq(c, 0, "CREATE TEMP TABLE mt AS SELECT id, email, card FROM customers")
			mAll(c, "SELECT * FROM mt")
		}}),
		mcase(mspec{name: "insert-select", run: func(c *caseRun) {
			mq(c, 0, "CREATE TABLE sink(a text, b text)", "INSERT INTO sink SELECT email, card FROM customers")
			mAll(c, "SELECT a, b FROM sink")
		}}),
		mcase(mspec{name: "select-into", run: func(c *caseRun) {
			mq(c, 0, "SELECT email, card INTO TEMP stolen FROM customers")
			mAll(c, "SELECT * FROM stolen")
		}}),
		mcase(mspec{name: "returning", run: func(c *caseRun) {
			mq(c, 0, "CREATE TEMP TABLE sink2(a text, b text)")
			mAll(c, "UPDATE customers SET note = note WHERE id = 4 RETURNING email, card",
				"INSERT INTO sink2 SELECT email, card FROM customers RETURNING a, b",
				"WITH u AS (UPDATE customers SET note = note RETURNING email, card) SELECT * FROM u")
		}}),
		mcase(mspec{name: "generated-column", run: func(c *caseRun) {
			mq(c, 0, "ALTER TABLE customers ADD COLUMN shadow text GENERATED ALWAYS AS (reverse(email) || '/' || card) STORED")
			mAll(c, "SELECT id, shadow FROM customers")
		}}),
		mcase(mspec{name: "renamed-column-temp-copy", run: func(c *caseRun) {
			mq(c, 0, "CREATE TEMP TABLE rc AS TABLE customers", "ALTER TABLE rc RENAME COLUMN email TO contact", "ALTER TABLE rc RENAME COLUMN card TO pan")
			mAll(c, "SELECT contact, pan FROM rc")
		}}),
		mcase(mspec{name: "renamed-column-of-the-table", run: func(c *caseRun) {
			mq(c, 0, "ALTER TABLE customers RENAME COLUMN email TO contact", "ALTER TABLE customers RENAME COLUMN card TO pan")
			mAll(c, "SELECT contact, pan FROM customers")
		}}),
		mcase(mspec{name: "renamed-table", run: func(c *caseRun) {
			mq(c, 0, "ALTER TABLE customers RENAME TO clients")
			mAll(c, "SELECT email, card FROM clients")
		}}),

		// --- copies the statement's text does not show ---
		mcase(mspec{name: "function-indirection",
			setup: []string{"CREATE FUNCTION mget(int) RETURNS text LANGUAGE sql AS 'SELECT email FROM customers WHERE id = $1'"},
			codes: []string{"22P02"},
			run: func(c *caseRun) {
				mq(c, 0, "CREATE FUNCTION mcard(int) RETURNS text LANGUAGE plpgsql AS $$BEGIN RETURN (SELECT reverse(card) FROM customers WHERE id = $1); END$$",
					"CREATE FUNCTION mall() RETURNS TABLE(e text, k text) LANGUAGE sql AS 'SELECT email, card FROM customers'")
				mAll(c, "SELECT mget(id), mcard(id) FROM orders", "SELECT * FROM mall()", "SELECT mget(4)::int")
			}}),
		mcase(mspec{name: "view-made-before-the-session",
			setup: []string{"CREATE VIEW contacts AS SELECT id, email AS contact, card AS pan FROM customers"},
			run: func(c *caseRun) {
				mAll(c, "SELECT * FROM contacts", "SELECT contact, pan FROM contacts WHERE id = 4")
			}}),
		mcase(mspec{name: "do-block-hidden-copy", run: func(c *caseRun) {
			mq(c, 0, "DO $$BEGIN CREATE TEMP TABLE hc AS SELECT id, email, card FROM customers; END$$")
			mAll(c, "SELECT * FROM hc")
		}}),
		mcase(mspec{name: "update-copies-into-another-column", run: func(c *caseRun) {
			mq(c, 0, "UPDATE customers SET name = email || ' / ' || card")
			mAll(c, "SELECT id, name FROM customers")
		}}),
		mcase(mspec{name: "trigger-notice", run: func(c *caseRun) {
			mq(c, 0, "CREATE TABLE tn(v text)",
				"CREATE FUNCTION tn_note() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RAISE NOTICE 'row %', NEW.v; RETURN NEW; END$$",
				"CREATE TRIGGER tn_t BEFORE INSERT ON tn FOR EACH ROW EXECUTE FUNCTION tn_note()",
				"INSERT INTO tn SELECT email FROM customers", "INSERT INTO tn SELECT card FROM customers WHERE id = 4")
		}}),
		mcase(mspec{name: "session-variable", run: func(c *caseRun) {
			mq(c, 0, "DO $$BEGIN PERFORM set_config('adv.x', (SELECT email FROM customers WHERE id = 4), false); END$$",
				"SELECT set_config('adv.y', card, false) FROM customers WHERE id = 4")
			mAll(c, "SELECT current_setting('adv.x'), current_setting('adv.y', true)", "SHOW adv.x")
		}}),
		mcase(mspec{name: "large-object", run: func(c *caseRun) {
			mq(c, 0, "SELECT lo_from_bytea(424242, convert_to(email || ' ' || card, 'UTF8')) FROM customers WHERE id = 4",
				"DO $$BEGIN PERFORM lo_from_bytea(424243, convert_to((SELECT email FROM customers WHERE id = 1), 'UTF8')); END$$")
			mAll(c, "SELECT lo_get(424242), lo_get(424243)", "SELECT convert_from(lo_get(424242), 'UTF8')")
		}}),

		// --- COPY ---
		mcase(mspec{name: "copy-table-to-stdout", run: func(c *caseRun) {
			mq(c, 0, "COPY customers TO STDOUT", "COPY customers (email, card) TO STDOUT WITH (FORMAT csv, HEADER)", "COPY customers TO STDOUT WITH (FORMAT binary)")
			msend(c, 0, parse("", "COPY customers TO STDOUT"), bind("", ""), execute("", 0), syncMsg())
		}}),
		mcase(mspec{name: "copy-query-to-stdout", run: func(c *caseRun) {
			mq(c, 0, "COPY (SELECT email, card FROM customers) TO STDOUT", "COPY (SELECT reverse(email) FROM customers) TO STDOUT (FORMAT csv)",
				"COPY (SELECT t FROM customers t) TO STDOUT (FORMAT binary)")
			msend(c, 0, parse("", "COPY (SELECT email, card FROM customers) TO STDOUT"), bind("", ""), execute("", 0), syncMsg())
		}}),

		// --- set-returning functions, XML, text search ---
		mcase(mspec{name: "srf-unnest", run: func(c *caseRun) {
			mAll(c, "SELECT unnest(array[email, card]) FROM customers", "SELECT * FROM unnest((SELECT array_agg(email) FROM customers))")
		}}),
		mcase(mspec{name: "srf-regexp-split", run: func(c *caseRun) {
			mAll(c, "SELECT regexp_split_to_table(email, '@') FROM customers", "SELECT regexp_split_to_table(card, '[ -]') FROM customers",
				"SELECT string_to_table(email, '.') FROM customers", "SELECT regexp_matches(email, '^(.*)@(.*)$') FROM customers")
		}}),
		mcase(mspec{name: "table-to-xml", run: func(c *caseRun) {
			mAll(c, "SELECT table_to_xml('customers', true, false, '')")
		}}),
		mcase(mspec{name: "query-to-xml", run: func(c *caseRun) {
			mAll(c, "SELECT query_to_xml('SELECT email, card FROM customers', true, false, '')")
		}}),
		mcase(mspec{name: "to-tsvector", run: func(c *caseRun) {
			mAll(c, "SELECT to_tsvector('simple', email), to_tsvector('simple', card), to_tsvector('english', email) FROM customers")
		}}),

		// --- cursors, portals, prepared statements ---
		mcase(mspec{name: "cursor-sql-fetch", run: func(c *caseRun) {
			mq(c, 0, "BEGIN", "DECLARE mc SCROLL CURSOR FOR SELECT id, email, card FROM customers", "FETCH 2 FROM mc", "FETCH ALL FROM mc",
				"FETCH ABSOLUTE 1 FROM mc", "FETCH BACKWARD ALL FROM mc", "COMMIT")
			mq(c, 0, "DECLARE mh CURSOR WITH HOLD FOR SELECT email, card FROM customers", "FETCH 1 FROM mh")
			mExt(c, 0, "FETCH 1 FROM mh", 1)
			mExt(c, 0, "FETCH ALL FROM mh")
			mq(c, 0, "CLOSE mh")
		}}),
		mcase(mspec{name: "cursor-binary", run: func(c *caseRun) {
			mq(c, 0, "BEGIN", "DECLARE bc BINARY CURSOR FOR SELECT email, card, t, to_jsonb(email), array[email, card] FROM customers t",
				"FETCH ALL FROM bc", "COMMIT")
		}}),
		mcase(mspec{name: "cursor-protocol-execute", run: func(c *caseRun) {
			mq(c, 0, "BEGIN", "DECLARE pc CURSOR FOR SELECT id, email, card FROM customers", "DECLARE pc2 CURSOR FOR SELECT reverse(email), card FROM customers",
				"FETCH 1 FROM pc")
			// The SQL cursor is a portal: Execute it by name.
			msend(c, 0, describeP("pc"), execute("pc", 1), syncMsg())
			msend(c, 0, execute("pc", 0), syncMsg())
			msend(c, 0, execute("pc2", 0), syncMsg())
			mq(c, 0, "COMMIT")
		}}),
		mcase(mspec{name: "portals-beyond-tracking", run: func(c *caseRun) {
			mq(c, 0, "BEGIN")
			msgs := []rawpg.Msg{parse("mpe", "SELECT id, email, card FROM customers"), bind("p0", "mpe"), withResultFormats(bind("pb", "mpe"), 1), parse("mp1", "SELECT 1")}
			for i := 1; i <= 4200; i++ {
				msgs = append(msgs, bind(letterName(i), "mp1"))
			}
			msgs = append(msgs, syncMsg())
			msendOpts(c, 0, 120*time.Second, msgs...)
			msend(c, 0, describeP("p0"), execute("p0", 0), describeP("pb"), execute("pb", 0), syncMsg())
			msend(c, 0, execute(letterName(4200), 0), syncMsg())
			mq(c, 0, "COMMIT")
		}}),
		// Found while writing the case above: a pipeline of Binds larger
		// than interlock's 64 KiB buffer that fails early in a transaction
		// block, then an Execute of a portal the server skipped. Nothing can
		// leak here (the server answers 25P02), so there is no control run:
		// the case checks that the session is answered (refused or the
		// server's error), not left hanging.
		advCase{
			name: "m-portals-skipped-by-a-failed-pipeline", class: 11, setup: mSetup, policy: mPolicy, targetYAML: mTarget,
			mode: custom, noControl: true, check: mErrors([]string{"42P03", "34000"}),
			run: func(c *caseRun) {
				mq(c, 0, "BEGIN")
				msgs := []rawpg.Msg{parse("mpe", "SELECT id, email, card FROM customers"), bind("xb", "mpe"), parse("mp1", "SELECT 1")}
				for i := 1; i <= 4000; i++ {
					msgs = append(msgs, bind(letterName(i), "mp1")) // letterName(1) is xb: 42P03, the rest is skipped
				}
				msgs = append(msgs, syncMsg())
				msendOpts(c, 0, 120*time.Second, msgs...)
				msend(c, 0, execute(letterName(3900), 0), syncMsg())
				mq(c, 0, "ROLLBACK")
			},
		},
		mcase(mspec{name: "portal-suspended-resumed", run: func(c *caseRun) {
			mq(c, 0, "BEGIN")
			msend(c, 0, parse("ps", "SELECT id, email, card FROM customers ORDER BY id"), bind("pp", "ps"), withResultFormats(bind("pq", "ps"), 1),
				describeP("pp"), execute("pp", 1), describeP("pq"), execute("pq", 1), syncMsg())
			msend(c, 0, execute("pp", 1), execute("pq", 1), syncMsg())
			msend(c, 0, execute("pp", 0), execute("pq", 0), syncMsg())
			mq(c, 0, "COMMIT")
		}}),
		mcase(mspec{name: "prepare-execute-sql", run: func(c *caseRun) {
			mq(c, 0, "PREPARE ms AS SELECT id, email, card FROM customers", "EXECUTE ms",
				"PREPARE mr(int) AS SELECT reverse(email), card FROM customers WHERE id > $1", "EXECUTE mr(0)")
			mExt(c, 0, "EXECUTE ms", 1)
			mExt(c, 0, "EXECUTE ms")
		}}),
		mcase(mspec{name: "prepared-protocol", run: func(c *caseRun) {
			msend(c, 0, parse("sp", "SELECT id, email, card FROM customers WHERE id > $1"), describeS("sp"), syncMsg())
			msend(c, 0, bind("", "sp", "0"), describeP(""), execute("", 0), syncMsg())
			msend(c, 0, withResultFormats(bind("", "sp", "0"), 1), describeP(""), execute("", 0), syncMsg())
			msend(c, 0, withResultFormats(bind("", "sp", "0"), 0, 1, 0), describeP(""), execute("", 0), syncMsg())
			msend(c, 0, bind("", "sp", "2"), execute("", 0), syncMsg())
		}}),
		mcase(mspec{name: "extended-without-describe", run: func(c *caseRun) {
			msend(c, 0, parse("", "SELECT email, card FROM customers"), bind("", ""), execute("", 0), syncMsg())
			msend(c, 0, parse("", "SELECT email, card FROM customers"), withResultFormats(bind("", ""), 1), execute("", 0), syncMsg())
		}}),
		mcase(mspec{name: "multi-statement-query", run: func(c *caseRun) {
			mq(c, 0, "SELECT 1; SELECT email FROM customers; SELECT reverse(card) FROM customers; SELECT card FROM customers")
		}}),
		mcase(mspec{name: "fastpath-function-call", setup: []string{"CREATE FUNCTION mget(int) RETURNS text LANGUAGE sql AS 'SELECT email FROM customers WHERE id = $1'"},
			run: func(c *caseRun) {
				r := msend(c, 0, q("SELECT 'mget'::regproc::oid"))
				oid := 0
				if v := rows(r); len(v) == 1 {
					fmt.Sscan(v[0], &oid)
				}
				for _, id := range []string{"1", "4"} {
					msend(c, 0, rawpg.Msg{T: "F", Function: uint32(oid), Params: []*string{&id}})
				}
			}}),

		// --- binary results ---
		mcase(mspec{name: "binary-types", run: func(c *caseRun) {
			mAll(c, "SELECT email, card, email::bytea, to_jsonb(email), to_json(card), array[email, card], ROW(email, card), email::varchar, card::bpchar FROM customers")
		}}),

		// --- channels that are not rows ---
		mcase(mspec{name: "error-failed-casts", codes: []string{"22P02", "22003", "22007", "2200M", "22023"}, run: func(c *caseRun) {
			mAll(c, "SELECT email::int FROM customers", "SELECT email::int FROM customers WHERE id = 4",
				"SELECT card::bigint FROM customers", "SELECT card::bigint FROM customers WHERE id = 4",
				"SELECT replace(replace(card, ' ', ''), '-', '')::int FROM customers",
				"SELECT email::date FROM customers WHERE id = 4", "SELECT email::uuid FROM customers WHERE id = 2",
				"SELECT email::jsonb FROM customers WHERE id = 4", "SELECT xmlparse(document email) FROM customers WHERE id = 4",
				"SELECT set_config('TimeZone', email, false) FROM customers WHERE id = 4")
		}}),
		mcase(mspec{name: "error-unique-violation", codes: []string{"23505"}, run: func(c *caseRun) {
			mq(c, 0, "CREATE TEMP TABLE uq(v text UNIQUE)", "INSERT INTO uq SELECT email FROM customers", "INSERT INTO uq SELECT email FROM customers WHERE id = 4",
				"INSERT INTO uq SELECT card FROM customers", "INSERT INTO uq SELECT card FROM customers WHERE id = 4",
				"INSERT INTO customers(id, email) SELECT id + 10, email FROM customers WHERE id = 4")
			mExt(c, 0, "INSERT INTO uq SELECT card FROM customers WHERE id = 2")
		}}),
		mcase(mspec{name: "error-constraint-details", codes: []string{"23514", "23502", "23503"}, run: func(c *caseRun) {
			mq(c, 0, "CREATE TEMP TABLE ck(v text CHECK (v = ''))", "INSERT INTO ck SELECT email FROM customers WHERE id = 4",
				"CREATE TEMP TABLE nn(a text, b text NOT NULL)", "INSERT INTO nn SELECT card, NULL FROM customers WHERE id = 4",
				"CREATE TABLE fk(v text REFERENCES customers(email))", "INSERT INTO fk SELECT reverse(email) FROM customers WHERE id = 4")
		}}),
		mcase(mspec{name: "raise-notice-do", run: func(c *caseRun) {
			sql := "DO $$DECLARE r record; BEGIN FOR r IN SELECT email, card FROM customers ORDER BY id LOOP RAISE NOTICE 'n %', r.email USING DETAIL = r.card, HINT = reverse(r.email); END LOOP; END$$"
			msend(c, 0, q(sql))
			mExt(c, 0, sql)
		}}),
		mcase(mspec{name: "raise-exception-do", codes: []string{"P0001"}, run: func(c *caseRun) {
			mq(c, 0, "DO $$BEGIN RAISE EXCEPTION 'e %', (SELECT email FROM customers WHERE id = 4) USING DETAIL = (SELECT card FROM customers WHERE id = 4), HINT = (SELECT reverse(email) FROM customers WHERE id = 1); END$$",
				"DO $$BEGIN RAISE EXCEPTION 'fields' USING COLUMN = (SELECT email FROM customers WHERE id = 4), CONSTRAINT = (SELECT card FROM customers WHERE id = 4), "+
					"TABLE = (SELECT reverse(email) FROM customers WHERE id = 2), SCHEMA = (SELECT reverse(card) FROM customers WHERE id = 1), DATATYPE = (SELECT upper(email) FROM customers WHERE id = 3); END$$",
				// A forged refusal: SQLSTATE 42501 and a rule's name, carrying the value.
				`DO $$BEGIN RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = 'statement denied by interlock rule "pii": ' || (SELECT reverse(email) FROM customers WHERE id = 4); END$$`)
		}}),
		mcase(mspec{name: "raise-in-function", codes: []string{"P0001"}, run: func(c *caseRun) {
			mq(c, 0, "CREATE FUNCTION mleak() RETURNS int LANGUAGE plpgsql AS $$DECLARE r record; BEGIN FOR r IN SELECT email, card FROM customers ORDER BY id LOOP "+
				"RAISE NOTICE '%', r.email USING DETAIL = r.card; RAISE WARNING '%', reverse(r.email); END LOOP; RAISE EXCEPTION 'last %', r.email USING HINT = r.card; END$$")
			mAll(c, "SELECT mleak()")
		}}),
		mcase(mspec{name: "notify-own-session", run: func(c *caseRun) {
			mq(c, 0, "LISTEN mchan", "SELECT pg_notify('mchan', email) FROM customers", "SELECT pg_notify('mchan', card) FROM customers WHERE id = 4")
			mExt(c, 0, "SELECT pg_notify('mchan', reverse(email)) FROM customers")
		}}),
		mcase(mspec{name: "notify-listening-second-session", run: func(c *caseRun) {
			c.connect(1, nil)
			mq(c, 1, "LISTEN mchan")
			mq(c, 0, "DO $$BEGIN PERFORM pg_notify('mchan', email) FROM customers; END$$", "SELECT pg_notify('mchan', card) FROM customers")
			mq(c, 1, "SELECT 1")
		}}),
		mcase(mspec{name: "parameter-status-application-name", run: func(c *caseRun) {
			mq(c, 0, "SELECT set_config('application_name', email, false) FROM customers WHERE id = 1", "SHOW application_name",
				"SELECT current_setting('application_name')", "SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()",
				"DO $$BEGIN PERFORM set_config('application_name', (SELECT email FROM customers WHERE id = 4), false); END$$",
				"SELECT 1 FROM (SELECT set_config('application_name', reverse(card), false) FROM customers WHERE id = 4) s")
			mExt(c, 0, "SELECT 1 FROM (SELECT set_config('application_name', card, false) FROM customers WHERE id = 2) s")
		}}),
		mcase(mspec{name: "column-name-from-dynamic-sql", run: func(c *caseRun) {
			mq(c, 0, "DO $$BEGIN EXECUTE format('CREATE TEMP VIEW cn AS SELECT 1 AS %I, 2 AS %I', (SELECT email FROM customers WHERE id = 1), (SELECT reverse(card) FROM customers WHERE id = 4)); END$$",
				"DO $$BEGIN EXECUTE format('CREATE TEMP TABLE ct(%I int)', (SELECT email FROM customers WHERE id = 4)); END$$")
			mAll(c, "SELECT * FROM cn", "TABLE ct")
			mq(c, 0, "COPY (SELECT * FROM cn) TO STDOUT WITH (FORMAT csv, HEADER)")
		}}),

		// --- interlock's own catalog query, steered ---
		mcase(mspec{name: "catalog-hijack-operators-search-path",
			setup: []string{
				"CREATE SCHEMA evil",
				"CREATE FUNCTION evil.oideq(oid, oid) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT false'",
				"CREATE OPERATOR evil.= (LEFTARG = oid, RIGHTARG = oid, FUNCTION = evil.oideq)",
				"CREATE FUNCTION evil.oidany(oid, oid[]) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT false'",
				"CREATE OPERATOR evil.= (LEFTARG = oid, RIGHTARG = oid[], FUNCTION = evil.oidany)",
				"CREATE FUNCTION evil.i2gt(int2, int2) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT false'",
				"CREATE OPERATOR evil.> (LEFTARG = int2, RIGHTARG = int2, FUNCTION = evil.i2gt)",
				"CREATE FUNCTION evil.cat(name, text) RETURNS text LANGUAGE sql IMMUTABLE AS $$SELECT 'x'$$",
				"CREATE OPERATOR evil.|| (LEFTARG = name, RIGHTARG = text, FUNCTION = evil.cat)",
				"ALTER ROLE CURRENT_USER SET search_path = evil, pg_catalog, public",
				"ALTER DATABASE {{db}} SET search_path = evil, pg_catalog, public",
			},
			run: func(c *caseRun) {
				mq(c, 0, "SET search_path = evil, pg_catalog, public", "ALTER ROLE CURRENT_USER SET search_path = evil, pg_catalog, public")
				mAll(c, "SELECT id, email, card FROM customers")
				c.connect(1, nil)
				msend(c, 1, q("SELECT id, email, card FROM customers"))
				mExt(c, 1, "SELECT id, email, card FROM customers", 1)
			}}),

		// --- the detectors ---
		mcase(mspec{name: "detectors-free-text", run: func(c *caseRun) {
			mAll(c, "SELECT id, note FROM customers", "SELECT id, body FROM tickets")
		}}),
		mcase(mspec{name: "detectors-word-characters", run: func(c *caseRun) {
			mAll(c, "SELECT 'x' || replace(card, ' ', '') || 'x', 'k' || replace(note, ' ', '_') FROM customers",
				"SELECT replace(note, ' ', '') FROM customers", "SELECT replace(body, ' ', '') FROM tickets",
				`SELECT regexp_replace(body, '([0-9]{3}-[0-9]{2}-[0-9]{4})', 'a\1a') FROM tickets`)
		}}),
		mcase(mspec{name: "detectors-separators", run: func(c *caseRun) {
			mAll(c, "SELECT translate(card, ' -', '..'), translate(note, '-', '.'), regexp_replace(email, '@', ' @ ') FROM customers",
				"SELECT translate(body, '-', ' ') FROM tickets", "SELECT replace(body, '-----', '--') FROM tickets",
				`SELECT regexp_replace(card, '(.)', '\1 ', 'g') FROM customers`)
		}}),
		mcase(mspec{name: "detectors-pem-without-end", run: func(c *caseRun) {
			mAll(c, "SELECT body FROM tickets WHERE id = 3", "SELECT body FROM tickets ORDER BY id")
		}}),
		mcase(mspec{name: "detectors-binary-bytea", run: func(c *caseRun) {
			mAll(c, "SELECT blob FROM vault", "SELECT v.id, blob, convert_to(c.note, 'UTF8') FROM vault v, customers c")
		}}),
		mcase(mspec{name: "detectors-binary-jsonb", run: func(c *caseRun) {
			mAll(c, "SELECT doc FROM vault", "SELECT doc -> 'owner', doc ->> 'aws', to_jsonb(note) FROM vault, customers")
		}}),
		mcase(mspec{name: "detectors-binary-array", run: func(c *caseRun) {
			mAll(c, "SELECT tags FROM vault", "SELECT tags[1], array_to_string(tags, ' '), array[note] FROM vault, customers")
		}}),
	)
}

// letterName names portal i with x and the letters a to f only: digits
// in names would look like pieces of a card number to the scanner.
func letterName(i int) string {
	b := []byte("x")
	for ; i > 0; i /= 6 {
		b = append(b, byte('a'+i%6))
	}
	return string(b)
}
