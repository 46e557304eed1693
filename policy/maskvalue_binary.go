package policy

import (
	"bytes"
	"encoding/binary"
)

// Binary formats of arrays, records, ranges and text search vectors, read
// for the detectors.

func (r *reader) u32() uint32 {
	if len(r.b) < 4 {
		r.ok = false
		return 0
	}
	x := binary.BigEndian.Uint32(r.b)
	r.b = r.b[4:]
	return x
}

func (r *reader) i32() int32 { return int32(r.u32()) }

// field reads a length-prefixed value; null reports a NULL (length -1).
func (r *reader) field() (v []byte, null bool) {
	n := r.i32()
	if !r.ok {
		return nil, false
	}
	if n == -1 {
		return nil, true
	}
	if n < 0 || int(n) > len(r.b) {
		r.ok = false
		return nil, false
	}
	v, r.b = r.b[:n], r.b[n:]
	return v, false
}

// arrayHeader reads a binary array's header: the element type and the
// number of elements.
func arrayHeader(r *reader) (elem uint32, count int) {
	ndim := r.i32()
	flags := r.i32()
	elem = r.u32()
	if !r.ok || ndim < 0 || ndim > 6 || flags&^1 != 0 {
		r.ok = false
		return 0, 0
	}
	count = 1
	if ndim == 0 {
		count = 0
	}
	for d := int32(0); d < ndim; d++ {
		n := r.i32()
		r.i32() // lower bound
		if !r.ok || n < 0 {
			r.ok = false
			return 0, 0
		}
		count *= int(n)
		// Each element takes at least its 4-byte length.
		if count > len(r.b)/4+1 {
			r.ok = false
			return 0, 0
		}
	}
	return elem, count
}

// binaryArray scans the elements of a binary array: ndim, flags, element
// type, then each dimension's size and lower bound, then the elements,
// each length-prefixed.
func (s *valueScanner) binaryArray(v []byte, depth int) bool {
	r := reader{b: v, ok: true}
	elem, count := arrayHeader(&r)
	for i := 0; i < count && r.ok; i++ {
		e, null := r.field()
		if r.ok && !null && !s.value(elem, true, e, depth+1) {
			return false
		}
	}
	return r.ok && len(r.b) == 0
}

// looksLikeArray says whether v is exactly one binary array.
func looksLikeArray(v []byte) bool {
	r := reader{b: v, ok: true}
	_, count := arrayHeader(&r)
	for i := 0; i < count && r.ok; i++ {
		r.field()
	}
	return r.ok && len(r.b) == 0
}

// binaryRecord scans the fields of a binary record: the number of
// fields, then each field's type and its length-prefixed value.
func (s *valueScanner) binaryRecord(v []byte, depth int) bool {
	r := reader{b: v, ok: true}
	n := r.i32()
	if n < 0 {
		return false
	}
	for i := int32(0); i < n && r.ok; i++ {
		oid := r.u32()
		f, null := r.field()
		if r.ok && !null && !s.value(oid, true, f, depth+1) {
			return false
		}
	}
	return r.ok && len(r.b) == 0
}

// looksLikeRecord says whether v is exactly one binary record (with no
// more fields than a table can have).
func looksLikeRecord(v []byte) bool {
	r := reader{b: v, ok: true}
	n := r.i32()
	if !r.ok || n < 0 || n > 1664 {
		return false
	}
	for i := int32(0); i < n && r.ok; i++ {
		r.u32()
		r.field()
	}
	return r.ok && len(r.b) == 0
}

// Range flags (PostgreSQL's rangetypes.h).
const (
	rangeEmpty  = 0x01
	rangeLBInf  = 0x08
	rangeUBInf  = 0x10
	rangeLBNull = 0x20
	rangeUBNull = 0x40
)

// binaryRange scans a binary range's bounds: a flags byte, then each
// finite bound length-prefixed.
func (s *valueScanner) binaryRange(elem uint32, v []byte, depth int) bool {
	if len(v) == 0 {
		return false
	}
	flags := v[0]
	r := reader{b: v[1:], ok: true}
	if flags&rangeEmpty == 0 {
		for _, absent := range [2]byte{rangeLBInf | rangeLBNull, rangeUBInf | rangeUBNull} {
			if flags&absent != 0 {
				continue
			}
			b, null := r.field()
			if r.ok && !null && !s.value(elem, true, b, depth+1) {
				return false
			}
		}
	}
	return r.ok && len(r.b) == 0
}

// binaryMultirange scans a binary multirange: the number of ranges, then
// each length-prefixed.
func (s *valueScanner) binaryMultirange(elem uint32, v []byte, depth int) bool {
	r := reader{b: v, ok: true}
	n := r.i32()
	for i := int32(0); i < n && r.ok; i++ {
		b, null := r.field()
		if r.ok && (null || !s.binaryRange(elem, b, depth+1)) {
			return false
		}
	}
	return r.ok && n >= 0 && len(r.b) == 0
}

// binaryTSVector scans a binary tsvector's lexemes: their number, then
// each lexeme NUL-terminated with its positions (a count, two bytes
// each).
func (s *valueScanner) binaryTSVector(v []byte, depth int) bool {
	r := reader{b: v, ok: true}
	n := r.i32()
	for i := int32(0); i < n && r.ok; i++ {
		end := bytes.IndexByte(r.b, 0)
		if end < 0 || end+3 > len(r.b) {
			return false
		}
		s.plain(r.b[:end], depth)
		npos := int(binary.BigEndian.Uint16(r.b[end+1:]))
		r.b = r.b[end+3:]
		if len(r.b) < 2*npos {
			return false
		}
		r.b = r.b[2*npos:]
	}
	return r.ok && n >= 0 && len(r.b) == 0
}
