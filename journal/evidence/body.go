package evidence

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// Body is a decoded entry body.
type Body struct {
	Seq     uint64
	Time    int64
	Kind    string
	Session string
	// Data is the "data" value as stored; it aliases the parsed bytes.
	Data json.RawMessage
	// Payload is the payload commitment, nil when the entry has no payload.
	Payload []byte
}

var (
	bodyPrefix    = []byte(`{"v":1,"seq":`)
	payloadPrefix = []byte(`,"payload":"`)
)

// payloadSuffixLen is len(`,"payload":"` + 64 hex + `"}`).
const payloadSuffixLen = 12 + 2*HashSize + 2

// ParseBody decodes an entry body and checks that it is exactly what the
// writer produces for those fields, so that two different byte strings can
// never stand for the same entry and every reader sees the same values:
// fields in order, no whitespace, integers without leading zeros, kind and
// session as encoding/json writes them, data one JSON value without floats
// or insignificant whitespace, and an optional 64-hex payload commitment.
//
// It is hand-written rather than built on encoding/json because Verify
// runs it on every entry and must check hundreds of thousands a second;
// TestParseBodyAgreesWithEncodingJSON holds it to encoding/json's answers.
func ParseBody(b []byte) (Body, error) {
	var p Body
	if !bytes.HasPrefix(b, bodyPrefix) {
		return p, diagnose(b)
	}
	i := len(bodyPrefix)
	seq, i, err := parseUint(b, i)
	if err != nil || seq == 0 {
		return p, diagnoseOr(b, "seq is not a positive canonical integer")
	}
	p.Seq = seq
	if i, err = expect(b, i, `,"time":`); err != nil {
		return p, diagnoseOr(b, err.Error())
	}
	neg := i < len(b) && b[i] == '-'
	if neg {
		i++
	}
	t, i, err := parseUint(b, i)
	switch {
	case err != nil, neg && t == 0, !neg && t > 1<<63-1, neg && t > 1<<63:
		return p, diagnoseOr(b, "time is not a canonical int64")
	case neg:
		p.Time = -int64(t-1) - 1
	default:
		p.Time = int64(t)
	}
	if i, err = expect(b, i, `,"kind":`); err != nil {
		return p, diagnoseOr(b, err.Error())
	}
	if p.Kind, i, err = parseCanonicalString(b, i); err != nil {
		return p, diagnoseOr(b, "kind: "+err.Error())
	}
	if i, err = expect(b, i, `,"session":`); err != nil {
		return p, diagnoseOr(b, err.Error())
	}
	if p.Session, i, err = parseCanonicalString(b, i); err != nil {
		return p, diagnoseOr(b, "session: "+err.Error())
	}
	if i, err = expect(b, i, `,"data":`); err != nil {
		return p, diagnoseOr(b, err.Error())
	}
	end := len(b) - 1
	if n := len(b) - payloadSuffixLen; n > i && bytes.HasPrefix(b[n:], payloadPrefix) && b[len(b)-2] == '"' && b[len(b)-1] == '}' {
		h := b[n+len(payloadPrefix) : len(b)-2]
		if !isLowerHex(h) {
			return p, errors.New("body is not in canonical encoding: payload commitment is not 64 lowercase hex digits")
		}
		p.Payload = make([]byte, HashSize)
		hex.Decode(p.Payload, h)
		end = n
	} else if end < i || b[end] != '}' {
		return p, diagnoseOr(b, "body does not end with }")
	}
	p.Data = b[i:end]
	if err := ValidData(p.Data); err != nil {
		if errors.Is(err, ErrFloatToken) {
			return p, errors.New("body data contains a float")
		}
		return p, diagnoseOr(b, "data: "+err.Error())
	}
	return p, nil
}

// diagnose explains a body that is not in canonical form: whether it is
// JSON at all, has another encoding version or lacks a field.
func diagnose(b []byte) error {
	return diagnoseOr(b, "fields are not in canonical order and form")
}

func diagnoseOr(b []byte, detail string) error {
	var p struct {
		V       *int            `json:"v"`
		Seq     *uint64         `json:"seq"`
		Time    *int64          `json:"time"`
		Kind    *string         `json:"kind"`
		Session *string         `json:"session"`
		Data    json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return &BodyError{Msg: fmt.Sprintf("body does not parse: %v", err)}
	}
	switch {
	case p.V == nil:
		return &BodyError{Msg: "body has no encoding version"}
	case *p.V != EncodingVersion:
		return &BodyError{Msg: fmt.Sprintf("body has unsupported encoding version %d", *p.V)}
	case p.Seq == nil:
		return &BodyError{Msg: "body has no seq"}
	case p.Time == nil:
		return &BodyError{Msg: "body has no time"}
	case p.Kind == nil:
		return &BodyError{Msg: "body has no kind"}
	case p.Session == nil:
		return &BodyError{Msg: "body has no session"}
	case p.Data == nil:
		return &BodyError{Msg: "body has no data"}
	}
	return &BodyError{Msg: "body is not in canonical encoding: " + detail, Seq: *p.Seq, Parsed: true}
}

// BodyError says why a body was refused. Parsed is set when the body is
// well-formed JSON with every field (only its form is wrong); Seq is then
// the seq it claims.
type BodyError struct {
	Msg    string
	Seq    uint64
	Parsed bool
}

func (e *BodyError) Error() string { return e.Msg }

func expect(b []byte, i int, lit string) (int, error) {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return i, fmt.Errorf("expected %s at offset %d", lit, i)
	}
	return i + len(lit), nil
}

// parseUint reads a canonical unsigned decimal: no sign, no leading zero.
func parseUint(b []byte, i int) (uint64, int, error) {
	start := i
	var n uint64
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		d := uint64(b[i] - '0')
		if n > (1<<64-1-d)/10 {
			return 0, i, errors.New("number overflows")
		}
		n = n*10 + d
		i++
	}
	switch {
	case i == start:
		return 0, i, errors.New("expected a number")
	case b[start] == '0' && i-start > 1:
		return 0, i, errors.New("number has a leading zero")
	}
	return n, i, nil
}

// parseCanonicalString reads a JSON string at b[i] that must be exactly as
// json.Marshal writes it.
func parseCanonicalString(b []byte, i int) (string, int, error) {
	// Kinds and session ids are plain ASCII: one pass finds the quote.
	if i < len(b) && b[i] == '"' {
		j := i + 1
		for j < len(b) && plainUnescaped[b[j]] {
			j++
		}
		if j < len(b) && b[j] == '"' {
			return string(b[i+1 : j]), j + 1, nil
		}
	}
	end, err := scanString(b, i)
	if err != nil {
		return "", i, err
	}
	raw := b[i:end]
	if plainASCII(raw[1 : len(raw)-1]) {
		return string(raw[1 : len(raw)-1]), end, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", i, err
	}
	again, err := json.Marshal(s)
	if err != nil || !bytes.Equal(again, raw) {
		return "", i, errors.New("string is not escaped as encoding/json escapes it")
	}
	return s, end, nil
}

// plainASCII reports whether s is printable ASCII that encoding/json writes
// unescaped.
func plainASCII[T string | []byte](s T) bool {
	for i := 0; i < len(s); i++ {
		if !plainUnescaped[s[i]] {
			return false
		}
	}
	return true
}

// plainUnescaped marks the printable ASCII bytes encoding/json writes in a
// string as they are (it escapes '<', '>' and '&' for HTML).
var plainUnescaped = func() (t [256]bool) {
	for c := 0x20; c < 0x7f; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

func isLowerHex(h []byte) bool {
	for _, c := range h {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// ErrFloatToken is what ValidData returns, wrapped, for a number with a
// fraction or an exponent: the encoding has integers only.
var ErrFloatToken = errors.New("number with a fraction or exponent")

// maxDepth matches encoding/json's nesting limit.
const maxDepth = 10000

// ValidData checks that b is exactly one JSON value with no whitespace
// outside strings and no float, with strings in valid UTF-8.
func ValidData(b []byte) error {
	i, err := scanValue(b, 0, 0)
	if err != nil {
		return err
	}
	if i != len(b) {
		return fmt.Errorf("unexpected byte %q at offset %d", b[i], i)
	}
	return nil
}

func scanValue(b []byte, i, depth int) (int, error) {
	if i >= len(b) {
		return i, errors.New("unexpected end")
	}
	switch c := b[i]; {
	case c == '"':
		return scanString(b, i)
	case c == '{', c == '[':
		if depth >= maxDepth {
			return i, errors.New("nested too deeply")
		}
		closer := byte('}')
		if c == '[' {
			closer = ']'
		}
		i++
		if i < len(b) && b[i] == closer {
			return i + 1, nil
		}
		for {
			var err error
			if c == '{' {
				if i >= len(b) || b[i] != '"' {
					return i, fmt.Errorf("expected a key at offset %d", i)
				}
				if i, err = scanString(b, i); err != nil {
					return i, err
				}
				if i >= len(b) || b[i] != ':' {
					return i, fmt.Errorf("expected : at offset %d", i)
				}
				i++
			}
			if i, err = scanValue(b, i, depth+1); err != nil {
				return i, err
			}
			if i >= len(b) {
				return i, errors.New("unexpected end")
			}
			switch b[i] {
			case ',':
				i++
			case closer:
				return i + 1, nil
			default:
				return i, fmt.Errorf("unexpected byte %q at offset %d", b[i], i)
			}
		}
	case c == '-' || (c >= '0' && c <= '9'):
		if c == '-' {
			i++
		}
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return i, fmt.Errorf("bad number at offset %d", i)
		}
		if b[i] == '0' {
			i++
		} else {
			for i < len(b) && b[i] >= '0' && b[i] <= '9' {
				i++
			}
		}
		if i < len(b) && (b[i] == '.' || b[i] == 'e' || b[i] == 'E') {
			return i, ErrFloatToken
		}
		return i, nil
	case c == 't':
		return literal(b, i, "true")
	case c == 'f':
		return literal(b, i, "false")
	case c == 'n':
		return literal(b, i, "null")
	}
	return i, fmt.Errorf("unexpected byte %q at offset %d", b[i], i)
}

func literal(b []byte, i int, lit string) (int, error) {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return i, fmt.Errorf("bad literal at offset %d", i)
	}
	return i + len(lit), nil
}

// scanString returns the offset just past the JSON string starting at b[i].
func scanString(b []byte, i int) (int, error) {
	if i >= len(b) || b[i] != '"' {
		return i, fmt.Errorf("expected a string at offset %d", i)
	}
	i++
	for i < len(b) {
		i = skipPlain(b, i)
		if i >= len(b) {
			break
		}
		c := b[i]
		switch {
		case c == '"':
			return i + 1, nil
		case c == '\\':
			if i+1 >= len(b) {
				return i, errors.New("unexpected end in string")
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if len(b)-i < 6 || !isHex4(b[i+2:i+6]) {
					return i, fmt.Errorf("bad \\u escape at offset %d", i)
				}
				i += 6
			default:
				return i, fmt.Errorf("bad escape at offset %d", i)
			}
		case c < 0x20:
			return i, fmt.Errorf("control character in string at offset %d", i)
		case c < utf8.RuneSelf:
			i++
		default:
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size == 1 {
				return i, fmt.Errorf("invalid UTF-8 at offset %d", i)
			}
			i += size
		}
	}
	return i, errors.New("unterminated string")
}

// plainInString marks the bytes a JSON string holds as they are: not '"',
// '\\', a control character or part of a multi-byte UTF-8 sequence.
var plainInString = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// skipPlain returns the offset of the first byte at or after i that a
// string scan must look at, or len(b): one table lookup a byte, where the
// switch in scanString took several branches (strings are most of every
// entry's bytes). Eight bytes at a time (SWAR) measured no faster: most
// strings are keys shorter than a word.
func skipPlain(b []byte, i int) int {
	for i < len(b) && plainInString[b[i]] {
		i++
	}
	return i
}

func isHex4(h []byte) bool {
	for _, c := range h {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') && (c < 'A' || c > 'F') {
			return false
		}
	}
	return true
}
