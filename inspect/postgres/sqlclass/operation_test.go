package sqlclass

import (
	"testing"

	"github.com/interlock/interlock/model"
)

// TestClassifyStatic is what `interlock policy test --sql` shows: one
// operation per statement, each of a kind in model.SQLKinds.
func TestClassifyStatic(t *testing.T) {
	ops, err := ClassifyStatic("SELECT 1; DELETE FROM accounts; DROP TABLE t")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"select", "delete", "drop_table"}
	if len(ops) != len(want) {
		t.Fatalf("got %d operations, want %d: %+v", len(ops), len(want), ops)
	}
	for i, op := range ops {
		if op.Protocol != model.ProtoPostgres || op.Kind != want[i] {
			t.Errorf("statement %d: %s/%s, want postgres/%s", i, op.Protocol, op.Kind, want[i])
		}
		if !model.IsSQLKind(op.Kind) {
			t.Errorf("statement %d: kind %q is not in model.SQLKinds", i, op.Kind)
		}
	}
	if !ops[1].NoWhere || ops[1].ReadOnly {
		t.Errorf("DELETE without WHERE: NoWhere=%v ReadOnly=%v, want true, false", ops[1].NoWhere, ops[1].ReadOnly)
	}
	// Text the parser rejects is one unknown statement that says why.
	bad, err := ClassifyStatic("SELECT 1; not sql at all")
	if err != nil || len(bad) != 1 || bad[0].Kind != model.SQLKindUnknown || bad[0].Detail == "" {
		t.Errorf("unparsable SQL: %+v, %v; want one unknown operation with the parser's error", bad, err)
	}
	if _, err := ClassifyStatic("   "); err == nil {
		t.Error("empty SQL classified without an error")
	}
}
