package evidence

// payloads.jsonl: each payload line checked against the commitment in its
// entry's body.

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"slices"
)

// payloads checks payloads.jsonl: every line in canonical form, in seq
// order, for an entry of the bundle that commits to a payload, and matching
// that commitment; committed payloads without a line count as deleted.
func (v *bundleVerifier) payloads(m *member) error {
	sc := bufio.NewScanner(m)
	sc.Buffer(make([]byte, 256<<10), 2*MaxPayload+(1<<20))
	line, next := 0, 0
	var last uint64
	var data []byte
	for sc.Scan() {
		line++
		seq, saltHex, data64, ok := parsePayloadLine(sc.Bytes())
		if !ok {
			var pl PayloadLine
			// Not in the form the exporter writes: encoding/json says why.
			if err := json.Unmarshal(sc.Bytes(), &pl); err != nil {
				return fail(m.name, 0, "line %d does not parse: %v", line, err)
			}
			if again, _ := json.Marshal(pl); !bytes.Equal(again, sc.Bytes()) {
				return fail(m.name, pl.Seq, "line %d is not in canonical form", line)
			}
			seq, saltHex, data64 = pl.Seq, []byte(pl.Salt), []byte(pl.Data)
		}
		if seq <= last {
			return fail(m.name, seq, "line %d: payload of entry %d is out of order", line, seq)
		}
		// Entries before seq whose payload is not here had it deleted.
		for next < len(v.commitments) && v.commitments[next].seq < seq {
			next++
		}
		if next == len(v.commitments) || v.commitments[next].seq != seq {
			return fail(m.name, seq, "line %d: entry %d is not in the bundle or commits to no payload", line, seq)
		}
		want := v.commitments[next].sum
		next++
		last = seq
		var salt [SaltSize]byte
		n, err1 := 0, error(nil)
		// Lowercase only, as the exporter writes it: the salt is inside
		// the commitment's input, its spelling is not, and a byte that
		// could change without failing a check would be one only the seal
		// covers.
		if len(saltHex) == 2*SaltSize && isLowerHex(saltHex) {
			n, err1 = hex.Decode(salt[:], saltHex)
		}
		data = slices.Grow(data[:0], base64.StdEncoding.DecodedLen(len(data64)))
		dn, err2 := base64.StdEncoding.Strict().Decode(data[:cap(data)], data64)
		data = data[:dn]
		if err1 != nil || err2 != nil || n != SaltSize {
			return fail(m.name, seq, "line %d: salt or data of entry %d is malformed", line, seq)
		}
		if c := PayloadCommitment(salt[:], data); !bytes.Equal(c[:], want) {
			return fail(m.name, seq, "payload of entry %d does not match the commitment in its entry", seq)
		}
		v.rep.Counts.Payloads++
	}
	if err := sc.Err(); err != nil {
		return fail(m.name, 0, "bundle is corrupt in %s: %v", m.name, err)
	}
	v.rep.Counts.PayloadsDeleted = uint64(len(v.commitments)) - v.rep.Counts.Payloads
	return nil
}

// commitment is an entry's payload commitment.
type commitment struct {
	seq uint64
	sum []byte
}

// parsePayloadLine reads a payloads.jsonl line in the one form
// json.Marshal gives a PayloadLine whose salt and data need no escaping
// (as hex and base64 never do): {"seq":N,"salt":"…","data":"…"}. ok is
// false for anything else, which the caller hands to encoding/json; so a
// line accepted here is one encoding/json would accept as canonical, read
// the same, without its cost on every payload. salt and data alias b.
func parsePayloadLine(b []byte) (seq uint64, salt, data []byte, ok bool) {
	i, err := expect(b, 0, `{"seq":`)
	if err != nil {
		return 0, nil, nil, false
	}
	if seq, i, err = parseUint(b, i); err != nil {
		return 0, nil, nil, false
	}
	if i, err = expect(b, i, `,"salt":"`); err != nil {
		return 0, nil, nil, false
	}
	end := bytes.IndexByte(b[i:], '"')
	if end < 0 || !plainASCII(b[i:i+end]) {
		return 0, nil, nil, false
	}
	salt, i = b[i:i+end], i+end
	if i, err = expect(b, i, `","data":"`); err != nil {
		return 0, nil, nil, false
	}
	end = bytes.IndexByte(b[i:], '"')
	if end < 0 || !plainASCII(b[i:i+end]) || string(b[i+end:]) != `"}` {
		return 0, nil, nil, false
	}
	return seq, salt, b[i : i+end], true
}
