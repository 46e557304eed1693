package ssh

import (
	"bytes"
	"regexp"
	"slices"
)

// The carry-over window of one output stream.
//
// Each read is scanned together with what the stream still holds: a scan
// is ctx + held + read, where ctx is the end of what was already released
// (context only: it is never sent or recorded again; "SSN:" before a
// number, or the start of a secret the timer released).
// Policy's detectors find secrets in the scan (policy.Detect); then the
// scan is cut: what is before the cut is released, masked, and what is
// after it is held for the next read. The cut is the earliest of:
//
//   - the start of the trailing partial line (no secret but a private key
//     spans lines), or lineWindow bytes before the end for a longer line;
//   - the BEGIN line of a private key block whose END line has not come
//     yet, while that block is at most keyWindow bytes;
//
// and it never splits a finding: a finding across the cut is held whole
// (released whole and masked if holding it would exceed keyWindow). A read
// that ends with a newline and no open key block is released at once.
//
// A private key block is also masked when it is not whole. From a BEGIN
// line, the block goes on over lines that can be part of one (base64,
// "Name: value" headers, empty lines) up to its END line. A block cut short
// by another line, by the end of the output, by releaseAfter or by
// keyWindow is masked as far as it goes; in the last two cases the stream
// remembers it is inside a key, and masks what follows (without a second
// marker) until the block ends. Its keyed hash covers the whole block (its
// first keyHashLen bytes).

// releaseMode says how much of the scan may be held back.
type releaseMode int

const (
	releaseMore    releaseMode = iota // more output may come
	releaseTimeout                    // held too long: release everything
	releaseFinal                      // the stream ended
)

// keyHashLen bounds the bytes of an unterminated key block kept for its
// keyed hash.
const keyHashLen = 64 << 10

// The lines that begin and end a private key block, as policy's detector
// reads them (PEM keys, OpenSSH keys, PGP private key blocks).
var (
	keyBegin   = regexp.MustCompile(`-+ ?BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-*`)
	keyEnd     = regexp.MustCompile(`^-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----`)
	keyEndTail = regexp.MustCompile(`-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----\z`)
)

// keyDetector runs policy's private key detector alone.
var keyDetector = []string{"private_key"}

// spanKind tells findings from the parts of key blocks.
type spanKind int

const (
	spanFinding  spanKind = iota // a finding of policy's detectors
	spanKeyWhole                 // a key block cut short, all of it in the scan
	spanKeyOpen                  // a key block reaching the end of the scan
	spanKeyCont                  // the rest of a key block partly released before
)

// span is a stretch of the scan that is masked. start may lie in ctx, for
// a secret that resumes there.
type span struct {
	start, end int
	det        string
	kind       spanKind
	closed     bool // spanKeyCont: the block ends at end
}

type carry struct {
	om *outputMask
	// ctx is released context, held the bytes not yet released.
	ctx, held []byte
	scratch   []byte
	// inKey: the last release ended inside a key block; keyAcc is that
	// block so far (its first keyHashLen bytes).
	inKey  bool
	keyAcc []byte
}

// next scans p with what is held and returns what is released now: the
// recorded copy and, unless the client sees the original, the live one.
// fresh says every byte held before p was released (the timer restarts).
func (c *carry) next(p []byte, mode releaseMode) (rec, live []byte, fresh bool) {
	om := c.om
	v := append(append(append(c.scratch[:0], c.ctx...), c.held...), p...)
	c.scratch = v
	base, oldEnd, n := len(c.ctx), len(c.ctx)+len(c.held), len(v)

	var keys []span
	if om.keys {
		keys = c.keySpans(v, base, mode)
	}
	recSpans := merge(c.detectSpans(v, base, om.recOther), keys)
	var liveSpans []span
	if om.live == liveSome {
		var k []span
		if om.liveKeys {
			k = keys
		}
		liveSpans = merge(c.detectSpans(v, base, om.liveOther), k)
	}
	if mode == releaseTimeout && om.sameLength {
		// A file stream (scp's source side) paused: what may begin a
		// secret is masked, not sent (transfer_scan.go).
		if r := riskyTail(v, base); r < n {
			b := []span{{start: r, end: n, det: boundaryDetector}}
			recSpans = merge(recSpans, b)
			liveSpans = merge(liveSpans, slices.Clone(b))
		}
	}

	cut := n
	if mode == releaseMore {
		cut = max(base, n-lineWindow)
		if i := bytes.LastIndexByte(v[base:], '\n'); i >= 0 {
			cut = max(cut, base+i+1)
		}
		for _, s := range recSpans {
			if s.kind == spanKeyOpen && s.start >= base && s.start < cut && n-s.start <= keyWindow {
				cut = s.start
			}
		}
		cut = uncut(cut, n, base, recSpans, liveSpans)
	}

	// Account for what is released, and render it.
	for _, s := range recSpans {
		if s.kind != spanKeyCont && (s.start >= cut || s.end <= base) {
			continue
		}
		switch s.kind {
		case spanFinding, spanKeyWhole:
			om.note(s.det, v[s.start:s.end])
		case spanKeyOpen:
			c.inKey = true
			c.keyAcc = append(c.keyAcc[:0], v[s.start:min(cut, s.start+keyHashLen)]...)
		case spanKeyCont:
			from, to := max(s.start, base), min(s.end, cut)
			if room := keyHashLen - len(c.keyAcc); room > 0 && to > from {
				c.keyAcc = append(c.keyAcc, v[from:min(to, from+room)]...)
			}
			if s.closed && s.end <= cut {
				om.note("private_key", c.keyAcc)
				c.inKey, c.keyAcc = false, c.keyAcc[:0]
			}
		}
	}
	if cut > base {
		rec = render(v, recSpans, base, cut, om.sameLength)
		switch om.live {
		case liveAll:
			live = rec
		case liveSome:
			live = render(v, liveSpans, base, cut, om.sameLength)
		}
	}

	// Keep what precedes the cut as context, and the bytes after it.
	c.ctx = append(c.ctx[:0], v[max(0, cut-contextLen):cut]...)
	c.held = append(c.held[:0], v[cut:]...)
	if mode == releaseFinal {
		c.scratch, c.ctx, c.held = nil, nil, nil
	}
	return rec, live, cut >= oldEnd
}

// uncut moves the cut off every finding it would split: back to the
// finding's start, or past its end when holding it would exceed keyWindow
// or it began in what was released already. Open and continued key blocks
// are cut anywhere: they are masked on both sides.
func uncut(cut, n, base int, lists ...[]span) int {
	for moved := true; moved; {
		moved = false
		for _, l := range lists {
			for _, s := range l {
				if s.kind == spanKeyOpen || s.kind == spanKeyCont || s.start >= cut || s.end <= cut {
					continue
				}
				if s.start >= base && n-s.start <= keyWindow {
					cut = s.start
				} else {
					cut = s.end
				}
				moved = true
			}
		}
	}
	return cut
}

// detectSpans are the detectors' findings in v that reach past base.
func (c *carry) detectSpans(v []byte, base int, names []string) []span {
	var out []span
	for _, f := range c.om.detect(names, v) {
		if f.End > base {
			out = append(out, span{start: f.Start, end: f.End, det: f.Detector})
		}
	}
	return out
}

// keySpans finds the private key blocks in v: the rest of one the stream
// is inside of; whole blocks as policy's detector finds them (BEGIN line
// to END line); and blocks that lack their END line (so far), which this
// file follows line by line (see keyBlockEnd) instead of masking all that
// comes after their BEGIN line as the detector does in a value: in a
// stream, that could be the rest of a session.
func (c *carry) keySpans(v []byte, base int, mode releaseMode) []span {
	var out []span
	from := base
	if c.inKey {
		end, closed := keyBlockEnd(v, base, mode)
		out = append(out, span{start: base, end: end, det: "private_key", kind: spanKeyCont, closed: closed})
		if !closed {
			return out
		}
		from = end
	}
	// Blocks start at BEGIN lines, and wherever the detector finds one
	// it sees no END line for.
	var starts []int
	for _, f := range c.om.detect(keyDetector, v[from:]) {
		if s, e := from+f.Start, from+f.End; keyEndTail.Match(v[s:e]) {
			out = append(out, span{start: s, end: e, det: "private_key"})
		} else {
			starts = append(starts, s)
		}
	}
	for _, loc := range keyBegin.FindAllIndex(v[from:], -1) {
		starts = append(starts, from+loc[0])
	}
	slices.Sort(starts)
	for _, start := range starts {
		if start < from || slices.ContainsFunc(out, func(s span) bool { return s.start <= start && start < s.end }) {
			continue
		}
		end, closed := keyBlockEnd(v, headerEnd(v, start), mode)
		kind := spanKeyWhole
		if !closed {
			kind = spanKeyOpen
		}
		out = append(out, span{start: start, end: end, det: "private_key", kind: kind})
		from = end
	}
	return out
}

// headerEnd is where the BEGIN line starting at v[i] ends: after the BEGIN
// marker, or at the end of the line.
func headerEnd(v []byte, i int) int {
	if loc := keyBegin.FindIndex(v[i:]); loc != nil && loc[0] == 0 {
		return i + loc[1]
	}
	if j := bytes.IndexByte(v[i:], '\n'); j >= 0 {
		return i + j
	}
	return len(v)
}

// keyBlockEnd follows a key block from i over its lines: it ends after an
// END line, or at the line end before a line that cannot be part of it
// (or before the end of the output). closed is false when the block
// reaches the end of v and more may come.
func keyBlockEnd(v []byte, i int, mode releaseMode) (end int, closed bool) {
	from := i
	for i < len(v) {
		j := bytes.IndexByte(v[i:], '\n')
		if j < 0 {
			line := trimCR(v[i:])
			if loc := keyEnd.FindIndex(line); loc != nil {
				return i + loc[1], true
			}
			if !mayBeKeyLine(line) {
				return from + len(trimEOL(v[from:i])), true
			}
			break
		}
		line := trimCR(v[i : i+j])
		if loc := keyEnd.FindIndex(line); loc != nil {
			return i + loc[1], true
		}
		if !keyBodyLine(line) {
			return from + len(trimEOL(v[from:i])), true
		}
		i += j + 1
	}
	if mode == releaseFinal {
		return from + len(trimEOL(v[from:])), true
	}
	return len(v), false
}

// trimEOL drops one line end ("\n", "\r\n").
func trimEOL(b []byte) []byte {
	if len(b) > 0 && b[len(b)-1] == '\n' {
		b = b[:len(b)-1]
	}
	return trimCR(b)
}

func trimCR(b []byte) []byte {
	for len(b) > 0 && b[len(b)-1] == '\r' {
		b = b[:len(b)-1]
	}
	return b
}

// keyBodyLine: an empty line, base64, or an RFC 1421 header
// ("Proc-Type: 4,ENCRYPTED").
func keyBodyLine(line []byte) bool {
	return len(line) == 0 || base64Line(line) || headerLine(line, false)
}

// mayBeKeyLine says whether the start of a line can still become a key
// block's line (or its END line).
func mayBeKeyLine(part []byte) bool {
	const end = "-----END "
	return keyBodyLine(part) || headerLine(part, true) ||
		bytes.HasPrefix([]byte(end), part) || bytes.HasPrefix(part, []byte(end))
}

func base64Line(line []byte) bool {
	for _, b := range line {
		if !(b >= 'A' && b <= 'Z' || b >= 'a' && b <= 'z' || b >= '0' && b <= '9' || b == '+' || b == '/' || b == '=') {
			return false
		}
	}
	return true
}

// headerLine matches "Name: value"; partial also accepts the start of one
// ("Proc-Ty", "DEK-Info:").
func headerLine(line []byte, partial bool) bool {
	if len(line) == 0 || !(line[0] >= 'A' && line[0] <= 'Z' || line[0] >= 'a' && line[0] <= 'z') {
		return false
	}
	for i, b := range line {
		switch {
		case b >= 'A' && b <= 'Z' || b >= 'a' && b <= 'z' || b >= '0' && b <= '9' || b == '-':
		case b == ':':
			return i+1 < len(line) && line[i+1] == ' ' || partial && i+1 == len(line)
		default:
			return false
		}
	}
	return partial
}

// merge sorts findings and key spans and joins those that overlap: a key
// span absorbs the findings inside it.
func merge(found, keys []span) []span {
	all := append(found, keys...)
	if len(all) < 2 {
		return all
	}
	slices.SortStableFunc(all, func(a, b span) int { return a.start - b.start })
	out := all[:1]
	for _, s := range all[1:] {
		last := &out[len(out)-1]
		if s.start >= last.end {
			out = append(out, s)
			continue
		}
		if s.kind != spanFinding && last.kind == spanFinding {
			last.det, last.kind, last.closed = s.det, s.kind, s.closed
		}
		if s.end > last.end {
			last.end = s.end
			if s.kind == spanKeyCont {
				last.closed = s.closed
			}
		}
	}
	return out
}

// render is v[base:cut] with each span replaced by its marker. A continued
// key block got its marker when it began. sameLength fills each span's
// bytes instead (fill), for streams whose framing counts bytes (scp).
func render(v []byte, spans []span, base, cut int, sameLength bool) []byte {
	out := make([]byte, 0, cut-base+32)
	last := base
	for _, s := range spans {
		if s.end <= last || s.start >= cut {
			continue
		}
		out = append(out, v[last:max(s.start, last)]...)
		if sameLength {
			out = fill(out, v[max(s.start, last):min(s.end, cut)])
		} else if s.kind != spanKeyCont {
			out = append(out, marker(s.det, v[s.start:s.end])...)
		}
		last = min(s.end, cut)
	}
	return append(out, v[last:cut]...)
}

// marker is what replaces a secret: policy's markers for text values
// (policy/mask.go), so ssh output reads like masked query results.
func marker(det string, orig []byte) string {
	switch det {
	case "email":
		return "***@***"
	case "card":
		// The last four digits, as receipts print them; none when the
		// finding took in another one (its digits may be that one's).
		const hidden = "****-****-****-****"
		digits := make([]byte, 0, 19)
		for _, c := range orig {
			if c >= '0' && c <= '9' {
				digits = append(digits, c)
			} else if bytes.IndexByte([]byte(" -./_"), c) < 0 {
				return hidden
			}
		}
		if len(digits) < 4 {
			return hidden
		}
		return hidden[:15] + string(digits[len(digits)-4:])
	case "national_id":
		return "***-**-****"
	}
	return "[REDACTED " + det + "]"
}
