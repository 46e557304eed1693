package config

import (
	"bytes"
	"strconv"
	"strings"
	"unicode/utf8"
)

// syntaxError turns an error from the YAML parser into an *Error with the
// line it names.
func syntaxError(name string, data []byte, err error) *Error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	} else {
		// The parser leaves the line out when its marks are on the first
		// line, and for reader and anchor errors; find those lines here.
		switch {
		case strings.Contains(msg, "control characters"), strings.Contains(msg, "UTF-8"), strings.Contains(msg, "Unicode"):
			line = badCharLine(data)
		case strings.HasPrefix(msg, "unknown anchor '"):
			anchor := strings.TrimSuffix(strings.TrimPrefix(msg, "unknown anchor '"), "' referenced")
			if i := bytes.Index(data, []byte("*"+anchor)); i >= 0 {
				line = lineOfOffset(data, i)
			}
		default:
			line = 1
		}
	}
	if line > 0 && (strings.Contains(msg, "cannot start any token") || strings.Contains(msg, "tab character")) {
		// A tab in the indentation is the usual cause; the parser may name
		// the line before it.
		if tl := tabIndentLine(data, line); tl > 0 {
			line, msg = tl, "a tab indents this line; YAML indents with spaces only"
		}
	}
	return &Error{File: name, Line: line, Msg: "invalid YAML: " + msg, err: err}
}

// badCharLine returns the line of the first byte that is not valid UTF-8 or
// is a character YAML does not allow, or 0.
func badCharLine(data []byte) int {
	for n, l := range yamlLines(data) {
		for i := 0; i < len(l); {
			r, size := utf8.DecodeRune(l[i:])
			switch {
			case r == utf8.RuneError && size <= 1:
				return n + 1
			case r == '\t':
			case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == 0xfffe || r == 0xffff:
				return n + 1
			}
			i += size
		}
	}
	return 0
}

// tabIndentLine returns line or the line after it, whichever first has a
// tab in its indentation, or 0.
func tabIndentLine(data []byte, line int) int {
	lines := yamlLines(data)
	for n := line; n <= line+1 && n <= len(lines); n++ {
		l := lines[n-1]
		indent := l[:len(l)-len(bytes.TrimLeft(l, " \t"))]
		if bytes.IndexByte(indent, '\t') >= 0 {
			return n
		}
	}
	return 0
}

// lineOfOffset returns the 1-based line holding data[off].
func lineOfOffset(data []byte, off int) int {
	return len(yamlLines(data[:off]))
}

// yamlLines splits data into lines the way the YAML parser counts them:
// a line ends at \n, \r\n, \r, U+0085, U+2028 or U+2029.
func yamlLines(data []byte) [][]byte {
	var lines [][]byte
	start := 0
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		brk := 0
		switch {
		case r == '\r' && i+1 < len(data) && data[i+1] == '\n':
			brk = 2
		case r == '\n' || r == '\r' || r == 0x85 || r == 0x2028 || r == 0x2029:
			brk = size
		}
		if brk > 0 {
			lines = append(lines, data[start:i])
			i += brk
			start = i
			continue
		}
		i += size
	}
	return append(lines, data[start:])
}
