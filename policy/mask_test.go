package policy

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/interlock/interlock/model"
)

func TestRowMasking(t *testing.T) {
	m := NewMaskerWithKey([]byte(strings.Repeat("k", 32)))
	spec := &model.MaskSpec{Rules: []model.MaskRule{
		{Rule: "pii", Columns: []string{"customers.email", "public.customers.ssn"}},
		{Rule: "scan", Detectors: []string{"card", "email"}},
	}}
	cols := []Column{
		{Table: "public.customers", Name: "email", TypeOID: pgtype.TextOID},
		{Table: "public.customers", Name: "ssn", TypeOID: pgtype.Int8OID, Binary: true},
		{Table: "public.customers", Name: "note", TypeOID: pgtype.VarcharOID},
		{Table: "public.customers", Name: "created_ms", TypeOID: pgtype.Int8OID},
		{Table: "", Name: "?column?", TypeOID: pgtype.TextOID},
	}
	rm := m.Plan(spec, cols)
	if rm == nil {
		t.Fatal("no plan")
	}
	row := [][]byte{
		[]byte("jane@example.com"),
		{0, 0, 0, 0, 7, 91, 205, 21},
		[]byte("paid with 4111 1111 1111 1111, mail bob@example.org"),
		[]byte("1732612345678"),
		nil,
	}
	orig0 := string(row[0])
	if err := rm.Mask(row); err != nil {
		t.Fatal(err)
	}
	if string(row[0]) != "****" {
		t.Errorf("email column: %q", row[0])
	}
	if len(row[1]) != 8 || row[1][7] != 0 {
		t.Errorf("binary int8 column not zeroed: %v", row[1])
	}
	if want := "paid with ****-****-****-1111, mail ***@***"; string(row[2]) != want {
		t.Errorf("note: %q, want %q", row[2], want)
	}
	if string(row[3]) != "1732612345678" {
		t.Errorf("a millisecond timestamp was masked: %q", row[3])
	}
	if row[4] != nil {
		t.Errorf("NULL changed")
	}

	// The same original hashes the same; the hash does not contain it.
	row2 := [][]byte{[]byte(orig0), {0, 0, 0, 0, 0, 0, 0, 1}, []byte("nothing"), []byte("1"), nil}
	if err := rm.Mask(row2); err != nil {
		t.Fatal(err)
	}
	var emailDec *MaskDecision
	ds := rm.Decisions()
	for i := range ds {
		if ds[i].Column == "public.customers.email" {
			emailDec = &ds[i]
		}
	}
	if emailDec == nil || emailDec.Count != 2 || emailDec.Rule != "pii" || len(emailDec.Hashes) != 32 ||
		string(emailDec.Hashes[:16]) != string(emailDec.Hashes[16:]) {
		t.Fatalf("email decision %+v", emailDec)
	}
	for _, d := range ds {
		if len(d.Hashes) != 16*d.Count || strings.Contains(string(d.Hashes), "jane") {
			t.Errorf("hashes of %+v", d)
		}
	}
	var card bool
	for _, d := range ds {
		card = card || (d.Detector == "card" && d.Rule == "scan" && d.Count == 1)
	}
	if !card {
		t.Errorf("card finding not counted: %+v", ds)
	}
	if err := rm.Mask([][]byte{nil}); err == nil {
		t.Errorf("a row of the wrong width was accepted")
	}
}

func TestPlanNothingToMask(t *testing.T) {
	m := NewMaskerWithKey(make([]byte, 32))
	spec := &model.MaskSpec{Rules: []model.MaskRule{{Rule: "pii", Columns: []string{"customers.email"}}}}
	if rm := m.Plan(spec, []Column{{Table: "public.orders", Name: "email", TypeOID: pgtype.TextOID}}); rm != nil {
		t.Errorf("orders.email matched customers.email")
	}
	if rm := m.Plan(nil, []Column{{Table: "public.customers", Name: "email"}}); rm != nil {
		t.Errorf("plan without a spec")
	}
}

func TestMaskerKeyFile(t *testing.T) {
	dir := t.TempDir()
	a, err := NewMasker(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewMasker(dir)
	if err != nil || string(a.key) != string(b.key) {
		t.Fatalf("key not kept: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(dir, MaskKeyFile)); err != nil || fi.Mode().Perm() != 0o600 || fi.Size() != 32 {
		t.Errorf("key file %v %v", fi, err)
	}

	// First starts racing for a new key all end up with the same one, and
	// no temporary file stays behind.
	dir = t.TempDir()
	keys := make([]string, 8)
	var wg sync.WaitGroup
	for i := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if m, err := NewMasker(dir); err == nil {
				keys[i] = string(m.key)
			} else {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for _, k := range keys[1:] {
		if k != keys[0] {
			t.Fatal("concurrent first starts made different keys")
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("state directory holds %d files, want only %s", len(ents), MaskKeyFile)
	}
}

func BenchmarkMaskRow(b *testing.B) {
	m := NewMaskerWithKey(make([]byte, 32))
	spec := &model.MaskSpec{Rules: []model.MaskRule{{Rule: "pii", Columns: []string{"customers.email", "customers.name"}, Detectors: []string{"card"}}}}
	cols := []Column{
		{Table: "public.customers", Name: "id", TypeOID: pgtype.Int4OID},
		{Table: "public.customers", Name: "email", TypeOID: pgtype.TextOID},
		{Table: "public.customers", Name: "card", TypeOID: pgtype.TextOID},
		{Table: "public.customers", Name: "name", TypeOID: pgtype.TextOID},
		{Table: "public.customers", Name: "created_ms", TypeOID: pgtype.Int8OID},
	}
	rm := m.Plan(spec, cols)
	row := [][]byte{[]byte("12345"), []byte("user12345@example.com"), []byte("4111 1111 1111 1111"), []byte("name 12345"), []byte("1732612357023")}
	vals := make([][]byte, len(row))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		copy(vals, row)
		if err := rm.Mask(vals); err != nil {
			b.Fatal(err)
		}
		if i%1000 == 999 {
			for _, st := range rm.stats {
				st.full, st.hashes = nil, st.hashes[:0]
			}
		}
	}
}

// TestDetectorNamedByTwoRules: a detector two rules name runs once per
// value, and its findings count for the first rule.
func TestDetectorNamedByTwoRules(t *testing.T) {
	m := NewMaskerWithKey(make([]byte, 32))
	spec := &model.MaskSpec{Rules: []model.MaskRule{
		{Rule: "a", Detectors: []string{"email"}},
		{Rule: "b", Detectors: []string{"card", "email"}},
	}}
	rm := m.Plan(spec, []Column{{Name: "note", TypeOID: pgtype.TextOID}})
	row := [][]byte{[]byte("mail bob@example.org")}
	if err := rm.Mask(row); err != nil {
		t.Fatal(err)
	}
	if string(row[0]) != "mail ***@***" {
		t.Errorf("masked %q", row[0])
	}
	ds := rm.Decisions()
	if len(ds) != 1 || ds[0].Rule != "a" || ds[0].Detector != "email" || ds[0].Count != 1 {
		t.Errorf("decisions %+v", ds)
	}
}
