package adversarial

import (
	"fmt"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/japanese"
	"golang.org/x/text/encoding/simplifiedchinese"
	"golang.org/x/text/encoding/traditionalchinese"

	"github.com/interlock/interlock/model"
)

// sessionLog is the server's log for the case's sessions, for failure
// messages.
func (c *caseRun) sessionLog(max int) string {
	pids := map[string]bool{}
	for _, j := range c.journals() {
		for _, s := range sessionsIn(j.entries) {
			if s.Open.Postgres.UpstreamPID != 0 {
				pids[fmt.Sprintf("@@%d@@ ", s.Open.Postgres.UpstreamPID)] = true
			}
		}
	}
	b, _ := os.ReadFile(serverLogPath())
	if int64(len(b)) < c.logStart {
		return ""
	}
	var out []string
	keep := false
	for _, l := range strings.Split(string(b[c.logStart:]), "\n") {
		if strings.HasPrefix(l, "@@") {
			keep = false
			for p := range pids {
				if strings.HasPrefix(l, p) {
					keep = true
				}
			}
		}
		if keep {
			out = append(out, short(l, 300))
		}
	}
	if len(out) > max {
		out = append(out[:max], fmt.Sprintf("… %d more lines", len(out)-max))
	}
	return "\n        " + strings.Join(out, "\n        ")
}

// The server's log is the oracle of what ran: with log_statement = all,
// PostgreSQL logs each simple Query message ("statement: TEXT", one line
// for the whole query string, with "DETAIL: prepare: TEXT" after an
// EXECUTE), each extended-protocol Execute ("execute NAME: TEXT", the text
// of the prepared statement the portal came from; "execute fetch from
// NAME/PORTAL: TEXT" when a portal runs on) and each fast-path call.

var oracleDebug = os.Getenv("ADV_ORACLE_DEBUG") == "1"

// logItem is one statement the server logged.
type logItem struct {
	pid     int
	kind    string // statement, execute, fetch, fastpath
	name    string // statement[/portal] of an execute
	text    string
	prepare string // DETAIL prepare: of an EXECUTE
	line    int
}

var linePrefixRE = regexp.MustCompile(`^@@(\d+)@@ ([A-Z]+):  (.*)$`)

// serverLog parses the log between two offsets.
func serverLog(from, to int64) []logItem {
	b, err := os.ReadFile(serverLogPath())
	if err != nil {
		return nil
	}
	if to > int64(len(b)) || to <= 0 {
		to = int64(len(b))
	}
	if from > to {
		from = to
	}
	// Back up to the start of a line.
	for from > 0 && b[from-1] != '\n' {
		from--
	}
	lines := strings.Split(string(b[from:to]), "\n")
	type rec struct {
		pid   int
		level string
		msg   string
		line  int
	}
	var recs []rec
	for i, l := range lines {
		if m := linePrefixRE.FindStringSubmatch(l); m != nil {
			pid, _ := strconv.Atoi(m[1])
			recs = append(recs, rec{pid, m[2], m[3], i})
			continue
		}
		// Continuation lines of a multi-line message begin with a tab.
		if strings.HasPrefix(l, "\t") && len(recs) > 0 {
			recs[len(recs)-1].msg += "\n" + l[1:]
		}
	}
	var out []logItem
	last := map[int]int{} // pid -> index in out of its last LOG item
	for _, r := range recs {
		switch r.level {
		case "LOG":
			it := logItem{pid: r.pid, line: r.line}
			switch {
			case strings.HasPrefix(r.msg, "statement: "):
				it.kind, it.text = "statement", strings.TrimPrefix(r.msg, "statement: ")
			case strings.HasPrefix(r.msg, "execute "):
				rest := strings.TrimPrefix(r.msg, "execute ")
				it.kind = "execute"
				if strings.HasPrefix(rest, "fetch from ") {
					it.kind, rest = "fetch", strings.TrimPrefix(rest, "fetch from ")
				}
				name, text, ok := strings.Cut(rest, ": ")
				if !ok {
					continue
				}
				it.name, it.text = name, text
			case strings.HasPrefix(r.msg, "fastpath function call: "):
				it.kind, it.text = "fastpath", strings.TrimPrefix(r.msg, "fastpath function call: ")
			default:
				delete(last, r.pid)
				continue
			}
			out = append(out, it)
			last[r.pid] = len(out) - 1
		case "DETAIL":
			if i, ok := last[r.pid]; ok && strings.HasPrefix(r.msg, "prepare: ") {
				out[i].prepare = strings.TrimPrefix(r.msg, "prepare: ")
			}
		default:
			delete(last, r.pid)
		}
	}
	return out
}

// interlockSuffix starts what interlock appends to a client's query.
const interlockSuffix = "\n;/* interlock:"

// stripInterlock removes interlock's additions from a logged query string;
// own is set when the whole statement is interlock's.
func stripInterlock(text string) (client string, own bool) {
	if strings.HasPrefix(strings.TrimLeft(text, " \t\r\n"), "/* interlock:") {
		return "", true
	}
	if i := strings.Index(text, interlockSuffix); i >= 0 {
		text = text[:i]
	}
	return text, false
}

// decoders convert a client's bytes the way the server does before it
// logs them (the server logs in its own encoding, UTF8).
var decoders = []encoding.Encoding{charmap.ISO8859_1, japanese.ShiftJIS, simplifiedchinese.GBK, traditionalchinese.Big5}

// secretPattern is a regular expression for logged text that holds a
// secret literal: the journal may put anything (a placeholder) where the
// literal was, but must keep the rest exactly. nil when text holds none.
func secretPattern(logged string, secrets []string) *regexp.Regexp {
	type span struct{ i, j int }
	var spans []span
	for _, sec := range secrets {
		if sec == "" {
			continue
		}
		for off := 0; ; {
			i := strings.Index(logged[off:], sec)
			if i < 0 {
				break
			}
			spans = append(spans, span{off + i, off + i + len(sec)})
			off += i + len(sec)
		}
	}
	if len(spans) == 0 {
		return nil
	}
	sort.Slice(spans, func(a, b int) bool { return spans[a].i < spans[b].i })
	var b strings.Builder
	b.WriteString("^")
	last := 0
	for _, sp := range spans {
		if sp.i < last {
			continue
		}
		b.WriteString(regexp.QuoteMeta(logged[last:sp.i]))
		b.WriteString(`(?s:.{0,400}?)`)
		last = sp.j
	}
	b.WriteString(regexp.QuoteMeta(logged[last:]))
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}

// sameText says whether a journaled text is the logged one.
func sameText(journaled, logged string, secrets []string) bool {
	if journaled == logged {
		return true
	}
	if re := secretPattern(logged, secrets); re != nil && re.MatchString(journaled) {
		return true
	}
	if utf8.ValidString(journaled) {
		return false
	}
	for _, d := range decoders {
		if s, err := d.NewDecoder().String(journaled); err == nil && s == logged {
			return true
		}
	}
	return false
}

// hasPrefixText is sameText for a prefix: it returns the length of the
// journaled text in the logged one.
func hasPrefixText(logged, journaled string, secrets []string) (int, bool) {
	if strings.HasPrefix(logged, journaled) {
		return len(journaled), true
	}
	if secretPattern(logged, secrets) != nil {
		// Try every prefix that ends a statement.
		for end := 0; end <= len(logged); end++ {
			if end < len(logged) && logged[end] != ';' {
				continue
			}
			if re := secretPattern(logged[:end], secrets); re != nil && re.MatchString(journaled) {
				return end, true
			}
		}
	}
	if journaled == "" || utf8.ValidString(journaled) {
		return 0, false
	}
	for _, d := range decoders {
		if s, err := d.NewDecoder().String(journaled); err == nil && strings.HasPrefix(logged, s) {
			return len(s), true
		}
	}
	return 0, false
}

// skippable: a record the server need not have logged (refused, never
// run, or failed before it ran).
func skippable(s jStmt) bool {
	if s.Decision.Action != model.Allow && s.Decision.Action != model.Mask {
		return true
	}
	if s.SQLState != "" {
		return true
	}
	if s.Res != nil && (s.Res.NotRun || s.Res.SQLState != "") {
		return true
	}
	return false
}

// cover matches a logged query string against records starting at recs[0]:
// the records' texts must appear in it in order, with nothing but
// whitespace, semicolons and comments around them. It returns how many
// records it used.
func cover(logged string, recs []jStmt, secrets []string) int {
	rest := logged
	n := 0
	for _, r := range recs {
		// A record may keep the comments and blanks before its statement,
		// or not: try it at each point of the residue.
		matched := false
		for {
			if rest != "" {
				if l, ok := hasPrefixText(rest, r.text(), secrets); ok && l > 0 {
					rest = rest[l:]
					matched = true
					break
				}
			}
			next := residueStep(rest)
			if next == rest {
				break
			}
			rest = next
		}
		if !matched {
			break
		}
		n++
	}
	if n == 0 || residue(rest) != "" {
		return 0
	}
	return n
}

// residueStep skips one blank, semicolon or comment.
func residueStep(s string) string {
	switch {
	case s == "":
		return s
	case strings.ContainsRune(" \t\r\n\f\v;", rune(s[0])):
		return s[1:]
	case strings.HasPrefix(s, "--"):
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			return s[i+1:]
		}
		return ""
	case strings.HasPrefix(s, "/*"):
		depth, i := 0, 0
		for i < len(s) {
			if strings.HasPrefix(s[i:], "/*") {
				depth++
				i += 2
			} else if strings.HasPrefix(s[i:], "*/") {
				depth--
				i += 2
				if depth == 0 {
					return s[i:]
				}
			} else {
				i++
			}
		}
		return ""
	}
	return s
}

// residue skips whitespace, semicolons and comments.
func residue(s string) string {
	for {
		t := residueStep(s)
		if t == s {
			return t
		}
		s = t
	}
}

func matchesExecute(text string, r jStmt, secrets []string) bool {
	if sameText(r.text(), text, secrets) || (r.prepared() != "" && sameText(r.prepared(), text, secrets)) {
		return true
	}
	// A statement prepared with SQL PREPARE is logged, when a portal runs
	// it, with the text of the query string that prepared it.
	p := r.prepared()
	return p != "" && strings.Contains(text, p)
}

// oracle compares the server's log with the journal for every session of
// the run (and of the other jobs' runs, each with its own journal): every
// statement the server logged for a session's backend must be a
// pg.statement of that session, in order; a record that is not skippable
// must match something the server logged.
func (c *caseRun) oracle() []string {
	if c.cs.noDB {
		return nil
	}
	items := serverLog(c.logStart, 0)
	var problems []string
	for _, j := range c.journals() {
		for _, p := range c.oracleOf(items, j.entries) {
			if j.proc != procMain {
				p = fmt.Sprintf("the run of client process %d: %s", j.proc, p)
			}
			problems = append(problems, p)
		}
	}
	return problems
}

// oracleOf compares the server's log with one run's journal.
func (c *caseRun) oracleOf(items []logItem, entries []jEntry) []string {
	stmts := c.statementsIn(entries)
	var problems []string
	for _, s := range sessionsIn(entries) {
		pid := int(s.Open.Postgres.UpstreamPID)
		var recs []jStmt
		for _, st := range stmts {
			if st.Session == s.ID {
				recs = append(recs, st)
			}
		}
		if pid == 0 {
			if len(recs) > 0 {
				problems = append(problems, fmt.Sprintf("session %s has statements but its session.open has no postgres.upstream_pid", s.ID))
			}
			continue
		}
		var logged []logItem
		for _, it := range items {
			if it.pid == pid {
				logged = append(logged, it)
			}
		}
		var secrets []string
		for _, sec := range c.cs.secrets {
			secrets = append(secrets, c.expand(sec))
		}
		problems = append(problems, compareSession(s.ID, pid, logged, recs, secrets)...)
	}
	return problems
}

func compareSession(session string, pid int, logged []logItem, recs []jStmt, secrets []string) []string {
	var problems []string
	pos, last := 0, -1
	used := make([]bool, len(recs))
	for _, it := range logged {
		match := func(text string, marked bool) (found, n int) {
			for j := pos; j < len(recs); j++ {
				if marked && !strings.Contains(recs[j].text(), "/* interlock:") {
					continue
				}
				n = 0
				switch it.kind {
				case "statement":
					n = cover(text, recs[j:], secrets)
				case "execute", "fetch":
					if matchesExecute(text, recs[j], secrets) {
						n = 1
					}
				case "fastpath":
					if recs[j].Protocol == "fastpath" {
						n = 1
					}
				}
				if n > 0 {
					return j, n
				}
			}
			return -1, 0
		}
		text, own := stripInterlock(it.text)
		found, n := -1, 0
		if own || text != it.text {
			// A client may write interlock's marker itself: when the
			// journal has the whole text as the client's, it is.
			if found, n = match(it.text, true); found >= 0 {
				text = it.text
			} else if own {
				continue
			}
		}
		if it.kind == "statement" && residue(text) == "" {
			// An empty query string runs nothing.
			continue
		}
		// A suspended portal running on is the same statement; but a SQL
		// cursor's portal (its text is the DECLARE) is journaled at each
		// Execute, which interlock judges again.
		if found < 0 && it.kind == "fetch" && last >= 0 && !isDeclare(text) && matchesExecute(text, recs[last], secrets) {
			continue
		}
		if found < 0 {
			found, n = match(text, false)
		}
		if found < 0 {
			var next []string
			for j := pos; j < len(recs) && len(next) < 4; j++ {
				next = append(next, fmt.Sprintf("#%d %q", recs[j].Seq, short(recs[j].text(), 100)))
			}
			problems = append(problems, fmt.Sprintf("backend %d (session %s) ran %s %q (server log line %d%s) but the journal has no pg.statement naming it exactly after the last match; next records: %v",
				pid, session, it.kind, short(text, 300), it.line, prepNote(it), next))
			continue
		}
		for j := pos; j < found; j++ {
			if !skippable(recs[j]) && !used[j] {
				problems = append(problems, fmt.Sprintf("backend %d: the journal says #%d %q ran (%s), but the server logged no such statement there",
					pid, recs[j].Seq, short(recs[j].text(), 200), resultNote(recs[j])))
			}
		}
		for j := found; j < found+n; j++ {
			used[j] = true
		}
		if it.prepare != "" {
			// EXECUTE name: the journal must say what the name prepared,
			// unless it says the EXECUTE never ran (the server details
			// every EXECUTE of a query string it logs, run or not).
			r := recs[found+n-1]
			for j := found; j < found+n; j++ {
				if contains(recs[j].Kinds, "execute") || strings.HasPrefix(strings.ToUpper(strings.TrimSpace(recs[j].text())), "EXECUTE") {
					r = recs[j]
				}
			}
			if p := r.prepared(); !skippable(r) && (p == "" || !strings.Contains(it.prepare, p)) {
				problems = append(problems, fmt.Sprintf("backend %d ran %q, which executed the statement prepared by %q; the journal's #%d has prepared_sql %q",
					pid, short(text, 100), short(it.prepare, 200), r.Seq, short(p, 200)))
			}
		}
		if oracleDebug {
			fmt.Fprintf(os.Stderr, "oracle: %s %q -> #%d..#%d\n", it.kind, short(text, 80), recs[found].Seq, recs[found+n-1].Seq)
		}
		pos, last = found+n, found+n-1
	}
	for j := pos; j < len(recs); j++ {
		if !skippable(recs[j]) && !used[j] {
			problems = append(problems, fmt.Sprintf("backend %d: the journal says #%d %q ran (%s), but the server logged no such statement",
				pid, recs[j].Seq, short(recs[j].text(), 200), resultNote(recs[j])))
		}
	}
	return problems
}

func prepNote(it logItem) string {
	if it.prepare != "" {
		return ", prepared by " + strconv.Quote(short(it.prepare, 200))
	}
	if it.name != "" {
		return ", statement/portal " + it.name
	}
	return ""
}

func resultNote(s jStmt) string {
	if s.Res == nil {
		return "no pg.result"
	}
	if s.Res.Tag != "" {
		return "result " + s.Res.Tag
	}
	return fmt.Sprintf("result %+v", *s.Res)
}

// isDeclare says a logged text is a DECLARE: the portal is a SQL cursor's.
func isDeclare(text string) bool {
	f := strings.Fields(residue(text))
	return len(f) > 0 && strings.EqualFold(f[0], "declare")
}
