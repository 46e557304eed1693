package postgres

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgtype"
)

// maxValue is the most of one parameter or result value the journal
// records; the rest is replaced by a marker with the full length.
const maxValue = 1024

// typeNames maps built-in type OIDs to their names (int4, text, ...),
// from pgx's type map; it is built once and only read.
var typeNames = sync.OnceValue(func() map[uint32]string {
	m := pgtype.NewMap()
	out := map[uint32]string{}
	for oid := uint32(1); oid < 20000; oid++ {
		if t, ok := m.TypeForOID(oid); ok {
			out[oid] = t.Name
		}
	}
	return out
})

func typeName(oid uint32) string {
	if oid == 0 {
		return ""
	}
	if n, ok := typeNames()[oid]; ok {
		return n
	}
	return strconv.FormatUint(uint64(oid), 10)
}

// render turns one value as it travels on the wire into journal text.
// full is the value's length on the wire (v may be a prefix of it).
// Unknown binary types are recorded as hex.
func render(oid uint32, binaryFormat bool, v []byte, full int) (string, bool) {
	cut := full > len(v)
	var s string
	if binaryFormat {
		if cut {
			s = "\\x" + hex.EncodeToString(v)
		} else {
			s = decodeBinary(oid, v)
		}
	} else {
		s = string(v)
		if !utf8.ValidString(s) {
			if cut {
				s = strings.ToValidUTF8(s, "\uFFFD") // a prefix may end inside a character
			} else {
				s = "\\x" + hex.EncodeToString(v)
			}
		}
	}
	if len(s) > maxValue {
		s = s[:maxValue]
		for !utf8.ValidString(s) && len(s) > 0 {
			s = s[:len(s)-1]
		}
		cut = true
	}
	if cut {
		s += fmt.Sprintf("…[%d bytes]", full)
	}
	return s, cut
}

var pgEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

func decodeBinary(oid uint32, v []byte) string {
	be := binary.BigEndian
	switch oid {
	case pgtype.BoolOID:
		if len(v) == 1 {
			return strconv.FormatBool(v[0] != 0)
		}
	case pgtype.Int2OID:
		if len(v) == 2 {
			return strconv.Itoa(int(int16(be.Uint16(v))))
		}
	case pgtype.Int4OID:
		if len(v) == 4 {
			return strconv.Itoa(int(int32(be.Uint32(v))))
		}
	case pgtype.OIDOID, pgtype.XIDOID, pgtype.CIDOID,
		// reg* (pgtype names none of them): regproc, regprocedure,
		// regclass, regtype, regconfig, regdictionary, regnamespace, regrole.
		24, 2202, 2205, 2206, 3734, 3769, 4089, 4096:
		if len(v) == 4 {
			return strconv.FormatUint(uint64(be.Uint32(v)), 10)
		}
	case pgtype.Int8OID:
		if len(v) == 8 {
			return strconv.FormatInt(int64(be.Uint64(v)), 10)
		}
	case pgtype.Float4OID:
		if len(v) == 4 {
			return strconv.FormatFloat(float64(math.Float32frombits(be.Uint32(v))), 'g', -1, 32)
		}
	case pgtype.Float8OID:
		if len(v) == 8 {
			return strconv.FormatFloat(math.Float64frombits(be.Uint64(v)), 'g', -1, 64)
		}
	case pgtype.TextOID, pgtype.VarcharOID, pgtype.BPCharOID, pgtype.NameOID, pgtype.JSONOID, pgtype.XMLOID, pgtype.UnknownOID, pgtype.QCharOID:
		if utf8.Valid(v) {
			return string(v)
		}
	case pgtype.JSONBOID: // a version byte, then the text
		if len(v) >= 1 && v[0] == 1 && utf8.Valid(v[1:]) {
			return string(v[1:])
		}
	case pgtype.UUIDOID:
		if len(v) == 16 {
			h := hex.EncodeToString(v)
			return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
		}
	case pgtype.DateOID:
		if len(v) == 4 {
			d := int32(be.Uint32(v))
			switch d {
			case math.MaxInt32:
				return "infinity"
			case math.MinInt32:
				return "-infinity"
			}
			return pgEpoch.AddDate(0, 0, int(d)).Format("2006-01-02")
		}
	case pgtype.TimestampOID, pgtype.TimestamptzOID:
		if len(v) == 8 {
			us := int64(be.Uint64(v))
			switch us {
			case math.MaxInt64:
				return "infinity"
			case math.MinInt64:
				return "-infinity"
			}
			t := pgEpoch.Add(time.Duration(us) * time.Microsecond)
			if oid == pgtype.TimestamptzOID {
				return t.Format("2006-01-02 15:04:05.999999Z07:00")
			}
			return t.Format("2006-01-02 15:04:05.999999")
		}
	case pgtype.NumericOID:
		if s, ok := decodeNumeric(v); ok {
			return s
		}
	}
	return "\\x" + hex.EncodeToString(v)
}

// decodeNumeric renders a binary numeric: ndigits, weight, sign, dscale,
// then base-10000 digits.
func decodeNumeric(v []byte) (string, bool) {
	if len(v) < 8 {
		return "", false
	}
	be := binary.BigEndian
	ndigits := int(be.Uint16(v))
	weight := int(int16(be.Uint16(v[2:])))
	sign := be.Uint16(v[4:])
	dscale := int(be.Uint16(v[6:]))
	if len(v) != 8+2*ndigits || dscale > 16383 {
		return "", false
	}
	switch sign {
	case 0xC000:
		return "NaN", true
	case 0xD000:
		return "Infinity", true
	case 0xF000:
		return "-Infinity", true
	case 0, 0x4000:
	default:
		return "", false
	}
	n := new(big.Int)
	base := big.NewInt(10000)
	for i := 0; i < ndigits; i++ {
		n.Mul(n, base)
		n.Add(n, big.NewInt(int64(be.Uint16(v[8+2*i:]))))
	}
	// value = n * 10000^(weight-ndigits+1)
	exp := 4 * (weight - ndigits + 1)
	r := new(big.Rat).SetInt(n)
	if exp >= 0 {
		r.Mul(r, new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(exp)), nil)))
	} else {
		r.Quo(r, new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(-exp)), nil)))
	}
	s := r.FloatString(dscale)
	if sign == 0x4000 {
		s = "-" + s
	}
	return s, true
}
