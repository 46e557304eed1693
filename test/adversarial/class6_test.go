package adversarial

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/test/adversarial/rawpg"
)

// Class 6: the policy a newcomer writes and relies on: default deny, one
// allow rule for kind select, one mask rule on a column. Everything that
// is not a plain read must be refused, live and by `interlock policy test`
// with the same configuration; a plain SELECT is allowed with the column
// masked; `interlock policy check` refuses a misspelt kind.

const policyNewcomer = `
  default: deny
  rules:
    - name: allow-select
      match: {operation: {kinds: [select]}}
      action: allow
    - name: mask-email
      match: {targets: [db]}
      action: mask
      mask: {columns: [customers.email]}
`

var customersSetup = []string{
	"CREATE TABLE customers(id int, email text)",
	"INSERT INTO customers VALUES (1, 'jane@example.com')",
	"CREATE FUNCTION del_customers() RETURNS int LANGUAGE sql AS $$DELETE FROM customers; SELECT 1$$",
	"CREATE SEQUENCE customers_seq",
}

func customersIntact(c *caseRun) string { return rowsIntact(c, "customers", 1) }

// policyTestRefuses: `interlock policy test --sql` with the case's config
// does not allow the statement either.
func policyTestRefuses(sql string) func(c *caseRun) {
	return func(c *caseRun) {
		sql := c.expand(sql)
		out, stderr, code := runInterlock("policy", "test", "-c", c.cfgPath, "--target", "db", "--uid", "0", "--sql", sql, "--json")
		if code != 0 {
			c.t.Errorf("interlock policy test --sql %q: exit %d: %s", sql, code, stderr)
			return
		}
		var res []struct {
			Decision model.Decision `json:"decision"`
		}
		if err := json.Unmarshal([]byte(out), &res); err != nil || len(res) == 0 {
			c.t.Errorf("interlock policy test --sql %q: output %q: %v", sql, out, err)
			return
		}
		for _, r := range res {
			if r.Decision.Action == model.Allow || r.Decision.Action == model.Mask {
				c.t.Errorf("POLICY TEST ALLOWS: `interlock policy test --sql %q` says %s (rule %q) with the same configuration", sql, r.Decision.Action, r.Decision.Rule)
			}
		}
	}
}

func init() {
	newcomer := func(name, sql string, effect func(*caseRun) string) advCase {
		return advCase{
			name: "c6-" + name, class: 6, policy: policyNewcomer, setup: customersSetup, mode: mustRefuse,
			effect: effect,
			run: func(c *caseRun) {
				r := c.send(0, q(c.expand(sql)))
				if len(r.Errors()) == 0 {
					c.vars["ran"] = strings.Join(tags(r), ",")
				}
			},
			check: policyTestRefuses(sql),
		}
	}
	ran := func(c *caseRun) string {
		if v, ok := c.vars["ran"]; ok {
			return "the statement ran (" + v + ")"
		}
		return ""
	}
	add(
		newcomer("insert", "INSERT INTO customers VALUES (2, 'eve@example.com')", customersIntact),
		newcomer("delete", "DELETE FROM customers WHERE id = 1", customersIntact),
		newcomer("drop-table", "DROP TABLE customers", func(c *caseRun) string { return relGone(c, "public.customers") }),
		newcomer("alter-role", "ALTER ROLE {{role}} SET work_mem = '1MB'", roleChanged),
		newcomer("writable-cte", "WITH d AS (DELETE FROM customers RETURNING *) SELECT count(*) FROM d", customersIntact),
		newcomer("select-for-update", "SELECT id FROM customers FOR UPDATE", ran),
		newcomer("select-into", "SELECT * INTO stolen FROM customers", func(c *caseRun) string {
			if c.sql("SELECT to_regclass('public.stolen') IS NOT NULL") == "t" {
				return "SELECT INTO created table stolen"
			}
			return ""
		}),
		newcomer("select-calling-a-writing-function", "SELECT del_customers()", customersIntact),
		newcomer("explain-analyze-delete", "EXPLAIN ANALYZE DELETE FROM customers", customersIntact),
		newcomer("copy-to-stdout", "COPY customers TO STDOUT", leaked("jane@example.com")),
		newcomer("select-nextval", "SELECT nextval('customers_seq')", func(c *caseRun) string {
			if c.sql("SELECT is_called FROM customers_seq") == "t" {
				return "nextval advanced the sequence (a SELECT that writes)"
			}
			return ""
		}),
		advCase{
			name: "c6-select-allowed-with-column-masked", class: 6, policy: policyNewcomer, setup: customersSetup, mode: custom, noControl: true,
			run: func(c *caseRun) {
				r := c.send(0, q("SELECT id, email FROM customers"))
				checkMasked(c, r, "1")
			},
		},
		advCase{
			name: "c6-table-command-allowed-with-column-masked", class: 6, policy: policyNewcomer, setup: customersSetup, mode: custom, noControl: true,
			run: func(c *caseRun) {
				r := c.send(0, q("TABLE customers"))
				checkMasked(c, r, "1")
			},
		},
		advCase{
			name: "c6-extended-binary-select-masked", class: 6, policy: policyNewcomer, setup: customersSetup, mode: custom, noControl: true,
			run: func(c *caseRun) {
				r := c.send(0, parse("", "SELECT email AS e, id FROM customers"), withResultFormats(bind("", ""), 1), describeP(""), execute("", 0), syncMsg())
				for _, v := range allValues(r) {
					if strings.Contains(v, "jane@example.com") {
						c.t.Errorf("GOT THROUGH: the binary-format result carried the unmasked email: %s", summarize(r))
					}
				}
				if len(r.Errors()) > 0 || len(allValues(r)) != 2 {
					c.t.Errorf("the allowed SELECT did not return its row: %s", summarize(r))
				}
			},
		},
		advCase{
			name: "c6-policy-check-refuses-a-misspelt-kind", class: 6, noDB: true,
			run: func(c *caseRun) {
				c.writeConfig(`
  default: deny
  rules:
    - name: no-drop
      match: {operation: {kinds: [drop_databse]}}
      action: deny
`)
				b, _ := os.ReadFile(c.cfgPath)
				cfg := string(b)
				line := 0
				for i, l := range strings.Split(cfg, "\n") {
					if strings.Contains(l, "drop_databse") {
						line = i + 1
					}
				}
				out, stderr, code := runInterlock("policy", "check", "-c", c.cfgPath)
				if code != 78 {
					c.t.Errorf("CONFIG ACCEPTED: `interlock policy check` of kinds: [drop_databse] exited %d, want 78: %s %s", code, out, stderr)
				}
				if want := fmt.Sprintf("%s:%d", c.cfgPath, line); !strings.Contains(out+stderr, want) || !strings.Contains(out+stderr, "drop_databse") {
					c.t.Errorf("`interlock policy check` does not name the line (%s) and the kind: %s %s", want, out, stderr)
				}
			},
		},
	)
}

func checkMasked(c *caseRun, r rawpg.Reply, id string) {
	vals := allValues(r)
	if len(r.Errors()) > 0 || len(vals) < 2 {
		c.t.Errorf("the allowed SELECT was not answered with its row: %s", summarize(r))
		return
	}
	for _, v := range vals {
		if strings.Contains(v, "jane@example.com") {
			c.t.Errorf("GOT THROUGH: the email column reached the client unmasked: %s", summarize(r))
		}
	}
	if !contains(vals, id) {
		c.t.Errorf("the unmasked column id did not come back as %s: %s", id, summarize(r))
	}
}
