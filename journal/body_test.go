package journal

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"

	"github.com/interlock/interlock/model"
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
		if js, _ := json.Marshal(s); !bytes.Equal(appendJSONString(nil, s), js) {
			t.Fatalf("the writer encodes %q as %s, encoding/json as %s", s, appendJSONString(nil, s), js)
		}
	}
	again := appendBody(nil, p.Seq, p.Time, appendTail(nil, p.Kind, p.Session, p.Data, p.Payload))
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

// Every body the writer produces parses, whatever the record holds.
func FuzzParseBody(f *testing.F) {
	f.Add([]byte(`{"v":1,"seq":1,"time":0,"kind":"k","session":"","data":null}`), "k", "s", `{"a":"<&>"}`)
	f.Add([]byte(`{"v":1,"seq":1,"time":0,"kind":"k","session":"","data":{"a":[1,2]}}`), "pg.statement", "\u2028", `[1,"\u0000"]`)
	f.Add([]byte(`0`), "0", "0", "\"\x8a\"") // invalid UTF-8 in raw data: refused, not written
	f.Fuzz(func(t *testing.T, body []byte, kind, session, data string) {
		checkAgainstEncodingJSON(t, body)
		if kind == "" || !json.Valid([]byte(data)) {
			return
		}
		enc, err := encodeRecord(model.Record{Kind: kind, Session: session, Data: json.RawMessage(data), Payload: []byte(data)})
		if err != nil {
			return // floats, invalid UTF-8
		}
		b := appendBody(nil, 7, -3, enc.tail)
		p, err := ParseBody(b)
		if err != nil {
			t.Fatalf("writer's body %q does not parse: %v", b, err)
		}
		checkAgainstEncodingJSON(t, b)
		if p.Kind != kind || p.Session != session {
			t.Fatalf("kind/session %q/%q read back as %q/%q", kind, session, p.Kind, p.Session)
		}
	})
}
