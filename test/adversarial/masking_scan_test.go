package adversarial

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"testing"
)

// The masking suite's originals and the scanner that finds them, or any
// reversible form of one, in what the client received, in the journal's
// files and in an exported bundle.
//
// Every sensitive value seeded into a masking case's database is an
// msecret. A form of it is: the value itself, reversed, in hex, in base64
// (at each of the three byte alignments, so a value inside a larger
// base64 text is found too); the same for its distinctive parts (an
// email's local part, a card's digits without separators, a key without
// its prefix, each line of a PEM body). Matching is case-insensitive, so
// upper() and lower() of any form are forms too. Pieces: any 4 characters
// in a row of an email's local part (or of it reversed), and any run of 4
// or more digits, standing alone, that is part of a card's digits (or of
// them reversed; in the journal and exports, only in the fields that carry
// data) — except the card's last four, which the card detector keeps on
// purpose ("****-****-****-1111"); 16 characters in a row of a
// key, a token or a PEM body. Text is also scanned with its
// separators (spaces, dots, dashes, underscores, commas, ...) taken out,
// so "536.22.8417" or "z q v k" are found.
//
// Binary files (SQLite pages, the WAL) hold random bytes (hashes, salts,
// signatures) in which 4 given bytes turn up by chance, and their text
// holds many numbers; there the scanner looks only for the whole forms,
// 8 characters of a local part and 12 digits of a card ("raw" scans). The
// decoded entries and payloads get the full scan.

// msecret is one original.
type msecret struct {
	label string
	value string
	// local is an email's local part, digits a card's digits: their
	// pieces of 4 or more are forms too.
	local, digits string
	// parts are more distinctive parts (a key without its prefix, PEM
	// body lines).
	parts []string
}

// The originals. The email local parts use letters from g to z only
// (no hex digit can spell them) and no English word.
var (
	mEmail1 = "zqvkxwrtmhyp@vrxq-mail.test"
	mEmail2 = "wrkzqhvtxnpl@kvwz-post.test"
	mEmail3 = "ktvzwqrxhmsj@qzvx-web.test"
	// mEmail4 and mCard4 are invisible to the detectors (no top-level
	// domain; a failing Luhn check): only the column rule can mask them,
	// so every derivation that loses the column shows.
	mEmail4 = "mxqrvkzwhtpl@intranet"
	mCard1  = "4898 8943 9832 8537"
	mCard2  = "5329-1783-1921-1444"
	mCard3  = "4186849458128574"
	mCard4  = "6011-9256-4951-2270"

	mSSN1    = "536-22-8417"
	mSSN2    = "219-43-7765"
	mAWS1    = "AKIAQZ7XK2VWR5MTHJPL"
	mAWS2    = "AKIAOLTJ75525PRHYPIP"
	mGitHub  = "ghp_nmwWPjxCfUG8lf4MvQRgCjO79Kl9r3cxEsw3"
	mSlack   = "xoxb-432897561792-aCsoYiCpHcRb8k0MTmy6vkxN"
	mGoogle  = "AIzaWMtFutkTKj2OwS_mfvJJxEBtzKfEVKO2vME"
	mPEMBody = []string{
		"EerS3JpUWIzOZPiNMP3tJFkPV8kImWUmG8nbDft8SHYnYKcGQ2B1PtwACL5wb8zc",
		"bdgqnYCK+yFNE6kaMG3LaYxikquwOFcSTZGRzmyWvM1fFJF1BgtYV+1tgZDwxahU",
	}
	mPEMOpenBody = []string{
		"jwJUJKqu52tjCp3Pu0hpDCKLIdl12zzebLCT3wK5viaE/HCrqJTa/EwT2ljnzbFy",
		"XlG7soQvQPlvzohErYP47MXJHZftpv5iLL+Rii7telxj+/NbqHMoNb+KYQfHeuTd",
	}
	mPEM     = "-----BEGIN PRIVATE KEY-----\n" + strings.Join(mPEMBody, "\n") + "\n-----END PRIVATE KEY-----"
	mPEMOpen = "-----BEGIN RSA PRIVATE KEY-----\n" + strings.Join(mPEMOpenBody, "\n") + "\n"

	mVaultEmail = "hqzxvtwkrmpl@vltq-mail.test"
	mVaultCard  = "4518 3497 3662 2950"
)

func emailSecret(label, v string) *msecret {
	return &msecret{label: label, value: v, local: v[:strings.IndexByte(v, '@')]}
}

func cardSecret(label, v string) *msecret {
	var d []byte
	for i := 0; i < len(v); i++ {
		if v[i] >= '0' && v[i] <= '9' {
			d = append(d, v[i])
		}
	}
	return &msecret{label: label, value: v, digits: string(d)}
}

var mSecrets = []*msecret{
	emailSecret("customers.email(id=1)", mEmail1),
	emailSecret("customers.email(id=2)", mEmail2),
	emailSecret("customers.email(id=3)", mEmail3),
	emailSecret("customers.email(id=4, no TLD)", mEmail4),
	cardSecret("customers.card(id=1)", mCard1),
	cardSecret("customers.card(id=2)", mCard2),
	cardSecret("customers.card(id=3)", mCard3),
	cardSecret("customers.card(id=4, bad Luhn)", mCard4),
	{label: "national id (customers.note)", value: mSSN1, parts: []string{"536228417"}},
	{label: "national id (tickets.body)", value: mSSN2, parts: []string{"219437765"}},
	{label: "AWS key (customers.note)", value: mAWS1, parts: []string{mAWS1[4:]}},
	{label: "AWS key (vault.doc)", value: mAWS2, parts: []string{mAWS2[4:]}},
	{label: "GitHub token (customers.note)", value: mGitHub, parts: []string{mGitHub[4:]}},
	{label: "Slack token (vault.tags)", value: mSlack, parts: []string{mSlack[5:]}},
	{label: "Google API key (tickets.body)", value: mGoogle, parts: []string{mGoogle[4:]}},
	{label: "PEM private key (tickets.body)", value: mPEM, parts: mPEMBody},
	{label: "PEM key without END line (tickets.body)", value: mPEMOpen, parts: mPEMOpenBody},
	emailSecret("vault.blob email", mVaultEmail),
	cardSecret("vault.blob card", mVaultCard),
}

// needle is one form of a secret, lower case.
type needle struct {
	s    *msecret
	form string
	text string
}

// needleSet finds many needles in one pass: by their first four bytes.
type needleSet map[uint32][]needle

func key4(b []byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func (ns needleSet) add(n needle) {
	if len(n.text) < 4 {
		panic("masking suite: a needle shorter than 4 bytes: " + n.text)
	}
	k := key4([]byte(n.text))
	for _, x := range ns[k] {
		if x.text == n.text && x.s == n.s {
			return
		}
	}
	ns[k] = append(ns[k], n)
}

// find reports the needles in lower-cased h (at most one hit per needle).
func (ns needleSet) find(h []byte, seen map[string]bool, out []mhit) []mhit {
	for i := 0; i+4 <= len(h); i++ {
		for _, n := range ns[key4(h[i:])] {
			if bytes.HasPrefix(h[i:], []byte(n.text)) {
				id := n.s.label + "\x00" + n.form
				if seen[id] {
					continue
				}
				seen[id] = true
				out = append(out, mhit{secret: n.s.label, form: n.form, excerpt: excerpt(h, i, len(n.text))})
			}
		}
	}
	return out
}

func excerpt(h []byte, i, n int) string {
	a, b := max(0, i-12), min(len(h), i+n+12)
	return fmt.Sprintf("%q", h[a:b])
}

// mhit is one form found.
type mhit struct {
	secret, form, excerpt string
}

func (h mhit) String() string {
	return fmt.Sprintf("%s as %s (%s)", h.secret, h.form, short(h.excerpt, 90))
}

func reverse(s string) string {
	b := []byte(s)
	for i, j := 0, len(b)-1; i < j; i, j = i+1, j-1 {
		b[i], b[j] = b[j], b[i]
	}
	return string(b)
}

// b64Aligned is the part of base64 text that any base64 encoding holding
// s at byte offset k (mod 3) contains.
func b64Aligned(s string, k int) string {
	enc := base64.StdEncoding.EncodeToString(append(make([]byte, k), s...))
	if k > 0 {
		enc = enc[4:]
	}
	// Drop the last quantum: what follows s changes it.
	full := (len(s) + k) / 3 * 4
	if k > 0 {
		full -= 4
	}
	if full < len(enc) {
		enc = enc[:full]
	}
	return enc
}

var (
	// mFull are the needles of a full scan, mPieces its short pieces (4
	// characters of a local part), mRaw the needles of a raw scan.
	mFull, mPieces, mRaw needleSet
)

func init() {
	mFull, mPieces, mRaw = needleSet{}, needleSet{}, needleSet{}
	both := func(n needle) {
		mFull.add(n)
		// Short numbers turn up by chance among the many numbers of a
		// binary file; 12 digits and more do not.
		if len(n.text) >= 12 || strings.Trim(n.text, "0123456789") != "" {
			mRaw.add(n)
		}
	}
	for _, s := range mSecrets {
		bases := [][2]string{{"the original", s.value}}
		if s.local != "" {
			bases = append(bases, [2]string{"its local part", s.local})
		}
		if s.digits != "" {
			bases = append(bases, [2]string{"its digits", s.digits})
		}
		for _, p := range s.parts {
			bases = append(bases, [2]string{"a part (" + short(p, 12) + ")", p})
		}
		for _, b := range bases {
			for _, v := range [][2]string{{"", b[1]}, {"reversed ", reverse(b[1])}} {
				name := v[0] + b[0]
				both(needle{s, name, strings.ToLower(v[1])})
				both(needle{s, "hex of " + name, hex.EncodeToString([]byte(v[1]))})
				for k := 0; k < 3; k++ {
					if e := b64Aligned(v[1], k); len(e) >= 8 {
						both(needle{s, "base64 of " + name, strings.ToLower(e)})
					}
				}
				// Upper and lower case change the base64 and hex forms.
				for _, cv := range []string{strings.ToUpper(v[1]), strings.ToLower(v[1])} {
					if cv == v[1] {
						continue
					}
					both(needle{s, "hex of upper/lower " + name, hex.EncodeToString([]byte(cv))})
					for k := 0; k < 3; k++ {
						if e := b64Aligned(cv, k); len(e) >= 8 {
							both(needle{s, "base64 of upper/lower " + name, strings.ToLower(e)})
						}
					}
				}
			}
		}
		// 16 characters in a row of a key, a token or a PEM body.
		for _, p := range s.parts {
			l := strings.ToLower(p)
			for i := 0; len(l) >= 24 && i+16 <= len(l); i++ {
				both(needle{s, "16 characters of a part (" + short(p, 12) + ")", l[i : i+16]})
			}
		}
		for _, v := range [][2]string{{"", s.local}, {"reversed ", reverse(s.local)}} {
			l := strings.ToLower(v[1])
			for i := 0; i+4 <= len(l); i++ {
				mPieces.add(needle{s, v[0] + "4+ characters of its local part", l[i : i+4]})
			}
			for i := 0; i+8 <= len(l); i++ {
				mRaw.add(needle{s, v[0] + "8+ characters of its local part", l[i : i+8]})
			}
		}
		for _, v := range [][2]string{{"", s.digits}, {"reversed ", reverse(s.digits)}} {
			for i := 0; i+12 <= len(v[1]); i++ {
				mRaw.add(needle{s, v[0] + "12+ of its digits", v[1][i : i+12]})
			}
		}
	}
}

// separators are taken out of text for the second pass of a full scan.
func isSep(c byte) bool {
	switch c {
	case ' ', '.', '-', '_', ',', ';', ':', '|', '/', '\\', '\t', '\n', '\r', '\'', '"', '(', ')', '{', '}', '[', ']', '+', '#', '*', '=':
		return true
	}
	return false
}

func stripSeps(h []byte) []byte {
	out := make([]byte, 0, len(h))
	for _, c := range h {
		if !isSep(c) {
			out = append(out, c)
		}
	}
	return out
}

// digitRuns reports runs of 4 or more digits, standing alone, that are part
// of a card's digits (or of them reversed), other than its last four; and
// runs that hold 8 of its digits in a row.
func digitRuns(h []byte, seen map[string]bool, out []mhit) []mhit {
	for i := 0; i < len(h); {
		if h[i] < '0' || h[i] > '9' {
			i++
			continue
		}
		j := i
		for j < len(h) && h[j] >= '0' && h[j] <= '9' {
			j++
		}
		run := string(h[i:j])
		if len(run) >= 4 {
			for _, s := range mSecrets {
				if s.digits == "" {
					continue
				}
				last := s.digits[len(s.digits)-4:]
				for _, d := range [][2]string{{"", s.digits}, {"reversed ", reverse(s.digits)}} {
					form := ""
					switch {
					case run == last || run == reverse(last):
					case strings.Contains(d[1], run):
						form = d[0] + fmt.Sprintf("%d of its digits", len(run))
					case len(run) > 8:
						for k := 0; k+8 <= len(d[1]); k++ {
							if strings.Contains(run, d[1][k:k+8]) {
								form = d[0] + "8+ of its digits inside a longer number"
								break
							}
						}
					}
					if form != "" && !seen[s.label+"\x00"+form] {
						seen[s.label+"\x00"+form] = true
						out = append(out, mhit{secret: s.label, form: form, excerpt: excerpt(h, i, j-i)})
					}
				}
			}
		}
		i = j
	}
	return out
}

// randomToken says a token (letters, digits and + / = _ -) looks like an
// id, a hash or a signature rather than text: hex of 8 characters or more
// with letters and digits (a UUID, a session id), or 16 characters or
// more mixing upper case, lower case and digits (base64). Four given
// characters turn up in such tokens by chance, so the short pieces are
// not looked for in them (the whole forms still are).
func randomToken(t []byte) bool {
	var hexOnly, upper, lower, digit, letter = true, false, false, false, false
	for _, c := range t {
		switch {
		case c >= '0' && c <= '9':
			digit = true
		case c >= 'a' && c <= 'z':
			lower, letter = true, true
			hexOnly = hexOnly && c <= 'f'
		case c >= 'A' && c <= 'Z':
			upper, letter = true, true
			hexOnly = hexOnly && c <= 'F'
		case c == '-':
		default:
			hexOnly = false
		}
	}
	return hexOnly && letter && digit && len(t) >= 8 || upper && lower && digit && len(t) >= 16
}

func isTokenByte(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '+' || c == '/' || c == '=' || c == '_' || c == '-'
}

// withoutRandomTokens is text with its random-looking tokens blanked.
func withoutRandomTokens(text []byte) []byte {
	out := append([]byte(nil), text...)
	for i := 0; i < len(out); {
		if !isTokenByte(out[i]) {
			i++
			continue
		}
		j := i
		for j < len(out) && isTokenByte(out[j]) {
			j++
		}
		if randomToken(text[i:j]) {
			for k := i; k < j; k++ {
				out[k] = ' '
			}
		}
		i = j
	}
	return out
}

// scanFull is the full scan of one text (a value, a message field, a
// journal string).
func scanFull(text []byte) []mhit { return scanText(text, true) }

// scanText is the full scan, with or without the short pieces of card
// digits: a journal's metadata (pids, ports, counts, times) is full of
// short numbers, so they are looked for only where data goes (values,
// SQL, errors, column names).
func scanText(text []byte, digitPieces bool) []mhit {
	seen := map[string]bool{}
	h := bytes.ToLower(text)
	out := mFull.find(h, seen, nil)
	p := bytes.ToLower(withoutRandomTokens(text))
	out = mPieces.find(p, seen, out)
	if digitPieces {
		out = digitRuns(p, seen, out)
	}
	n := len(out)
	if s := stripSeps(h); len(s) != len(h) {
		out = mFull.find(s, seen, out)
	}
	if s := stripSeps(p); len(s) != len(p) {
		out = mPieces.find(s, seen, out)
		if digitPieces {
			out = digitRuns(s, seen, out)
		}
	}
	for i := n; i < len(out); i++ {
		out[i].form += " (separators taken out)"
	}
	return out
}

// scanRaw is the scan of binary content.
func scanRaw(b []byte) []mhit {
	return mRaw.find(bytes.ToLower(b), map[string]bool{}, nil)
}

// mFinding is a hit and where it was found.
type mFinding struct {
	where string
	hit   mhit
}

// category is the kind of place a finding is in: the client message, the
// journal file, the kind of journal entry, the export file.
func category(where string) string {
	switch {
	case strings.HasPrefix(where, "client: "):
		w := strings.TrimPrefix(where, "client: ")
		if i := strings.Index(w, " answering "); i >= 0 {
			w = w[:i]
		}
		return "client " + w
	case strings.HasPrefix(where, "journal file "):
		w := strings.TrimPrefix(where, "journal file ")
		if i := strings.Index(w, " ("); i >= 0 {
			w = w[:i]
		}
		return "journal file " + w
	case strings.HasPrefix(where, "journal entry #"):
		f := strings.Fields(where)
		cat := "journal entry " + f[3]
		if strings.Contains(where, " payload") {
			cat += " payload"
		}
		return cat
	case strings.HasPrefix(where, "export "):
		return "export " + strings.Fields(where)[1]
	case strings.HasPrefix(where, "OCSF export"):
		return "OCSF export"
	}
	return where
}

// byCategory is, for each category, the secrets found there.
func byCategory(fs []mFinding) (cats []string, secrets map[string][]string) {
	secrets = map[string][]string{}
	seen := map[string]bool{}
	for _, f := range fs {
		c := category(f.where)
		if _, ok := secrets[c]; !ok {
			cats = append(cats, c)
			secrets[c] = nil
		}
		if k := c + "\x00" + f.hit.secret; !seen[k] {
			seen[k] = true
			secrets[c] = append(secrets[c], f.hit.secret)
		}
	}
	sort.Strings(cats)
	for _, c := range cats {
		sort.Strings(secrets[c])
	}
	return cats, secrets
}

// summarizeFindings says which originals are where, then the first
// places in detail, for a failure message.
func summarizeFindings(fs []mFinding, max int) string {
	var b strings.Builder
	cats, secrets := byCategory(fs)
	b.WriteString("\n    where, and whose:")
	for _, c := range cats {
		fmt.Fprintf(&b, "\n      %s: %s", c, strings.Join(secrets[c], ", "))
	}
	b.WriteString("\n    the first places in detail:")
	byWhere := map[string][]string{}
	var order []string
	for _, f := range fs {
		if _, ok := byWhere[f.where]; !ok {
			order = append(order, f.where)
		}
		byWhere[f.where] = append(byWhere[f.where], f.hit.String())
	}
	n := 0
	for _, w := range order {
		hs := byWhere[w]
		sort.Strings(hs)
		if n >= max {
			fmt.Fprintf(&b, "\n      … and %d more places", len(order)-n)
			break
		}
		n++
		fmt.Fprintf(&b, "\n      %s: %d form(s): %s", w, len(hs), strings.Join(firstN(hs, 3), "; "))
		if len(hs) > 3 {
			fmt.Fprintf(&b, "; … %d more", len(hs)-3)
		}
	}
	return b.String()
}

func firstN(s []string, n int) []string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// TestMaskingScanner checks the scanner itself: it finds the forms it
// promises, and nothing in what masking is meant to leave.
func TestMaskingScanner(t *testing.T) {
	found := []string{
		mEmail1, strings.ToUpper(mEmail2), reverse(mEmail3), "prefix " + mEmail4,
		base64.StdEncoding.EncodeToString([]byte("{\"e\":\"" + mEmail1 + "\"}")),
		hex.EncodeToString([]byte(strings.ToUpper(mEmail4))),
		"(" + mEmail4[2:6] + ")", reverse(mEmail4[:5]), "z q v k x w r t",
		mCard1, "4898.8943", "43 9832", reverse("48988943"), "x4186849458128574x", "60119256",
		"536.22.8417", "AKIA" + "x" + mAWS1[4:], mGitHub, mPEMBody[1], mPEMOpenBody[0][3:40],
		"\\x" + hex.EncodeToString([]byte(mVaultEmail)),
	}
	for _, s := range found {
		if len(scanFull([]byte(s))) == 0 {
			t.Errorf("the scanner misses %q", s)
		}
	}
	clean := []string{
		"****", "***@***", "****-****-****-8537", "****-****-****-1444", "***-**-****", "[REDACTED token]", "[REDACTED private_key]",
		"Ada Brennan", "Omar Ekwueme", "Lise Thornby", "Ravi Okafor", "prefers post", "call after five; ssn ***-**-****",
		"2000-01-01 00:00:00+00", "00000000-0000-0000-0000-000000000000", "null", "<masked/>",
		"15.8 (Debian 15.8-1.pgdg120+1)", "SELECT 4", "order 1", "relation with OID 16384 does not exist",
		"statement denied by interlock rule \"pii\": the result cannot be masked",
		"session a24b01-d5ef-7221-84fd-fbe3f1", "fe43624d135a7221", "24b01a9fa79d7831b30e2c521419",
		"— interlock gcg4wcocou0phmtrgqriiyevnenkXq+3/Ab=", letterName(4200),
	}
	for _, s := range clean {
		if hs := scanFull([]byte(s)); len(hs) > 0 {
			t.Errorf("the scanner finds %s in %q", hs[0], s)
		}
	}
	for _, s := range mSetup {
		if strings.HasPrefix(s, "CREATE") {
			if hs := scanFull([]byte(s)); len(hs) > 0 {
				t.Errorf("the scanner finds %s in the setup %q", hs[0], s)
			}
		}
	}
	// A secret's pieces are not pieces of another secret.
	for _, s := range mSecrets {
		for _, h := range scanFull([]byte(s.value)) {
			if h.secret != s.label {
				t.Errorf("%s holds a form of %s: %s", s.label, h.secret, h)
			}
		}
	}
}
