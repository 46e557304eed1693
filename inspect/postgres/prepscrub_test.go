package postgres

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/interlock/interlock/policy"
)

// TestExecuteRecordScrubsItsPrepare: under detectors, the PREPARE's text
// an EXECUTE's record carries (prepared_sql) is scrubbed as the PREPARE's
// own record is, with the values' keyed hashes in the payload: a value
// the PREPARE's record hides must not reach the journal through the
// EXECUTE's. Both for a statement prepared by an earlier query and for
// one prepared in the same query string.
func TestExecuteRecordScrubsItsPrepare(t *testing.T) {
	p := startProxy(t, proxyOpts{policy: maskPolicy{columns: []string{"nosuch.col"}},
		masker: policyMasker{policy.NewMaskerWithKey(make([]byte, 32))}})
	c := connect(t, p.dsn(""))
	ctx := context.Background()
	const card = "4111111111111111"
	for _, q := range []string{
		"PREPARE p1 AS SELECT 'card " + card + " one'::text AS v",
		"EXECUTE p1",
		"PREPARE p2 AS SELECT 'card " + card + " two'::text AS v; EXECUTE p2",
	} {
		if _, err := c.Exec(ctx, q, pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	payloads := map[uint64]any{}
	for _, e := range p.j.Entries() {
		payloads[e.Seq] = e.Payload
	}
	prepares := map[string]string{}
	executes := 0
	for _, st := range statements(p.j) {
		if strings.Contains(fmt.Sprintf("%+v", st.st), card) {
			t.Errorf("the journal holds the card number in %+v", st.st)
		}
		switch {
		case strings.HasPrefix(st.st.SQL, "PREPARE"):
			prepares[st.st.SQL[:len("PREPARE p1")]] = st.st.SQL
		case strings.HasPrefix(st.st.SQL, "EXECUTE"):
			executes++
			want := prepares["PREPARE "+strings.TrimPrefix(st.st.SQL, "EXECUTE ")]
			if want == "" || st.st.Prepared != want {
				t.Errorf("%s: prepared_sql %q, want the PREPARE's record's %q", st.st.SQL, st.st.Prepared, want)
			}
			if hashes, _ := payloads[st.seq].([]byte); st.st.Redacted != 1 || len(hashes) == 0 {
				t.Errorf("%s: redacted %d, payload %v: want the card's hash", st.st.SQL, st.st.Redacted, payloads[st.seq])
			}
		}
	}
	if len(prepares) != 2 || executes != 2 {
		t.Fatalf("journal has %d PREPAREs and %d EXECUTEs, want 2 and 2", len(prepares), executes)
	}
}
