package evidence

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"hash"
	"strconv"
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

// OpenData is the data of entry 1, kind model.KindJournalOpen.
type OpenData struct {
	// JournalID is 16 random bytes in hex; it tells journals apart when
	// bundles are exported and checkpoints signed.
	JournalID string `json:"journal_id"`
	Encoding  int    `json:"encoding"`
}

// AppendTail writes everything after the time field. data is already
// JSON; commitment is nil or a payload commitment.
func AppendTail(dst []byte, kind, session string, data, commitment []byte) []byte {
	dst = append(dst, `,"kind":`...)
	dst = AppendJSONString(dst, kind)
	dst = append(dst, `,"session":`...)
	dst = AppendJSONString(dst, session)
	dst = append(dst, `,"data":`...)
	dst = append(dst, data...)
	if commitment != nil {
		dst = append(dst, `,"payload":"`...)
		dst = hex.AppendEncode(dst, commitment)
		dst = append(dst, '"')
	}
	return append(dst, '}')
}

// AppendJSONString appends s exactly as encoding/json writes it. Kinds and
// session ids are plain ASCII, which needs only the quotes; anything else
// goes through json.Marshal. s must be valid UTF-8.
func AppendJSONString(dst []byte, s string) []byte {
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

// AppendBody writes the exact bytes that are stored and hashed:
// {"v":1,"seq":N,"time":T,"kind":"K","session":"S","data":D[,"payload":"HEX"]}
func AppendBody(dst []byte, seq uint64, timeNS int64, tail []byte) []byte {
	dst = append(dst, `{"v":`...)
	dst = strconv.AppendInt(dst, EncodingVersion, 10)
	dst = append(dst, `,"seq":`...)
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, `,"time":`...)
	dst = strconv.AppendInt(dst, timeNS, 10)
	return append(dst, tail...)
}

// AppendChainHash computes SHA-256(prev || body) into dst[:0] with h, a
// SHA-256 the caller reuses so that hashing every entry allocates nothing.
func AppendChainHash(h hash.Hash, dst, prev, body []byte) []byte {
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
