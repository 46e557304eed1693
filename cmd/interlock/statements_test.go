package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/interlock/interlock/hub/hubapi"
	"github.com/interlock/interlock/model"
)

// TestPrintHubStatements: a statement is one line of the table whatever
// its text holds (newlines gathered, control characters escaped, long
// text cut), with its kinds and decision.
func TestPrintHubStatements(t *testing.T) {
	var b bytes.Buffer
	err := printHubStatements(&b, []hubapi.Statement{
		{HostID: "h1", HostName: "db-runner", Seq: 7, TimeNS: 1, Session: "s1", Target: "prod", User: "alice",
			Kind: model.KindPGStatement, Kinds: []string{"drop_table"}, Text: "DROP TABLE t;\n-- \x1b[31mred",
			Decision: model.Decision{Action: model.Deny, Rule: "no-drop"}},
		{HostID: "h2", HostName: "ci", Seq: 9, Session: "s2", Kind: model.KindSSHRequest, Kinds: []string{"exec"},
			Text: strings.Repeat("x", 200), Decision: model.Decision{Action: model.Allow}},
	})
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines, want a header and two:\n%s", len(lines), b.String())
	}
	for _, want := range []string{"db-runner", "drop_table", "deny (no-drop)", "DROP TABLE t; -- \\x1b[31mred", "alice", "prod"} {
		if !strings.Contains(lines[1], want) {
			t.Errorf("the statement's line does not hold %q: %s", want, lines[1])
		}
	}
	if strings.Contains(b.String(), "\x1b") {
		t.Error("an escape character reached the terminal")
	}
	if !strings.Contains(lines[2], strings.Repeat("x", maxStatementText)+"…") || strings.Contains(lines[2], strings.Repeat("x", maxStatementText+1)) {
		t.Errorf("long text not cut at %d: %s", maxStatementText, lines[2])
	}
}
