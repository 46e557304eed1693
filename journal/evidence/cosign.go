package evidence

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
)

// A hub witnesses its hosts' checkpoints with C2SP tlog-cosignature v1
// (https://c2sp.org/tlog-cosignature): one more signature line on the
// host's checkpoint note, by the hub's cosigner key, over
//
//	cosignature/v1
//	time <unix seconds>
//	<the checkpoint's text>
//
// and encoded as key hash || 8-byte big-endian time || ed25519 signature.
// The host's signature line stays first, byte for byte, so the host's
// checkpoint is the cosigned note without its last line.

// cosigTimeSize is the timestamp in front of a cosignature's ed25519
// signature.
const cosigTimeSize = 8

// cosigner signs cosignatures at a time its caller chooses (the hub
// stamps the time it accepted the batch, and tests need fixed times);
// transparency-dev's signer always stamps time.Now.
type cosigner struct {
	*fnote.Signer
	key ed25519.PrivateKey
}

// NewCosigner returns the cosignature v1 signer of an ed25519 note key
// (the private key text note.GenerateKey makes, type 0x01, or one already
// of cosignature type 0x04). Its key hash is that of the cosignature key,
// as CosignatureKey gives it.
func NewCosigner(skey string) (note.Signer, error) {
	s, err := fnote.NewSignerForCosignatureV1(skey)
	if err != nil {
		return nil, fmt.Errorf("evidence: cosigner key: %w", err)
	}
	// The library checked the form (PRIVATE+KEY+name+hash+base64); the
	// seed follows the algorithm byte of the last field, whose base64 may
	// itself hold a '+'.
	parts := strings.SplitN(skey, "+", 5)
	raw, err := base64.StdEncoding.DecodeString(parts[len(parts)-1])
	if err != nil || len(raw) != 1+ed25519.SeedSize {
		return nil, errors.New("evidence: cosigner key: not an ed25519 key")
	}
	return &cosigner{Signer: s, key: ed25519.NewKeyFromSeed(raw[1:])}, nil
}

func (c *cosigner) signAt(text []byte, t time.Time) []byte {
	ts := uint64(t.Unix())
	msg := fmt.Appendf(nil, "cosignature/v1\ntime %d\n%s", ts, text)
	sig := binary.BigEndian.AppendUint64(make([]byte, 0, cosigTimeSize+ed25519.SignatureSize), ts)
	return append(sig, ed25519.Sign(c.key, msg)...)
}

// CosignatureKey turns the verifier key of an ed25519 note key (type
// 0x01) into its cosignature v1 form (type 0x04), the form a hub
// publishes so that other C2SP tools read its lines as cosignatures. A key
// already in that form is returned as it is.
func CosignatureKey(vkey string) (string, error) {
	if _, err := NewCosignatureVerifier(vkey); err != nil {
		return "", err
	}
	k, err := fnote.VKeyToCosignatureV1(vkey)
	if err != nil {
		return vkey, nil // already type 0x04: NewCosignatureVerifier took it
	}
	return k, nil
}

// NewCosignatureVerifier returns the verifier of cosignature v1 lines for
// an ed25519 verifier key, of type 0x01 (as note.GenerateKey writes it) or
// 0x04.
func NewCosignatureVerifier(vkey string) (note.Verifier, error) {
	v, err := fnote.NewVerifierForCosignatureV1(strings.TrimSpace(vkey))
	if err != nil {
		return nil, fmt.Errorf("evidence: cosignature key %q: %w", vkey, err)
	}
	if _, isMLDSA := v.(*fnote.SubtreeVerifier); isMLDSA {
		return nil, fmt.Errorf("evidence: cosignature key %q: not an ed25519 key", vkey)
	}
	return v, nil
}

// Cosign adds cosigner's cosignature v1 line, at time t, to a signed
// checkpoint note. It does not check the host's signature: the hub does
// that before it cosigns (VerifyCosigned checks both). cs must come from
// NewCosigner: other signers stamp a time of their own choosing, not t.
func Cosign(checkpointNote []byte, cs note.Signer, t time.Time) ([]byte, error) {
	_, err := note.Open(checkpointNote, note.VerifierList())
	var unknown *note.UnverifiedNoteError
	if !errors.As(err, &unknown) {
		return nil, fmt.Errorf("evidence: cosign: not a signed note: %w", err)
	}
	n := unknown.Note
	for _, s := range n.UnverifiedSigs {
		if s.Name == cs.Name() && s.Hash == cs.KeyHash() {
			return nil, fmt.Errorf("evidence: cosign: the checkpoint already has a signature by %s+%08x", s.Name, s.Hash)
		}
	}
	c, ok := cs.(*cosigner)
	if !ok {
		return nil, fmt.Errorf("evidence: cosign: the signer %s (%T) was not made by NewCosigner, so it cannot stamp the time given", cs.Name(), cs)
	}
	return appendSigLine(checkpointNote, c.Name(), c.KeyHash(), c.signAt([]byte(n.Text), t)), nil
}

func appendSigLine(msg []byte, name string, hash uint32, sig []byte) []byte {
	out := append([]byte(nil), msg...)
	out = append(out, "— "+name+" "...)
	out = base64.StdEncoding.AppendEncode(out, append(binary.BigEndian.AppendUint32(nil, hash), sig...))
	return append(out, '\n')
}

// VerifyCosigned checks a cosigned checkpoint: the host's checkpoint
// (ParseCheckpoint, with hostKey) followed by exactly one line, the
// cosignature by hubKey over that checkpoint, in canonical form. It
// returns the checkpoint (its Note is the host's note, without the
// cosignature) and the time the hub stamped on its cosignature.
func VerifyCosigned(msg []byte, hostKey, hubKey note.Verifier) (Checkpoint, time.Time, error) {
	n, err := note.Open(msg, note.VerifierList(hubKey))
	if err != nil {
		var unknown *note.UnverifiedNoteError
		var invalid *note.InvalidSignatureError
		switch {
		case errors.As(err, &unknown):
			return Checkpoint{}, time.Time{}, cpErr("checkpoint has no cosignature by the hub %s+%08x", hubKey.Name(), hubKey.KeyHash())
		case errors.As(err, &invalid):
			return Checkpoint{}, time.Time{}, cpErr("the hub's cosignature by %s+%08x does not verify: it is not over this checkpoint", invalid.Name, invalid.Hash)
		}
		return Checkpoint{}, time.Time{}, cpErr("cosigned checkpoint is not a well-formed signed note: %v", err)
	}
	if len(n.Sigs) != 1 || len(n.UnverifiedSigs) != 1 {
		return Checkpoint{}, time.Time{}, cpErr("cosigned checkpoint has %d signatures; want two, the host's then the hub's", len(n.Sigs)+len(n.UnverifiedSigs))
	}
	host, hub := n.UnverifiedSigs[0], n.Sigs[0]
	hostNote := []byte(n.Text + "\n— " + host.Name + " " + host.Base64 + "\n")
	cp, err := ParseCheckpoint(hostNote, hostKey)
	if err != nil {
		return Checkpoint{}, time.Time{}, err
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(hub.Base64)
	if err != nil || len(raw) != 4+cosigTimeSize+ed25519.SignatureSize {
		return Checkpoint{}, time.Time{}, cpErr("the hub's cosignature is not a cosignature v1 (%d bytes)", len(raw))
	}
	if want := appendSigLine(hostNote, hub.Name, hub.Hash, raw[4:]); string(want) != string(msg) {
		return Checkpoint{}, time.Time{}, cpErr("cosigned checkpoint is not in canonical form (the host's line first, then the hub's, nothing around them)")
	}
	ts := binary.BigEndian.Uint64(raw[4:])
	if ts > 1<<62 {
		return Checkpoint{}, time.Time{}, cpErr("the hub's cosignature time %d is out of range", ts)
	}
	return cp, time.Unix(int64(ts), 0).UTC(), nil
}
