package cmdline

import (
	"errors"
	"strings"
)

// split cuts a command line into simple commands of words, as a POSIX
// shell would, and returns the text of its command substitutions apart.
// It errs on the side of more commands: a here-document's body is read as
// commands, a case pattern's `)` ends one.
func split(cmd string) (segs [][]word, subs []string, err error) {
	var (
		seg      []word
		cur      strings.Builder
		inWord   bool
		computed bool
		brace    bool // an unquoted { inside the word
		redirect bool // the next word is a redirection's target
	)
	endWord := func() {
		if !inWord {
			return
		}
		w := word{text: cur.String(), computed: computed || brace && cur.Len() > 1}
		if redirect {
			redirect = false
		} else {
			seg = append(seg, w)
		}
		cur.Reset()
		inWord, computed, brace = false, false, false
	}
	endSeg := func() {
		endWord()
		if len(seg) > 0 {
			segs = append(segs, seg)
		}
		seg = nil
	}
	for i := 0; i < len(cmd); i++ {
		c := cmd[i]
		switch c {
		case ' ', '\t', '\r':
			endWord()
		case '\n', ';', '&', '|', ')':
			endSeg()
		case '(':
			endSeg()
		case '<', '>':
			if inWord && allDigits(cur.String()) && !computed {
				cur.Reset()
				inWord = false
			}
			endWord()
			if i+1 < len(cmd) && cmd[i+1] == '(' {
				// Process substitution: a command of its own.
				inner, end, err := substitution(cmd, i)
				if err != nil {
					return nil, nil, err
				}
				subs = append(subs, inner)
				i = end
				continue
			}
			for i+1 < len(cmd) && strings.IndexByte("<>&|-", cmd[i+1]) >= 0 {
				i++
			}
			// >&2, <&- : the target is a descriptor, already consumed
			// when it follows & (digits are read as a word and dropped).
			redirect = true
		case '\'':
			end := strings.IndexByte(cmd[i+1:], '\'')
			if end < 0 {
				return nil, nil, errors.New("unterminated single quote")
			}
			cur.WriteString(cmd[i+1 : i+1+end])
			inWord = true
			i += end + 1
		case '"':
			inWord = true
			j := i + 1
			for ; j < len(cmd) && cmd[j] != '"'; j++ {
				switch cmd[j] {
				case '\\':
					if j+1 < len(cmd) && strings.IndexByte("$`\"\\\n", cmd[j+1]) >= 0 {
						j++
						if cmd[j] != '\n' {
							cur.WriteByte(cmd[j])
						}
						continue
					}
					cur.WriteByte('\\')
				case '$', '`':
					computed = true
					if cmd[j] == '$' && (j+1 >= len(cmd) || cmd[j+1] != '(') {
						cur.WriteByte('$')
						continue
					}
					inner, end, err := substitution(cmd, j)
					if err != nil {
						return nil, nil, err
					}
					subs = append(subs, inner)
					j = end
				default:
					cur.WriteByte(cmd[j])
				}
			}
			if j >= len(cmd) {
				return nil, nil, errors.New("unterminated double quote")
			}
			i = j
		case '\\':
			inWord = true
			if i+1 < len(cmd) {
				i++
				if cmd[i] != '\n' {
					cur.WriteByte(cmd[i])
				}
			}
		case '$', '`':
			inWord, computed = true, true
			if c == '$' && (i+1 >= len(cmd) || cmd[i+1] != '(') {
				cur.WriteByte('$')
				continue
			}
			inner, end, err := substitution(cmd, i)
			if err != nil {
				return nil, nil, err
			}
			subs = append(subs, inner)
			i = end
		case '*', '?', '[':
			inWord, computed = true, true
			cur.WriteByte(c)
		case '~':
			if !inWord {
				computed = true
			}
			inWord = true
			cur.WriteByte(c)
		case '{':
			brace = true
			inWord = true
			cur.WriteByte(c)
		case '#':
			if !inWord {
				for i+1 < len(cmd) && cmd[i+1] != '\n' {
					i++
				}
				continue
			}
			cur.WriteByte(c)
		default:
			inWord = true
			cur.WriteByte(c)
		}
	}
	endSeg()
	return segs, subs, nil
}

// substitution reads the command substitution (or process substitution)
// that starts at cmd[i]: a backquote, or "$(" / "<(" / ">(". It returns
// the command inside and the index of the substitution's last byte.
func substitution(cmd string, i int) (inner string, end int, err error) {
	if cmd[i] == '`' {
		end, inner, err = closeBackquote(cmd, i+1)
		return inner, end, err
	}
	end, err = closeParen(cmd, i+2)
	if err != nil {
		return "", 0, err
	}
	return cmd[i+2 : end], end, nil
}

// closeParen finds the ) that closes a ( whose inside starts at i.
func closeParen(s string, i int) (int, error) {
	depth := 1
	for ; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '\'':
			end := strings.IndexByte(s[i+1:], '\'')
			if end < 0 {
				return 0, errors.New("unterminated single quote")
			}
			i += end + 1
		case '(':
			depth++
		case ')':
			depth--
			if depth == 0 {
				return i, nil
			}
		}
	}
	return 0, errors.New("unterminated command substitution")
}

// closeBackquote finds the backquote that ends a substitution starting at
// i and returns the inner text with \` unescaped.
func closeBackquote(s string, i int) (int, string, error) {
	var b strings.Builder
	for ; i < len(s); i++ {
		switch s[i] {
		case '\\':
			if i+1 < len(s) {
				i++
				if s[i] != '`' && s[i] != '\\' && s[i] != '$' {
					b.WriteByte('\\')
				}
				b.WriteByte(s[i])
			}
		case '`':
			return i, b.String(), nil
		default:
			b.WriteByte(s[i])
		}
	}
	return 0, "", errors.New("unterminated backquote")
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
