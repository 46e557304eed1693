package adversarial

import (
	"fmt"
	"strings"

	"github.com/interlock/interlock/test/adversarial/rawpg"
)

// The transcript of a case and the summaries in failure messages.

func (c *caseRun) record(what string, r rawpg.Reply) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.replies = append(c.replies, r)
	c.transcript = append(c.transcript, what+"\n    -> "+summarize(r))
}

func (c *caseRun) logf(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.transcript = append(c.transcript, fmt.Sprintf(format, args...))
}

func short(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

func headTail(s string, n int) string {
	if len(s) > 2*n {
		return s[:n] + "\n…\n" + s[len(s)-n:]
	}
	return s
}

func describeMsgs(msgs []rawpg.Msg) string {
	var parts []string
	for _, m := range msgs {
		text := m.SQL
		if m.Raw != nil {
			text = fmt.Sprintf("%q", m.Raw)
		}
		switch m.T {
		case "Q":
			parts = append(parts, fmt.Sprintf("Query(%s)", short(text, 120)))
		case "P":
			parts = append(parts, fmt.Sprintf("Parse(%q, %s)", m.Name, short(text, 120)))
		case "B":
			n := len(m.Params) + len(m.BinParams) + m.GenParams
			parts = append(parts, fmt.Sprintf("Bind(portal %q, stmt %q, %d params)", m.Portal, m.Name, n))
		case "E":
			parts = append(parts, fmt.Sprintf("Execute(%q, %d)", m.Portal, m.MaxRows))
		case "D", "C":
			name := m.Name
			if m.Kind == "P" {
				name = m.Portal
			}
			w := map[string]string{"D": "Describe", "C": "Close"}[m.T]
			parts = append(parts, fmt.Sprintf("%s(%s %q)", w, m.Kind, name))
		case "S":
			parts = append(parts, "Sync")
		case "H":
			parts = append(parts, "Flush")
		default:
			parts = append(parts, m.T)
		}
	}
	return strings.Join(parts, " ")
}

func summarize(r rawpg.Reply) string {
	var parts []string
	rows := 0
	flushRows := func() {
		if rows > 0 {
			parts = append(parts, fmt.Sprintf("%d DataRow", rows))
			rows = 0
		}
	}
	for _, m := range r.Msgs {
		if m.T != "D" {
			flushRows()
		}
		switch m.T {
		case "E", "N":
			parts = append(parts, fmt.Sprintf("%s %s %s: %s", m.T, m.Severity, m.Code, short(m.Message, 200)))
		case "C":
			parts = append(parts, "C "+m.Tag)
		case "Z":
			parts = append(parts, "Z "+m.Status)
		case "D":
			if rows == 0 && len(m.Values) > 0 {
				var vs []string
				for _, v := range m.Values {
					if v == nil {
						vs = append(vs, "NULL")
					} else {
						vs = append(vs, short(*v, 40))
					}
				}
				parts = append(parts, "D["+strings.Join(vs, ",")+"]")
			} else {
				rows++
			}
		case "S":
			parts = append(parts, fmt.Sprintf("S %s=%s", m.Name, m.Value))
		case "1", "2", "3", "n", "s", "t", "T", "I", "G", "H", "K", "R":
			parts = append(parts, m.T)
		default:
			parts = append(parts, m.T)
		}
	}
	flushRows()
	s := strings.Join(parts, ", ")
	if r.Closed {
		s += " [connection closed]"
	}
	if r.Err != "" {
		s += " [" + r.Err + "]"
	}
	return s
}

func (c *caseRun) transcriptText() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return "\n  " + strings.Join(c.transcript, "\n  ")
}

// rows returns the DataRow values of a reply, first column.

// sortedKeys are a map's keys in order.
