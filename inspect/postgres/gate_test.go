package postgres

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/interlock/interlock/model"
)

// effectsPolicy allows every statement and denies a transaction that
// deleted rows of a table named in guard, or dropped any relation.
type effectsPolicy struct {
	denyPolicy
	guard []string
}

func (p effectsPolicy) EffectsRules(model.Origin) bool { return true }

func (p effectsPolicy) DecideEffects(_ context.Context, _ model.Origin, op model.Operation) model.Decision {
	if op.Effects == nil || op.Effects.Error != "" {
		return model.Decision{Action: model.Deny, Rule: "effects-test", Reason: "effects unreadable"}
	}
	for _, t := range op.Effects.Tables {
		if t.System {
			continue
		}
		if t.Dropped {
			return model.Decision{Action: model.Deny, Rule: "no-drops", Reason: t.Name + " dropped"}
		}
		names := append([]string{t.Name}, t.Also...)
		for _, n := range names {
			for _, g := range p.guard {
				if (n == g || strings.HasSuffix(n, "."+g)) && t.Deleted > 0 {
					return model.Decision{Action: model.Deny, Rule: "no-deletes", Reason: n + " rows deleted"}
				}
			}
		}
	}
	return model.Decision{Action: model.Allow, Rule: "policy.effects"}
}

func ruleErr(t *testing.T, err error, rule string) {
	t.Helper()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "42501" || !strings.Contains(pe.Message, `rule "`+rule+`"`) {
		t.Fatalf("want a 42501 naming rule %q, got %v", rule, err)
	}
}

func rowCount(t *testing.T, c *pgx.Conn, table string) int {
	t.Helper()
	var n int
	if err := c.QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestGateDeniesEffectsOfAnyRoute: a delete forbidden by an effects rule
// is rolled back whatever route it takes (a plain DELETE, WHERE true,
// through a function, through DO, in the client's block, over the
// extended protocol), the client is told the rule, and the rows remain.
func TestGateDeniesEffectsOfAnyRoute(t *testing.T) {
	p := startProxy(t, proxyOpts{policy: effectsPolicy{guard: []string{"g_orders"}}})
	c := connect(t, p.dsn(""))
	ctx := context.Background()
	for _, q := range []string{
		"CREATE TEMP TABLE g_orders(id int)",
		"INSERT INTO g_orders SELECT generate_series(1, 5)",
		"CREATE FUNCTION pg_temp.purge() RETURNS int LANGUAGE sql AS 'DELETE FROM g_orders; SELECT 1'",
	} {
		if _, err := c.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	for _, q := range []string{
		"DELETE FROM g_orders",
		"DELETE FROM g_orders WHERE true",
		"SELECT pg_temp.purge()",
		"DO $$ BEGIN EXECUTE 'DELETE FROM g_orders'; END $$",
	} {
		_, err := c.Exec(ctx, q, pgx.QueryExecModeSimpleProtocol)
		ruleErr(t, err, "no-deletes")
		if n := rowCount(t, c, "g_orders"); n != 5 {
			t.Fatalf("after %q: %d rows, want 5", q, n)
		}
	}
	// The extended protocol, autocommit.
	_, err := c.Exec(ctx, "DELETE FROM g_orders WHERE id > $1", 0)
	ruleErr(t, err, "no-deletes")
	// The client's own block: the COMMIT is refused, the block rolled back.
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "DELETE FROM g_orders WHERE id = 1"); err != nil {
		t.Fatal(err)
	}
	ruleErr(t, tx.Commit(ctx), "no-deletes")
	if n := rowCount(t, c, "g_orders"); n != 5 {
		t.Fatalf("after a refused COMMIT: %d rows, want 5", n)
	}
	// What the effects rule does not forbid commits.
	if _, err := c.Exec(ctx, "INSERT INTO g_orders VALUES (6)"); err != nil {
		t.Fatal(err)
	}
	if n := rowCount(t, c, "g_orders"); n != 6 {
		t.Fatalf("an allowed INSERT: %d rows, want 6", n)
	}
	// A drop, through DO.
	_, err = c.Exec(ctx, "DO $$ BEGIN EXECUTE 'DROP TABLE g_orders'; END $$")
	ruleErr(t, err, "no-drops")
	if n := rowCount(t, c, "g_orders"); n != 6 {
		t.Fatalf("after a refused drop: %d rows", n)
	}

	// The evidence: each wrapped statement says so, each gate left a
	// synced pg.effects record with its decision.
	var denied, allowed int
	for i, r := range p.j.Entries() {
		e, ok := r.Data.(model.PGEffectsEntry)
		if !ok {
			continue
		}
		if r.Durability != model.Synced {
			t.Errorf("pg.effects %d not synced", i)
		}
		if e.Decision.Action == model.Deny {
			denied++
		} else {
			allowed++
		}
	}
	if denied != 7 {
		t.Errorf("%d denied pg.effects records, want 7", denied)
	}
	if allowed == 0 {
		t.Errorf("no allowed pg.effects record")
	}
	wrapped := 0
	for _, s := range statements(p.j) {
		if s.st.Wrapped {
			wrapped++
		}
	}
	if wrapped < 6 {
		t.Errorf("%d statements recorded as wrapped", wrapped)
	}
}

// TestGateInPipelineSegment: a COMMIT bound in the middle of a segment
// is gated with interlock's own prepared statement, leaving the client's
// unnamed statement and portal alone.
func TestGateInPipelineSegment(t *testing.T) {
	p := startProxy(t, proxyOpts{policy: effectsPolicy{guard: []string{"p_orders"}}})
	c := connect(t, p.dsn(""))
	ctx := context.Background()
	for _, q := range []string{"CREATE TEMP TABLE p_orders(id int)", "INSERT INTO p_orders VALUES (1), (2)"} {
		if _, err := c.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	pc := c.PgConn()
	batch := &pgconn.Batch{}
	batch.ExecParams("BEGIN", nil, nil, nil, nil)
	batch.ExecParams("DELETE FROM p_orders WHERE id = $1", [][]byte{[]byte("1")}, nil, nil, nil)
	batch.ExecParams("COMMIT", nil, nil, nil, nil)
	_, err := pc.ExecBatch(ctx, batch).ReadAll()
	ruleErr(t, err, "no-deletes")
	if _, err := c.Exec(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	if n := rowCount(t, c, "p_orders"); n != 2 {
		t.Fatalf("%d rows after a refused pipelined COMMIT, want 2", n)
	}
	// And an allowed one commits.
	batch = &pgconn.Batch{}
	batch.ExecParams("BEGIN", nil, nil, nil, nil)
	batch.ExecParams("INSERT INTO p_orders VALUES ($1)", [][]byte{[]byte("3")}, nil, nil, nil)
	batch.ExecParams("COMMIT", nil, nil, nil, nil)
	if _, err := pc.ExecBatch(ctx, batch).ReadAll(); err != nil {
		t.Fatal(err)
	}
	if n := rowCount(t, c, "p_orders"); n != 3 {
		t.Fatalf("%d rows after an allowed pipelined COMMIT, want 3", n)
	}
}

// TestServerSkipsDoNotAdvanceModel: a PREPARE the server refuses does
// not change what interlock believes the name holds.
func TestServerSkipsDoNotAdvanceModel(t *testing.T) {
	p := startProxy(t, proxyOpts{deny: []string{"delete"}})
	c := connect(t, p.dsn(""))
	ctx := context.Background()
	if _, err := c.Exec(ctx, "CREATE TEMP TABLE m_orders(id int); INSERT INTO m_orders VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	pc := c.PgConn()
	// SQL PREPARE of a name that exists fails; EXECUTE of that name
	// pipelined behind it must be judged against what exists.
	if _, err := pc.Exec(ctx, "PREPARE x AS SELECT 1").ReadAll(); err != nil {
		t.Fatal(err)
	}
	mrr := pc.Exec(ctx, "PREPARE x AS DELETE FROM m_orders")
	_, err := mrr.ReadAll()
	if err == nil {
		t.Fatal("PREPARE of an existing name succeeded")
	}
	if _, err := pc.Exec(ctx, "EXECUTE x").ReadAll(); err != nil {
		t.Fatalf("EXECUTE x (a SELECT): %v", err)
	}
	if n := rowCount(t, c, "m_orders"); n != 1 {
		t.Fatalf("%d rows, want 1", n)
	}
}
