package evidence

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// checkAgainstEncodingJSON holds ParseBody to encoding/json: whatever it
// accepts is valid JSON that decodes to the same fields, and re-encoding
// those fields the writer's way gives back the same bytes.
func checkAgainstEncodingJSON(t *testing.T, b []byte) {
	t.Helper()
	p, err := ParseBody(b)
	if err != nil {
		return
	}
	var std struct {
		V       int             `json:"v"`
		Seq     uint64          `json:"seq"`
		Time    int64           `json:"time"`
		Kind    string          `json:"kind"`
		Session string          `json:"session"`
		Data    json.RawMessage `json:"data"`
		Payload string          `json:"payload"`
	}
	if !json.Valid(b) {
		t.Fatalf("ParseBody accepted invalid JSON %q", b)
	}
	if err := json.Unmarshal(b, &std); err != nil {
		t.Fatalf("ParseBody accepted %q, encoding/json: %v", b, err)
	}
	if std.V != 1 || std.Seq != p.Seq || std.Time != p.Time || std.Kind != p.Kind || std.Session != p.Session ||
		!bytes.Equal(std.Data, p.Data) || std.Payload != hex.EncodeToString(p.Payload) {
		t.Fatalf("ParseBody(%q) = %+v, encoding/json reads %+v", b, p, std)
	}
	for _, s := range []string{p.Kind, p.Session} {
		if js, _ := json.Marshal(s); !bytes.Equal(AppendJSONString(nil, s), js) {
			t.Fatalf("the writer encodes %q as %s, encoding/json as %s", s, AppendJSONString(nil, s), js)
		}
	}
	again := AppendBody(nil, p.Seq, p.Time, AppendTail(nil, p.Kind, p.Session, p.Data, p.Payload))
	if !bytes.Equal(again, b) {
		t.Fatalf("ParseBody accepted %q, which re-encodes as %q", b, again)
	}
	if hasFloat(p.Data) {
		t.Fatalf("ParseBody accepted a float in %q", b)
	}
}

// hasFloat reports whether valid JSON holds a number with a fraction or an
// exponent, by encoding/json's tokenizer.
func hasFloat(js []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	for {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		if n, ok := tok.(json.Number); ok && strings.ContainsAny(string(n), ".eE") {
			return true
		}
	}
}

func TestParseBody(t *testing.T) {
	good := []string{
		`{"v":1,"seq":1,"time":0,"kind":"k","session":"","data":null}`,
		`{"v":1,"seq":18446744073709551615,"time":-9223372036854775808,"kind":"a\u003cb","session":"é\n","data":{"a":[1,-2,true,false,null,"x\"y"],"b":{}}}`,
		`{"v":1,"seq":2,"time":5,"kind":"k","session":"s","data":{"payload":"x"},"payload":"` + strings.Repeat("ab", 32) + `"}`,
		`{"v":1,"seq":3,"time":5,"kind":"k","session":"s","data":"\u2028"}`,
	}
	for _, b := range good {
		if _, err := ParseBody([]byte(b)); err != nil {
			t.Errorf("ParseBody(%s): %v", b, err)
		}
		checkAgainstEncodingJSON(t, []byte(b))
	}
	bad := map[string]string{
		`{"v":1,"seq":1,"time":0,"kind":"k","session":"","data":1.5}`:                                               "float",
		`{"v":1,"seq":1,"time":0,"kind":"k","session":"","data":1e3}`:                                               "float",
		`{"v":1,"seq":01,"time":0,"kind":"k","session":"","data":null}`:                                             "does not parse",
		`{"v":1,"seq":0,"time":0,"kind":"k","session":"","data":null}`:                                              "canonical",
		`{"v":1,"seq":1,"time":-0,"kind":"k","session":"","data":null}`:                                             "canonical",
		`{"v":1,"seq":1,"time":0,"kind":"k","session":"","data":{"a":1 }}`:                                          "canonical",
		`{"v":1,"seq":1,"time":0,"kind":"a<b","session":"","data":null}`:                                            "canonical",
		`{"v":1,"seq":1,"time":0,"kind":"\u006b","session":"","data":null}`:                                         "canonical",
		`{"v":1,"seq":1,"time":0,"session":"","kind":"k","data":null}`:                                              "canonical",
		`{"v":1,"seq":1,"time":0,"kind":"k","session":"","data":null,"payload":"` + strings.Repeat("AB", 32) + `"}`: "payload",
		`{"v":1,"seq":1,"time":0,"kind":"k","session":"","data":[1,]}`:                                              "does not parse",
		"{\"v\":1,\"seq\":1,\"time\":0,\"kind\":\"k\",\"session\":\"\",\"data\":\"\xff\"}":                          "canonical",
		`{"v":2,"seq":1,"time":0,"kind":"k","session":"","data":null}`:                                              "unsupported encoding version 2",
		`{"v":1,"seq":1,"time":0,"kind":"k","data":null}`:                                                           "no session",
		`{"v":1,`: "does not parse",
	}
	for b, want := range bad {
		_, err := ParseBody([]byte(b))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseBody(%s) = %v, want an error containing %q", b, err, want)
		}
	}
}

// Whatever ParseBody accepts, encoding/json reads the same way.
func FuzzParseBody(f *testing.F) {
	f.Add([]byte(`{"v":1,"seq":1,"time":0,"kind":"k","session":"","data":null}`))
	f.Add([]byte(`{"v":1,"seq":1,"time":0,"kind":"k","session":"","data":{"a":[1,2]}}`))
	f.Add([]byte(`0`))
	f.Fuzz(func(t *testing.T, body []byte) { checkAgainstEncodingJSON(t, body) })
}

// The writer refuses a float with the check ParseBody makes of stored
// bodies.
func TestValidDataFindsFloats(t *testing.T) {
	for js, want := range map[string]bool{
		`1`:                      false,
		`-0`:                     false,
		`[1,-2,true,false,null]`: false,
		`{"e":"E","1.5":"2e3"}`:  false,
		`"a\"1.5\\"`:             false,
		`{"a":"x\\","b":1}`:      false,
		`1.5`:                    true,
		`[0,1e5]`:                true,
		`{"x":-2E-3}`:            true,
		`{"a":"\"","b":0.1}`:     true,
		`{"a":"\\\\","b":1.0}`:   true,
	} {
		if !json.Valid([]byte(js)) {
			t.Fatalf("test case %s is not JSON", js)
		}
		err := ValidData([]byte(js))
		if got := errors.Is(err, ErrFloatToken); got != want || (!want && err != nil) {
			t.Errorf("ValidData(%s) = %v, want a float: %v", js, err, want)
		}
	}
}

// skipPlain skips no byte a string scan must look at, and no word without
// one stops it, whatever the bytes around it.

// parsePayloadLine accepts a line only when encoding/json reads it the
// same way and writes it back byte for byte.
func FuzzParsePayloadLine(f *testing.F) {
	f.Add([]byte(`{"seq":7,"salt":"` + strings.Repeat("ab", 32) + `","data":"aGVsbG8="}`))
	f.Add([]byte(`{"seq":07,"salt":"","data":""}`))
	f.Add([]byte(`{"seq":1,"salt":"a<b","data":""}`))
	f.Add([]byte(`{"seq":1,"salt":"","data":"\u0041"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		seq, salt, data, ok := parsePayloadLine(b)
		if !ok {
			return
		}
		var pl PayloadLine
		if err := json.Unmarshal(b, &pl); err != nil {
			t.Fatalf("parsePayloadLine accepted %q, encoding/json: %v", b, err)
		}
		if pl.Seq != seq || pl.Salt != string(salt) || pl.Data != string(data) {
			t.Fatalf("parsePayloadLine(%q) = %d %q %q, encoding/json reads %+v", b, seq, salt, data, pl)
		}
		if again, _ := json.Marshal(pl); !bytes.Equal(again, b) {
			t.Fatalf("parsePayloadLine accepted %q, which encoding/json writes as %s", b, again)
		}
	})
}

// BenchmarkParseBody measures the canonical check on the bodies of a
// journal's usual entries (journalbench's mix).
func BenchmarkParseBody(b *testing.B) {
	bodies := [][]byte{
		[]byte(`{"v":1,"seq":3,"time":1796619667118885842,"kind":"pg.statement","session":"sess-000000","data":{"sql":"SELECT id, name, email FROM accounts WHERE id = $1","protocol":"extended","params":[{"type":"int4","value":null,"format":"text"}],"kinds":["select"],"tables":["accounts"],"read_only":true,"decision":{"action":"allow","rule":"ci-read"},"rows":0,"start_ns":2,"duration_ns":0}}`),
		[]byte(`{"v":1,"seq":4,"time":1796619667118887715,"kind":"pg.result","session":"sess-000000","data":{"statement":3,"tag":"SELECT 1","rows":1,"duration_ns":183000}}`),
		[]byte(`{"v":1,"seq":6,"time":1796619667118890299,"kind":"ssh.io","session":"sess-000000","data":{"channel":0,"stream":"o","offset_ns":5,"bytes":64},"payload":"140c18c671e6ea14d29235ba434d1c43f573e8f759aff780554c6cbc0341fd11"}`),
	}
	n := 0
	for _, body := range bodies {
		n += len(body)
	}
	b.SetBytes(int64(n))
	for b.Loop() {
		for _, body := range bodies {
			if _, err := ParseBody(body); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// skipPlain stops at the first byte a string scan must look at.
func TestSkipPlain(t *testing.T) {
	for c := range 256 {
		special := c < 0x20 || c >= 0x80 || c == '"' || c == '\\'
		for at := range 9 {
			b := bytes.Repeat([]byte{'a'}, 9)
			b[at] = byte(c)
			want := len(b)
			if special {
				want = at
			}
			if got := skipPlain(b, 0); got != want {
				t.Fatalf("skipPlain(%q, 0) = %d, want %d", b, got, want)
			}
		}
	}
}
