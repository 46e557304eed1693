package ssh

import (
	"bytes"
	"strings"
)

// Masking a file as it is downloaded (sftp reads).
//
// A file's bytes reach the client in replies whose lengths the client
// counts: a masked reply must keep its length, so each secret is replaced
// by as many fill bytes (fill), never by a marker. The file is scanned as
// one stream, in order: each reply is scanned with what came before it
// (ctx, the originals, so that a secret whose start was released is found
// again and masked where it resumes) and the bytes that may begin a secret
// the next reply completes are held back, as in the output carry-over
// window (carry.go): the trailing partial line, at most lineWindow bytes.
// Held bytes are released when the next reply moves the window on, at the
// end of the file, or when the stream pauses (releaseTimeout); then the
// trailing run that may be the start of a secret is masked whole
// (riskyTail) rather than sent, since its end is unknown.
//
// A private key block spans lines: from its BEGIN line (or a DER key's
// base64) the stream is inside a key, and masks every line that can be part
// of one until the END line or a line that cannot (keyBlockEnd), whatever
// the replies it is split across.

// boundaryDetector names what masking journals for the bytes masked at a
// pause because they may begin a secret that has not arrived.
const boundaryDetector = "boundary"

// fileScanner scans one file's bytes, in order, for the live detectors.
type fileScanner struct {
	om *outputMask
	// ctx is the end of what was released (originals), held what is not
	// released yet.
	ctx, held []byte
	// abs is the file offset of ctx[0]; notedEnd the offset where the
	// last secret noted in the evidence ended (a secret found again from
	// ctx is not counted twice).
	abs, notedEnd int64
	// inKey: the released bytes ended inside a private key block; keyAcc
	// is the block so far (its first keyHashLen bytes), for its hash.
	inKey  bool
	keyAcc []byte
	// buf holds ctx, held and the reply while they are scanned, reused
	// from reply to reply.
	buf []byte
}

// next scans p, the bytes that follow what the scanner saw, and returns
// the masked copy of what is released now: the next len(out) bytes of the
// file after what was released before.
func (f *fileScanner) next(p []byte, mode releaseMode) []byte {
	om := f.om
	v := append(append(append(f.buf[:0], f.ctx...), f.held...), p...)
	f.buf = v
	base, n := len(f.ctx), len(v)

	var spans []span
	if f.inKey {
		end, closed := keyBlockEnd(v, base, mode)
		spans = append(spans, span{start: base, end: end, det: "private_key", kind: spanKeyCont, closed: closed})
	}
	for _, x := range om.detect(om.liveNames, v) {
		if x.End > base {
			spans = append(spans, span{start: x.Start, end: x.End, det: x.Detector})
		}
	}

	cut := n
	switch mode {
	case releaseMore:
		cut = max(base, n-lineWindow)
		if i := bytes.LastIndexByte(v[base:], '\n'); i >= 0 {
			cut = max(cut, base+i+1)
		}
	case releaseTimeout:
		if r := riskyTail(v, base); r < n {
			spans = append(spans, span{start: r, end: n, det: boundaryDetector})
		}
	}
	spans = merge(spans, nil)

	// Evidence: each secret once, and whether the released bytes end in a
	// key block.
	inKey := false
	for _, s := range spans {
		if s.start >= cut {
			continue
		}
		if s.kind == spanKeyCont {
			if room := keyHashLen - len(f.keyAcc); room > 0 {
				f.keyAcc = append(f.keyAcc, v[base:base+min(room, min(s.end, cut)-base)]...)
			}
			if s.closed && s.end <= cut {
				om.note("private_key", f.keyAcc)
				f.keyAcc = f.keyAcc[:0]
				f.notedEnd = f.abs + int64(s.end)
			} else {
				inKey = true
			}
			continue
		}
		if s.det == "private_key" && mode != releaseFinal && keyGoesOn(v, s, cut) {
			inKey = true
			f.keyAcc = append(f.keyAcc[:0], v[s.start:min(cut, s.start+keyHashLen)]...)
			f.notedEnd = f.abs + int64(s.end)
			continue
		}
		if f.abs+int64(s.start) >= f.notedEnd {
			om.note(s.det, v[s.start:s.end])
			f.notedEnd = f.abs + int64(s.end)
		}
	}
	f.inKey = inKey

	out := render(v, spans, base, cut, true)
	from := max(0, cut-lineWindow)
	f.abs += int64(from)
	f.ctx = append(f.ctx[:0], v[from:cut]...)
	f.held = append(f.held[:0], v[cut:]...)
	return out
}

// keyGoesOn says whether a private key finding may go on after the cut:
// a PEM block without its END line reaches the end of the scan; a DER
// key's base64 ends at a line end, and its next line may be in the next
// reply.
func keyGoesOn(v []byte, s span, cut int) bool {
	if s.end >= len(v) {
		return true
	}
	head := bytes.ToUpper(v[s.start:min(s.end, s.start+64)])
	if bytes.Contains(head, []byte("BEGIN")) || bytes.Contains(head, []byte("YEK")) {
		return false // closed by its END line (reversed: by its BEGIN)
	}
	return s.end >= cut-2
}

// riskyTail is where the trailing run of v that may be the start of a
// secret begins (len(v) when there is none): the last word of characters
// a secret can hold (an email's local part, a token, a key's base64),
// and before it digit groups joined by single spaces (a card number
// written 4111 1111 ...). At most lineWindow bytes, never before base.
func riskyTail(v []byte, base int) int {
	lo := max(base, len(v)-lineWindow)
	i := len(v)
	for {
		for i > lo && secretByte(v[i-1]) {
			i--
		}
		if i-2 >= lo && v[i-1] == ' ' && isDigitByte(v[i-2]) && (i == len(v) || isDigitByte(v[i])) {
			i--
			continue
		}
		return i
	}
}

// secretByte: a byte a secret other than a key block's lines can hold
// (cards' and ids' separators but the space; emails; tokens; base64).
func secretByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || isDigitByte(c) || strings.IndexByte("._%+-@/=:", c) >= 0
}

func isDigitByte(c byte) bool { return c >= '0' && c <= '9' }

// fill appends a same-length stand-in for a secret: '*' for each byte,
// line ends kept (a key block keeps its lines).
func fill(out, orig []byte) []byte {
	for _, c := range orig {
		if c != '\n' && c != '\r' {
			c = '*'
		}
		out = append(out, c)
	}
	return out
}

// finish notes a key block the file ended inside of.
func (f *fileScanner) finish() {
	if f.inKey && len(f.keyAcc) > 0 {
		f.om.note("private_key", f.keyAcc)
	}
	f.inKey, f.keyAcc = false, nil
}
