package policy

import (
	"bytes"
	"encoding/binary"
	"strconv"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgtype"
)

// valueScanner runs the detectors over values that are not plain text:
// it decodes, for the scan only, each format PostgreSQL sends them in
// (bytea as bytes, escapes undone, arrays, ranges and
// records element by element, numbers printed), and tells onFind about
// every finding, with what it matched in decoded form (so that the same
// email hashes alike in a text column and inside a jsonb array).
type valueScanner struct {
	dets  []*detector
	types *pgtype.Map
	// onFind hears each finding: the detector's index in dets and what
	// it matched (valid only during the call).
	onFind func(det int, match []byte)
	// fs and arena are reused: arena holds decoded text until the value
	// is done (reset).
	fs    []Finding
	arena []byte
}

// maxDepth bounds the nesting of arrays and records read; a value nested
// deeper is undecodable (PostgreSQL allows 6 array dimensions, and
// records of records are rare).
const maxDepth = 16

// reset forgets the decoded text of the last value.
func (s *valueScanner) reset() {
	if cap(s.arena) > 1<<20 {
		s.arena = nil // do not keep a huge value's buffer
	}
	s.arena = s.arena[:0]
}

// text scans t as it is.
func (s *valueScanner) text(t []byte) {
	fs := detectInto(s.fs[:0], s.dets, t)
	s.fs = fs[:0]
	for _, f := range fs {
		s.onFind(f.det, t[f.Start:f.End])
	}
}

// plain scans text of a type that holds text as it is, or, when it has
// backslashes, every way it may be decoded (generic): escapes may hide a
// finding.
func (s *valueScanner) plain(t []byte, depth int) {
	if bytes.IndexByte(t, '\\') >= 0 {
		s.generic(t, depth)
		return
	}
	s.text(t)
}

// value scans v, of type oid in the given format. It reports false when
// v is in a binary form interlock cannot read (an unknown type, a
// malformed value): then it was not scanned whole.
func (s *valueScanner) value(oid uint32, binaryFormat bool, v []byte, depth int) bool {
	if depth > maxDepth {
		return false
	}
	k, elem := kindOf(s.types, oid)
	if !binaryFormat {
		s.textValue(k, elem, v, depth)
		return true
	}
	switch k {
	case kindNone:
		return true
	case kindText, kindBytea:
		s.plain(v, depth)
		return true
	case kindNumber:
		t, ok := s.printNumber(oid, v)
		if ok {
			s.text(t)
		}
		return ok
	case kindJSON:
		if oid != pgtype.JSONOID {
			// jsonb and jsonpath: a version byte, then the text.
			if len(v) == 0 || v[0] != 1 {
				return false
			}
			v = v[1:]
		}
		s.plain(v, depth) // string escapes decoded, as deep as they go
		return true
	case kindArray:
		return s.binaryArray(v, depth)
	case kindRange:
		return s.binaryRange(elem, v, depth)
	case kindMultirange:
		return s.binaryMultirange(elem, v, depth)
	case kindRecord:
		return s.binaryRecord(v, depth)
	case kindTSVector:
		return s.binaryTSVector(v, depth)
	}
	// An unknown type: read as a record or an array if it is exactly one
	// (a table's row type, an array of one), its raw bytes scanned as
	// well in case it only looks like one.
	if looksLikeRecord(v) {
		s.text(v)
		return s.binaryRecord(v, depth)
	}
	if looksLikeArray(v) {
		s.text(v)
		return s.binaryArray(v, depth)
	}
	return false
}

// textValue scans a text-format value.
func (s *valueScanner) textValue(k valueKind, elem uint32, v []byte, depth int) {
	switch k {
	case kindNone:
	case kindText, kindNumber, kindRange, kindMultirange, kindTSVector:
		s.plain(v, depth)
	case kindJSON:
		s.plain(v, depth)
	case kindBytea:
		if b, ok := s.unBytea(v); ok {
			s.plain(b, depth)
		} else {
			s.generic(v, depth)
		}
	case kindArray:
		if ek, _ := kindOf(s.types, elem); (ek == kindNone || ek == kindText || ek == kindNumber) && bytes.IndexByte(v, '\\') < 0 {
			// Without escapes, quoting cannot hide a value of these
			// from a scan of the whole text, and the separator between
			// elements (a comma) does not join digits.
			s.text(v)
			return
		}
		if !s.textArray(elem, v, depth) {
			s.generic(v, depth)
		}
	default:
		s.generic(v, depth)
	}
}

// generic scans text of an unknown type: as it is, and decoded in every
// way it may be encoded — a record or an array (each field or element
// scanned the same way), bytea hex (\x…, anywhere, at any level of
// quoting), JSON or bytea escapes.
func (s *valueScanner) generic(t []byte, depth int) {
	s.text(t)
	if depth >= maxDepth || len(t) < 2 {
		return
	}
	switch {
	case t[0] == '(' && t[len(t)-1] == ')':
		s.textRecord(t, depth+1)
	case t[0] == '{' && t[len(t)-1] == '}', t[0] == '[' && bytes.IndexByte(t, '=') > 0:
		s.textArray(0, t, depth+1)
	}
	if bytes.IndexByte(t, '\\') < 0 {
		return
	}
	for u, level := t, 0; level < 4 && bytes.IndexByte(u, '\\') >= 0; level++ {
		s.hexRuns(u)
		if b, ok := s.unBytea(u); ok && !bytes.Equal(b, u) {
			s.text(b)
		}
		next := s.unJSON(u)
		if bytes.Equal(next, u) {
			break
		}
		s.text(next)
		u = next
	}
}

// unJSON decodes JSON string escapes anywhere in t (outside strings a
// backslash cannot appear in JSON); an invalid escape is kept as it is.
// The result lives in the arena.
func (s *valueScanner) unJSON(t []byte) []byte {
	start := len(s.arena)
	for i := 0; i < len(t); i++ {
		c := t[i]
		if c != '\\' || i+1 == len(t) {
			s.arena = append(s.arena, c)
			continue
		}
		switch e := t[i+1]; e {
		case '"', '\\', '/':
			s.arena = append(s.arena, e)
			i++
		case 'b':
			s.arena = append(s.arena, '\b')
			i++
		case 'f':
			s.arena = append(s.arena, '\f')
			i++
		case 'n':
			s.arena = append(s.arena, '\n')
			i++
		case 'r':
			s.arena = append(s.arena, '\r')
			i++
		case 't':
			s.arena = append(s.arena, '\t')
			i++
		case 'u':
			r, n := unicodeEscape(t[i:])
			if n == 0 {
				s.arena = append(s.arena, c)
				continue
			}
			s.arena = utf8.AppendRune(s.arena, r)
			i += n - 1
		default:
			s.arena = append(s.arena, c)
		}
	}
	return s.arena[start:len(s.arena):len(s.arena)]
}

// unicodeEscape reads \uXXXX (and a following low surrogate) at the
// start of t: the rune and how many bytes it took, or 0.
func unicodeEscape(t []byte) (rune, int) {
	r, ok := hex4(t)
	if !ok {
		return 0, 0
	}
	if r >= 0xD800 && r < 0xDC00 {
		if lo, ok := hex4(t[6:]); ok && lo >= 0xDC00 && lo < 0xE000 {
			return 0x10000 + (r-0xD800)<<10 + (lo - 0xDC00), 12
		}
		return utf8.RuneError, 6
	}
	return r, 6
}

func hex4(t []byte) (rune, bool) {
	if len(t) < 6 || t[0] != '\\' || t[1] != 'u' {
		return 0, false
	}
	var r rune
	for _, c := range t[2:6] {
		d, ok := hexVal(c)
		if !ok {
			return 0, false
		}
		r = r<<4 | rune(d)
	}
	return r, true
}

func hexVal(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// unBytea decodes a bytea's text format: hex (\x…) or escape (\\, \ooo).
// The result lives in the arena.
func (s *valueScanner) unBytea(t []byte) ([]byte, bool) {
	start := len(s.arena)
	if bytes.HasPrefix(t, []byte(`\x`)) {
		h := t[2:]
		for i := 0; i < len(h); {
			if h[i] == ' ' || h[i] == '\n' || h[i] == '\t' || h[i] == '\r' {
				i++
				continue
			}
			hi, ok1 := hexVal(h[i])
			if i+1 == len(h) {
				s.arena = s.arena[:start]
				return nil, false
			}
			lo, ok2 := hexVal(h[i+1])
			if !ok1 || !ok2 {
				s.arena = s.arena[:start]
				return nil, false
			}
			s.arena = append(s.arena, hi<<4|lo)
			i += 2
		}
		return s.arena[start:len(s.arena):len(s.arena)], true
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if c != '\\' {
			s.arena = append(s.arena, c)
			continue
		}
		switch {
		case i+1 < len(t) && t[i+1] == '\\':
			s.arena = append(s.arena, '\\')
			i++
		case i+3 < len(t) && t[i+1] >= '0' && t[i+1] <= '3' && isOctal(t[i+2]) && isOctal(t[i+3]):
			s.arena = append(s.arena, (t[i+1]-'0')<<6|(t[i+2]-'0')<<3|(t[i+3]-'0'))
			i += 3
		default:
			s.arena = s.arena[:start]
			return nil, false
		}
	}
	return s.arena[start:len(s.arena):len(s.arena)], true
}

func isHex(c byte) bool { _, ok := hexVal(c); return ok }

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

// hexRuns scans the bytes of every \x hex run in t (bytea nested in a
// record or an array of an unknown type, its backslash doubled by each
// level of quoting).
func (s *valueScanner) hexRuns(t []byte) {
	for i := 0; ; {
		k := bytes.Index(t[i:], []byte(`\x`))
		if k < 0 {
			return
		}
		k += i + 2
		n := span(t, k, isHex, len(t))
		i = k + n
		if n < 2 {
			continue
		}
		start := len(s.arena)
		for j := k; j+1 < k+n; j += 2 {
			hi, _ := hexVal(t[j])
			lo, _ := hexVal(t[j+1])
			s.arena = append(s.arena, hi<<4|lo)
		}
		s.text(s.arena[start:])
	}
}

// printNumber prints a binary int8 or numeric as PostgreSQL's text
// format does, into the arena.
func (s *valueScanner) printNumber(oid uint32, v []byte) ([]byte, bool) {
	start := len(s.arena)
	if oid == pgtype.Int8OID {
		if len(v) != 8 {
			return nil, false
		}
		s.arena = strconv.AppendInt(s.arena, int64(binary.BigEndian.Uint64(v)), 10)
		return s.arena[start:], true
	}
	// numeric: ndigits, weight, sign, dscale, then base-10000 digits.
	if len(v) < 8 {
		return nil, false
	}
	ndigits := int(int16(binary.BigEndian.Uint16(v)))
	weight := int(int16(binary.BigEndian.Uint16(v[2:])))
	sign := binary.BigEndian.Uint16(v[4:])
	dscale := int(int16(binary.BigEndian.Uint16(v[6:])))
	if ndigits < 0 || dscale < 0 || len(v) != 8+2*ndigits {
		return nil, false
	}
	switch sign {
	case 0x0000:
	case 0x4000:
		s.arena = append(s.arena, '-')
	default: // NaN, ±Infinity
		return s.arena[start:], true
	}
	digit := func(i int) int {
		if i < 0 || i >= ndigits {
			return 0
		}
		return int(binary.BigEndian.Uint16(v[8+2*i:]))
	}
	if weight < 0 {
		s.arena = append(s.arena, '0')
	}
	for i := 0; i <= weight; i++ {
		if i == 0 {
			s.arena = strconv.AppendInt(s.arena, int64(digit(i)), 10)
		} else {
			s.arena = appendDigits4(s.arena, digit(i))
		}
	}
	if dscale > 0 {
		s.arena = append(s.arena, '.')
		fracStart := len(s.arena)
		for i := weight + 1; len(s.arena)-fracStart < dscale; i++ {
			s.arena = appendDigits4(s.arena, digit(i))
		}
		s.arena = s.arena[:fracStart+dscale]
	}
	return s.arena[start:], true
}

func appendDigits4(b []byte, d int) []byte {
	return append(b, byte('0'+d/1000%10), byte('0'+d/100%10), byte('0'+d/10%10), byte('0'+d%10))
}

// reader reads a binary value.
type reader struct {
	b  []byte
	ok bool
}

// textArray scans the elements of an array in text format ({a,"b c",
// NULL,{nested}}, with an optional [1:2]= dimensions prefix), each as a
// text value of type elem (0: unknown). It reports false when t is not
// one.
func (s *valueScanner) textArray(elem uint32, t []byte, depth int) bool {
	if len(t) > 0 && t[0] == '[' {
		eq := bytes.IndexByte(t, '=')
		if eq < 0 {
			return false
		}
		t = t[eq+1:]
	}
	k, kelem := kindOf(s.types, elem)
	if elem == 0 {
		k = kindUnknown
	}
	p := textArrayParser{s: s, t: t}
	ok := p.array(func(e []byte) { s.element(k, kelem, e, depth) })
	return ok && p.i == len(p.t)
}

// element scans one element of an array or field of a record in text
// format.
func (s *valueScanner) element(k valueKind, elem uint32, e []byte, depth int) {
	if depth >= maxDepth {
		s.text(e)
		return
	}
	s.textValue(k, elem, e, depth+1)
}

type textArrayParser struct {
	s *valueScanner
	t []byte
	i int
}

func (p *textArrayParser) skipSpace() {
	for p.i < len(p.t) && (p.t[p.i] == ' ' || p.t[p.i] == '\t' || p.t[p.i] == '\n' || p.t[p.i] == '\r') {
		p.i++
	}
}

// array reads {…} at p.i, calling each for every non-NULL element.
func (p *textArrayParser) array(each func([]byte)) bool {
	p.skipSpace()
	if p.i == len(p.t) || p.t[p.i] != '{' {
		return false
	}
	p.i++
	p.skipSpace()
	if p.i < len(p.t) && p.t[p.i] == '}' {
		p.i++
		return true
	}
	for {
		p.skipSpace()
		if p.i == len(p.t) {
			return false
		}
		if p.t[p.i] == '{' {
			if !p.array(each) {
				return false
			}
		} else if !p.element(each) {
			return false
		}
		p.skipSpace()
		if p.i == len(p.t) {
			return false
		}
		switch p.t[p.i] {
		case ',', ';':
			p.i++
		case '}':
			p.i++
			return true
		default:
			return false
		}
	}
}

// element reads one element, quoted or not, undoing backslash escapes.
func (p *textArrayParser) element(each func([]byte)) bool {
	s := p.s
	start := len(s.arena)
	quoted := p.t[p.i] == '"'
	if quoted {
		p.i++
	}
	for {
		if p.i == len(p.t) {
			return false
		}
		c := p.t[p.i]
		switch {
		case c == '\\':
			if p.i+1 == len(p.t) {
				return false
			}
			s.arena = append(s.arena, p.t[p.i+1])
			p.i += 2
			continue
		case quoted && c == '"':
			p.i++
			each(s.arena[start:len(s.arena):len(s.arena)])
			return true
		case !quoted && (c == ',' || c == ';' || c == '}'):
			e := bytes.TrimRight(s.arena[start:len(s.arena):len(s.arena)], " \t\n\r")
			if !bytes.EqualFold(e, []byte("NULL")) {
				each(e)
			}
			return true
		case !quoted && (c == '{' || c == '"'):
			return false
		}
		s.arena = append(s.arena, c)
		p.i++
	}
}

// textRecord scans the fields of a record in text format ((a,"b ""c""",,
// "d\\e")), each as text of an unknown type. It reports false when t is
// not one.
func (s *valueScanner) textRecord(t []byte, depth int) bool {
	if len(t) < 2 || t[0] != '(' {
		return false
	}
	i := 1
	for {
		start := len(s.arena)
		quoted, empty := false, true
		for ; i < len(t); i++ {
			c := t[i]
			if !quoted && (c == ',' || c == ')') {
				break
			}
			empty = false
			switch {
			case c == '\\' && i+1 < len(t):
				i++
				s.arena = append(s.arena, t[i])
			case c == '"' && quoted && i+1 < len(t) && t[i+1] == '"':
				i++
				s.arena = append(s.arena, '"')
			case c == '"':
				quoted = !quoted
			default:
				s.arena = append(s.arena, c)
			}
		}
		if i == len(t) {
			return false
		}
		if !empty {
			s.element(kindUnknown, 0, s.arena[start:len(s.arena):len(s.arena)], depth)
		}
		if t[i] == ')' {
			return i == len(t)-1
		}
		i++
	}
}
