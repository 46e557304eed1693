package journal

import (
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
	if containsFloat(data) {
		return encodedRecord{}, fmt.Errorf("%w: kind %s", ErrFloat, rec.Kind)
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
	kind, err := json.Marshal(rec.Kind)
	if err != nil {
		return encodedRecord{}, fmt.Errorf("journal: marshal kind: %w", err)
	}
	session, err := json.Marshal(rec.Session)
	if err != nil {
		return encodedRecord{}, fmt.Errorf("journal: marshal session: %w", err)
	}
	er.tail = appendTail(make([]byte, 0, len(kind)+len(session)+len(data)+120), kind, session, data, commitment)
	return er, nil
}

func payloadBytes(p any) ([]byte, error) {
	var b []byte
	switch v := p.(type) {
	case []byte:
		b = v
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
	// A copy: the caller may reuse its buffer once Post returns.
	return append(make([]byte, 0, len(b)), b...), nil
}

// appendTail writes everything after the time field. kind, session and data
// are already JSON; commitment is nil or a payload commitment.
func appendTail(dst, kind, session, data, commitment []byte) []byte {
	dst = append(dst, `,"kind":`...)
	dst = append(dst, kind...)
	dst = append(dst, `,"session":`...)
	dst = append(dst, session...)
	dst = append(dst, `,"data":`...)
	dst = append(dst, data...)
	if commitment != nil {
		dst = append(dst, `,"payload":"`...)
		dst = hex.AppendEncode(dst, commitment)
		dst = append(dst, '"')
	}
	return append(dst, '}')
}

// PayloadCommitment is what an entry's body holds for its payload:
// SHA-256(salt || payload).
func PayloadCommitment(salt, payload []byte) [HashSize]byte {
	h := sha256.New()
	h.Write(salt)
	h.Write(payload)
	var out [HashSize]byte
	h.Sum(out[:0])
	return out
}

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
func ChainHash(prev, body []byte) [HashSize]byte {
	h := sha256.New()
	h.Write(prev)
	h.Write(body)
	var out [HashSize]byte
	h.Sum(out[:0])
	return out
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
