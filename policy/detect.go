package policy

import (
	"bytes"
	"regexp"
)

// A detector finds sensitive values inside text. Each pairs a cheap
// pattern with a validator, so that look-alikes (a 16-digit timestamp, an
// order number) are not masked: a card number must pass Luhn and carry a
// real issuer prefix and length, an SSN must have a valid area, group and
// serial, and so on.
type detector struct {
	name string
	re   *regexp.Regexp
	// valid confirms a candidate match; nil accepts every match.
	valid func(m []byte) bool
	// pre is a cheap test every value with a match passes: values that
	// fail it are skipped without running the regexp.
	pre func(v []byte) bool
	// scan, when set, finds matches instead of re.
	scan func(v []byte, name string, out []Finding) []Finding
}

func hasByte(c byte) func([]byte) bool {
	return func(v []byte) bool { return bytes.IndexByte(v, c) >= 0 }
}

func hasAny(subs ...string) func([]byte) bool {
	return func(v []byte) bool {
		for _, s := range subs {
			if bytes.Contains(v, []byte(s)) {
				return true
			}
		}
		return false
	}
}

// findCards finds runs of 13 to 19 digits, single spaces or dashes
// allowed between them, standing alone (no letter, digit or underscore
// right before or after), that pass validCard.
func findCards(v []byte, name string, out []Finding) []Finding {
	for i := 0; i < len(v); {
		if !isDigit(v[i]) || (i > 0 && isWord(v[i-1])) {
			i++
			continue
		}
		j, digits, last := i, 0, i
		for j < len(v) {
			if isDigit(v[j]) {
				digits++
				last = j
				j++
				continue
			}
			if (v[j] == ' ' || v[j] == '-') && j+1 < len(v) && isDigit(v[j+1]) {
				j++
				continue
			}
			break
		}
		end := last + 1
		if digits >= 13 && digits <= 19 && (end == len(v) || !isWord(v[end])) && validCard(v[i:end]) {
			out = append(out, Finding{Detector: name, Start: i, End: end})
		}
		i = end
	}
	return out
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isWord(c byte) bool { return isDigit(c) || c == '_' || (c|0x20 >= 'a' && c|0x20 <= 'z') }

var detectors = map[string]*detector{
	"email": {
		name: "email",
		re:   regexp.MustCompile(`[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?)*\.[A-Za-z]{2,24}`),
		pre:  hasByte('@'),
	},
	"card": {
		// Found by findCards, not a regexp: card columns are scanned a
		// row at a time, and a regexp costs microseconds per value.
		name: "card",
		scan: findCards,
	},
	"national_id": {
		// US Social Security numbers, written with dashes.
		name:  "national_id",
		re:    regexp.MustCompile(`\b\d{3}-\d{2}-\d{4}\b`),
		valid: validSSN,
		pre:   ssnShape,
	},
	"cloud_key": {
		// AWS access key ids; Google API keys.
		name: "cloud_key",
		re:   regexp.MustCompile(`\b(?:(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z2-7]{16}|AIza[0-9A-Za-z_\-]{35})\b`),
		pre:  hasAny("AKIA", "ASIA", "AGPA", "AIDA", "AROA", "ANPA", "ANVA", "AIPA", "AIza"),
	},
	"token": {
		// GitHub, Slack, Stripe-style secret tokens, and JWTs.
		name: "token",
		re: regexp.MustCompile(`\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255}|xox[abposr]-[A-Za-z0-9\-]{10,250}|sk_(?:live|test)_[A-Za-z0-9]{24,99}|` +
			`eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,})\b`),
		pre: hasAny("gh", "github_pat_", "xox", "sk_", "eyJ"),
	},
	"private_key": {
		name: "private_key",
		re:   regexp.MustCompile(`-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----[\s\S]*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----`),
		pre:  hasAny("PRIVATE KEY-----"),
	},
}

// Finding is one sensitive value a detector found.
type Finding struct {
	Detector   string
	Start, End int
}

// Detect runs the named detectors over v and returns what they found, in
// order and without overlaps.
func Detect(names []string, v []byte) []Finding {
	var buf [8]*detector
	ds := buf[:0]
	for _, n := range names {
		if d := detectors[n]; d != nil {
			ds = append(ds, d)
		}
	}
	return detectInto(nil, ds, v)
}

// detectInto is Detect with the detectors looked up, appending to out
// (reused between values).
func detectInto(out []Finding, ds []*detector, v []byte) []Finding {
	for _, d := range ds {
		if d.pre != nil && !d.pre(v) {
			continue
		}
		if d.scan != nil {
			out = d.scan(v, d.name, out)
			continue
		}
		for _, loc := range d.re.FindAllIndex(v, -1) {
			if d.valid != nil && !d.valid(v[loc[0]:loc[1]]) {
				continue
			}
			out = append(out, Finding{Detector: d.name, Start: loc[0], End: loc[1]})
		}
	}
	return dropOverlaps(out)
}

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
			continue
		}
		out = append(out, f)
	}
	return out
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

// validSSN rejects numbers the SSA never issues: area 000, 666 or 9xx,
// group 00, serial 0000.
func validSSN(m []byte) bool {
	if len(m) != 11 {
		return false
	}
	area := int(m[0]-'0')*100 + int(m[1]-'0')*10 + int(m[2]-'0')
	group := int(m[4]-'0')*10 + int(m[5]-'0')
	serial := int(m[7]-'0')*1000 + int(m[8]-'0')*100 + int(m[9]-'0')*10 + int(m[10]-'0')
	return area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

// MaskDetectorNames lists every detector.
func MaskDetectorNames() []string {
	return []string{"email", "card", "national_id", "cloud_key", "token", "private_key"}
}

// ssnShape reports whether v holds ddd-dd-dddd anywhere.
func ssnShape(v []byte) bool {
	digit := func(i int) bool { return v[i] >= '0' && v[i] <= '9' }
	for i := 3; i+7 < len(v); i++ {
		if v[i] == '-' && v[i+3] == '-' && digit(i-1) && digit(i-2) && digit(i-3) && digit(i+1) && digit(i+2) &&
			digit(i+4) && digit(i+5) && digit(i+6) && digit(i+7) {
			return true
		}
	}
	return false
}
