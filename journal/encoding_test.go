package journal

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/interlock/interlock/journal/evidence"
	"github.com/interlock/interlock/model"
	"golang.org/x/mod/sumdb/tlog"
)

// Every body the writer produces parses back to its kind and session,
// whatever the record holds (evidence.FuzzParseBody holds the parser to
// encoding/json).
func FuzzEncodeRecord(f *testing.F) {
	f.Add("k", "s", `{"a":"<&>"}`)
	f.Add("pg.statement", "\u2028", `[1,"\u0000"]`)
	f.Add("0", "0", "\"\x8a\"") // invalid UTF-8 in raw data: refused, not written
	f.Fuzz(func(t *testing.T, kind, session, data string) {
		if kind == "" || !json.Valid([]byte(data)) {
			return
		}
		enc, err := encodeRecord(model.Record{Kind: kind, Session: session, Data: json.RawMessage(data), Payload: []byte(data)})
		if err != nil {
			return // floats, invalid UTF-8
		}
		b := evidence.AppendBody(nil, 7, -3, enc.tail)
		p, err := evidence.ParseBody(b)
		if err != nil {
			t.Fatalf("writer's body %q does not parse: %v", b, err)
		}
		if p.Kind != kind || p.Session != session {
			t.Fatalf("kind/session %q/%q read back as %q/%q", kind, session, p.Kind, p.Session)
		}
	})
}

// BenchmarkEncodeStatement is the encoding of one prepared statement's
// pg.statement record, which every statement pays.
func BenchmarkEncodeStatement(b *testing.B) {
	v := "42"
	rec := model.Record{Kind: model.KindPGStatement, Session: "0193a4e4-7b1c-7c2a-9d7e-4b1f7a2c9e01", Time: time.Unix(1733500000, 0),
		Data: model.PGStatement{SQL: "SELECT abalance FROM pgbench_accounts WHERE aid = $1;", Protocol: "extended",
			Params: []model.PGParam{{Type: "int4", Value: &v, Format: "binary"}}, Kinds: []string{"select"},
			Tables: []string{"pgbench_accounts"}, ReadOnly: true, Decision: model.Decision{Action: model.Allow, Rule: "policy.default"},
			StartNS: 1733500000000000000}}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := encodeRecord(rec); err != nil {
			b.Fatal(err)
		}
	}
}

// TestEncodeStatementAsMarshal: the records every statement writes encode
// themselves, to the bytes json.Marshal would have written, and they
// parse back.
func TestEncodeStatementAsMarshal(t *testing.T) {
	v := "<&>\u2028\xff"
	for _, data := range []any{
		model.PGStatement{SQL: "SELECT '\xff<'", SQLBase64: "/w==", Protocol: "simple", Kinds: nil, ReadOnly: true,
			Params:   []model.PGParam{{Value: &v, Format: "text"}, {Type: "int4", Format: "binary"}},
			Decision: model.Decision{Action: model.Mask, Rule: "pii", Mask: &model.MaskSpec{Rules: []model.MaskRule{{Rule: "pii", Columns: []string{"t.c"}, Live: true}}}}},
		model.PGStatement{SQL: "", Protocol: "extended", Kinds: []string{}, Decision: model.Decision{Action: model.Deny, Mask: &model.MaskSpec{}}},
		model.PGResult{Statement: 1<<64 - 1, NotRun: true, Rows: -1, Error: "\x00\"\\", Columns: []string{"a", "\u2029"}},
	} {
		enc, err := encodeRecord(model.Record{Kind: model.KindPGStatement, Session: "s", Data: data})
		if err != nil {
			t.Fatal(err)
		}
		js, _ := json.Marshal(data)
		if want := evidence.AppendTail(nil, model.KindPGStatement, "s", js, nil); string(enc.tail) != string(want) {
			t.Errorf("%T:\n got %s\nwant %s", data, enc.tail, want)
		}
		if _, err := evidence.ParseBody(evidence.AppendBody(nil, 1, 1, enc.tail)); err != nil {
			t.Errorf("%T: %v", data, err)
		}
	}
}

func TestLeafHasherIsRecordHash(t *testing.T) {
	var l leafHasher
	for _, b := range [][]byte{nil, []byte("x"), bytes.Repeat([]byte("entry body "), 200)} {
		if got, want := l.sum(b), tlog.RecordHash(b); got != want {
			t.Errorf("leaf hash of %d bytes: %x, want %x", len(b), got, want)
		}
	}
}
