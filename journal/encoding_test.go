package journal

import (
	"bytes"
	"encoding/json"
	"testing"

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

func TestLeafHasherIsRecordHash(t *testing.T) {
	var l leafHasher
	for _, b := range [][]byte{nil, []byte("x"), bytes.Repeat([]byte("entry body "), 200)} {
		if got, want := l.sum(b), tlog.RecordHash(b); got != want {
			t.Errorf("leaf hash of %d bytes: %x, want %x", len(b), got, want)
		}
	}
}
