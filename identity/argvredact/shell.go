package argvredact

// redactText reads text as the shell would split it (quotes, backslash
// escapes, operators) and returns the spans of text that the words' rules
// find secret. A span that would cut across quoting covers its whole word
// instead, so that the text stays well formed and nothing of it is left.
func redactText(text string, depth int) []span {
	ws := splitShell(text)
	if len(ws) == 0 {
		return nil
	}
	redactWords(ws, depth)
	var out []span
	for k := range ws {
		w := &ws[k]
		for _, sp := range w.spans {
			out = append(out, w.toText(sp))
		}
	}
	return out
}

// toText maps a span of the word's value to the text it was split from.
func (w *word) toText(sp span) span {
	for k := sp.i; k < sp.j; k++ {
		if w.ctx[k] != w.ctx[sp.i] || (k > sp.i && w.start[k] != w.end[k-1]) {
			return span{w.from, w.to}
		}
	}
	return span{w.start[sp.i], w.end[sp.j-1]}
}

// shellText says whether v holds more than one word or quoting: a script,
// a conninfo, a process title.
func shellText(v string) bool {
	for i := 0; i < len(v); i++ {
		switch v[i] {
		case ' ', '\t', '\n', '\'', '"':
			return true
		}
	}
	return false
}

// splitShell splits text into words as a POSIX shell would, without
// expansions; ; | & ( ) < > and newline are operators. An unterminated
// quote runs to the end.
func splitShell(text string) []word {
	var ws []word
	var cur word
	in := false
	var val []byte
	begin := func(at int) {
		if !in {
			cur, in = word{from: at}, true
			val = val[:0]
		}
	}
	put := func(c byte, from, to int, q byte) {
		val = append(val, c)
		cur.start = append(cur.start, from)
		cur.end = append(cur.end, to)
		cur.ctx = append(cur.ctx, q)
	}
	finish := func(at int) {
		if in {
			cur.val, cur.to = string(val), at
			ws = append(ws, cur)
			in = false
		}
	}
	var q byte
	for i := 0; i < len(text); i++ {
		c := text[i]
		switch {
		case q == '\'':
			if c == '\'' {
				q = 0
				continue
			}
			put(c, i, i+1, q)
		case q == '"':
			switch {
			case c == '"':
				q = 0
			case c == '\\' && i+1 < len(text) && (text[i+1] == '"' || text[i+1] == '\\' || text[i+1] == '$' || text[i+1] == '`'):
				put(text[i+1], i, i+2, q)
				i++
			default:
				put(c, i, i+1, q)
			}
		case c == ' ' || c == '\t':
			finish(i)
		case c == '\n' || c == ';' || c == '|' || c == '&' || c == '(' || c == ')' || c == '<' || c == '>':
			finish(i)
			ws = append(ws, word{val: text[i : i+1], from: i, to: i + 1, op: true})
		case c == '\'' || c == '"':
			begin(i)
			q = c
		case c == '\\' && i+1 < len(text):
			begin(i)
			put(text[i+1], i, i+2, 0)
			i++
		default:
			begin(i)
			put(c, i, i+1, 0)
		}
	}
	finish(len(text))
	return ws
}
