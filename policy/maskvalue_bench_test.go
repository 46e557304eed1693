package policy

import (
	"fmt"
	"testing"

	"github.com/interlock/interlock/model"
)

// BenchmarkMaskResult masks a 100,000-row result as the policy bench
// fetches it (id, email, card, name, created_ms; email and name masked by
// column rules, card by its detector) and journals its decisions: the
// cost per row, keyed hashes and their accumulation included.
func BenchmarkMaskResult(b *testing.B) {
	m := NewMaskerWithKey(make([]byte, 32))
	spec := &model.MaskSpec{Rules: []model.MaskRule{{Rule: "pii", Columns: []string{"customers.email", "customers.name"}, Detectors: []string{"card"}}}}
	cols := []Column{ // text format, as psql asks (OIDs: int4, text, int8)
		{Table: "public.customers", Name: "id", TypeOID: 23},
		{Table: "public.customers", Name: "email", TypeOID: 25},
		{Table: "public.customers", Name: "card", TypeOID: 25},
		{Table: "public.customers", Name: "name", TypeOID: 25},
		{Table: "public.customers", Name: "created_ms", TypeOID: 20},
	}
	rows := make([][][]byte, 1000)
	for i := range rows {
		n := 12345 + i
		rows[i] = [][]byte{[]byte(fmt.Sprint(n)), []byte(fmt.Sprintf("user%d@example.com", n)), []byte("4111 1111 1111 1111"),
			[]byte(fmt.Sprintf("name %d", n)), []byte(fmt.Sprint(1732612345678 + n))}
	}
	const perResult = 100000
	row := make([][]byte, len(cols))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rm := m.Plan(spec, cols)
		for r := 0; r < perResult; r++ {
			copy(row, rows[r%len(rows)])
			if err := rm.Mask(row); err != nil {
				b.Fatal(err)
			}
		}
		if ds := rm.Decisions(); len(ds) != 3 || ds[0].Count != perResult {
			b.Fatalf("decisions %+v", ds)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*perResult), "ns/row")
}
