package journal

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/interlock/interlock/model"
)

// EncodingVersion is the "v" field of every entry body. A reader that meets
// another version must refuse it rather than guess: the bytes are what the
// chain vouches for.
const EncodingVersion = 1

// HashSize is the length of an entry hash (SHA-256).
const HashSize = sha256.Size

// ErrFloat is returned when a record's data contains a non-integer number.
// Floats have several valid renderings, which would make the hashed bytes
// depend on the encoder rather than on the value.
var ErrFloat = errors.New("journal: record data contains a float (the encoding has integers only; use integer nanoseconds, cents, ...)")

// UnixNano is only defined for these years; outside them the encoded time
// would silently be garbage.
var (
	minTime = time.Unix(0, -1<<63).UTC()
	maxTime = time.Unix(0, 1<<63-1).UTC()
)

// encodedRecord is the part of an entry that does not depend on its position
// in the chain. Append builds it in the caller's goroutine so that the single
// writer only has to glue the sequence number and time in front of it.
type encodedRecord struct {
	kind    string
	session string
	// timeNS is used when hasTime; otherwise the writer's clock decides.
	timeNS  int64
	hasTime bool
	// tail is `,"kind":K,"session":S,"data":D}`.
	tail []byte
}

func encodeRecord(rec model.Record) (encodedRecord, error) {
	if rec.Kind == "" {
		return encodedRecord{}, errors.New("journal: record has no kind")
	}
	// json.Marshal would replace invalid UTF-8 with U+FFFD, so the body would
	// disagree with the kind/session columns and Verify would reject our
	// own entry.
	if !utf8.ValidString(rec.Kind) {
		return encodedRecord{}, fmt.Errorf("journal: record kind %q is not valid UTF-8", rec.Kind)
	}
	if !utf8.ValidString(rec.Session) {
		return encodedRecord{}, fmt.Errorf("journal: record session %q is not valid UTF-8", rec.Session)
	}
	er := encodedRecord{kind: rec.Kind, session: rec.Session}
	if !rec.Time.IsZero() {
		if rec.Time.Before(minTime) || rec.Time.After(maxTime) {
			return encodedRecord{}, fmt.Errorf("journal: record time %s cannot be encoded as int64 nanoseconds", rec.Time)
		}
		er.timeNS, er.hasTime = rec.Time.UnixNano(), true
	}
	data, err := json.Marshal(rec.Data)
	if err != nil {
		return encodedRecord{}, fmt.Errorf("journal: marshal data of %s record: %w", rec.Kind, err)
	}
	if containsFloat(data) {
		return encodedRecord{}, fmt.Errorf("%w: kind %s", ErrFloat, rec.Kind)
	}
	kind, err := json.Marshal(rec.Kind)
	if err != nil {
		return encodedRecord{}, fmt.Errorf("journal: marshal kind: %w", err)
	}
	session, err := json.Marshal(rec.Session)
	if err != nil {
		return encodedRecord{}, fmt.Errorf("journal: marshal session: %w", err)
	}
	tail := make([]byte, 0, len(`,"kind":,"session":,"data":}`)+len(kind)+len(session)+len(data))
	tail = append(tail, `,"kind":`...)
	tail = append(tail, kind...)
	tail = append(tail, `,"session":`...)
	tail = append(tail, session...)
	tail = append(tail, `,"data":`...)
	tail = append(tail, data...)
	tail = append(tail, '}')
	er.tail = tail
	return er, nil
}

// appendBody writes the exact bytes that are stored and hashed:
// {"v":1,"seq":N,"time":T,"kind":"K","session":"S","data":D}
func appendBody(dst []byte, seq uint64, timeNS int64, tail []byte) []byte {
	dst = append(dst, `{"v":`...)
	dst = strconv.AppendInt(dst, EncodingVersion, 10)
	dst = append(dst, `,"seq":`...)
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, `,"time":`...)
	dst = strconv.AppendInt(dst, timeNS, 10)
	return append(dst, tail...)
}

// chainHash computes SHA-256(prev || body) into dst[:0].
func chainHash(h hash.Hash, dst, prev, body []byte) []byte {
	h.Reset()
	h.Write(prev)
	h.Write(body)
	return h.Sum(dst[:0])
}

// containsFloat reports whether valid JSON holds a number token with a
// fraction or an exponent. It only looks outside strings, so "1.5" as text
// is fine; letters of true/false/null never start a number token.
func containsFloat(js []byte) bool {
	inString, escaped := false, false
	for i := 0; i < len(js); i++ {
		c := js[i]
		if inString {
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			continue
		}
		switch {
		case c == '"':
			inString = true
		case c == '-' || (c >= '0' && c <= '9'):
			j := i
			for ; j < len(js) && isNumberByte(js[j]); j++ {
				if js[j] == '.' || js[j] == 'e' || js[j] == 'E' {
					return true
				}
			}
			i = j - 1 // the loop header steps onto the byte that ended the number
		}
	}
	return false
}

func isNumberByte(c byte) bool {
	return (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E'
}

// body is a decoded entry body. Pointers tell a missing field from a zero.
type body struct {
	V       *int            `json:"v"`
	Seq     *uint64         `json:"seq"`
	Time    *int64          `json:"time"`
	Kind    *string         `json:"kind"`
	Session *string         `json:"session"`
	Data    json.RawMessage `json:"data"`
}

// parseBody decodes an entry body and checks that it is exactly the
// canonical encoding of its own fields, so that two different byte strings
// can never stand for the same entry.
func parseBody(b []byte) (body, error) {
	var p body
	if err := json.Unmarshal(b, &p); err != nil {
		return p, fmt.Errorf("body does not parse: %v", err)
	}
	if p.V == nil {
		return p, errors.New("body has no encoding version")
	}
	if *p.V != EncodingVersion {
		return p, fmt.Errorf("body has unsupported encoding version %d", *p.V)
	}
	switch {
	case p.Seq == nil:
		return p, errors.New("body has no seq")
	case p.Time == nil:
		return p, errors.New("body has no time")
	case p.Kind == nil:
		return p, errors.New("body has no kind")
	case p.Session == nil:
		return p, errors.New("body has no session")
	case p.Data == nil:
		return p, errors.New("body has no data")
	}
	return p, nil
}

// canonical reports whether b is byte for byte what the writer would have
// produced for p. Called after the hash check, it catches bodies that a
// whole-chain rewrite could craft (whitespace, duplicate keys, reordered
// fields) and that json.Unmarshal alone would accept.
func (p body) canonical(b []byte) error {
	if containsFloat(p.Data) {
		return errors.New("body data contains a float")
	}
	kind, err := json.Marshal(*p.Kind)
	if err != nil {
		return fmt.Errorf("re-encode kind: %v", err)
	}
	session, err := json.Marshal(*p.Session)
	if err != nil {
		return fmt.Errorf("re-encode session: %v", err)
	}
	want := make([]byte, 0, len(b))
	want = appendBody(want, *p.Seq, *p.Time, nil)
	want = append(want, `,"kind":`...)
	want = append(want, kind...)
	want = append(want, `,"session":`...)
	want = append(want, session...)
	want = append(want, `,"data":`...)
	var compact bytes.Buffer
	if err := json.Compact(&compact, p.Data); err != nil {
		return fmt.Errorf("data does not parse: %v", err)
	}
	want = append(want, compact.Bytes()...)
	want = append(want, '}')
	if !bytes.Equal(want, b) {
		return errors.New("body is not in canonical encoding")
	}
	return nil
}
