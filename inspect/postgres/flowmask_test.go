package postgres

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/interlock/interlock/inspect"
	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/policy"
)

// policyMasker is the engine's adapter of policy's masker, for tests.
type policyMasker struct{ m *policy.Masker }

func (a policyMasker) Plan(spec *model.MaskSpec, cols []model.MaskColumn) inspect.RowMasker {
	if p := a.m.Plan(spec, cols); p != nil {
		return p
	}
	return nil
}
func (a policyMasker) Hash(b []byte) []byte { return a.m.Hash(b) }
func (a policyMasker) ColumnRule(spec *model.MaskSpec, t, c string) string {
	return policy.ColumnRule(spec, t, c)
}
func (a policyMasker) Scrub(spec *model.MaskSpec, s string) (string, bool) { return a.m.Scrub(spec, s) }
func (a policyMasker) Detect(names []string, v []byte) []model.Finding {
	var out []model.Finding
	for _, f := range policy.Detect(names, v) {
		out = append(out, model.Finding{Detector: f.Detector, Start: f.Start, End: f.End})
	}
	return out
}

// maskPolicy allows everything and masks the columns given, with every
// detector on.
type maskPolicy struct {
	denyPolicy
	columns []string
}

func (p maskPolicy) spec() *model.MaskSpec {
	return &model.MaskSpec{Rules: []model.MaskRule{{Rule: "pii", Columns: p.columns, Detectors: policy.MaskDetectorNames()}}}
}

func (p maskPolicy) Decide(ctx context.Context, o model.Origin, op model.Operation) model.Decision {
	d := p.denyPolicy.Decide(ctx, o, op)
	if d.Action != model.Allow {
		return d
	}
	return model.Decision{Action: model.Mask, Rule: "pii", Mask: p.spec()}
}

func (p maskPolicy) SessionMasks(model.Origin) *model.MaskSpec { return p.spec() }

// TestDerivedColumnsMasked: values computed from a masked column are
// masked whole; what masking cannot follow is refused naming the rule;
// errors that quote a masked value are scrubbed.
func TestDerivedColumnsMasked(t *testing.T) {
	const original = "alice.liddell@wonder.example"
	p := startProxy(t, proxyOpts{policy: maskPolicy{columns: []string{"f_customers.email"}},
		masker: policyMasker{policy.NewMaskerWithKey(make([]byte, 32))}})
	c := connect(t, p.dsn(""))
	ctx := context.Background()
	// Set up as the same role, through interlock (writes are allowed).
	for _, q := range []string{
		"CREATE TABLE IF NOT EXISTS f_customers(id int, name text, email text)",
		"DELETE FROM f_customers",
		"INSERT INTO f_customers VALUES (1, 'Alice', '" + original + "')",
	} {
		if _, err := c.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	t.Cleanup(func() { c.Exec(context.Background(), "DROP TABLE IF EXISTS f_customers") })
	check := func(sql string) {
		t.Helper()
		rows, err := c.Query(ctx, sql, pgx.QueryExecModeSimpleProtocol)
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		defer rows.Close()
		for rows.Next() {
			for _, v := range rows.RawValues() {
				if s := strings.ToLower(string(v)); strings.Contains(s, "alice.liddell") || strings.Contains(s, "lleddil") {
					t.Errorf("%s: an original came back: %q", sql, v)
				}
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	for _, q := range []string{
		"SELECT email FROM f_customers",
		"SELECT upper(email), reverse(email) FROM f_customers",
		"SELECT email || '' AS x, id FROM f_customers",
		"SELECT row_to_json(c) FROM f_customers c",
		"SELECT string_agg(email, ',') FROM f_customers",
		"SELECT (SELECT email FROM f_customers LIMIT 1)",
		"WITH x AS (SELECT email AS e FROM f_customers) SELECT e FROM x",
		"SELECT name FROM f_customers UNION ALL SELECT email FROM f_customers",
	} {
		check(q)
	}
	// What a masked column would leak through is refused naming the rule.
	for _, q := range []string{
		"CREATE TEMP TABLE f_copy AS SELECT email FROM f_customers",
		"SELECT query_to_xml('select * from f_customers', true, false, '')",
		"DO $$ BEGIN RAISE NOTICE '%', (SELECT email FROM f_customers LIMIT 1); END $$",
	} {
		_, err := c.Exec(ctx, q, pgx.QueryExecModeSimpleProtocol)
		ruleErr(t, err, "pii")
	}
	// An error that quotes the value is scrubbed.
	_, err := c.Exec(ctx, "SELECT name::int FROM f_customers", pgx.QueryExecModeSimpleProtocol)
	if err == nil || strings.Contains(err.Error(), "Alice") {
		t.Errorf("a failed cast's error: %v", err)
	}
	// Nothing of the original is in the journal either (the INSERT that
	// put it there is journaled with the email redacted).
	for _, r := range p.j.Records() {
		if s := strings.ToLower(recordText(r)); strings.Contains(s, "alice.liddell") {
			t.Errorf("the original is in a %s record: %s", r.Kind, s)
		}
	}
}

func recordText(r model.Record) string {
	var b strings.Builder
	b.WriteString(strings.ToLower(strings.ReplaceAll(strings.ReplaceAll(fmtAny(r.Data), "\\", ""), "\n", " ")))
	b.WriteString(fmtAny(r.Payload))
	return b.String()
}

func fmtAny(v any) string {
	b, _ := jsonMarshal(v)
	return string(b)
}

var jsonMarshal = json.Marshal
