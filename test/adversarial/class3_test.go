package adversarial

import "strings"

// Class 3: interlock's parser (PostgreSQL 17's grammar) and the server
// (PostgreSQL 15) disagree. SYSTEM_USER is a reserved word since 16, so
// `DELETE FROM system_user` is a syntax error to interlock and a DELETE
// to the server; json_scalar(...) and merge_action() are SQL syntax since
// 17, and plain (user-defined) functions to the server. Text interlock
// cannot parse is policy.unknown's (deny by default on a target with deny
// rules); a disagreement must never resolve towards allow.

const policyUnknownDefault = `
  rules:
    - name: no-delete-orders
      match: {operation: {kinds: [delete], tables: [orders]}}
      action: deny
`

const policyUnknownAllow = `
  unknown: allow
  rules:
    - name: no-delete-orders
      match: {operation: {kinds: [delete], tables: [orders]}}
      action: deny
`

const policyUnknownReview = `
  unknown: review
  unknown_review: {approvers: [daemon], timeout: 2s}
  rules:
    - name: no-delete-orders
      match: {operation: {kinds: [delete], tables: [orders]}}
      action: deny
`

// systemUserTable is a table PostgreSQL 15 accepts and 17 cannot name.
var systemUserTable = []string{
	"CREATE TABLE system_user(id int, secret text)",
	"INSERT INTO system_user VALUES (1, 'row-SECRET-1'), (2, 'row-SECRET-2'), (3, 'row-SECRET-3')",
}

func systemUserIntact(c *caseRun) string { return rowsIntact(c, "system_user", 3) }

func bothIntact(c *caseRun) string {
	if e := ordersIntact(c); e != "" {
		return e
	}
	return systemUserIntact(c)
}

func init() {
	add(
		advCase{
			name: "c3-unparsable-refused-by-policy-unknown", class: 3, policy: policyUnknownDefault, setup: systemUserTable,
			effect: systemUserIntact, mode: mustRefuse, rules: []string{"policy.unknown"},
			run: func(c *caseRun) { c.send(0, q("DELETE FROM system_user")) },
		},
		advCase{
			name: "c3-unparsable-with-forbidden-neighbour-after", class: 3, policy: policyUnknownDefault, setup: systemUserTable,
			effect: bothIntact, mode: mustRefuse, rules: []string{"policy.unknown", "no-delete-orders"},
			run: func(c *caseRun) { c.send(0, q("DELETE FROM system_user WHERE id = 1; DELETE FROM orders")) },
		},
		advCase{
			name: "c3-unparsable-with-forbidden-neighbour-before", class: 3, policy: policyUnknownDefault, setup: systemUserTable,
			effect: bothIntact, mode: mustRefuse, rules: []string{"policy.unknown", "no-delete-orders"},
			run: func(c *caseRun) { c.send(0, q("SELECT 1; DELETE FROM orders WHERE id > 0; TABLE system_user")) },
		},
		advCase{
			name: "c3-unparsable-extended-protocol", class: 3, policy: policyUnknownDefault, setup: systemUserTable,
			effect: systemUserIntact, mode: mustRefuse, rules: []string{"policy.unknown"},
			run: func(c *caseRun) {
				c.send(0, join(extQuery("DELETE FROM system_user WHERE id > $1", "0"), syncMsg())...)
			},
		},
		advCase{
			name: "c3-unparsable-prepared-then-executed", class: 3, policy: policyUnknownDefault, setup: systemUserTable,
			effect: systemUserIntact, mode: mustRefuse, rules: []string{"policy.unknown"},
			run: func(c *caseRun) {
				c.send(0, q("PREPARE p AS DELETE FROM system_user"))
				c.send(0, q("EXECUTE p"))
			},
		},
		advCase{
			name: "c3-unparsable-copy", class: 3, policy: policyUnknownDefault, setup: systemUserTable,
			effect: leaked("row-SECRET"), mode: mustRefuse, rules: []string{"policy.unknown"},
			run: func(c *caseRun) { c.send(0, q("COPY system_user TO STDOUT")) },
		},
		advCase{
			name: "c3-unknown-review-times-out", class: 3, policy: policyUnknownReview, setup: systemUserTable,
			effect: systemUserIntact, mode: mustRefuse, rules: []string{"policy.unknown"},
			run: func(c *caseRun) {
				c.sendOpts(0, -1, 30e9, q("DELETE FROM system_user"))
			},
		},
		advCase{
			name: "c3-unknown-allow-lets-it-through-and-journals-it", class: 3, policy: policyUnknownAllow, setup: systemUserTable,
			effect: systemUserIntact, mode: either, rules: []string{"policy.unknown"},
			run: func(c *caseRun) { c.send(0, q("DELETE FROM system_user WHERE id = 1")) },
			check: func(c *caseRun) {
				recs := c.find("DELETE FROM system_user WHERE id = 1")
				if len(recs) != 1 || !contains(recs[0].Kinds, "unknown") || recs[0].Decision.Action != "allow" || recs[0].Res == nil || recs[0].Res.Rows != 1 {
					c.t.Errorf("policy.unknown: allow: want one pg.statement with kind unknown, decision allow and 1 row; got %+v", recs)
				}
				if n := c.sql("SELECT count(*) FROM system_user"); n != "2" {
					c.t.Errorf("policy.unknown: allow: the statement did not run (system_user has %s rows, want 2)", n)
				}
			},
		},
		advCase{
			name: "c3-unknown-allow-with-forbidden-neighbour", class: 3, policy: policyUnknownAllow, setup: systemUserTable,
			effect: bothIntact, mode: either, rules: []string{"policy.unknown", "no-delete-orders"},
			run: func(c *caseRun) {
				c.send(0, q("DELETE FROM orders WHERE id = 1; DELETE FROM system_user WHERE id = 1"))
			},
		},
		advCase{
			name: "c3-pg17-syntax-hides-a-user-function", class: 3, policy: policyDenyDeleteDrop, rules: append([]string{"policy.unknown"}, class1Rules...),
			setup:  []string{"CREATE FUNCTION json_scalar(int) RETURNS int LANGUAGE sql AS $$DELETE FROM orders; SELECT 1$$"},
			effect: ordersIntact, mode: mustRefuse,
			run: func(c *caseRun) { c.send(0, q("SELECT json_scalar(1)")) },
		},
		advCase{
			name: "c3-pg17-merge-action-hides-a-user-function", class: 3, policy: policyDenyDeleteDrop, rules: append([]string{"policy.unknown"}, class1Rules...),
			setup:  []string{"CREATE FUNCTION merge_action() RETURNS int LANGUAGE sql AS $$DELETE FROM orders; SELECT 1$$"},
			effect: ordersIntact, mode: mustRefuse,
			run: func(c *caseRun) { c.send(0, join(extQuery("SELECT merge_action()"), syncMsg())...) },
		},
		advCase{
			name: "c3-pg17-reads-system-user-as-a-function", class: 3, setup: systemUserTable,
			policy: `
  rules:
    - name: no-read-system-user
      match: {operation: {kinds: [select, copy_to], tables: [system_user]}}
      action: deny
`,
			effect: leaked("row-SECRET"), mode: mustRefuse, rules: []string{"no-read-system-user", "policy.unknown"},
			run: func(c *caseRun) { c.send(0, q("SELECT * FROM system_user")) },
		},
	)
}

// leaked: a value containing marker reached the client.
func leaked(marker string) func(c *caseRun) string {
	return func(c *caseRun) string {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, r := range c.replies {
			for _, m := range r.Msgs {
				vals := []string{m.Value}
				for _, v := range m.Values {
					if v != nil {
						vals = append(vals, *v)
					}
				}
				for _, v := range vals {
					if strings.Contains(v, marker) {
						return "the client read " + short(strings.TrimSpace(v), 80)
					}
				}
			}
		}
		for _, o := range c.outputs {
			if strings.Contains(o, marker) {
				return "the client read a value containing " + marker
			}
		}
		return ""
	}
}
