package policy

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"math/rand"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/interlock/interlock/model"
)

const email = "jane@example.com"

var testKey = []byte(strings.Repeat("k", 32))

func hash16(v string) string {
	m := hmac.New(sha256.New, testKey)
	m.Write([]byte(v))
	return string(m.Sum(nil)[:16])
}

// be32 and friends build binary values by hand.
func be32(x int32) []byte { return binary.BigEndian.AppendUint32(nil, uint32(x)) }

// binArray is a one-dimensional binary array of elem; nil elements are
// NULL.
func binArray(elem uint32, elems ...[]byte) []byte {
	b := be32(1)
	b = append(b, be32(0)...)
	b = append(b, be32(int32(elem))...)
	b = append(b, be32(int32(len(elems)))...)
	b = append(b, be32(1)...)
	for _, e := range elems {
		if e == nil {
			b = append(b, be32(-1)...)
			continue
		}
		b = append(b, be32(int32(len(e)))...)
		b = append(b, e...)
	}
	return b
}

type field struct {
	oid uint32
	v   []byte
}

func binRecord(fs ...field) []byte {
	b := be32(int32(len(fs)))
	for _, f := range fs {
		b = append(b, be32(int32(f.oid))...)
		if f.v == nil {
			b = append(b, be32(-1)...)
			continue
		}
		b = append(b, be32(int32(len(f.v)))...)
		b = append(b, f.v...)
	}
	return b
}

func encode(t *testing.T, oid uint32, v any) []byte {
	t.Helper()
	b, err := pgtype.NewMap().Encode(oid, pgtype.BinaryFormatCode, v, nil)
	if err != nil {
		t.Fatalf("encode %d %v: %v", oid, v, err)
	}
	return b
}

func numeric(t *testing.T, s string) []byte {
	t.Helper()
	var n pgtype.Numeric
	if err := n.Scan(s); err != nil {
		t.Fatal(err)
	}
	return encode(t, pgtype.NumericOID, n)
}

// maskOne masks one value of a column under the detectors and returns
// the result and the decisions.
func maskOne(t *testing.T, c Column, v []byte, dets ...string) ([]byte, []MaskDecision) {
	t.Helper()
	if dets == nil {
		dets = MaskDetectorNames()
	}
	m := NewMaskerWithKey(testKey)
	rm := m.Plan(&model.MaskSpec{Rules: []model.MaskRule{{Rule: "scan", Detectors: dets}}}, []Column{c})
	if rm == nil {
		return v, nil
	}
	row := [][]byte{v}
	if err := rm.Mask(row); err != nil {
		t.Fatal(err)
	}
	return row[0], rm.Decisions()
}

// TestMaskEveryFormat: detectors read every format of the types that can
// hold what they find, and a finding masks a value that is not plain text
// whole, with its type's mask (NULL when it has none).
func TestMaskEveryFormat(t *testing.T) {
	emailHex := `\x` + hex.EncodeToString([]byte(email))
	jsonEsc := `{"a": [1, "jane\u0040example.com"]}`
	card := "4111111111111111"
	int8Card := binary.BigEndian.AppendUint64(nil, 4111111111111111)
	keyBlock := "-----BEGIN RSA PRIVATE KEY-----\nMIIEow"
	tsv := append(append(be32(2), "hello\x00\x00\x01\x00\x01"...), email+"\x00\x00\x00"...)
	type want int
	const (
		kept  want = iota // unchanged
		whole             // the type's mask
		null              // SQL NULL
		undec             // NULL, counted as undecodable
	)
	cases := []struct {
		name string
		oid  uint32
		bin  bool
		v    []byte
		want want
		det  string // the detector counted
	}{
		{"bytea binary", pgtype.ByteaOID, true, []byte("x\x00" + email + "\xff"), whole, "email"},
		{"bytea binary, nothing", pgtype.ByteaOID, true, []byte("\x00\x01plain"), kept, ""},
		{"bytea hex", pgtype.ByteaOID, false, []byte(emailHex), whole, "email"},
		{"bytea escape", pgtype.ByteaOID, false, []byte(`\001\\` + email), whole, "email"},
		{"bytea hex, nothing", pgtype.ByteaOID, false, []byte(`\x00ff`), kept, ""},
		{"json text escaped", pgtype.JSONOID, false, []byte(jsonEsc), whole, "email"},
		{"json binary", pgtype.JSONOID, true, []byte(jsonEsc), whole, "email"},
		{"json card number", pgtype.JSONOID, false, []byte(`{"n": ` + card + `}`), whole, "card"},
		{"jsonb binary", pgtype.JSONBOID, true, append([]byte{1}, `{"k": "`+keyBlock+`"}`...), whole, "private_key"},
		{"jsonb binary, nothing", pgtype.JSONBOID, true, append([]byte{1}, `{"n": 0.4111111111111111}`...), kept, ""},
		{"jsonb binary, unknown version", pgtype.JSONBOID, true, append([]byte{2}, `{}`...), undec, ""},
		{"int8 binary", pgtype.Int8OID, true, int8Card, whole, "card"},
		{"int8 text", pgtype.Int8OID, false, []byte(card), whole, "card"},
		{"int8 binary, a timestamp", pgtype.Int8OID, true, binary.BigEndian.AppendUint64(nil, 1732612345678), kept, ""},
		{"numeric binary", pgtype.NumericOID, true, numeric(t, card), whole, "card"},
		{"numeric binary, scaled", pgtype.NumericOID, true, numeric(t, card+".00"), whole, "card"},
		{"float8 binary", pgtype.Float8OID, true, make([]byte, 8), kept, ""},
		{"text[] binary", pgtype.TextArrayOID, true, encode(t, pgtype.TextArrayOID, []string{"a", email}), null, "email"},
		{"text[] binary, nothing", pgtype.TextArrayOID, true, encode(t, pgtype.TextArrayOID, []string{"a", "b"}), kept, ""},
		{"text[] text", pgtype.TextArrayOID, false, []byte(`{a,"x ` + email + `"}`), null, "email"},
		{"text[] text, an escaped email", pgtype.TextArrayOID, false, []byte(`{"{\"e\": \"jane\\u0040example.com\"}"}`), null, "email"},
		{"text[] binary, an escaped email", pgtype.TextArrayOID, true, binArray(pgtype.TextOID, []byte(jsonEsc)), null, "email"},
		{"text[][] text", pgtype.TextArrayOID, false, []byte(`{{a,b},{c,` + email + `}}`), null, "email"},
		{"int8[] binary", pgtype.Int8ArrayOID, true, binArray(pgtype.Int8OID, nil, int8Card), null, "card"},
		{"int4[] binary", pgtype.Int4ArrayOID, true, encode(t, pgtype.Int4ArrayOID, []int32{1, 2}), kept, ""},
		{"bytea[] binary", pgtype.ByteaArrayOID, true, binArray(pgtype.ByteaOID, []byte(email)), null, "email"},
		{"bytea[] text", pgtype.ByteaArrayOID, false, []byte(`{"\\` + emailHex + `"}`), null, "email"},
		{"json[] text", pgtype.JSONArrayOID, false, []byte(`{"{\"e\": \"jane\\u0040example.com\"}"}`), null, "email"},
		{"jsonb[] binary", pgtype.JSONBArrayOID, true, binArray(pgtype.JSONBOID, append([]byte{1}, jsonEsc...)), null, "email"},
		{"array of an unknown type, binary", pgtype.TextArrayOID, true, binArray(99999, []byte("x")), undec, ""},
		{"array with a wrong length", pgtype.TextArrayOID, true, binArray(pgtype.TextOID, []byte("x"))[:24], undec, ""},
		{"record binary", pgtype.RecordOID, true, binRecord(field{pgtype.Int4OID, be32(7)}, field{pgtype.TextOID, []byte(email)}), null, "email"},
		{"record binary, nothing", pgtype.RecordOID, true, binRecord(field{pgtype.Int4OID, be32(7)}, field{pgtype.TextOID, nil}), kept, ""},
		{"record binary, nested", pgtype.RecordOID, true, binRecord(field{pgtype.RecordOID, binRecord(field{pgtype.ByteaOID, []byte(email)})}), null, "email"},
		{"record binary, unknown field type", pgtype.RecordOID, true, binRecord(field{99999, []byte("x")}), undec, ""},
		{"record text", pgtype.RecordOID, false, []byte(`(1,"a ` + email + `")`), null, "email"},
		{"record text, bytea field", pgtype.RecordOID, false, []byte(`(1,"\\` + emailHex + `")`), null, "email"},
		{"record text, nested", pgtype.RecordOID, false, []byte(`(1,"(2,""\\\\` + emailHex + `"")")`), null, "email"},
		{"record text, json field", pgtype.RecordOID, false, []byte(`(1,"{""e"": ""jane\\\\u0040example.com""}")`), null, "email"},
		{"table row type, binary", 99999, true, binRecord(field{pgtype.TextOID, []byte(email)}), null, "email"},
		{"table row type, binary, nothing", 99999, true, binRecord(field{pgtype.TextOID, []byte("x")}), kept, ""},
		{"unknown type, text", 99999, false, []byte("hello " + email), null, "email"},
		{"unknown type, text, nothing", 99999, false, []byte("hello"), kept, ""},
		{"unknown type, binary", 99999, true, []byte("hello"), undec, ""},
		{"int8range binary", pgtype.Int8rangeOID, true, encode(t, pgtype.Int8rangeOID, pgtype.Range[pgtype.Int8]{
			Lower: pgtype.Int8{Int64: 4111111111111111, Valid: true}, LowerType: pgtype.Inclusive, UpperType: pgtype.Unbounded, Valid: true}), null, "card"},
		{"int4range binary", pgtype.Int4rangeOID, true, encode(t, pgtype.Int4rangeOID, pgtype.Range[pgtype.Int4]{
			Lower: pgtype.Int4{Int32: 1, Valid: true}, Upper: pgtype.Int4{Int32: 9, Valid: true}, LowerType: pgtype.Inclusive, UpperType: pgtype.Exclusive, Valid: true}), kept, ""},
		{"tsvector binary", pgtype.TSVectorOID, true, tsv, null, "email"},
		{"uuid binary", pgtype.UUIDOID, true, make([]byte, 16), kept, ""},
		{"text, an escaped email", pgtype.TextOID, false, []byte(jsonEsc), whole, "email"},
		{"text, backslashes", pgtype.TextOID, false, []byte(`C:\temp\new \x41`), kept, ""},
		{"xml text", pgtype.XMLOID, false, []byte("<a>" + email + "</a>"), kept, "email"}, // in place, below
	}
	for _, c := range cases {
		col := Column{Name: "c", TypeOID: c.oid, Binary: c.bin}
		got, ds := maskOne(t, col, c.v)
		var wantV []byte
		switch c.want {
		case kept:
			wantV = c.v
		case whole:
			wantV = typeMask(col)
			if wantV == nil {
				t.Fatalf("%s: the type has no mask", c.name)
			}
		}
		if c.name == "xml text" {
			wantV = []byte("<a>***@***</a>")
		}
		if !bytes.Equal(got, wantV) || (got == nil) != (wantV == nil) {
			t.Errorf("%s: masked to %q, want %q", c.name, got, wantV)
		}
		wantDet := c.det
		if c.want == undec {
			wantDet = UndecodableDetector
		}
		switch {
		case wantDet == "" && len(ds) != 0:
			t.Errorf("%s: decisions %+v", c.name, ds)
		case wantDet != "" && (len(ds) != 1 || ds[0].Detector != wantDet || ds[0].Count != 1 || ds[0].Rule != "scan" || len(ds[0].Hashes) != 16):
			t.Errorf("%s: decisions %+v, want one of %s", c.name, ds, wantDet)
		case wantDet == "email" && string(ds[0].Hashes) != hash16(email):
			t.Errorf("%s: the hash is not that of the email found", c.name)
		case c.want == undec && string(ds[0].Hashes) != hash16(string(c.v)):
			t.Errorf("%s: the hash is not that of the whole value", c.name)
		}
	}
}

// TestMaskOncePerOriginal: decodings that show the same original more
// than once count it once per value.
func TestMaskOncePerOriginal(t *testing.T) {
	v := []byte(`{"a": "` + email + `", "b": "jane\u0040example.com", "c": "bob@example.org"}`)
	got, ds := maskOne(t, Column{Name: "j", TypeOID: pgtype.JSONOID}, v, "email")
	if string(got) != "null" || len(ds) != 1 || ds[0].Count != 2 {
		t.Errorf("masked %q, decisions %+v", got, ds)
	}
}

// TestDerivedColumn: a column computed from a masked one is masked whole
// under the rule the handler names.
func TestDerivedColumn(t *testing.T) {
	m := NewMaskerWithKey(testKey)
	spec := &model.MaskSpec{Rules: []model.MaskRule{{Rule: "pii", Columns: []string{"customers.email"}}}}
	rm := m.Plan(spec, []Column{{Name: "e", TypeOID: pgtype.TextOID, Derived: "pii"}, {Name: "n", TypeOID: pgtype.Int4OID}})
	if rm == nil {
		t.Fatal("no plan")
	}
	row := [][]byte{[]byte("JANE@EXAMPLE.COM"), []byte("1")}
	if err := rm.Mask(row); err != nil {
		t.Fatal(err)
	}
	ds := rm.Decisions()
	if string(row[0]) != "****" || string(row[1]) != "1" || len(ds) != 1 || ds[0].Rule != "pii" || ds[0].Column != "e" || ds[0].Count != 1 {
		t.Errorf("row %q, decisions %+v", row, ds)
	}
}

// TestPlanTypesWithoutFindings: detectors alone over columns no value of
// which can hold a finding need no masking.
func TestPlanTypesWithoutFindings(t *testing.T) {
	m := NewMaskerWithKey(testKey)
	spec := &model.MaskSpec{Rules: []model.MaskRule{{Rule: "scan", Detectors: []string{"card"}}}}
	if rm := m.Plan(spec, []Column{{Name: "id", TypeOID: pgtype.Int4OID}, {Name: "at", TypeOID: pgtype.TimestamptzOID, Binary: true}}); rm != nil {
		t.Errorf("a plan for int4 and timestamptz columns")
	}
	if rm := m.Plan(spec, []Column{{Name: "id", TypeOID: pgtype.Int4OID}, {Name: "x", TypeOID: 99999, Binary: true}}); rm == nil {
		t.Errorf("no plan for a column of an unknown type")
	}
}

// TestPrintNumber: binary numerics print as PostgreSQL prints them.
func TestPrintNumber(t *testing.T) {
	for _, s := range []string{"0", "1", "-1", "123.45", "0.001", "-0.0001", "10000", "4111111111111111", "4111111111111111.00", "100000000000000000000", "12345678.9", "NaN", "Infinity"} {
		var n pgtype.Numeric
		if err := n.Scan(s); err != nil {
			t.Fatal(err)
		}
		want, err := n.Value()
		if err != nil {
			t.Fatal(err)
		}
		var sc valueScanner
		got, ok := sc.printNumber(pgtype.NumericOID, numeric(t, s))
		if s == "NaN" || s == "Infinity" {
			want = ""
		}
		if !ok || string(got) != want {
			t.Errorf("numeric %s printed %q, want %q", s, got, want)
		}
	}
}

// TestKindsFromPgtype: arrays, ranges and multiranges of built-in types
// are known through pgtype, with their element types.
func TestKindsFromPgtype(t *testing.T) {
	types := pgtype.NewMap()
	for _, c := range []struct {
		oid, elem uint32
		k         valueKind
	}{
		{pgtype.TextArrayOID, pgtype.TextOID, kindArray},
		{pgtype.ByteaArrayOID, pgtype.ByteaOID, kindArray},
		{pgtype.RecordArrayOID, pgtype.RecordOID, kindArray},
		{pgtype.JSONBArrayOID, pgtype.JSONBOID, kindArray},
		{pgtype.Int8rangeOID, pgtype.Int8OID, kindRange},
		{pgtype.NummultirangeOID, pgtype.NumericOID, kindMultirange},
	} {
		if k, elem := kindOf(types, c.oid); k != c.k || elem != c.elem {
			t.Errorf("oid %d: kind %d of %d, want %d of %d", c.oid, k, elem, c.k, c.elem)
		}
	}
}

// TestTypeMasksAreValid: every whole-value mask is a value of its type,
// as pgtype reads it.
func TestTypeMasksAreValid(t *testing.T) {
	types := pgtype.NewMap()
	for oid, v := range maskedBinary {
		var dst any
		if err := types.Scan(oid, pgtype.BinaryFormatCode, v, &dst); err != nil {
			t.Errorf("binary mask of %d: %v", oid, err)
		}
	}
	for oid, v := range maskedText {
		var dst any
		if err := types.Scan(oid, pgtype.TextFormatCode, []byte(v), &dst); err != nil {
			t.Errorf("text mask of %d: %v", oid, err)
		}
	}
}

// TestScanMalformed: no value, however malformed, makes the scanner
// panic; binary values it cannot read are reported.
func TestScanMalformed(t *testing.T) {
	oids := []uint32{pgtype.TextArrayOID, pgtype.RecordOID, pgtype.Int8rangeOID, pgtype.NummultirangeOID, pgtype.TSVectorOID,
		pgtype.NumericOID, pgtype.Int8OID, pgtype.JSONBOID, pgtype.ByteaOID, pgtype.RecordArrayOID, 99999}
	seeds := [][]byte{
		binArray(pgtype.TextOID, []byte(email)),
		binRecord(field{pgtype.RecordOID, binRecord(field{pgtype.TextOID, []byte(email)})}),
		[]byte(`{"\\x6a","(1,\"{a}\")"}`), []byte(`(1,"(2,""{a,b}"")")`), []byte(`[1:2]={"a",b}`),
	}
	sc := valueScanner{dets: lookupDetectors(MaskDetectorNames()), types: pgtype.NewMap(), onFind: func(int, []byte) {}}
	r := rand.New(rand.NewSource(1))
	for i := 0; i < 20000; i++ {
		v := append([]byte(nil), seeds[r.Intn(len(seeds))]...)
		for k := r.Intn(4); k >= 0 && len(v) > 0; k-- {
			switch r.Intn(3) {
			case 0:
				v[r.Intn(len(v))] = byte(r.Intn(256))
			case 1:
				v = v[:r.Intn(len(v))]
			case 2:
				v = append(v, byte(r.Intn(256)))
			}
		}
		oid := oids[r.Intn(len(oids))]
		sc.value(oid, r.Intn(2) == 0, v, 0)
		sc.reset()
	}
}

// TestMacMatchesHMAC: the resumed keyed hash is HMAC-SHA256, as
// Masker.Hash computes it, for every length around the block edges.
func TestMacMatchesHMAC(t *testing.T) {
	for _, key := range [][]byte{testKey, bytes.Repeat([]byte{7}, 100)} {
		m := NewMaskerWithKey(key)
		if m.pads == nil {
			t.Fatal("the keyed hash does not resume SHA-256 states")
		}
		mc := newMac(key, m.pads)
		for n := 0; n < 300; n++ {
			v := bytes.Repeat([]byte{byte(n)}, n)
			if got, want := mc.sum(v), m.Hash(v); !bytes.Equal(got, want) {
				t.Fatalf("key %d bytes, value %d bytes: %x, want %x", len(key), n, got, want)
			}
		}
	}
	if mc := newMac(testKey, nil); !bytes.Equal(mc.sum([]byte(email)), []byte(hash16(email))) {
		t.Errorf("crypto/hmac fallback differs")
	}
}

func TestScrubText(t *testing.T) {
	dets := []string{"email", "card"}
	msg := `duplicate key value violates unique constraint "u"; Key (email)=(jane@example.com) already exists, card 4111 1111 1111 1111`
	got, found := ScrubText(dets, msg)
	want := `duplicate key value violates unique constraint "u"; Key (email)=(***@***) already exists, card ****-****-****-1111`
	if got != want || len(found) != 2 || found[0] != (Scrubbed{"email", email}) || found[1] != (Scrubbed{"card", "4111 1111 1111 1111"}) {
		t.Errorf("scrubbed %q, found %+v", got, found)
	}
	if got, found := ScrubText(dets, "nothing here"); got != "nothing here" || found != nil {
		t.Errorf("scrubbed %q, found %+v", got, found)
	}
	if got, found := ScrubText(nil, msg); got != msg || found != nil {
		t.Errorf("without detectors: %q, %+v", got, found)
	}
	// Hidden by escapes: the whole text goes.
	got, found = ScrubText(dets, `{"email": "jane\u0040example.com", "n": 1}`)
	if got != "[REDACTED email]" || len(found) != 1 || found[0].Original != email {
		t.Errorf("escaped: %q, %+v", got, found)
	}
	// Escapes that hide nothing keep the text.
	if got, found := ScrubText(dets, `path C:\temp\x`); got != `path C:\temp\x` || found != nil {
		t.Errorf("backslashes: %q, %+v", got, found)
	}

	spec := &model.MaskSpec{Rules: []model.MaskRule{{Rule: "cols", Columns: []string{"t.c"}}, {Rule: "a", Detectors: []string{"card"}}, {Rule: "b", Detectors: []string{"email", "card"}}}}
	if d := SpecDetectors(spec); strings.Join(d, ",") != "card,email" {
		t.Errorf("SpecDetectors %v", d)
	}
	m := NewMaskerWithKey(testKey)
	_, found = ScrubText(SpecDetectors(spec), "a@example.com b@example.com 4111111111111111")
	ds := ScrubDecisions(spec, "error.detail", found, m.Hash)
	if len(ds) != 2 || ds[0].Rule != "b" || ds[0].Detector != "email" || ds[0].Count != 2 || ds[0].Column != "error.detail" ||
		string(ds[0].Hashes[16:]) != hash16("b@example.com") || ds[1].Rule != "a" || ds[1].Count != 1 || len(ds[1].Hashes) != 16 {
		t.Errorf("decisions %+v", ds)
	}
}

// BenchmarkMaskDecoded: a jsonb and a text[] value in binary, scanned
// by every detector.
func BenchmarkMaskDecoded(b *testing.B) {
	m := NewMaskerWithKey(testKey)
	spec := &model.MaskSpec{Rules: []model.MaskRule{{Rule: "scan", Detectors: MaskDetectorNames()}}}
	rm := m.Plan(spec, []Column{{Name: "j", TypeOID: pgtype.JSONBOID, Binary: true}, {Name: "a", TypeOID: pgtype.TextArrayOID, Binary: true}})
	row := [][]byte{append([]byte{1}, `{"id": 12345, "note": "shipped on 2026-11-26", "tags": ["a", "b"]}`...),
		binArray(pgtype.TextOID, []byte("first"), []byte("second element"), nil)}
	vals := make([][]byte, len(row))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		copy(vals, row)
		if err := rm.Mask(vals); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMac: the keyed hash of a 21-byte original, resumed from the
// pads' states, and with crypto/hmac (the fallback, and what masking used
// before).
func BenchmarkMac(b *testing.B) {
	m := NewMaskerWithKey(testKey)
	v := []byte("user12345@example.com")
	for _, c := range []struct {
		name string
		pads *macPads
	}{{"resumed", m.pads}, {"crypto-hmac", nil}} {
		b.Run(c.name, func(b *testing.B) {
			mc := newMac(testKey, c.pads)
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				mc.sum(v)
			}
		})
	}
}

// TestManyHashes: a large result's hashes, kept in blocks, come out
// whole and in order.
func TestManyHashes(t *testing.T) {
	m := NewMaskerWithKey(testKey)
	rm := m.Plan(&model.MaskSpec{Rules: []model.MaskRule{{Rule: "pii", Columns: []string{"t.c"}}}}, []Column{{Table: "public.t", Name: "c", TypeOID: pgtype.TextOID}})
	const n = 3*hashBlock/16 + 7
	for i := 0; i < n; i++ {
		if err := rm.Mask([][]byte{[]byte(strings.Repeat("v", i%50) + string(rune('a'+i%26)))}); err != nil {
			t.Fatal(err)
		}
	}
	for round := 0; round < 2; round++ {
		ds := rm.Decisions()
		if len(ds) != 1 || ds[0].Count != n || len(ds[0].Hashes) != 16*n {
			t.Fatalf("decisions: %d, count %d, %d bytes of hashes", len(ds), ds[0].Count, len(ds[0].Hashes))
		}
		for _, i := range []int{0, 1, 4095, 4096, 4097, n - 1} {
			if got := string(ds[0].Hashes[16*i : 16*i+16]); got != hash16(strings.Repeat("v", i%50)+string(rune('a'+i%26))) {
				t.Errorf("hash %d is not that of value %d", i, i)
			}
		}
	}
}
