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

var detectors = map[string]*detector{
	"email": {
		name: "email",
		// Found inside words too: the local part takes what precedes the
		// @ up to a character an address cannot hold.
		scan: findEmails,
	},
	// Scanned by hand, not by a regexp: a regexp costs microseconds per
	// value, and card columns are scanned a row at a time.
	"card":        {name: "card", scan: findCards},
	"national_id": {name: "national_id", scan: findSSNs},
	"cloud_key":   {name: "cloud_key", scan: findCloudKeys},
	"token":       {name: "token", scan: findTokens},
	"private_key": {name: "private_key", scan: findPrivateKeys},
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

// emailRE is an address; every match holds exactly one @, with at most 64
// bytes of local part before it and only domain bytes after it.
var emailRE = regexp.MustCompile(`[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?)*\.[A-Za-z]{2,24}`)

// emailDomainMax bounds the domain bytes after an @ that the expression
// reads (a real domain has at most 253).
const emailDomainMax = 4 << 10

// findEmails finds emailRE's matches, running it only on a window around
// each @ (the local part's bytes before it, at most 64, and the domain's
// bytes after it): the matches are the same as over the whole value (the
// leftmost match uses the first @ that has one, and starts as far left as
// its local part goes), and a value full of @ (binary data holds one
// every 256 bytes) costs the windows, not a scan of the value per @.
func findEmails(v []byte, det int, out []Finding) []Finding {
	last := 0 // matches do not overlap
	for i := 0; i < len(v); {
		j := bytes.IndexByte(v[i:], '@')
		if j < 0 {
			break
		}
		at := i + j
		start := at
		for start > last && start > at-64 && emailLocalByte(v[start-1]) {
			start--
		}
		end := at + 1
		for end < len(v) && end-at <= emailDomainMax && (isAlnum(v[end]) || v[end] == '.' || v[end] == '-') {
			end++
		}
		if start < at {
			if loc := emailRE.FindIndex(v[start:end]); loc != nil {
				out = append(out, Finding{Start: start + loc[0], End: start + loc[1], det: det})
				last = start + loc[1]
				i = last
				continue
			}
		}
		i = at + 1
	}
	return out
}

func emailLocalByte(c byte) bool {
	return isAlnum(c) || c == '.' || c == '_' || c == '%' || c == '+' || c == '-'
}
