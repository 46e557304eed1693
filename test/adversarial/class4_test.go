package adversarial

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/interlock/interlock/model"
)

// Class 4: rules read text, and server-side code is invisible in it. The
// effect a kind / table / no-WHERE rule forbids is reached through DO +
// EXECUTE, functions, procedures, triggers, operators, shadowed built-ins,
// views, domains, inheritance, renames, MERGE, DROP SCHEMA CASCADE, DROP
// OWNED and COPY ... FROM PROGRAM.
//
// Policy (a) has text rules only: an opaque statement (one that can run
// code its text does not show) is refused by the deny rules that name
// write or DDL kinds (include_opaque, on by default). Policy (b) leaves
// opaque statements to effects rules (include_opaque: false): the
// statement runs inside a transaction interlock holds, interlock reads
// what it did before COMMIT and rolls it back with an error naming the
// effects rule.

const policyTextRules = `
  rules:
    - name: no-delete-orders
      match: {operation: {kinds: [delete], tables: [orders]}}
      action: deny
    - name: no-drop-table
      match: {operation: {kinds: [drop_table]}}
      action: deny
    - name: no-unbounded-delete
      match: {operation: {kinds: [delete], no_where: true}}
      action: deny
`

var textRules = []string{"no-delete-orders", "no-drop-table", "no-unbounded-delete"}

const policyEffects = `
  rules:
    - name: no-unbounded-delete
      match: {operation: {kinds: [delete], no_where: true, include_opaque: false}}
      action: deny
    - name: effects-no-delete-orders
      match: {effects: {tables: [orders], rows_deleted_over: 0}}
      action: deny
    - name: effects-no-drop
      match: {effects: {dropped: true}}
      action: deny
`

var (
	effDelete = []string{"effects-no-delete-orders"}
	effDrop   = []string{"effects-no-drop"}
)

// Server-side code the cases call, created by the case's role.
var (
	fnDelSQL     = "CREATE FUNCTION del_sql() RETURNS int LANGUAGE sql AS $$DELETE FROM orders; SELECT 1$$"
	fnDropProc   = "CREATE PROCEDURE drop_proc() LANGUAGE plpgsql AS $$BEGIN DROP TABLE victim; END$$"
	fnDelCommit  = "CREATE PROCEDURE del_commit() LANGUAGE plpgsql AS $$BEGIN DELETE FROM orders WHERE id > 0; COMMIT; END$$"
	triggerSetup = []string{
		"CREATE FUNCTION audit_trg() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN DELETE FROM orders WHERE id > 0; RETURN NEW; END$$",
		"CREATE TRIGGER audit_del AFTER INSERT ON audit FOR EACH ROW EXECUTE FUNCTION audit_trg()",
	}
	shadowLower = []string{
		"CREATE SCHEMA evil",
		"CREATE FUNCTION evil.lower(text) RETURNS text LANGUAGE sql AS $$DELETE FROM public.orders WHERE id > 0; SELECT 'shadowed'$$",
	}
	shadowPlus = []string{
		"CREATE SCHEMA evil",
		"CREATE FUNCTION evil.plus(int, int) RETURNS int LANGUAGE sql AS $$DELETE FROM public.orders WHERE id > 0; SELECT $1 OPERATOR(pg_catalog.+) $2$$",
		"CREATE OPERATOR evil.+ (LEFTARG = int, RIGHTARG = int, FUNCTION = evil.plus)",
	}
	viewFn     = []string{fnDelSQL, "CREATE VIEW v_del AS SELECT del_sql() AS n"}
	updView    = []string{"CREATE VIEW orders_v AS SELECT * FROM orders"}
	domainFn   = []string{"CREATE FUNCTION del_check(int) RETURNS bool LANGUAGE sql AS $$DELETE FROM orders WHERE id > 0; SELECT true$$", "CREATE DOMAIN d_del AS int CHECK (del_check(VALUE))"}
	inherit    = []string{"CREATE TABLE base(id int, note text)", "ALTER TABLE orders INHERIT base"}
	schemaKeep = []string{"CREATE SCHEMA s2", "CREATE TABLE s2.keep(x int)"}
)

func schemaKeepIntact(c *caseRun) string { return relGone(c, "s2.keep") }

func ordersGone(c *caseRun) string { return relGone(c, "public.orders") }

// copyProgram drops victim from a program the server runs (as the
// postgres user, who may log in over the unix socket).
const copyProgram = `COPY sink FROM PROGRAM '{{psql}} -X -q -h {{socket}} -p {{port}} -U postgres -d {{db}} -c "DROP TABLE victim"; echo done'`

func init() {
	type attack struct {
		name   string
		setup  []string
		super  []string
		effect func(*caseRun) string
		run    func(c *caseRun)
		// a: policy (a)'s outcome (mustRefuse for opaque statements,
		// either for statements whose text is plain); b: whether policy
		// (b) must catch it, and by which rule.
		a     mode
		skipA bool
		b     []string // nil: no (b) case
		bMode mode
	}
	sq := func(stmts ...string) func(c *caseRun) {
		return func(c *caseRun) {
			for _, s := range stmts {
				c.send(0, q(c.expand(s)))
			}
		}
	}
	attacks := []attack{
		{name: "delete-via-do-execute", effect: ordersIntact, a: mustRefuse, b: effDelete,
			run: sq("DO $$BEGIN EXECUTE 'DELETE FROM ' || 'orders'; END$$")},
		{name: "delete-via-sql-function", setup: []string{fnDelSQL}, effect: ordersIntact, a: mustRefuse, b: effDelete,
			run: sq("SELECT del_sql()")},
		{name: "delete-via-plpgsql-function-created-in-session", effect: ordersIntact, a: mustRefuse, b: effDelete,
			run: sq("CREATE FUNCTION del_pl() RETURNS int LANGUAGE plpgsql AS $$BEGIN DELETE FROM orders WHERE id > 0; RETURN 1; END$$", "SELECT del_pl()")},
		{name: "drop-via-call-procedure", setup: []string{fnDropProc}, effect: victimIntact, a: mustRefuse, b: effDrop,
			run: sq("CALL drop_proc()")},
		{name: "drop-via-do", effect: victimIntact, a: mustRefuse, b: effDrop,
			run: sq("DO $$BEGIN EXECUTE 'DROP TABLE ' || 'victim'; END$$")},
		{name: "delete-via-trigger-on-insert", setup: triggerSetup, effect: ordersIntact, a: mustRefuse, b: effDelete,
			run: sq("INSERT INTO audit(msg) VALUES ('harmless')")},
		{name: "delete-via-user-defined-operator", effect: ordersIntact, a: mustRefuse, b: effDelete,
			run: sq("CREATE FUNCTION del_op(int, int) RETURNS bool LANGUAGE sql AS $$DELETE FROM orders WHERE id > 0; SELECT true$$",
				"CREATE OPERATOR ### (LEFTARG = int, RIGHTARG = int, FUNCTION = del_op)", "SELECT 1 ### 2")},
		{name: "delete-via-shadowed-lower-and-search-path", setup: shadowLower, effect: ordersIntact, a: mustRefuse, b: effDelete,
			run: func(c *caseRun) {
				c.send(0, q("SET search_path = evil, pg_catalog, public"), q("SELECT lower('ABC')"))
			}},
		{name: "delete-via-shadowed-plus-operator", setup: shadowPlus, effect: ordersIntact, a: mustRefuse, b: effDelete,
			run: func(c *caseRun) {
				c.send(0, q("SET search_path = evil, pg_catalog, public"), q("SELECT 1 + 1"))
			}},
		{name: "delete-via-view-calling-a-function", setup: viewFn, effect: ordersIntact, a: mustRefuse, b: effDelete,
			run: sq("SELECT * FROM v_del")},
		{name: "delete-through-updatable-view", setup: updView, effect: ordersIntact, a: mustRefuse, b: effDelete,
			run: sq("DELETE FROM orders_v WHERE id > 0")},
		{name: "delete-via-domain-check-function", setup: domainFn, effect: ordersIntact, a: mustRefuse, b: effDelete,
			run: sq("SELECT 1::d_del")},
		{name: "delete-through-inheritance-parent", setup: inherit, effect: ordersIntact, a: mustRefuse, b: effDelete,
			run: sq("DELETE FROM base WHERE id > 0")},
		{name: "delete-after-rename-in-one-transaction", effect: ordersIntact, a: either, b: effDelete,
			run: func(c *caseRun) {
				c.send(0, q("BEGIN"), q("ALTER TABLE orders RENAME TO o2"), q("DELETE FROM o2 WHERE id > 0"), q("ALTER TABLE o2 RENAME TO orders"), q("COMMIT"))
			}},
		{name: "delete-after-rename-across-transactions", effect: ordersIntact, a: either, b: []string{}, bMode: either,
			run: sq("ALTER TABLE orders RENAME TO o2", "DELETE FROM o2 WHERE id > 0", "ALTER TABLE o2 RENAME TO orders")},
		{name: "delete-where-true", effect: ordersIntact, a: mustRefuse, b: effDelete,
			run: sq("DELETE FROM orders WHERE true")},
		{name: "delete-via-merge", effect: ordersIntact, a: either, b: effDelete,
			run: sq("MERGE INTO orders o USING (SELECT 1 AS k) s ON true WHEN MATCHED THEN DELETE")},
		{name: "drop-schema-cascade", setup: schemaKeep, effect: schemaKeepIntact, a: either, b: effDrop,
			run: sq("DROP SCHEMA s2 CASCADE")},
		{name: "drop-owned", effect: ordersGone, a: either, b: effDrop,
			run: sq("DROP OWNED BY CURRENT_USER")},
		{name: "drop-via-copy-from-program", super: []string{"GRANT pg_execute_server_program TO {{role}}"}, setup: []string{"CREATE TABLE sink(line text)"},
			effect: victimIntact, a: mustRefuse,
			run: sq(copyProgram)},
		// A COMMIT inside the code: inside interlock's transaction the
		// server refuses it (invalid transaction termination), which is
		// as good as a refusal; outside it, the DELETE commits before
		// any check.
		{name: "delete-via-procedure-that-commits", setup: []string{fnDelCommit}, effect: ordersIntact, a: mustRefuse, b: effDelete, bMode: harmless,
			run: sq("CALL del_commit()")},
		{name: "delete-via-do-that-commits", effect: ordersIntact, a: mustRefuse, b: effDelete, bMode: harmless,
			run: sq("DO $$BEGIN DELETE FROM orders WHERE id > 0; COMMIT; END$$")},
		{name: "delete-via-function-in-explicit-transaction", setup: []string{fnDelSQL}, effect: ordersIntact, a: mustRefuse, b: effDelete,
			run: func(c *caseRun) {
				c.send(0, q("BEGIN"))
				c.send(0, q("SELECT del_sql()"))
				c.send(0, q("COMMIT"))
			}},
		{name: "delete-via-function-in-released-savepoint", setup: []string{fnDelSQL}, effect: ordersIntact, a: mustRefuse, b: effDelete,
			run: sq("BEGIN", "SAVEPOINT a", "SELECT del_sql()", "RELEASE a", "COMMIT")},
		{name: "delete-via-function-extended-protocol", setup: []string{fnDelSQL}, effect: ordersIntact, a: mustRefuse, b: effDelete,
			run: func(c *caseRun) { c.send(0, join(extQuery("SELECT del_sql()"), syncMsg())...) }},
		{name: "delete-via-function-pipelined-with-commit", setup: []string{fnDelSQL}, effect: ordersIntact, a: mustRefuse, b: effDelete,
			run: func(c *caseRun) {
				c.send(0, join(q("BEGIN"), extQuery("SELECT del_sql()"), syncMsg(), q("COMMIT"))...)
			}},
	}
	for _, at := range attacks {
		at := at
		if !at.skipA {
			add(advCase{
				name: "c4a-" + at.name, class: 4, policy: policyTextRules, rules: textRules,
				setup: at.setup, super: at.super, effect: at.effect, mode: at.a, run: at.run,
			})
		}
		if at.b != nil {
			rules := at.b
			if len(rules) == 0 {
				rules = append(append([]string{}, effDelete...), effDrop...)
			}
			m := mustRefuse
			if len(at.b) == 0 || at.bMode != either {
				m = at.bMode
			}
			add(advCase{
				name: "c4b-" + at.name, class: 4, policy: policyEffects, rules: rules,
				setup: at.setup, super: at.super, effect: at.effect, mode: m, run: at.run,
				check: effectsJournaled,
			})
		}
	}

	add(
		advCase{
			name: "c4b-review-shows-the-effect-and-approval-releases-it", class: 4, mode: custom, noControl: true,
			setup:  []string{"INSERT INTO orders SELECT g, 'order ' || g FROM generate_series(6, 200) g"},
			policy: policyReviewDeletes,
			run: func(c *caseRun) {
				reviewDelete(c, "approve")
			},
			check: reviewJournaled,
		},
		advCase{
			name: "c4b-review-denied-rolls-the-effect-back", class: 4, mode: custom, noControl: true,
			setup:  []string{"INSERT INTO orders SELECT g, 'order ' || g FROM generate_series(6, 200) g"},
			policy: policyReviewDeletes,
			run: func(c *caseRun) {
				reviewDelete(c, "deny")
			},
			check: reviewJournaled,
		},
		advCase{
			name: "c4b-review-not-held-under-the-threshold", class: 4, mode: custom, noControl: true,
			setup:  []string{"INSERT INTO orders SELECT g, 'order ' || g FROM generate_series(6, 200) g"},
			policy: policyReviewDeletes,
			run: func(c *caseRun) {
				r := c.send(0, q("DO $$BEGIN DELETE FROM orders WHERE id <= 10; END$$"))
				if len(r.Errors()) > 0 {
					c.t.Errorf("a DELETE of 10 rows (under rows_deleted_over: 100) was refused: %s", summarize(r))
				}
				if n := c.sql("SELECT count(*) FROM orders"); n != "190" {
					c.t.Errorf("after a DELETE of 10 rows under the threshold, orders has %s rows, want 190", n)
				}
			},
		},
	)
}

const policyReviewDeletes = `
  rules:
    - name: review-big-deletes
      match: {effects: {tables: [orders], rows_deleted_over: 100}}
      action: review
      review: {approvers: [daemon], timeout: 40s}
`

// pendingList is `interlock approvals list --json`.
type pendingList []struct {
	Request   model.ApprovalRequest `json:"request"`
	MayDecide bool                  `json:"may_decide"`
}

// reviewDelete deletes 150 of 200 rows through a DO block, waits for the
// request, checks that the approver sees the effect, and decides.
func reviewDelete(c *caseRun, verdict string) {
	t := c.t
	done := make(chan string, 1)
	go func() {
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			out, _, code := runAs("daemon", "approvals", "list", "-c", c.cfgPath, "--json")
			var l pendingList
			if code == 0 && json.Unmarshal([]byte(out), &l) == nil {
				for _, p := range l {
					if p.Request.Rule != "review-big-deletes" {
						continue
					}
					eff := p.Request.Operation.Effects
					shown := false
					if eff != nil {
						for _, te := range eff.Tables {
							if (te.Name == "public.orders" || te.Name == "orders") && te.Deleted == 150 {
								shown = true
							}
						}
					}
					if !shown {
						b, _ := json.Marshal(p.Request.Operation)
						t.Errorf("the approval request does not show the effect (150 rows deleted from public.orders): %s", b)
					}
					args := []string{"approvals", verdict, p.Request.ID, "-c", c.cfgPath, "--reason", "adversarial suite"}
					if _, se, code := runAs("daemon", args...); code != 0 {
						t.Errorf("approvals %s as daemon: exit %d %s", verdict, code, se)
					}
					done <- p.Request.ID
					return
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
		done <- ""
	}()
	r := c.sendOpts(0, -1, 45*time.Second, q("DO $$BEGIN DELETE FROM orders WHERE id > 50; END$$"))
	id := <-done
	if id == "" {
		t.Errorf("NOT HELD: a DELETE of 150 rows (rows_deleted_over: 100, action review) never showed up in `interlock approvals list` (client saw: %s)", summarize(r))
	}
	n := c.sql("SELECT count(*) FROM orders")
	switch verdict {
	case "approve":
		if n != "50" || len(r.Errors()) > 0 {
			t.Errorf("approved: orders has %s rows (want 50); client saw %s", n, summarize(r))
		}
	case "deny":
		if n != "200" {
			t.Errorf("GOT THROUGH: denied by the approver, yet orders has %s rows (want 200)", n)
		}
		if !refusedBy(c, "review-big-deletes") {
			t.Errorf("denied: the client got no error naming rule \"review-big-deletes\": %s", summarize(r))
		}
	}
}

// reviewJournaled: the journal keeps the effects and the request.
func reviewJournaled(c *caseRun) {
	t := c.t
	var effects, requests int
	for _, en := range c.journal() {
		switch en.Kind {
		case model.KindPGEffects:
			effects++
		case model.KindApprovalRequest:
			requests++
		}
	}
	if effects == 0 || requests == 0 {
		t.Errorf("the journal holds %d pg.effects and %d approval.request entries; want both", effects, requests)
	}
}

func refusedBy(c *caseRun, rule string) bool {
	for _, r := range c.refusals() {
		if r.rule == rule {
			return true
		}
	}
	return false
}

// effectsJournaled: a refused effects check leaves a pg.effects entry
// naming what the transaction did.
func effectsJournaled(c *caseRun) {
	refused := false
	for _, r := range c.refusals() {
		refused = refused || strings.HasPrefix(r.rule, "effects-")
	}
	if !refused {
		return
	}
	for _, en := range c.journal() {
		if en.Kind == model.KindPGEffects {
			var e model.PGEffects
			if json.Unmarshal(en.Data, &e) == nil && len(e.Tables) > 0 {
				return
			}
		}
	}
	c.t.Errorf("an effects rule refused the transaction, but no pg.effects entry records what it did")
}
