package policy

import "github.com/jackc/pgx/v5/pgtype"

// textLike types carry free text whose bytes are the same in both
// formats: a detector finding inside one is replaced in place and the
// rest of the value kept. JSON is not one of them: a marker in place of a
// JSON number would not be JSON, so a finding masks a JSON value whole.
func textLike(oid uint32) bool {
	switch oid {
	case pgtype.TextOID, pgtype.VarcharOID, pgtype.BPCharOID, pgtype.NameOID, pgtype.QCharOID, pgtype.XMLOID, pgtype.UnknownOID:
		return true
	}
	return false
}

// maskedText is the text-format value a wholly masked column of a type
// gets: a valid value of the same type, so clients parse it as usual.
var maskedText = map[uint32]string{
	pgtype.BoolOID: "f", pgtype.Int2OID: "0", pgtype.Int4OID: "0", pgtype.Int8OID: "0", pgtype.OIDOID: "0",
	pgtype.Float4OID: "0", pgtype.Float8OID: "0", pgtype.NumericOID: "0",
	pgtype.DateOID: "2000-01-01", pgtype.TimeOID: "00:00:00", pgtype.TimestampOID: "2000-01-01 00:00:00",
	pgtype.TimestamptzOID: "2000-01-01 00:00:00+00", pgtype.IntervalOID: "00:00:00",
	pgtype.UUIDOID: "00000000-0000-0000-0000-000000000000", pgtype.JSONOID: "null", pgtype.JSONBOID: "null",
	pgtype.ByteaOID: `\x`,
	pgtype.TextOID:  "****", pgtype.VarcharOID: "****", pgtype.BPCharOID: "****", pgtype.NameOID: "****",
	pgtype.QCharOID: "*", pgtype.XMLOID: "<masked/>",
}

// maskedBinary is the binary-format counterpart: PostgreSQL's zero value
// of each type (0, false, 2000-01-01, the nil UUID, ...).
var maskedBinary = map[uint32][]byte{
	pgtype.BoolOID: {0}, pgtype.Int2OID: make([]byte, 2), pgtype.Int4OID: make([]byte, 4), pgtype.Int8OID: make([]byte, 8),
	pgtype.OIDOID: make([]byte, 4), pgtype.Float4OID: make([]byte, 4), pgtype.Float8OID: make([]byte, 8),
	// numeric: ndigits 0, weight 0, sign positive, dscale 0.
	pgtype.NumericOID: make([]byte, 8),
	pgtype.DateOID:    make([]byte, 4), pgtype.TimeOID: make([]byte, 8), pgtype.TimestampOID: make([]byte, 8),
	pgtype.TimestamptzOID: make([]byte, 8), pgtype.IntervalOID: make([]byte, 16), pgtype.UUIDOID: make([]byte, 16),
	pgtype.JSONOID: []byte("null"), pgtype.JSONBOID: append([]byte{1}, "null"...),
	pgtype.ByteaOID: {},
	pgtype.TextOID:  []byte("****"), pgtype.VarcharOID: []byte("****"), pgtype.BPCharOID: []byte("****"),
	pgtype.NameOID: []byte("****"), pgtype.QCharOID: []byte("*"), pgtype.XMLOID: []byte("<masked/>"),
}

// typeMask is the whole-value mask of a column: a value of its type, or
// SQL NULL (nil) for types interlock has no safe value for (arrays,
// composites, extensions). NULL hides the value and is valid for every
// type. The slice is shared: callers must not write to it.
func typeMask(c Column) []byte {
	if c.Binary {
		if v, ok := maskedBinary[c.TypeOID]; ok {
			return append([]byte{}, v...)
		}
		return nil
	}
	if v, ok := maskedText[c.TypeOID]; ok {
		return []byte(v)
	}
	return nil
}

// valueKind is how the detectors read a type's values.
type valueKind uint8

const (
	// kindNone: no value of the type, in either format, can hold what a
	// detector finds: booleans, integers of up to ten digits, floats
	// (which print a 16-digit number as 4.111111111111111e+15), dates and
	// times, UUIDs, network addresses, geometry, bit strings.
	kindNone valueKind = iota
	// kindText: free text, the same bytes in both formats.
	kindText
	// kindNumber: int8 and numeric, which can hold a card number: text
	// format scanned as it is, binary format printed first.
	kindNumber
	// kindJSON: json, and jsonb and jsonpath (in binary, a version byte 1
	// before the text); string escapes are decoded for the scan.
	kindJSON
	kindBytea
	kindArray
	kindRange
	kindMultirange
	kindRecord
	kindTSVector
	// kindUnknown: a type interlock does not know (an extension's, an
	// enum, a table's row type): its text is scanned, decoding what looks
	// like a record, an array, bytea or escapes; its binary form is read
	// as a record or an array when it is exactly one, else it is
	// undecodable.
	kindUnknown
)

// kindOf says how detectors read values of type oid; for arrays and
// ranges, elem is the element type (for multiranges, their ranges').
func kindOf(types *pgtype.Map, oid uint32) (k valueKind, elem uint32) {
	switch oid {
	case pgtype.BoolOID, pgtype.Int2OID, pgtype.Int4OID, pgtype.OIDOID, pgtype.TIDOID, pgtype.XIDOID, pgtype.CIDOID, pgtype.XID8OID,
		pgtype.Float4OID, pgtype.Float8OID,
		pgtype.DateOID, pgtype.TimeOID, pgtype.TimetzOID, pgtype.TimestampOID, pgtype.TimestamptzOID, pgtype.IntervalOID,
		pgtype.UUIDOID, pgtype.InetOID, pgtype.CIDROID, pgtype.MacaddrOID, pgtype.Macaddr8OID,
		pgtype.PointOID, pgtype.LsegOID, pgtype.PathOID, pgtype.BoxOID, pgtype.PolygonOID, pgtype.LineOID, pgtype.CircleOID,
		pgtype.BitOID, pgtype.VarbitOID:
		return kindNone, 0
	case pgtype.TextOID, pgtype.VarcharOID, pgtype.BPCharOID, pgtype.NameOID, pgtype.QCharOID, pgtype.XMLOID, pgtype.UnknownOID:
		return kindText, 0
	case pgtype.Int8OID, pgtype.NumericOID:
		return kindNumber, 0
	case pgtype.JSONOID, pgtype.JSONBOID, pgtype.JSONPathOID:
		return kindJSON, 0
	case pgtype.ByteaOID:
		return kindBytea, 0
	case pgtype.RecordOID:
		return kindRecord, 0
	case pgtype.TSVectorOID:
		return kindTSVector, 0
	}
	if types != nil {
		if t, ok := types.TypeForOID(oid); ok {
			switch c := t.Codec.(type) {
			case *pgtype.ArrayCodec:
				return kindArray, c.ElementType.OID
			case *pgtype.RangeCodec:
				return kindRange, c.ElementType.OID
			case *pgtype.MultirangeCodec:
				// Its elements are ranges: elem is theirs.
				if rc, ok := c.ElementType.Codec.(*pgtype.RangeCodec); ok {
					return kindMultirange, rc.ElementType.OID
				}
			}
		}
	}
	return kindUnknown, 0
}
