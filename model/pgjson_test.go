package model

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

// TestAppendJSONFastPathOn: the encoders know every field of the types
// they encode. This fails when a field is added to one of them: add it
// to its encoder in pgjson.go and to the field list there.
func TestAppendJSONFastPathOn(t *testing.T) {
	if !pgStatementFast || !pgResultFast || !decisionFast {
		t.Fatalf("the JSON encoders are off (PGStatement %v, PGResult %v, Decision %v): a field changed; update pgjson.go",
			pgStatementFast, pgResultFast, decisionFast)
	}
	if _, ok := AppendJSON(nil, PGCancel{}); ok {
		t.Errorf("AppendJSON encoded a type it has no encoder for")
	}
}

// jsonPieces are string pieces json.Marshal escapes in its own ways.
var jsonPieces = []string{"", "a", "SELECT 1", `"`, `\`, "<", ">", "&", "\x00", "\x1f", "\b", "\f", "\n", "\r", "\t",
	"\x7f", "é", "\u2028", "\u2029", "\xff", "\xc3", "\xe2\x80", "😀", "\xed\xa0\x80", "'", "/", "\u00a0", "\ufffd"}

func randString(r *rand.Rand) string {
	var b []byte
	for n := r.IntN(6); n > 0; n-- {
		if r.IntN(4) == 0 {
			b = append(b, byte(r.IntN(256)))
		} else {
			b = append(b, jsonPieces[r.IntN(len(jsonPieces))]...)
		}
	}
	return string(b)
}

// fill sets every field of v at random, reflecting over the type so that
// a field added later is filled too.
func fill(v reflect.Value, r *rand.Rand, depth int) {
	switch v.Kind() {
	case reflect.String:
		v.SetString(randString(r))
	case reflect.Bool:
		v.SetBool(r.IntN(2) == 0)
	case reflect.Int, reflect.Int64, reflect.Int32:
		switch r.IntN(3) {
		case 0:
			v.SetInt(0)
		case 1:
			v.SetInt(r.Int64N(1000) - 500)
		default:
			v.SetInt(r.Int64() - r.Int64())
		}
	case reflect.Uint64, reflect.Uint32, reflect.Uint:
		if r.IntN(3) > 0 {
			v.SetUint(r.Uint64() >> (64 - v.Type().Bits()))
		}
	case reflect.Pointer:
		if r.IntN(3) > 0 && depth < 4 {
			p := reflect.New(v.Type().Elem())
			fill(p.Elem(), r, depth+1)
			v.Set(p)
		}
	case reflect.Slice:
		switch k := r.IntN(4); {
		case k == 0 || depth >= 4:
		case k == 1:
			v.Set(reflect.MakeSlice(v.Type(), 0, 0))
		default:
			s := reflect.MakeSlice(v.Type(), 1+r.IntN(3), 3)
			for i := 0; i < s.Len(); i++ {
				fill(s.Index(i), r, depth+1)
			}
			v.Set(s)
		}
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			fill(v.Field(i), r, depth+1)
		}
	default:
		panic("fill: no case for " + v.Type().String())
	}
}

// TestAppendJSONIsMarshal: the encoders write json.Marshal's bytes for
// random values of every field.
func TestAppendJSONIsMarshal(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	for i := 0; i < 20000; i++ {
		var v any
		if i%2 == 0 {
			var s PGStatement
			fill(reflect.ValueOf(&s).Elem(), r, 0)
			v = s
		} else {
			var res PGResult
			fill(reflect.ValueOf(&res).Elem(), r, 0)
			v = res
		}
		want, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := AppendJSON([]byte("prefix"), v)
		if !ok || !bytes.Equal(got[len("prefix"):], want) {
			t.Fatalf("%T %+v:\n got %s\nwant %s", v, v, got, want)
		}
	}
}

func FuzzAppendJSONString(f *testing.F) {
	for _, s := range jsonPieces {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		if got := appendJSONString(nil, s); !bytes.Equal(got, want) {
			t.Errorf("%q: got %s, want %s", s, got, want)
		}
	})
}

func BenchmarkPGStatementJSON(b *testing.B) {
	v := "42"
	s := PGStatement{SQL: "SELECT abalance FROM pgbench_accounts WHERE aid = $1;", Protocol: "extended",
		Params: []PGParam{{Type: "int4", Value: &v, Format: "binary"}}, Kinds: []string{"select"},
		Tables: []string{"pgbench_accounts"}, ReadOnly: true, Decision: Decision{Action: Allow, Rule: "policy.default"},
		StartNS: 1733500000000000000}
	b.Run("marshal", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			json.Marshal(s)
		}
	})
	b.Run("append", func(b *testing.B) {
		b.ReportAllocs()
		buf := make([]byte, 0, 512)
		for i := 0; i < b.N; i++ {
			buf, _ = AppendJSON(buf[:0], s)
		}
	})
}

func TestPGTableEffectChanges(t *testing.T) {
	got := PGTableEffect{Created: true, System: true}.Changes()
	if strings.Join(got, ",") != "created,system catalog" {
		t.Fatalf("Changes() = %q", got)
	}
	if got := (PGTableEffect{Lock: "AccessExclusiveLock"}).Changes(); strings.Join(got, ",") != "altered" {
		t.Fatalf("Changes() of an ACCESS EXCLUSIVE lock = %q", got)
	}
	if got := (PGTableEffect{Inserted: 3}).Changes(); len(got) != 0 {
		t.Fatalf("Changes() of a plain insert = %q", got)
	}
}
