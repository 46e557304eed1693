package policy

import (
	"bytes"
	"regexp"
	"strings"
)

// Private keys are found by their PEM markers, written loosely: any case,
// any separators or none between the words (replace(body, ' ', ''),
// translate(body, '-', ' '), lower(body) keep them recognisable), and
// reversed (reverse(body)). A marked key is masked from its BEGIN line to
// its END line, or to the end of the value when the END line is missing
// (a key cut by LIMIT, substr or a column width): whatever follows a BEGIN
// line may be key material; reversed, from the reversed END line (or the
// start of the value) to the reversed BEGIN line. Without markers, the
// base64 of a DER private key is recognised by how it starts (PKCS#1,
// PKCS#8, SEC1 EC, Ed25519, OpenSSH). Accepted: a text that quotes a
// BEGIN line (documentation) loses everything after it.

// keyTypes are the words PEM puts between BEGIN and PRIVATE KEY.
var keyTypes = []string{"RSA", "DSA", "EC", "ECDSA", "ED25519", "ED448", "X25519", "X448", "OPENSSH", "ENCRYPTED", "PGP", "SSH2", "PUTTY", "ANY"}

const (
	keySep = `[^A-Za-z0-9]{0,12}`
	b64    = `[A-Za-z0-9+/=]`
)

func keyMarker(begin string, reversed bool) string {
	types := make([]string, len(keyTypes))
	for i, t := range keyTypes {
		types[i] = t
		if reversed {
			types[i] = reverseString(t)
		}
	}
	typ := `(?:(?:` + strings.Join(types, "|") + `)` + keySep + `){0,2}`
	if reversed {
		return `(?:KCOLB` + keySep + `)?YEK` + keySep + `ETAVIRP` + keySep + typ + reverseString(begin)
	}
	return begin + keySep + typ + `PRIVATE` + keySep + `KEY(?:` + keySep + `BLOCK)?`
}

var (
	pemKey = regexp.MustCompile(`(?i)-*` + keyMarker("BEGIN", false) + `-*[\s\S]*?(?:` + keyMarker("END", false) + `-*|\z)`)
	// Reversed: the reversed END line (or the value's start) to the
	// reversed BEGIN line.
	pemKeyReversed = regexp.MustCompile(`(?i)(?:-*` + keyMarker("END", true) + `|\A)[\s\S]*?` + keyMarker("BEGIN", true) + `-*`)
	// derKey is the base64 of a DER private key: PKCS#1 RSA and PKCS#8
	// (SEQUENCE, INTEGER 0), SEC1 EC (MHcCAQEE...), PKCS#8 Ed25519
	// (MC4CAQAw...), and OpenSSH's openssh-key-v1.
	derKey = regexp.MustCompile(`(?:MII` + b64 + `{2}AIBAA|MII` + b64 + `{2}AIBADAN|MHcCAQEE|MC4CAQAw|MFECAQEw|b3BlbnNzaC1rZXktdjE)` + b64 + `{24,}(?:\r?\n` + b64 + `{4,})*`)
)

var derPrefixes = [][]byte{[]byte("MII"), []byte("MHcCAQEE"), []byte("MC4CAQAw"), []byte("MFECAQEw"), []byte("b3BlbnNzaC1rZXktdjE")}

// findPrivateKeys finds private keys in v.
func findPrivateKeys(v []byte, det int, out []Finding) []Finding {
	fwd, rev := keyWords(v)
	if fwd {
		for _, loc := range pemKey.FindAllIndex(v, -1) {
			out = append(out, Finding{Start: loc[0], End: loc[1], det: det})
		}
	}
	if rev {
		for _, loc := range pemKeyReversed.FindAllIndex(v, -1) {
			out = append(out, Finding{Start: loc[0], End: loc[1], det: det})
		}
	}
	if derStart(v) {
		for _, loc := range derKey.FindAllIndex(v, -1) {
			out = append(out, Finding{Start: loc[0], End: loc[1], det: det})
		}
	}
	return out
}

// derStart says v may hold the base64 of a DER private key: one of
// derKey's beginnings is in it.
func derStart(v []byte) bool {
	for off := 0; off < len(v); {
		i := bytes.IndexByte(v[off:], 'M')
		if i < 0 {
			break
		}
		rest := v[off+i:]
		for _, p := range derPrefixes[:4] {
			if bytes.HasPrefix(rest, p) {
				return true
			}
		}
		off += i + 1
	}
	return bytes.Contains(v, derPrefixes[4])
}

// keyWords says whether v holds "private" (fwd) or "etavirp" (rev) in
// any case. It looks only around each v or V, which the fast byte
// search finds: most values have none.
func keyWords(v []byte) (fwd, rev bool) {
	for _, c := range []byte{'v', 'V'} {
		for off := 0; off < len(v); {
			i := bytes.IndexByte(v[off:], c)
			if i < 0 {
				break
			}
			i += off
			off = i + 1
			fwd = fwd || i >= 3 && i+4 <= len(v) && foldEqual(v[i-3:i+4], "private")
			rev = rev || i >= 3 && i+4 <= len(v) && foldEqual(v[i-3:i+4], "etavirp")
			if fwd && rev {
				return
			}
		}
	}
	return
}

// foldEqual says b is word (lower case ASCII letters) in any case.
func foldEqual(b []byte, word string) bool {
	for i := range b {
		if b[i]|0x20 != word[i] {
			return false
		}
	}
	return true
}

func reverseString(s string) string {
	b := []byte(s)
	for i, j := 0, len(b)-1; i < j; i, j = i+1, j-1 {
		b[i], b[j] = b[j], b[i]
	}
	return string(b)
}
