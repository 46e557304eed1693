package policy

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding"
	"encoding/binary"
	"hash"
)

// macPads are the HMAC-SHA256 key's inner and outer pad blocks, already
// hashed (marshaled SHA-256 states): every keyed hash starts from them,
// as FIPS 198-1 allows, instead of hashing the key's 64-byte pads again.
type macPads struct{ inner, outer []byte }

// resumable is a SHA-256 whose state can be saved and restored.
type resumable interface {
	hash.Hash
	encoding.BinaryUnmarshaler
	encoding.BinaryAppender
}

// newMacPads hashes key's pads; nil when SHA-256's state cannot be
// resumed as mac.sum needs, or the result differs from crypto/hmac's (a
// change of the marshaled format): then crypto/hmac computes every hash.
func newMacPads(key []byte) *macPads {
	in, ok1 := sha256.New().(resumable)
	out, ok2 := sha256.New().(resumable)
	if !ok1 || !ok2 {
		return nil
	}
	k := key
	if len(k) > sha256.BlockSize {
		sum := sha256.Sum256(k)
		k = sum[:]
	}
	var pad [sha256.BlockSize]byte
	copy(pad[:], k)
	for i := range pad {
		pad[i] ^= 0x36
	}
	in.Write(pad[:])
	for i := range pad {
		pad[i] ^= 0x36 ^ 0x5c
	}
	out.Write(pad[:])
	p := &macPads{}
	var err1, err2 error
	p.inner, err1 = in.AppendBinary(nil)
	p.outer, err2 = out.AppendBinary(nil)
	if err1 != nil || err2 != nil {
		return nil
	}
	m := newMac(key, p)
	std := hmac.New(sha256.New, key)
	for _, n := range []int{0, 1, 31, 55, 56, 63, 64, 65, 119, 120, 128, 1000} {
		v := bytes.Repeat([]byte{byte(n)}, n)
		std.Reset()
		std.Write(v)
		if !bytes.Equal(m.sum(v), std.Sum(nil)[:16]) || m.pads == nil {
			return nil
		}
	}
	return p
}

// mac computes the keyed hash of masked originals: HMAC-SHA256 with the
// masking key, truncated to 128 bits (the same as Masker.Hash). It resumes
// SHA-256 from the pads' states and pads the message itself, so a short
// value costs two block compressions and no allocation.
type mac struct {
	key     []byte
	pads    *macPads
	in, out resumable
	std     hash.Hash
	blk     [2 * sha256.BlockSize]byte
	st      []byte
}

func newMac(key []byte, pads *macPads) *mac {
	m := &mac{key: key, pads: pads, st: make([]byte, 0, 128)}
	if pads != nil {
		m.in, m.out = sha256.New().(resumable), sha256.New().(resumable)
	} else {
		m.std = hmac.New(sha256.New, key)
	}
	return m
}

// sum returns the truncated HMAC of v, valid until the next call.
func (m *mac) sum(v []byte) []byte {
	if m.pads == nil {
		m.std.Reset()
		m.std.Write(v)
		m.st = m.std.Sum(m.st[:0])
		return m.st[:16]
	}
	// Inner hash: the key's inner pad (resumed), v, SHA-256's padding.
	if err := m.in.UnmarshalBinary(m.pads.inner); err != nil {
		m.fallBack()
		return m.sum(v)
	}
	full := len(v) &^ (sha256.BlockSize - 1)
	if full > 0 {
		m.in.Write(v[:full])
	}
	m.in.Write(m.pad(v[full:], sha256.BlockSize+len(v)))
	var err error
	if m.st, err = m.in.AppendBinary(m.st[:0]); err != nil || len(m.st) < 36 {
		m.fallBack()
		return m.sum(v)
	}
	// Outer hash: the outer pad (resumed), the inner hash, the padding.
	var inner [sha256.Size]byte
	copy(inner[:], m.st[4:36]) // after the 4-byte magic, the state words
	if err := m.out.UnmarshalBinary(m.pads.outer); err != nil {
		m.fallBack()
		return m.sum(v)
	}
	m.out.Write(m.pad(inner[:], sha256.BlockSize+sha256.Size))
	if m.st, err = m.out.AppendBinary(m.st[:0]); err != nil || len(m.st) < 36 {
		m.fallBack()
		return m.sum(v)
	}
	return m.st[4:20]
}

// pad lays tail (less than a block) out with SHA-256's padding for a
// message of total bytes: one or two blocks, in m.blk.
func (m *mac) pad(tail []byte, total int) []byte {
	n := copy(m.blk[:], tail)
	m.blk[n] = 0x80
	end := sha256.BlockSize
	if n >= sha256.BlockSize-8 {
		end = 2 * sha256.BlockSize
	}
	clear(m.blk[n+1 : end-8])
	binary.BigEndian.PutUint64(m.blk[end-8:end], uint64(total)*8)
	return m.blk[:end]
}

// fallBack switches to crypto/hmac for good.
func (m *mac) fallBack() {
	m.pads = nil
	m.std = hmac.New(sha256.New, m.key)
}
