package postgres

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"
)

func rowDescBody(t *testing.T, fields ...pgproto3.FieldDescription) []byte {
	t.Helper()
	b, err := (&pgproto3.RowDescription{Fields: fields}).Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b[5:]
}

// TestFieldsOfReusesOnlyTheSameBytes: the server goroutine keeps the
// fields of the last RowDescription for the next one only when the bytes
// are the same; a column's name, type, format, source or count that
// differs is decoded again, and so is the first description after another.
func TestFieldsOfReusesOnlyTheSameBytes(t *testing.T) {
	base := pgproto3.FieldDescription{Name: []byte("a"), TableOID: 16384, TableAttributeNumber: 1, DataTypeOID: 23, DataTypeSize: 4, TypeModifier: -1}
	variant := func(f func(*pgproto3.FieldDescription)) pgproto3.FieldDescription {
		v := base
		v.Name = append([]byte{}, base.Name...)
		f(&v)
		return v
	}
	first := rowDescBody(t, base)
	cases := map[string][]byte{
		"name":   rowDescBody(t, variant(func(f *pgproto3.FieldDescription) { f.Name = []byte("b") })),
		"type":   rowDescBody(t, variant(func(f *pgproto3.FieldDescription) { f.DataTypeOID = 25 })),
		"format": rowDescBody(t, variant(func(f *pgproto3.FieldDescription) { f.Format = 1 })),
		"table":  rowDescBody(t, variant(func(f *pgproto3.FieldDescription) { f.TableOID = 16385 })),
		"attnum": rowDescBody(t, variant(func(f *pgproto3.FieldDescription) { f.TableAttributeNumber = 2 })),
		"count":  rowDescBody(t, base, base),
	}
	s := &session{}
	want, err := decodeFields(first)
	if err != nil {
		t.Fatal(err)
	}
	for name, other := range cases {
		a, err := s.fieldsOf(first)
		if err != nil {
			t.Fatal(err)
		}
		again, _ := s.fieldsOf(first)
		if len(a) != 1 || a[0] != want[0] || &again[0] != &a[0] {
			t.Fatalf("%s: the same description twice: %+v then %+v (not reused)", name, a, again)
		}
		got, err := s.fieldsOf(other)
		if err != nil {
			t.Fatal(err)
		}
		exp, _ := decodeFields(other)
		if len(got) != len(exp) || got[0] != exp[0] || got[len(got)-1] != exp[len(exp)-1] {
			t.Errorf("%s: a different description gave %+v, want %+v", name, got, exp)
		}
		if back, _ := s.fieldsOf(first); len(back) != 1 || back[0] != want[0] {
			t.Errorf("%s: the first description after another gave %+v, want %+v", name, back, want)
		}
	}
	// A large description is decoded, not kept.
	big := rowDescBody(t, variant(func(f *pgproto3.FieldDescription) { f.Name = []byte(strings.Repeat("x", maxDescMemo)) }))
	if fs, err := s.fieldsOf(big); err != nil || len(fs) != 1 || len(fs[0].name) != maxDescMemo {
		t.Fatalf("large description: %v %+v", err, fs)
	}
	if len(s.descBody) > maxDescMemo {
		t.Errorf("a %d-byte description was kept", len(s.descBody))
	}
}

// TestRecordedColumnsFollowEachDescription: through a real server, two
// statements whose results have the same column name and different types
// (the binary int4 of one is not text), and a column renamed between two
// identical queries, are recorded with their own columns and values
// however the descriptions alternate.
func TestRecordedColumnsFollowEachDescription(t *testing.T) {
	p := startProxy(t, proxyOpts{results: "rows"})
	c := connect(t, p.dsn(""))
	ctx := context.Background()
	// The text statement is described first: the int4 one's binary
	// value read as text would not be "7".
	for i := 0; i < 2; i++ {
		var s string
		if err := c.QueryRow(ctx, "SELECT $1::text AS a", "seven").Scan(&s); err != nil || s != "seven" {
			t.Fatalf("text: %v %q", err, s)
		}
		var n int
		if err := c.QueryRow(ctx, "SELECT $1::int AS a", 7).Scan(&n); err != nil || n != 7 {
			t.Fatalf("int: %v %d", err, n)
		}
	}
	for _, q := range []string{"SELECT 8::int AS a", "SELECT 8::int AS a", "SELECT 8::int AS b", "SELECT 'eight'::text AS b"} {
		rows, err := c.Query(ctx, q, pgx.QueryExecModeSimpleProtocol)
		if err != nil {
			t.Fatal(err)
		}
		rows.Close()
		if rows.Err() != nil {
			t.Fatal(rows.Err())
		}
	}
	want := []struct{ sql, col, val string }{
		{"SELECT $1::text AS a", "a", "seven"}, {"SELECT $1::int AS a", "a", "7"},
		{"SELECT $1::text AS a", "a", "seven"}, {"SELECT $1::int AS a", "a", "7"},
		{"SELECT 8::int AS a", "a", "8"}, {"SELECT 8::int AS a", "a", "8"},
		{"SELECT 8::int AS b", "b", "8"}, {"SELECT 'eight'::text AS b", "b", "eight"},
	}
	var got []stmtRec
	for _, st := range statements(p.j) {
		if strings.HasPrefix(st.st.SQL, "SELECT") && strings.Contains(st.st.SQL, " AS ") {
			got = append(got, st)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("journal has %d of the statements, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		st := got[i]
		if st.st.SQL != w.sql || st.res == nil {
			t.Fatalf("statement %d: %q with result %v, want %q", i, st.st.SQL, st.res, w.sql)
		}
		rows, _ := st.pay.([][]*string)
		if strings.Join(st.res.Columns, ",") != w.col || len(rows) != 1 || len(rows[0]) != 1 || rows[0][0] == nil || *rows[0][0] != w.val {
			t.Errorf("statement %d (%s): columns %v rows %#v, want %s = %s", i, w.sql, st.res.Columns, st.pay, w.col, w.val)
		}
	}
}
