package policy

import "bytes"

// Finders of numbers: payment cards and social security numbers.

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
