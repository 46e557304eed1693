package policy

import (
	"bytes"
	"regexp"
	"strings"
)

// A detector finds sensitive values inside text. Each pairs a cheap way to
// find candidates with a validator, so that look-alikes (a 16-digit
// timestamp, an order number) are not masked: a card number must pass
// Luhn and carry a real issuer prefix and length, an SSN must have a valid
// area, group and serial, and so on.
//
// Detectors find values wherever they are: glued to the words around them
// (x4111111111111111y, key=AKIA…, xghp_…), and written with the common
// separators between digit groups (space, dash, dot, slash, underscore).
// What each accepts as a false positive is said at its scanner.
type detector struct {
	name string
	// scan appends what it finds in v to out; det is the index the
	// findings carry.
	scan func(v []byte, det int, out []Finding) []Finding
}

// regexpScan finds re's matches that valid accepts (nil accepts all),
// looking only at values where pre is true.
func regexpScan(re *regexp.Regexp, pre func([]byte) bool) func([]byte, int, []Finding) []Finding {
	return func(v []byte, det int, out []Finding) []Finding {
		if !pre(v) {
			return out
		}
		for _, loc := range re.FindAllIndex(v, -1) {
			out = append(out, Finding{Start: loc[0], End: loc[1], det: det})
		}
		return out
	}
}

var detectors = map[string]*detector{
	"email": {
		name: "email",
		// Found inside words too: the local part takes what precedes the
		// @ up to a character an address cannot hold.
		scan: regexpScan(regexp.MustCompile(`[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?)*\.[A-Za-z]{2,24}`),
			func(v []byte) bool { return bytes.IndexByte(v, '@') >= 0 }),
	},
	// Scanned by hand, not by a regexp: a regexp costs microseconds per
	// value, and card columns are scanned a row at a time.
	"card":        {name: "card", scan: findCards},
	"national_id": {name: "national_id", scan: findSSNs},
	"cloud_key":   {name: "cloud_key", scan: findCloudKeys},
	"token":       {name: "token", scan: findTokens},
	"private_key": {
		name: "private_key",
		// From the BEGIN line to the END line, or to the end of the value
		// when the END line is missing (a key cut by LIMIT, substr or a
		// column width): whatever follows a BEGIN line may be key material.
		// Accepted: a text that quotes a BEGIN line (documentation) loses
		// everything after it.
		scan: regexpScan(regexp.MustCompile(`-+ ?BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-*[\s\S]*?(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|\z)`),
			func(v []byte) bool { return bytes.Contains(v, []byte("PRIVATE KEY")) }),
	},
}

// MaskDetectorNames lists every detector.
func MaskDetectorNames() []string {
	return []string{"email", "card", "national_id", "cloud_key", "token", "private_key"}
}

// Finding is one sensitive value a detector found.
type Finding struct {
	Detector   string
	Start, End int
	// det is the detector's index in the list that was run; merged says
	// the finding took in an overlapping one of another detector.
	det    int
	merged bool
}

// Detect runs the named detectors over v and returns what they found, in
// order and without overlaps. Unknown names are ignored (the config
// refuses them).
func Detect(names []string, v []byte) []Finding {
	var buf [8]*detector
	return detectInto(nil, appendDetectors(buf[:0], names), v)
}

// lookupDetectors finds the named detectors, each once.
func lookupDetectors(names []string) []*detector { return appendDetectors(nil, names) }

func appendDetectors(ds []*detector, names []string) []*detector {
	for _, n := range names {
		if d := detectors[n]; d != nil && !containsDetector(ds, d) {
			ds = append(ds, d)
		}
	}
	return ds
}

func containsDetector(ds []*detector, d *detector) bool {
	for _, x := range ds {
		if x == d {
			return true
		}
	}
	return false
}

// detectInto runs ds over v, appending to out (reused between values):
// findings in order, overlapping ones merged, each carrying the index in
// ds of the detector that found it.
func detectInto(out []Finding, ds []*detector, v []byte) []Finding {
	for i, d := range ds {
		n := len(out)
		out = d.scan(v, i, out)
		for k := n; k < len(out); k++ {
			out[k].Detector = d.name
		}
	}
	return dropOverlaps(out)
}

// dropOverlaps sorts findings by start and merges overlapping ones (the
// merged finding keeps the first one's detector).
func dropOverlaps(fs []Finding) []Finding {
	if len(fs) < 2 {
		return fs
	}
	// Insertion sort: findings per value are few.
	for i := 1; i < len(fs); i++ {
		for j := i; j > 0 && fs[j].Start < fs[j-1].Start; j-- {
			fs[j], fs[j-1] = fs[j-1], fs[j]
		}
	}
	out := fs[:1]
	for _, f := range fs[1:] {
		last := &out[len(out)-1]
		if f.Start < last.End {
			if f.End > last.End {
				last.End = f.End
			}
			last.merged = last.merged || f.det != last.det || f.merged
			continue
		}
		out = append(out, f)
	}
	return out
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isLetter(c byte) bool { return c|0x20 >= 'a' && c|0x20 <= 'z' }

func isAlnum(c byte) bool { return isDigit(c) || isLetter(c) }

// isSep: the characters written between the digit groups of a card
// number or an SSN.
func isSep(c byte) bool { return c == ' ' || c == '-' || c == '.' || c == '/' || c == '_' }

// maxGroups bounds the digit groups read as one run; a longer run is
// read in pieces (a number split across two pieces is not found: only
// runs of more than maxGroups numbers joined by separators have one).
const maxGroups = 40

// digitRun is a run of digit groups joined by separators: 4111 1111 1111
// 1111, 123-45-6789, 2026.11.26. g[k] is group k's [start, end) in the
// value.
type digitRun struct {
	g [maxGroups][2]int
	n int
}

// read reads the run that starts at v[i], a digit: groups of digits
// joined by one to three separator characters. It returns where the run
// ends.
func (r *digitRun) read(v []byte, i int) int {
	r.n = 0
	for {
		j := i
		for j < len(v) && isDigit(v[j]) {
			j++
		}
		r.g[r.n] = [2]int{i, j}
		r.n++
		if r.n == maxGroups {
			return j
		}
		k := j
		for k < len(v) && k-j < 3 && isSep(v[k]) {
			k++
		}
		if k == j || k == len(v) || !isDigit(v[k]) {
			return j
		}
		i = k
	}
}

// start and end are where group k starts and ends in the value.
func (r *digitRun) start(k int) int { return r.g[k][0] }
func (r *digitRun) end(k int) int   { return r.g[k][1] }
func (r *digitRun) size(k int) int  { return r.end(k) - r.start(k) }

// sep is what joins group k to group k+1.
func (r *digitRun) sep(v []byte, k int) []byte { return v[r.end(k):r.start(k+1)] }

// digits is the number of digits in groups s to e.
func (r *digitRun) digits(s, e int) int {
	d := 0
	for k := s; k <= e; k++ {
		d += r.size(k)
	}
	return d
}

// findCards finds payment card numbers: 13 to 19 digits that pass
// validCard, not touching other digits (letters may touch them:
// x4111111111111111y is found), written
//   - in one piece, or
//   - in groups joined by the same one to three separator characters
//     (4111 1111 1111 1111, 4111.1111.1111.1111, 4111 - 1111 - …,
//     3782_822463_10005), the groups laid out as cards are printed: a
//     first group of four, middle ones of three to six, a last one of one
//     to six; or all of one size but a shorter last one (4 1 1 1 …).
//
// A card may be followed or preceded by other numbers in the same run
// (4111 1111 1111 1111 123, with its security code).
//
// Accepted false positives: any 13 to 19 digits laid out so that pass
// the validator (Luhn passes one number in ten; with the issuer prefixes
// and lengths, about one random 16-digit number in twenty-five), such as
// an order number glued to letters (ORD4111111111111111). Not found, to
// keep those low: mixed separators
// (4111 1111-1111 1111), other groupings (41 111 …), the fraction of a
// decimal number (0.4111111111111111), digits glued to more digits.
func findCards(v []byte, det int, out []Finding) []Finding {
	var r digitRun
	for i := 0; i < len(v); i++ {
		if !isDigit(v[i]) {
			continue
		}
		end := r.read(v, i)
		if r.digits(0, r.n-1) >= 13 {
			out = r.cards(v, det, out)
		}
		i = end
	}
	return out
}

// cards finds the card numbers in a run: for each group a card could
// start with, the longest valid one.
func (r *digitRun) cards(v []byte, det int, out []Finding) []Finding {
	for s := 0; s < r.n; {
		if c := v[r.start(s)]; c < '2' || c > '6' {
			s++ // no network's numbers start with 0, 1, 7, 8 or 9
			continue
		}
		best, d := -1, 0
		for e := s; e < r.n; e++ {
			d += r.size(e)
			if d > 19 || (e > s+1 && !bytes.Equal(r.sep(v, e-1), r.sep(v, s))) {
				break
			}
			if d >= 13 && r.cardShape(v, s, e) && validCard(v[r.start(s):r.end(e)]) {
				best = e
			}
		}
		if best < 0 {
			s++
			continue
		}
		out = append(out, Finding{Start: r.start(s), End: r.end(best), det: det})
		s = best + 1
	}
	return out
}

// cardShape says whether groups s to e are laid out as a card number is
// written (see findCards).
func (r *digitRun) cardShape(v []byte, s, e int) bool {
	if s == e {
		// One piece, unless it is a decimal number's fraction.
		return s == 0 || !bytes.Equal(r.sep(v, s-1), []byte{'.'})
	}
	first, last := r.size(s), r.size(e)
	printed, uniform := first == 4 && last <= 6, last <= first
	for k := s + 1; k < e; k++ {
		n := r.size(k)
		printed = printed && n >= 3 && n <= 6
		uniform = uniform && n == first
	}
	return printed || uniform
}

// validCard checks digits (separators ignored) for a plausible payment
// card: 13 to 19 digits, an issuer prefix that exists with that length,
// and the Luhn check digit.
func validCard(m []byte) bool {
	var d [19]byte
	n := 0
	for _, c := range m {
		if c >= '0' && c <= '9' {
			if n == len(d) {
				return false
			}
			d[n] = c - '0'
			n++
		}
	}
	if n < 13 || !issuerOK(d[:n]) {
		return false
	}
	sum := 0
	for i := 0; i < n; i++ {
		x := int(d[n-1-i])
		if i%2 == 1 {
			x *= 2
			if x > 9 {
				x -= 9
			}
		}
		sum += x
	}
	return sum%10 == 0
}

func prefix(d []byte, k int) int {
	v := 0
	for i := 0; i < k && i < len(d); i++ {
		v = v*10 + int(d[i])
	}
	return v
}

// issuerOK knows the major networks' IIN ranges and lengths.
func issuerOK(d []byte) bool {
	n := len(d)
	// Callers pass at least 13 digits: every prefix comes from the first six.
	p6 := prefix(d, 6)
	p1, p2, p3, p4 := p6/100000, p6/10000, p6/1000, p6/100
	switch {
	case p1 == 4: // Visa
		return n == 13 || n == 16 || n == 19
	case p2 >= 51 && p2 <= 55, p4 >= 2221 && p4 <= 2720: // Mastercard
		return n == 16
	case p2 == 34 || p2 == 37: // American Express
		return n == 15
	case p4 == 6011 || p2 == 65 || (p6 >= 622126 && p6 <= 622925) || (p3 >= 644 && p3 <= 649): // Discover
		return n >= 16 && n <= 19
	case p4 >= 3528 && p4 <= 3589: // JCB
		return n >= 16 && n <= 19
	case p2 == 36 || p2 == 38 || p2 == 39 || (p3 >= 300 && p3 <= 305): // Diners
		return n >= 14 && n <= 19
	case p2 == 62: // UnionPay
		return n >= 16 && n <= 19
	case p2 == 50 || (p2 >= 56 && p2 <= 69): // Maestro
		return n >= 12 && n <= 19
	}
	return false
}

// findSSNs finds US Social Security numbers: three, two and four digits
// joined by one separator character, the same twice (123-45-6789,
// 123 45 6789, 123.45.6789, 123/45/6789, 123_45_6789), not touching
// other digits nor part of a longer chain of numbers joined the same way
// (so 1-123-45-6789 is not one, but 2026-11-26 123-45-6789 holds one);
// and nine digits in one piece when "ssn" or "social security" comes
// shortly before them (SSN: 123456789, {"ssn": 123456789}). Each must
// have a valid area, group and serial (validSSN).
//
// Accepted false positives: numbers of exactly that shape that pass
// validSSN (three space-separated numbers of 3, 2 and 4 digits in a
// table). Not found: nine digits without a keyword before them (every
// nine-digit id would be masked), mixed separators (123-45 6789).
func findSSNs(v []byte, det int, out []Finding) []Finding {
	var r digitRun
	for i := 0; i < len(v); i++ {
		if !isDigit(v[i]) {
			continue
		}
		end := r.read(v, i)
		if r.size(0) == 9 && validSSN(v[r.start(0):r.end(0)]) && ssnKeyword(v, i) {
			out = append(out, Finding{Start: r.start(0), End: r.end(0), det: det})
		}
		// Each chain of groups joined by the same separator.
		for s := 0; s+1 < r.n; {
			e := s + 1
			for e+1 < r.n && bytes.Equal(r.sep(v, e), r.sep(v, s)) {
				e++
			}
			if e == s+2 && r.size(s) == 3 && r.size(s+1) == 2 && r.size(e) == 4 && len(r.sep(v, s)) == 1 &&
				validSSN(v[r.start(s):r.end(e)]) {
				out = append(out, Finding{Start: r.start(s), End: r.end(e), det: det})
			}
			s = e
		}
		i = end
	}
	return out
}

// ssnKeyword says whether "ssn" (not ending a longer word: classname
// does not count) or "social security" starts in the 24 bytes before
// v[i].
func ssnKeyword(v []byte, i int) bool {
	for k := max(0, i-24); k+3 <= i; k++ {
		if lowerIs(v[k:i], "ssn") && (k == 0 || !isLetter(v[k-1])) {
			return true
		}
		if lowerIs(v[k:i], "social security") {
			return true
		}
	}
	return false
}

// lowerIs says whether b starts with s (lower case ASCII), ignoring case.
func lowerIs(b []byte, s string) bool {
	if len(b) < len(s) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if b[i]|0x20 != s[i] {
			return false
		}
	}
	return true
}

// validSSN rejects numbers the SSA never issues: area 000, 666 or 9xx,
// group 00, serial 0000. m holds the nine digits, separators ignored.
func validSSN(m []byte) bool {
	var d [9]int
	n := 0
	for _, c := range m {
		if isDigit(c) {
			if n == len(d) {
				return false
			}
			d[n] = int(c - '0')
			n++
		}
	}
	if n != 9 {
		return false
	}
	area := d[0]*100 + d[1]*10 + d[2]
	group := d[3]*10 + d[4]
	serial := d[5]*1000 + d[6]*100 + d[7]*10 + d[8]
	return area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

// span counts the bytes of v from i on that in accepts, up to max.
func span(v []byte, i int, in func(byte) bool, max int) int {
	n := 0
	for i+n < len(v) && n < max && in(v[i+n]) {
		n++
	}
	return n
}

func isBase32Upper(c byte) bool { return (c >= 'A' && c <= 'Z') || (c >= '2' && c <= '7') }

func isAlnumUnderscore(c byte) bool { return isAlnum(c) || c == '_' }

func isBase64URL(c byte) bool { return isAlnum(c) || c == '_' || c == '-' }

func isAlnumDash(c byte) bool { return isAlnum(c) || c == '-' }

// awsKeyPrefix: the four letters AWS access key ids (and other unique ids
// of IAM) start with.
func awsKeyPrefix(p []byte) bool {
	switch string(p) {
	case "AKIA", "ASIA", "AGPA", "AIDA", "AROA", "ANPA", "ANVA", "AIPA", "ABIA", "ACCA":
		return true
	}
	return false
}

// findCloudKeys finds AWS access key ids (AKIA and its kin, then 16
// base-32 characters) and Google API keys (AIza, then 35 characters),
// wherever they start: key=AKIA…, xAKIA…, "AIza…". A longer run of the
// same characters is masked as far as the key's length.
//
// Accepted false positives: a word in capitals that starts with one of
// the prefixes and goes on with 16 more capitals or digits 2-7.
func findCloudKeys(v []byte, det int, out []Finding) []Finding {
	for i := 0; i+20 <= len(v); {
		k := bytes.IndexByte(v[i:len(v)-19], 'A')
		if k < 0 {
			break
		}
		k += i
		switch {
		case awsKeyPrefix(v[k:k+4]) && span(v, k+4, isBase32Upper, 16) == 16:
			out = append(out, Finding{Start: k, End: k + 20, det: det})
			i = k + 20
		case string(v[k:k+4]) == "AIza" && span(v, k+4, isBase64URL, 35) == 35:
			out = append(out, Finding{Start: k, End: k + 39, det: det})
			i = k + 39
		default:
			i = k + 1
		}
	}
	return out
}

// findTokens finds secret tokens by their prefixes, wherever they start
// (xghp_… glued to a word is found):
//   - GitHub: ghp_, gho_, ghu_, ghs_, ghr_ and 36 to 255 letters or digits;
//     github_pat_ and 22 to 255 letters, digits or underscores;
//   - Slack: xoxa-, xoxb-, xoxp-, xoxo-, xoxs-, xoxr- and 10 to 250
//     letters, digits or dashes;
//   - Stripe secret and restricted keys: sk_live_, sk_test_, rk_live_,
//     rk_test_ and 24 to 99 letters or digits;
//   - JWTs: three base64url parts of at least 8 characters joined by dots,
//     the first two starting eyJ (a JSON object).
//
// Accepted false positives: identifiers that happen to carry one of the
// prefixes and that many characters after it.
func findTokens(v []byte, det int, out []Finding) []Finding {
	add := func(start, end int) { out = append(out, Finding{Start: start, End: end, det: det}) }
	// Prefixes ending with an underscore.
	for i := 0; ; {
		k := bytes.IndexByte(v[i:], '_')
		if k < 0 {
			break
		}
		u := i + k
		i = u + 1
		switch {
		case u >= 3 && v[u-3] == 'g' && v[u-2] == 'h' && strings.IndexByte("pousr", v[u-1]) >= 0:
			if n := span(v, u+1, isAlnum, 255); n >= 36 {
				add(u-3, u+1+n)
				i = u + 1 + n
			}
		case u >= 6 && string(v[u-6:u]) == "github" && hasPrefix(v[u+1:], "pat_"):
			if n := span(v, u+5, isAlnumUnderscore, 255); n >= 22 {
				add(u-6, u+5+n)
				i = u + 5 + n
			}
		case u >= 2 && (v[u-2] == 's' || v[u-2] == 'r') && v[u-1] == 'k' &&
			(hasPrefix(v[u+1:], "live_") || hasPrefix(v[u+1:], "test_")):
			if n := span(v, u+6, isAlnum, 99); n >= 24 {
				add(u-2, u+6+n)
				i = u + 6 + n
			}
		}
	}
	for i := 0; ; {
		k := bytes.Index(v[i:], []byte("xox"))
		if k < 0 {
			break
		}
		k += i
		i = k + 1
		if k+5 <= len(v) && strings.IndexByte("abposr", v[k+3]) >= 0 && v[k+4] == '-' {
			if n := span(v, k+5, isAlnumDash, 250); n >= 10 {
				add(k, k+5+n)
				i = k + 5 + n
			}
		}
	}
	for i := 0; ; {
		k := bytes.Index(v[i:], []byte("eyJ"))
		if k < 0 {
			break
		}
		k += i
		i = k + 1
		if end := jwtEnd(v, k); end > 0 {
			add(k, end)
			i = end
		}
	}
	return out
}

func hasPrefix(b []byte, s string) bool { return len(b) >= len(s) && string(b[:len(s)]) == s }

// jwtEnd is where the JWT starting at v[k] ("eyJ") ends, or 0.
func jwtEnd(v []byte, k int) int {
	p := k
	for part := 0; part < 3; part++ {
		if part > 0 {
			if p >= len(v) || v[p] != '.' {
				return 0
			}
			p++
			if part == 1 && !hasPrefix(v[p:], "eyJ") {
				return 0
			}
		}
		n := span(v, p, isBase64URL, len(v))
		if n < 8 || (part < 2 && n < 11) {
			return 0
		}
		p += n
	}
	return p
}
