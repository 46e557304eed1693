package adversarial

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/interlock/interlock/journal"
	"github.com/interlock/interlock/model"
)

// Reading the journals of a case's runs.

type jEntry struct {
	Seq     uint64          `json:"seq"`
	Kind    string          `json:"kind"`
	Session string          `json:"session"`
	Data    json.RawMessage `json:"data"`
}

// jStmt is a pg.statement entry with the fields this suite reads,
// including those interlock adds for exactness (prepared_sql, sql_b64).
type jStmt struct {
	Seq            uint64          `json:"-"`
	Session        string          `json:"-"`
	SQL            string          `json:"sql"`
	SQLB64         string          `json:"sql_b64"`
	PreparedSQL    string          `json:"prepared_sql"`
	PreparedSQLB64 string          `json:"prepared_sql_b64"`
	Protocol       string          `json:"protocol"`
	StatementName  string          `json:"statement_name"`
	Portal         string          `json:"portal"`
	Params         []model.PGParam `json:"params"`
	Kinds          []string        `json:"kinds"`
	Tables         []string        `json:"tables"`
	ReadOnly       bool            `json:"read_only"`
	Decision       model.Decision  `json:"decision"`
	SQLState       string          `json:"sqlstate"`
	Error          string          `json:"error"`
	Res            *model.PGResult `json:"-"`
}

// text is the statement's text as the client sent it.
func (s jStmt) text() string {
	if s.SQLB64 != "" {
		if b, err := base64.StdEncoding.DecodeString(s.SQLB64); err == nil {
			return string(b)
		}
	}
	return s.SQL
}

func (s jStmt) prepared() string {
	if s.PreparedSQLB64 != "" {
		if b, err := base64.StdEncoding.DecodeString(s.PreparedSQLB64); err == nil {
			return string(b)
		}
	}
	return s.PreparedSQL
}

// readJournal reads every entry of the journal at path.
func readJournal(path string) ([]jEntry, error) {
	var out []jEntry
	err := journal.Entries(context.Background(), path, 1, func(en journal.Entry) error {
		var x jEntry
		if err := json.Unmarshal(en.Body, &x); err != nil {
			return err
		}
		out = append(out, x)
		return nil
	})
	return out, err
}

// readJournals reads, once, the journal of the case's run and those of
// the other jobs (see sessionsPerProcess).
func (c *caseRun) readJournals() {
	c.t.Helper()
	c.jOnce.Do(func() {
		var err error
		if c.entries, err = readJournal(c.journalPath); err != nil {
			c.t.Errorf("read the journal: %v", err)
		}
		for _, p := range c.jobs {
			if p.proc == procMain {
				continue
			}
			if c.jobEntries[p.proc], err = readJournal(p.journalPath); err != nil {
				c.t.Errorf("read the journal of client process %d's run: %v", p.proc, err)
			}
		}
	})
}

// journal is the journal of the case's run.
func (c *caseRun) journal() []jEntry {
	c.t.Helper()
	c.readJournals()
	return c.entries
}

// runJournal is the journal of one `interlock run` of a case.
type runJournal struct {
	// proc is the client process the run carried (procMain for the
	// case's run).
	proc    int
	entries []jEntry
}

// journals are the case's run's journal, then the other jobs', by
// client process.
func (c *caseRun) journals() []runJournal {
	out := []runJournal{{procMain, c.journal()}}
	for _, p := range slices.Sorted(maps.Keys(c.jobEntries)) {
		out = append(out, runJournal{p, c.jobEntries[p]})
	}
	return out
}

// statements are the pg.statement entries of the case's run's journal
// with their results, in order.
func (c *caseRun) statements() []jStmt { return c.statementsIn(c.journal()) }

// statementsIn are the pg.statement entries with their results, in order.
func (c *caseRun) statementsIn(entries []jEntry) []jStmt {
	var out []jStmt
	idx := map[uint64]int{}
	for _, en := range entries {
		switch en.Kind {
		case model.KindPGStatement:
			var s jStmt
			if err := json.Unmarshal(en.Data, &s); err != nil {
				c.t.Errorf("pg.statement %d: %v", en.Seq, err)
				continue
			}
			s.Seq, s.Session = en.Seq, en.Session
			idx[en.Seq] = len(out)
			out = append(out, s)
		case model.KindPGResult:
			var r model.PGResult
			if err := json.Unmarshal(en.Data, &r); err != nil {
				c.t.Errorf("pg.result %d: %v", en.Seq, err)
				continue
			}
			if i, ok := idx[r.Statement]; ok {
				out[i].Res = &r
			}
		}
	}
	return out
}

// sessions are the postgres session.open records, by session id, in order.
type jSession struct {
	ID   string
	Open model.SessionOpen
}

func (c *caseRun) sessions() []jSession { return sessionsIn(c.journal()) }

func sessionsIn(entries []jEntry) []jSession {
	var out []jSession
	for _, en := range entries {
		if en.Kind != model.KindSessionOpen {
			continue
		}
		var so model.SessionOpen
		if err := json.Unmarshal(en.Data, &so); err != nil {
			continue
		}
		if so.Postgres != nil {
			out = append(out, jSession{en.Session, so})
		}
	}
	return out
}

func (c *caseRun) kindCount(kind string) int {
	n := 0
	for _, en := range c.journal() {
		if en.Kind == kind {
			n++
		}
	}
	return n
}

// find returns the statements whose text is sql.
func (c *caseRun) find(sql string) []jStmt {
	var out []jStmt
	for _, s := range c.statements() {
		if s.text() == sql {
			out = append(out, s)
		}
	}
	return out
}

// journalSummary lists the statements, anomalies and effects of the
// case's journals, for failure messages.
func (c *caseRun) journalSummary() string {
	var b strings.Builder
	js := c.journals()
	for _, j := range js {
		if len(js) > 1 {
			fmt.Fprintf(&b, "\n  the run of client process %d:", j.proc)
		}
		c.summarizeJournal(&b, j.entries)
	}
	if b.Len() == 0 {
		return " (no pg.statement entries)"
	}
	return b.String()
}

func (c *caseRun) summarizeJournal(b *strings.Builder, entries []jEntry) {
	for _, s := range c.statementsIn(entries) {
		res := "no pg.result"
		if s.Res != nil {
			switch {
			case s.Res.NotRun:
				res = "not run"
			case s.Res.SQLState != "":
				res = s.Res.SQLState + " " + short(s.Res.Error, 80)
			default:
				res = fmt.Sprintf("%s (%d rows)", s.Res.Tag, s.Res.Rows)
			}
		}
		if s.Decision.Action != model.Allow && s.Decision.Action != model.Mask {
			res = fmt.Sprintf("%s by %q", s.Decision.Action, s.Decision.Rule)
		}
		fmt.Fprintf(b, "\n    #%d %s %q kinds=%v -> %s", s.Seq, s.Protocol, short(s.text(), 160), s.Kinds, res)
	}
	for _, en := range entries {
		switch en.Kind {
		case model.KindAnomaly, model.KindPGEffects:
			fmt.Fprintf(b, "\n    #%d %s %s", en.Seq, en.Kind, short(string(en.Data), 300))
		}
	}
}
