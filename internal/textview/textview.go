// Package textview renders text a client controls (SQL, commands,
// executable paths, error strings) for a person to read: every byte is
// visible, nothing moves the cursor or flips the reading order, and
// nothing is cut without saying how much.
//
// An approver decides on what they read. A terminal interprets ESC, CR,
// backspace and bidi overrides; a table cell shows one line; a view that
// cuts at N bytes hides the rest. Each of those let a client show the
// approver one thing and run another (issue 13). Views call Escape (one
// line, for table cells), Lines (every line, numbered) or Cut (bounded,
// with the count of what was left out) instead of printing raw text.
package textview

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Hash is the hex SHA-256 of the exact operation text: the value an
// approver passes to `interlock approvals approve --expect`.
func Hash(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// Escape returns s with every byte a terminal, a browser or a spreadsheet
// might not show as itself made visible: C0 and C1 controls (including
// newline and tab) as \n, \t, \r, \xNN or \u0085; invalid UTF-8 as \xNN;
// bidi controls, zero-width and other invisible format characters as
// \uNNNN. A backslash is doubled, so the escaped form reads back to
// exactly one text. The result is printable and one line.
func Escape(s string) string {
	return escape(s, false)
}

// EscapeLine is Escape for one line of a multi-line view: a tab stays a
// tab (it cannot hide text) and no newline is expected.
func EscapeLine(s string) string {
	return escape(s, true)
}

func escape(s string, keepTab bool) string {
	if clean(s, keepTab) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\t' && keepTab:
			b.WriteByte('\t')
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		case hidden(r):
			if r > 0xffff {
				fmt.Fprintf(&b, `\U%08x`, r)
			} else {
				fmt.Fprintf(&b, `\u%04x`, r)
			}
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// clean reports whether s needs no escaping (the common case: no copy).
func clean(s string, keepTab bool) bool {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c == '\\' || c == 0x7f || (c < 0x20 && !(keepTab && c == '\t')) {
				return false
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && n <= 1) || hidden(r) {
			return false
		}
		i += n
	}
	return true
}

// hidden reports a rune that is not shown as itself: C1 controls, format
// characters (Cf: bidi embeddings, overrides and isolates, zero-width
// space/joiners, the BOM, soft hyphen, tag characters), line and paragraph
// separators, and the noncharacters/private use a font may draw as
// nothing. Variation selectors hide text too.
func hidden(r rune) bool {
	switch {
	case r >= 0x80 && r < 0xa0:
		return true
	case r == 0x2028 || r == 0x2029:
		return true
	case unicode.Is(unicode.Cf, r), unicode.Is(unicode.Co, r), unicode.Is(unicode.Variation_Selector, r):
		return true
	case r == 0x115f || r == 0x1160 || r == 0x3164 || r == 0xffa0: // Hangul fillers: blank glyphs
		return true
	case r&0xfffe == 0xfffe || (r >= 0xfdd0 && r <= 0xfdef):
		return true
	}
	return !unicode.IsPrint(r) && r != ' ' && !unicode.IsSpace(r)
}

// EscapeMultiline is EscapeLine applied to each line of s, the lines
// kept apart by real newlines: for a view that shows multi-line text as
// multi-line (a pre-wrap HTML cell). CR, ESC and the rest are escaped as
// in Escape, so no line can overwrite or hide another.
func EscapeMultiline(s string) string {
	parts := strings.Split(s, "\n")
	for i, p := range parts {
		parts[i] = EscapeLine(p)
	}
	return strings.Join(parts, "\n")
}

// Cut returns Escape(s) bounded to about max bytes of the original text.
// When it cut, it says so and how much: "… 1234 more bytes". The cut
// falls on a rune boundary. max <= 0 means no bound.
func Cut(s string, max int) string {
	if max <= 0 || len(s) <= max {
		return Escape(s)
	}
	i := max
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	n := len(s) - i
	return Escape(s[:i]) + "… " + strconv.Itoa(n) + " more " + plural(n, "byte", "bytes")
}

// Summary is a one-line view of possibly multi-line text for a table
// cell: its first line, escaped and bounded to max bytes, followed by what
// was left out ("(+2 lines, 130 more bytes)"). It never presents part of
// the text as the whole.
func Summary(s string, max int) string {
	first, rest, multi := strings.Cut(s, "\n")
	if !multi {
		return Cut(s, max)
	}
	out := Cut(first, max)
	more := len(rest) + 1 // the newline is a byte of the text too
	lines := strings.Count(rest, "\n") + 1
	return fmt.Sprintf("%s (+%d %s, %d more %s)", out, lines, plural(lines, "line", "lines"), more, plural(more, "byte", "bytes"))
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// Lines returns every line of s, each escaped (tabs kept) and numbered
// from 1, for a view that shows the whole text. A text that ends in a
// newline has an empty last line, shown, so a trailing newline is not
// invisible. A CR inside a line is escaped: it cannot overwrite the line
// on a terminal.
func Lines(s string) []string {
	parts := strings.Split(s, "\n")
	w := len(strconv.Itoa(len(parts)))
	out := make([]string, len(parts))
	for i, p := range parts {
		out[i] = fmt.Sprintf("%*d| %s", w, i+1, EscapeLine(p))
	}
	return out
}

// Block is Lines joined with newlines and indented by prefix: the
// multi-line view of a text in `approvals show` and the like.
func Block(s, prefix string) string {
	ls := Lines(s)
	for i := range ls {
		ls[i] = prefix + ls[i]
	}
	return strings.Join(ls, "\n")
}

// CSVCell is Escape(s) made safe to open in a spreadsheet: a cell that
// would start with = + - @ (or a tab/CR, escaped already) is read as a
// formula by Excel, LibreOffice and Sheets, so it gets a leading
// apostrophe, the convention those programs show as text (OWASP "CSV
// injection"). The original text stays in the journal and the JSON
// exports.
func CSVCell(s string) string {
	e := Escape(s)
	if e != "" && strings.ContainsRune("=+-@", rune(e[0])) {
		return "'" + e
	}
	return e
}
