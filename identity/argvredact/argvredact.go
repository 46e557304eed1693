// Package argvredact masks the secrets a command line carries before it is
// recorded: the values of secret-named flags (--token=, --password, an
// attached mysql -pSECRET), the password of a URL's user information, the
// credentials of Authorization/Cookie/API-key header arguments, and
// secret-named NAME=value assignments, in an argv and in the shell text of
// an argument (sh -c SCRIPT, a libpq conninfo). It keeps the flag, the
// header's name and scheme and the URL's user, so a record still shows
// that a credential was passed, and it counts what it replaced, so a record
// can say that it was altered.
//
// It recognizes names and the short options of known tools, not secrets
// themselves: a secret passed positionally, or to an option of a tool it
// does not know under a name that does not look secret, is left as it is.
// It never fails: any input, however long or malformed, gives a result, the
// same one each time.
package argvredact

import (
	"sort"
	"strings"
)

// Marker replaces each secret value.
const Marker = "[redacted]"

// maxDepth bounds how deep shell text inside an argument is read (sh -c
// "sh -c '…'"): each level is a linear pass, and an adversary's nesting
// should not multiply them.
const maxDepth = 3

// Argv returns argv with each secret value replaced by Marker, and how
// many it replaced. argv is not modified; when nothing is replaced it is
// returned as it is.
func Argv(argv []string) ([]string, int) {
	if len(argv) == 0 {
		return argv, 0
	}
	ws := make([]word, len(argv))
	for i, a := range argv {
		ws[i] = word{val: a}
	}
	redactWords(ws, 0)
	total := 0
	var out []string
	for i := range ws {
		s, n := apply(argv[i], ws[i].spans)
		if n == 0 {
			continue
		}
		if out == nil {
			out = make([]string, len(argv))
			copy(out, argv)
		}
		out[i] = s
		total += n
	}
	if out == nil {
		return argv, 0
	}
	return out, total
}

// Line redacts a command line given as shell text (an ssh exec request),
// as Argv does the words the shell would make of it.
func Line(s string) (string, int) {
	return apply(s, redactText(s, 0))
}

// span is a secret's byte range in a word's value.
type span struct{ i, j int }

// word is one word of a command line. val is what the program sees.
// A word split from shell text also has its place in that text: start
// and end of the text each byte of val came from (a quoted or escaped
// byte comes from more than itself), its quoting, and the whole word's
// range (with its quotes).
type word struct {
	val        string
	start, end []int
	ctx        []byte
	from, to   int
	op         bool // a shell operator (; | & …): the next word starts a command
	spans      []span
}

// redactWords records in each word's spans what of its value is secret.
func redactWords(ws []word, depth int) {
	tool, login := "", false
	if len(ws) > 0 {
		tool, _ = toolName(ws[0].val)
	}
	for i := 0; i < len(ws); i++ {
		w := &ws[i]
		v := w.val
		if w.op {
			tool, login = "", false
			continue
		}
		if sp, ok := headerAt(v); ok {
			w.add(sp)
			continue
		}
		if consumed, handled := flagRules(ws, i, tool, login); handled {
			i += consumed
			continue
		}
		// A shell's -c argument is a script: its first word may be an
		// assignment, but the rest is commands, read word by word.
		script := i > 0 && isShell(tool) && shortHas(ws[i-1].val, 'c')
		if !script && (len(v) == 0 || v[0] != '-') {
			if t, ok := toolName(v); ok {
				tool, login = t, false
			}
			if v == "login" {
				login = true
			}
			if k, val, eq := strings.Cut(v, "="); eq && identName(k) && secretName(k, false) {
				if val != "" && val != Marker {
					w.add(span{len(k) + 1, len(v)})
				}
				continue
			}
		}
		for _, sp := range jsonSpans(v) {
			w.add(sp)
		}
		if depth < maxDepth && shellText(v) {
			w.spans = append(w.spans, redactText(v, depth+1)...)
			continue
		}
		for _, sp := range urlSpans(v) {
			w.add(sp)
		}
		if !strings.Contains(v, "://") {
			for _, sp := range formSpans(v, 0, len(v)) {
				w.add(sp)
			}
		}
	}
}

// flagRules applies the rules of options to ws[i]: it reports whether
// the word was an option they decided on, and how many following words
// it took as its value.
func flagRules(ws []word, i int, tool string, login bool) (consumed int, handled bool) {
	w := &ws[i]
	v := w.val
	if len(v) < 2 || v[0] != '-' {
		return 0, false
	}
	// next marks the following word, when there is one, as wholly secret
	// (or what follows sep in it).
	next := func(sep byte) int {
		if i+1 >= len(ws) || ws[i+1].op {
			return 0
		}
		if sp, ok := valueSpan(ws[i+1].val, 0, sep); ok {
			ws[i+1].add(sp)
		}
		return 1
	}
	if strings.HasPrefix(v, "--") {
		name, _, eq := strings.Cut(v[2:], "=")
		if !flagName(name) {
			return 0, false
		}
		lname := strings.ToLower(name)
		if isMySQL(tool) && mysqlLongOp[lname] {
			// --password takes no separate value in mysql: the next
			// word is the database.
			if eq {
				w.addValue(len(name)+3, 0)
			}
			return 0, true
		}
		if noValueLong[tool][lname] {
			// psql --password only makes it prompt
			if eq {
				w.addValue(len(name)+3, 0)
			}
			return 0, true
		}
		if sep, ok := curlLong[lname]; ok && tool == "curl" {
			if eq {
				w.addValue(len(name)+3, sep)
				return 0, true
			}
			return next(sep), true
		}
		if !secretName(name, false) {
			if eq {
				// --from-literal=password=x, --env=TOKEN=x
				w.addAssignment(len(name) + 3)
			}
			return 0, false
		}
		if eq {
			w.addValue(len(name)+3, 0)
			return 0, true
		}
		// A secret option's value is the next word even when it starts
		// with '-': getopt and pflag take it so.
		return next(0), true
	}
	if v[1] == '-' {
		return 0, false
	}
	for _, r := range tools[tool] {
		if v[1] != r.letter || (r.login && !login) {
			continue
		}
		if len(v) > 2 {
			w.addValue(2, r.sep)
			return 0, true
		}
		if r.attachedOnly {
			return 0, true
		}
		return next(r.sep), true
	}
	// Go's flag package and others take long names after one dash
	// (-token=…, -pass); only a whole secret word counts, so that a short
	// option with its value attached (-psecret) is not taken for a name.
	name, _, eq := strings.Cut(v[1:], "=")
	if eq && v[1] == 'D' && identName(name[1:]) && secretName(name[1:], false) {
		// a Java system property, -Ddb.password=x, -DPASSWORD=x
		w.addValue(len(name)+2, 0)
		return 0, true
	}
	if len(name) < 2 || !flagName(name) || !secretName(name, true) {
		return 0, false
	}
	if eq {
		w.addValue(len(name)+2, 0)
		return 0, true
	}
	return next(0), true
}

// shortHas says whether v is a cluster of short options holding c (-c, -lc).
func shortHas(v string, c byte) bool {
	return len(v) >= 2 && v[0] == '-' && v[1] != '-' && flagName(v[1:]) && strings.IndexByte(v[1:], c) >= 0
}

func isMySQL(tool string) bool {
	return strings.HasPrefix(tool, "mysql") || strings.HasPrefix(tool, "mariadb")
}

// valueSpan is the secret part of v from offset at: all of it, or what
// follows the first sep when sep is not 0. It is not ok when that part is
// empty or already the Marker.
func valueSpan(v string, at int, sep byte) (span, bool) {
	if at > len(v) {
		return span{}, false
	}
	if sep != 0 {
		k := strings.IndexByte(v[at:], sep)
		if k < 0 {
			return span{}, false
		}
		at += k + 1
	}
	if at >= len(v) || v[at:] == Marker {
		return span{}, false
	}
	return span{at, len(v)}, true
}

func (w *word) addValue(at int, sep byte) {
	if sp, ok := valueSpan(w.val, at, sep); ok {
		w.add(sp)
	}
}

// addAssignment marks the value of a NAME=value that starts at offset at
// of the word, when NAME is a secret's.
func (w *word) addAssignment(at int) {
	if k, _, eq := strings.Cut(w.val[at:], "="); eq && identName(k) && secretName(k, false) {
		w.addValue(at+len(k)+1, 0)
	}
}

func (w *word) add(sp span) {
	if sp.i < sp.j {
		w.spans = append(w.spans, sp)
	}
}

// headerAt finds a secret header at the start of v, or as the value of
// an option or assignment (--header=…, http.extraHeader=…).
func headerAt(v string) (span, bool) {
	if sp, ok := headerSpan(v); ok {
		return sp, true
	}
	k := strings.IndexByte(v, '=')
	if k <= 0 || !flagName(strings.TrimLeft(v[:k], "-")) {
		return span{}, false
	}
	sp, ok := headerSpan(v[k+1:])
	return span{sp.i + k + 1, sp.j + k + 1}, ok
}

// headerSpan finds an HTTP header with a secret name at the start of v
// ("Authorization: Bearer x", "X-Api-Key: x", "Cookie: a=b"), as curl -H
// and git -c http.extraHeader= take it, and returns its value, past an
// Authorization header's scheme.
func headerSpan(v string) (span, bool) {
	i := skipBlank(v, 0)
	j := i
	for j < len(v) && (alnum(v[j]) || v[j] == '-' || v[j] == '_') {
		j++
	}
	if j == i {
		return span{}, false
	}
	name := v[i:j]
	k := skipBlank(v, j)
	if k >= len(v) || v[k] != ':' {
		return span{}, false
	}
	k++
	if k < len(v) && v[k] == '/' { // a URL's scheme
		return span{}, false
	}
	if !secretName(name, false) {
		return span{}, false
	}
	k = skipBlank(v, k)
	if strings.Contains(strings.ToLower(name), "authorization") {
		m := k
		for m < len(v) && (alnum(v[m]) || v[m] == '-') {
			m++
		}
		if m > k && m < len(v) && (v[m] == ' ' || v[m] == '\t') {
			k = skipBlank(v, m)
		}
	}
	if k >= len(v) || v[k:] == Marker {
		// a secret header already redacted, or empty: nothing to
		// replace, and its words are not to be read again
		return span{k, k}, true
	}
	return span{k, len(v)}, true
}

// urlSpans finds, in v, the passwords of URLs' user information (any
// scheme), a user name that is itself a token, and the values of
// secret query parameters.
func urlSpans(v string) []span {
	var out []span
	qe, qm, parsed := -1, -1, 0
	for idx := 0; idx < len(v); {
		p := strings.Index(v[idx:], "://")
		if p < 0 {
			break
		}
		p += idx
		idx = p + 3
		s := p
		for s > 0 && (alnum(v[s-1]) || v[s-1] == '+' || v[s-1] == '.' || v[s-1] == '-') {
			s--
		}
		for s < p && !letter(v[s]) {
			s++
		}
		if s == p {
			continue
		}
		a := p + 3
		e := a
		for e < len(v) && !strings.ContainsRune(" \t\n'\"/?#<>`", rune(v[e])) {
			e++
		}
		if at := strings.LastIndexByte(v[a:e], '@'); at >= 0 {
			ui := v[a : a+at]
			if c := strings.IndexByte(ui, ':'); c >= 0 {
				if pw := ui[c+1:]; pw != "" && pw != Marker {
					out = append(out, span{a + c + 1, a + at})
				}
			} else if tokenLike(ui) {
				out = append(out, span{a, a + at})
			}
		}
		// The query runs to the next stop; each stretch of v is read for
		// it once, however many "://" an adversary puts in it.
		if qe < e {
			qe = e
			for qe < len(v) && !strings.ContainsRune(" \t\n'\"<>`#", rune(v[qe])) {
				qe++
			}
		}
		if qm < e {
			qm = len(v)
			if k := strings.IndexByte(v[e:], '?'); k >= 0 {
				qm = e + k
			}
		}
		if qm >= qe || qm < parsed {
			continue
		}
		parsed = qe
		out = append(out, formSpans(v, qm+1, qe)...)
	}
	return out
}

// formSpans finds the secret values of v[from:to] read as a query or a
// form (name=value pairs joined by & or ;): curl -d 'user=a&password=x'.
func formSpans(v string, from, to int) []span {
	if from == 0 && to == len(v) && !strings.ContainsAny(v, "&;") {
		return nil // one pair: an assignment, which the word rules read
	}
	var out []span
	for at := from; at < to; {
		pe := at
		for pe < to && v[pe] != '&' && v[pe] != ';' {
			pe++
		}
		if name, val, eq := strings.Cut(v[at:pe], "="); eq && val != "" && val != Marker &&
			(secretQuery[strings.ToLower(name)] || secretName(name, false)) {
			out = append(out, span{at + len(name) + 1, pe})
		}
		at = pe + 1
	}
	return out
}

// jsonSpans finds the string values of secret-named members in JSON text
// ("password": "x"), as curl -d and kubectl patch take it.
func jsonSpans(v string) []span {
	var out []span
	for i := 0; i < len(v); {
		q := strings.IndexByte(v[i:], '"')
		if q < 0 {
			break
		}
		q += i
		e := q + 1
		for e < len(v) && v[e] != '"' && v[e] != '\\' {
			e++
		}
		if e >= len(v) || v[e] != '"' {
			i = e
			continue
		}
		name := v[q+1 : e]
		k := e + 1
		for k < len(v) && (v[k] == ' ' || v[k] == '\t' || v[k] == '\n') {
			k++
		}
		if k >= len(v) || v[k] != ':' || !secretName(name, false) {
			i = e // the closing quote may open the next string
			continue
		}
		k++
		for k < len(v) && (v[k] == ' ' || v[k] == '\t' || v[k] == '\n') {
			k++
		}
		if k >= len(v) || v[k] != '"' {
			i = k
			continue
		}
		s := k + 1
		m := s
		for m < len(v) && v[m] != '"' {
			if v[m] == '\\' {
				m++
			}
			m++
		}
		end := min(m, len(v))
		if end > s && v[s:end] != Marker {
			out = append(out, span{s, end})
		}
		i = end + 1
	}
	return out
}

// apply replaces spans of s with the Marker, overlapping ones once, and
// counts the replacements.
func apply(s string, spans []span) (string, int) {
	if len(spans) == 0 {
		return s, 0
	}
	sort.Slice(spans, func(a, b int) bool {
		if spans[a].i != spans[b].i {
			return spans[a].i < spans[b].i
		}
		return spans[a].j > spans[b].j
	})
	var b strings.Builder
	b.Grow(len(s))
	last, n := 0, 0
	for k := 0; k < len(spans); {
		cur := spans[k]
		for k++; k < len(spans) && spans[k].i < cur.j; k++ {
			cur.j = max(cur.j, spans[k].j)
		}
		cur.i = max(cur.i, last)
		cur.j = min(cur.j, len(s))
		if cur.i >= cur.j {
			continue
		}
		b.WriteString(s[last:cur.i])
		b.WriteString(Marker)
		last = cur.j
		n++
	}
	b.WriteString(s[last:])
	return b.String(), n
}

func skipBlank(v string, i int) int {
	for i < len(v) && (v[i] == ' ' || v[i] == '\t') {
		i++
	}
	return i
}

func letter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func alnum(c byte) bool  { return letter(c) || c >= '0' && c <= '9' }

// flagName says whether s can be an option's name: letters, digits and
// - _ . only, so that other text after a dash is not read as one.
func flagName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !alnum(c) && c != '-' && c != '_' && c != '.' {
			return false
		}
	}
	return true
}

// identName says whether s can be the name of a NAME=value assignment
// (a variable, a conninfo keyword, helm's --set auth.password=).
func identName(s string) bool {
	return s != "" && (letter(s[0]) || s[0] == '_') && flagName(s)
}
