package policy

// PostgreSQL type OIDs the masks know.
const (
	oidBool        = 16
	oidBytea       = 17
	oidChar        = 18
	oidName        = 19
	oidInt8        = 20
	oidInt2        = 21
	oidInt4        = 23
	oidText        = 25
	oidOID         = 26
	oidJSON        = 114
	oidXML         = 142
	oidFloat4      = 700
	oidFloat8      = 701
	oidBPChar      = 1042
	oidVarchar     = 1043
	oidDate        = 1082
	oidTime        = 1083
	oidTimestamp   = 1114
	oidTimestamptz = 1184
	oidInterval    = 1186
	oidNumeric     = 1700
	oidUUID        = 2950
	oidJSONB       = 3802
)

// textLike types carry free text: a detector finding inside one is
// replaced in place and the rest of the value kept.
func textLike(oid uint32) bool {
	switch oid {
	case oidText, oidVarchar, oidBPChar, oidName, oidChar, oidJSON, oidXML:
		return true
	}
	return false
}

// maskedText is the text-format value a wholly masked column of a type
// gets: a valid value of the same type, so clients parse it as usual.
var maskedText = map[uint32]string{
	oidBool: "f", oidInt2: "0", oidInt4: "0", oidInt8: "0", oidOID: "0",
	oidFloat4: "0", oidFloat8: "0", oidNumeric: "0",
	oidDate: "2000-01-01", oidTime: "00:00:00", oidTimestamp: "2000-01-01 00:00:00",
	oidTimestamptz: "2000-01-01 00:00:00+00", oidInterval: "00:00:00",
	oidUUID: "00000000-0000-0000-0000-000000000000", oidJSON: "null", oidJSONB: "null",
	oidBytea: `\x`,
	oidText:  "****", oidVarchar: "****", oidBPChar: "****", oidName: "****", oidChar: "*", oidXML: "<masked/>",
}

// maskedBinary is the binary-format counterpart: PostgreSQL's zero value
// of each type (0, false, 2000-01-01, the nil UUID, ...).
var maskedBinary = map[uint32][]byte{
	oidBool: {0}, oidInt2: make([]byte, 2), oidInt4: make([]byte, 4), oidInt8: make([]byte, 8), oidOID: make([]byte, 4),
	oidFloat4: make([]byte, 4), oidFloat8: make([]byte, 8),
	// numeric: ndigits 0, weight 0, sign positive, dscale 0.
	oidNumeric: make([]byte, 8),
	oidDate:    make([]byte, 4), oidTime: make([]byte, 8), oidTimestamp: make([]byte, 8), oidTimestamptz: make([]byte, 8),
	oidInterval: make([]byte, 16), oidUUID: make([]byte, 16),
	oidJSON: []byte("null"), oidJSONB: append([]byte{1}, "null"...),
	oidBytea: {},
	oidText:  []byte("****"), oidVarchar: []byte("****"), oidBPChar: []byte("****"), oidName: []byte("****"),
	oidChar: []byte("*"), oidXML: []byte("<masked/>"),
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
