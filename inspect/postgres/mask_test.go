package postgres

import (
	"bufio"
	"bytes"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/interlock/interlock/inspect"
	"github.com/interlock/interlock/model"
)

// starMasker masks every non-NULL value of the columns named "secret".
type starMasker struct{}

func (starMasker) Hash(b []byte) []byte { return []byte("0123456789abcdef") }

func (starMasker) Detect([]string, []byte) []model.Finding { return nil }

func (starMasker) ColumnRule(*model.MaskSpec, string, string) string { return "" }

func (starMasker) Scrub(_ *model.MaskSpec, s string) (string, bool) { return s, false }

func (starMasker) Plan(_ *model.MaskSpec, cols []model.MaskColumn) inspect.RowMasker {
	p := starPlan{}
	for i, c := range cols {
		if c.Name == "secret" {
			p.cols = append(p.cols, i)
		}
	}
	return p
}

type starPlan struct{ cols []int }

func (p starPlan) Mask(values [][]byte) error {
	for _, i := range p.cols {
		if values[i] != nil {
			values[i] = []byte("***")
		}
	}
	return nil
}

func (starPlan) Decisions() []model.MaskDecision { return nil }

func TestMaskedDataRow(t *testing.T) {
	var out bytes.Buffer
	s := &session{h: &Handler{masker: starMasker{}}, cw: bufio.NewWriter(&out)}
	r := &run{mask: &model.MaskSpec{Rules: []model.MaskRule{{Rule: "r"}}}, rec: &rowRec{max: 10},
		fields: []field{{name: "id", oid: 25}, {name: "secret", oid: 25}, {name: "note", oid: 25}}}
	for _, row := range [][][]byte{
		{[]byte("1"), []byte("hunter2"), nil},
		{[]byte("2"), nil, []byte("x")},
	} {
		raw, _ := (&pgproto3.DataRow{Values: row}).Encode(nil)
		if err := s.dataRow(r, raw, raw[5:]); err != nil {
			t.Fatal(err)
		}
	}
	s.cw.Flush()
	var want []byte
	want, _ = (&pgproto3.DataRow{Values: [][]byte{[]byte("1"), []byte("***"), nil}}).Encode(want)
	want, _ = (&pgproto3.DataRow{Values: [][]byte{[]byte("2"), nil, []byte("x")}}).Encode(want)
	if !bytes.Equal(out.Bytes(), want) {
		t.Errorf("client got %q, want %q", out.Bytes(), want)
	}
	if r.rows != 2 || len(r.rec.rows) != 2 || *r.rec.rows[0][1] != "***" || r.rec.rows[0][2] != nil || r.rec.rows[1][1] != nil {
		t.Errorf("recorded %d rows: %v", r.rows, r.rec.rows)
	}
}
