package policy

import (
	"crypto/hmac"
	"crypto/sha256"
)

// Hash is the keyed hash the journal keeps in place of an original value
// it must not hold (a masked value, a password literal): HMAC-SHA256 with
// the masking key, truncated to 128 bits, as in pg.mask payloads.
func (m *Masker) Hash(original []byte) []byte {
	mac := hmac.New(sha256.New, m.key)
	mac.Write(original)
	return mac.Sum(nil)[:16]
}
