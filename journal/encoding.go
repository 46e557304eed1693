package journal

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/interlock/interlock/journal/evidence"
	"github.com/interlock/interlock/model"
)

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
	// tail is `,"kind":K,"session":S,"data":D}` or, with a payload,
	// `,"kind":K,"session":S,"data":D,"payload":"HEX"}`.
	tail []byte
	// payload and salt are stored beside the entry; nil without a payload.
	payload, salt []byte
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
	// The records of every statement encode themselves: json.Marshal's
	// bytes without its reflection, integers and valid UTF-8 only (model
	// tests them against json.Marshal), so they need no check. The rest
	// are marshalled and checked as ParseBody checks every stored body: a
	// float, or invalid UTF-8 that a json.RawMessage or a MarshalJSON
	// passed through, would make an entry that Verify refuses.
	var err error
	data, ok := model.AppendJSON(nil, rec.Data)
	if !ok {
		if data, err = json.Marshal(rec.Data); err != nil {
			return encodedRecord{}, fmt.Errorf("journal: marshal data of %s record: %w", rec.Kind, err)
		}
		if err := evidence.ValidData(data); errors.Is(err, evidence.ErrFloatToken) {
			return encodedRecord{}, fmt.Errorf("%w: kind %s", ErrFloat, rec.Kind)
		} else if err != nil {
			return encodedRecord{}, fmt.Errorf("journal: data of %s record: %w", rec.Kind, err)
		}
	}
	var commitment []byte
	if rec.Payload != nil {
		if er.payload, err = payloadBytes(rec.Payload); err != nil {
			return encodedRecord{}, fmt.Errorf("journal: payload of %s record: %w", rec.Kind, err)
		}
		er.salt = make([]byte, evidence.SaltSize)
		if _, err := rand.Read(er.salt); err != nil {
			return encodedRecord{}, fmt.Errorf("journal: payload salt: %w", err)
		}
		c := evidence.PayloadCommitment(er.salt, er.payload)
		commitment = c[:]
	}
	er.tail = evidence.AppendTail(make([]byte, 0, len(rec.Kind)+len(rec.Session)+len(data)+120), rec.Kind, rec.Session, data, commitment)
	return er, nil
}

// payloadBytes returns the payload as bytes the record owns: the caller
// may reuse its buffer once Post returns, so a []byte is copied; a string
// conversion or a marshalled value is a fresh slice already.
func payloadBytes(p any) ([]byte, error) {
	var b []byte
	switch v := p.(type) {
	case []byte:
		b = bytes.Clone(v)
	case string:
		b = []byte(v)
	default:
		var err error
		if b, err = json.Marshal(v); err != nil {
			return nil, err
		}
	}
	if len(b) > evidence.MaxPayload {
		return nil, fmt.Errorf("%d bytes is over the %d-byte limit", len(b), evidence.MaxPayload)
	}
	return b, nil
}
