package sqlclass

import (
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// Redacted is the placeholder that replaces a password literal in the text
// interlock journals.
const Redacted = "'[redacted]'"

// Redact replaces the password literals of a statement's text (the string
// after PASSWORD, a connection string that carries a password) with
// Redacted, and returns the originals in order. Text that does not scan is
// returned whole with ok false: the caller must then not journal it as is.
func Redact(text string) (out string, originals []string, ok bool) {
	res, err := pg.Scan(text)
	if err != nil {
		return "", nil, false
	}
	var b strings.Builder
	last := 0
	prev := pg.Token_NUL
	for _, t := range res.Tokens {
		start, end := int(t.Start), int(t.End)
		if start < last || end > len(text) || start > end {
			return "", nil, false
		}
		if t.Token == pg.Token_SCONST || t.Token == pg.Token_USCONST {
			lit := text[start:end]
			switch {
			case prev == pg.Token_PASSWORD || mentionsPassword(lit):
				b.WriteString(text[last:start])
				b.WriteString(Redacted)
				originals = append(originals, lit)
				last = end
			default:
				// Code in a literal (a DO body, a string given to EXECUTE)
				// can hold a PASSWORD clause of its own.
				if in, origs := redactInside(lit); len(origs) > 0 {
					b.WriteString(text[last:start])
					b.WriteString(in)
					originals = append(originals, origs...)
					last = end
				}
			}
		}
		if t.Token != pg.Token_SQL_COMMENT && t.Token != pg.Token_C_COMMENT {
			prev = t.Token
		}
	}
	b.WriteString(text[last:])
	return b.String(), originals, true
}

// redactInside replaces, within a literal that holds SQL (a DO body, a
// string given to EXECUTE or dblink), the quoted value after each
// PASSWORD: the run of quotes that opens it (' or ” or more, as the
// nesting escapes it) closes it. Best effort: SQL that builds the clause
// from pieces at run time is not seen.
func redactInside(lit string) (string, []string) {
	lower := strings.ToLower(lit)
	var b strings.Builder
	var origs []string
	last := 0
	for i := 0; ; {
		j := strings.Index(lower[i:], "password")
		if j < 0 {
			break
		}
		k := i + j + len("password")
		for k < len(lit) && strings.IndexByte(" \t\r\n", lit[k]) >= 0 {
			k++
		}
		q := k
		for q < len(lit) && lit[q] == '\'' {
			q++
		}
		if q == k {
			i = k
			continue
		}
		quote := lit[k:q]
		end := strings.Index(lit[q:], quote)
		if end < 0 {
			i = q
			continue
		}
		end += q
		b.WriteString(lit[last:k])
		b.WriteString(quote + "[redacted]" + quote)
		origs = append(origs, lit[q:end])
		last = end + len(quote)
		i = last
	}
	if len(origs) == 0 {
		return lit, nil
	}
	b.WriteString(lit[last:])
	return b.String(), origs
}
