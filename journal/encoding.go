package journal

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
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
// chain and the tree vouch for.
const EncodingVersion = 1

// HashSize is the length of an entry hash (SHA-256).
const HashSize = sha256.Size

// SaltSize is the length of the random salt in front of a payload in its
// commitment. It makes the commitment useless for guessing a deleted
// payload ("was the card number X?").
const SaltSize = 32

// MaxPayload bounds one record's payload. Bigger content (a huge result
// set) must be cut by the caller, which says so in the record's data.
const MaxPayload = 16 << 20

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
	data, err := json.Marshal(rec.Data)
	if err != nil {
		return encodedRecord{}, fmt.Errorf("journal: marshal data of %s record: %w", rec.Kind, err)
	}
	// The check ParseBody makes of every stored body: a float, or invalid
	// UTF-8 that a json.RawMessage or a MarshalJSON passed through, would
	// make an entry that Verify refuses.
	if err := validData(data); errors.Is(err, errFloatToken) {
		return encodedRecord{}, fmt.Errorf("%w: kind %s", ErrFloat, rec.Kind)
	} else if err != nil {
		return encodedRecord{}, fmt.Errorf("journal: data of %s record: %w", rec.Kind, err)
	}
	var commitment []byte
	if rec.Payload != nil {
		if er.payload, err = payloadBytes(rec.Payload); err != nil {
			return encodedRecord{}, fmt.Errorf("journal: payload of %s record: %w", rec.Kind, err)
		}
		er.salt = make([]byte, SaltSize)
		if _, err := rand.Read(er.salt); err != nil {
			return encodedRecord{}, fmt.Errorf("journal: payload salt: %w", err)
		}
		c := PayloadCommitment(er.salt, er.payload)
		commitment = c[:]
	}
	er.tail = appendTail(make([]byte, 0, len(rec.Kind)+len(rec.Session)+len(data)+120), rec.Kind, rec.Session, data, commitment)
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
	if len(b) > MaxPayload {
		return nil, fmt.Errorf("%d bytes is over the %d-byte limit", len(b), MaxPayload)
	}
	return b, nil
}

// appendTail writes everything after the time field. data is already
// JSON; commitment is nil or a payload commitment.
func appendTail(dst []byte, kind, session string, data, commitment []byte) []byte {
	dst = append(dst, `,"kind":`...)
	dst = appendJSONString(dst, kind)
	dst = append(dst, `,"session":`...)
	dst = appendJSONString(dst, session)
	dst = append(dst, `,"data":`...)
	dst = append(dst, data...)
	if commitment != nil {
		dst = append(dst, `,"payload":"`...)
		dst = hex.AppendEncode(dst, commitment)
		dst = append(dst, '"')
	}
	return append(dst, '}')
}

// appendJSONString appends s exactly as encoding/json writes it. Kinds and
// session ids are plain ASCII, which needs only the quotes; anything else
// goes through json.Marshal. s must be valid UTF-8.
func appendJSONString(dst []byte, s string) []byte {
	if plainASCII(s) {
		dst = append(dst, '"')
		dst = append(dst, s...)
		return append(dst, '"')
	}
	js, _ := json.Marshal(s) // a string always marshals
	return append(dst, js...)
}

// PayloadCommitment is what an entry's body holds for its payload:
// SHA-256(salt || payload).
func PayloadCommitment(salt, payload []byte) [HashSize]byte { return sha256Pair(salt, payload) }

// appendBody writes the exact bytes that are stored and hashed:
// {"v":1,"seq":N,"time":T,"kind":"K","session":"S","data":D[,"payload":"HEX"]}
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

// ChainHash is an entry's chain hash: SHA-256 over the previous entry's
// chain hash (32 zero bytes before entry 1) and the entry's body.
func ChainHash(prev, body []byte) [HashSize]byte { return sha256Pair(prev, body) }

// sha256Pair is SHA-256(a || b).
func sha256Pair(a, b []byte) [HashSize]byte {
	h := sha256.New()
	h.Write(a)
	h.Write(b)
	var out [HashSize]byte
	h.Sum(out[:0])
	return out
}
