package sqlclass

import (
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Statements that differ only in the values of their literal constants
// (pgbench's "... WHERE aid = 4711", sent as a simple query with a new
// number every time) share one class: the parse and the walk are done
// once per shape. Sharing is sound only where a constant's value cannot
// change what the parser reads or what the walk finds, so the shape key
// is built by a scanner that follows PostgreSQL's lexer exactly on a
// deliberately small subset of SQL and gives up on the rest:
//
//   - outside literals, the key is the text itself, byte for byte
//     (identifiers, quoted identifiers, keywords, operators, comments,
//     whitespace, $n parameters): two texts with one key have the same
//     tokens but for the literals;
//   - a literal is an unsigned decimal integer, d.d, or a plain '...'
//     string (standard_conforming_strings on, as the parser reads it;
//     no backslash at all), and its key is its token type: ICONST for an
//     integer that fits int32, FCONST for the rest, as PostgreSQL's lexer
//     decides; the grammar's actions depend on token types, not values;
//   - anything whose reading depends on more than its bytes is refused:
//     E'', B'', X'', N'', U&'' strings, dollar quotes, string
//     continuation across a newline, backslashes, numbers run into a
//     letter, a dot or an underscore (0x1F, 1_000, 1e5, 1.), a NUL or a
//     control character, an unterminated quote or comment.
//
// A shape is stored only after the text that made it was parsed in full
// and every literal the scanner found turned out to be an A_Const of the
// same type at the same position: a literal the grammar reads in any
// other way (a DO body, a COPY file name, FETCH's count, a typmod that
// picks a type) keeps its text out of the shape cache; a number a unary
// minus folds into counts as the constant at the minus (pgbench's
// "abalance + -4123"). A shape is used only for a class that does not depend
// on literal values (Class.literal), and never for a text with a string
// literal that mentions a password: the walk reads string values for
// PASSWORD clauses inside them (redactInside), the one place where a
// value changes a class that is otherwise shared.

// shapeLit is one literal the scanner found.
type shapeLit struct {
	start, end int
	// typ is 'i' (ICONST), 'f' (FCONST) or 's' (SCONST).
	typ byte
}

// shapeMark starts a literal's place in a key; no text the scanner
// accepts holds a NUL, so a key cannot be mistaken for a text.
const shapeMark = 0

// shapeOf scans text and returns its shape key (appended to buf) and its
// literals; ok is false when the text has no literal or holds anything
// the scanner does not follow.
func shapeOf(text string, buf []byte, lits []shapeLit) (key []byte, out []shapeLit, ok bool) {
	key, out = buf[:0], lits[:0]
	n := len(text)
	for i := 0; i < n; {
		b := text[i]
		switch {
		case b == 0 || b == '\\':
			return nil, nil, false
		case b < 0x20 && !isSpace(b):
			return nil, nil, false
		case b == '-' && i+1 < n && text[i+1] == '-':
			j := i + 2
			for j < n && text[j] != '\n' && text[j] != '\r' {
				if text[j] == 0 || text[j] == '\\' {
					return nil, nil, false
				}
				j++
			}
			key = append(key, text[i:j]...)
			i = j
		case b == '/' && i+1 < n && text[i+1] == '*':
			j, ok := skipBlockComment(text, i)
			if !ok {
				return nil, nil, false
			}
			key = append(key, text[i:j]...)
			i = j
		case b == '\'':
			if i > 0 && (isIdentByte(text[i-1]) || text[i-1] == '&') {
				// E'', B'', X'', N'', U&'': escapes or another type.
				return nil, nil, false
			}
			j, ok := skipString(text, i)
			if !ok || continues(text, j) {
				return nil, nil, false
			}
			out = append(out, shapeLit{start: i, end: j, typ: 's'})
			key = append(key, shapeMark, 's')
			i = j
		case b == '"':
			if i > 0 && text[i-1] == '&' {
				// U&"": unicode escapes, and a UESCAPE string after it.
				return nil, nil, false
			}
			j := i + 1
			for {
				if j >= n || text[j] == 0 {
					return nil, nil, false
				}
				if text[j] == '"' {
					if j+1 < n && text[j+1] == '"' {
						j += 2
						continue
					}
					j++
					break
				}
				j++
			}
			key = append(key, text[i:j]...)
			i = j
		case b == '$':
			// $n is a parameter; any other $ starts a dollar quote.
			j := i + 1
			for j < n && isDigit(text[j]) {
				j++
			}
			if j == i+1 || j < n && isIdentByte(text[j]) {
				return nil, nil, false
			}
			key = append(key, text[i:j]...)
			i = j
		case b == '.' && i+1 < n && isDigit(text[i+1]):
			// .5 is a number PostgreSQL starts at the dot.
			return nil, nil, false
		case isDigit(b):
			j := i
			for j < n && isDigit(text[j]) {
				j++
			}
			typ := byte('i')
			if v := strings.TrimLeft(text[i:j], "0"); len(v) > 10 || len(v) == 10 && v > "2147483647" {
				// process_integer_literal: what does not fit int32 is
				// an FCONST.
				typ = 'f'
			}
			if j+1 < n && text[j] == '.' && isDigit(text[j+1]) {
				j++
				for j < n && isDigit(text[j]) {
					j++
				}
				typ = 'f'
			}
			if j < n && (isIdentByte(text[j]) || text[j] == '.' || text[j] == '$') {
				// 0x1F, 1_000, 1e5, 12abc, 1., 1..2: other literal forms
				// (or a syntax error) that PostgreSQL versions read
				// differently.
				return nil, nil, false
			}
			out = append(out, shapeLit{start: i, end: j, typ: typ})
			key = append(key, shapeMark, typ)
			i = j
		case isIdentByte(b):
			j := i + 1
			for j < n && (isIdentByte(text[j]) || text[j] == '$') {
				j++
			}
			key = append(key, text[i:j]...)
			i = j
		default:
			key = append(key, b)
			i++
		}
	}
	if len(out) == 0 {
		return nil, nil, false
	}
	return key, out, true
}

func isDigit(b byte) bool { return b >= '0' && b <= '9' }

// isSpace is PostgreSQL's space class.
func isSpace(b byte) bool {
	return b == ' ' || b == '\t' || b == '\n' || b == '\r' || b == '\f' || b == '\v'
}

// skipBlockComment returns the end of the comment that starts at i; they
// nest in PostgreSQL.
func skipBlockComment(text string, i int) (int, bool) {
	depth := 0
	for j := i; j < len(text); {
		switch {
		case text[j] == 0 || text[j] == '\\':
			return 0, false
		case text[j] == '/' && j+1 < len(text) && text[j+1] == '*':
			depth++
			j += 2
		case text[j] == '*' && j+1 < len(text) && text[j+1] == '/':
			depth--
			j += 2
			if depth == 0 {
				return j, true
			}
		default:
			j++
		}
	}
	return 0, false
}

// skipString returns the end of the quoted string that starts at i (two
// quotes in a row are a quote inside it).
func skipString(text string, i int) (int, bool) {
	for j := i + 1; j < len(text); j++ {
		switch text[j] {
		case 0, '\\':
			return 0, false
		case '\'':
			if j+1 < len(text) && text[j+1] == '\'' {
				j++
				continue
			}
			return j + 1, true
		}
	}
	return 0, false
}

// continues says whether another string follows the one that ends at j
// with only whitespace and comments between: PostgreSQL joins 'a'
// newline 'b' into one literal. Any quote there is refused, newline or
// not.
func continues(text string, j int) bool {
	for j < len(text) {
		switch {
		case isSpace(text[j]):
			j++
		case text[j] == '-' && j+1 < len(text) && text[j+1] == '-':
			for j < len(text) && text[j] != '\n' && text[j] != '\r' {
				j++
			}
		case text[j] == '/' && j+1 < len(text) && text[j+1] == '*':
			end, ok := skipBlockComment(text, j)
			if !ok {
				return true
			}
			j = end
		default:
			return text[j] == '\''
		}
	}
	return false
}

// mentionsPasswordLit says whether a string literal of the text mentions
// a password, in any case: the walk reads such values (redactInside), so
// their class is not shared.
func mentionsPasswordLit(text string, lits []shapeLit) bool {
	for _, l := range lits {
		if l.typ == 's' && containsFold(text[l.start:l.end], "password") {
			return true
		}
	}
	return false
}

// containsFold is strings.Contains(strings.ToLower(s), sub) for a lower
// case ASCII sub, without the copy for ASCII s.
func containsFold(s, sub string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return strings.Contains(strings.ToLower(s), sub)
		}
	}
	for i := 0; i+len(sub) <= len(s); i++ {
		k := 0
		for k < len(sub) && lower(s[i+k]) == sub[k] {
			k++
		}
		if k == len(sub) {
			return true
		}
	}
	return false
}

func lower(b byte) byte {
	if b >= 'A' && b <= 'Z' {
		return b + 'a' - 'A'
	}
	return b
}

// literalsAreConsts says whether every literal the scanner found is an
// A_Const of its token's type at its position in the parse tree: then the
// grammar read each as a plain constant, and a text of the same shape is
// read the same way with other values.
func literalsAreConsts(tree *pg.Node, lits []shapeLit, text string) bool {
	consts := map[int32]byte{}
	var visit func(m protoreflect.Message)
	visit = func(m protoreflect.Message) {
		if ac, ok := m.Interface().(*pg.A_Const); ok {
			typ := byte('?')
			switch ac.Val.(type) {
			case *pg.A_Const_Ival:
				typ = 'i'
			case *pg.A_Const_Fval:
				typ = 'f'
			case *pg.A_Const_Sval:
				typ = 's'
			}
			if _, dup := consts[ac.Location]; dup {
				typ = '?'
			}
			consts[ac.Location] = typ
		}
		m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			switch {
			case fd.Message() == nil || fd.IsMap():
			case fd.IsList():
				l := v.List()
				for i := 0; i < l.Len(); i++ {
					visit(l.Get(i).Message())
				}
			default:
				visit(v.Message())
			}
			return true
		})
	}
	visit(tree.ProtoReflect())
	for _, l := range lits {
		if consts[int32(l.start)] == l.typ {
			continue
		}
		// A unary minus right before the number (spaces between) folds
		// into it: the grammar's doNegate negates the constant in place,
		// keeping its type, and moves its location to the minus. The
		// minus is in the key, so every text of the shape folds alike.
		m := l.start - 1
		for m >= 0 && isSpace(text[m]) {
			m--
		}
		if l.typ == 's' || m < 0 || text[m] != '-' || consts[int32(m)] != l.typ {
			return false
		}
	}
	return true
}
