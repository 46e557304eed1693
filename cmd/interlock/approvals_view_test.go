package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/interlock/interlock/control/controlapi"
	"github.com/interlock/interlock/internal/textview"
	"github.com/interlock/interlock/journal"
	"github.com/interlock/interlock/model"
)

// spoofText is what issue 13 held: a harmless first line, a second
// command, an escape sequence that hides text on a terminal, a bidi
// override, and more than fits a table cell.
var spoofText = "sudo -n true\n\x1b[8mrm -rf /srv/data\x1b[0m # \u202eexe.txt\n" + strings.Repeat("x", 220)

func spoofPending() sourced {
	return sourced{Pending: controlapi.Pending{
		Request: model.ApprovalRequest{
			ID: "r1", Target: "prod", Rule: "hold-exec", Needed: 1, Scope: "once", Approvers: []string{"alice"},
			Requester: model.Identity{Kernel: model.KernelFacts{UID: 1000},
				Proc: &model.ProcFacts{User: "bot", Exe: "/tmp/evil\n\x1b[1A/usr/bin/ssh"}},
			Operation:  model.Operation{Protocol: model.ProtoSSH, Kind: "exec", Text: spoofText},
			TextSHA256: textview.Hash(spoofText),
		},
		Created: time.Now(), Deadline: time.Now().Add(time.Minute), MayDecide: true,
	}}
}

func noRawControl(t *testing.T, out string) {
	t.Helper()
	for _, c := range []string{"\x1b", "\r", "\u202e"} {
		if strings.Contains(out, c) {
			t.Errorf("output holds a raw %q:\n%s", c, out)
		}
	}
}

func TestListShowsCutAndEscapes(t *testing.T) {
	var b bytes.Buffer
	printPending(&b, []sourced{spoofPending()})
	out := b.String()
	noRawControl(t, out)
	// The table is header, one row, and the note; a newline in the text
	// or the exe would add rows.
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("want header, one row and a note, got %d lines:\n%s", len(lines), out)
	}
	if !strings.Contains(lines[1], "sudo -n true (+2 lines, ") || !strings.Contains(lines[1], "more bytes)") {
		t.Errorf("the cell does not say the text goes on: %q", lines[1])
	}
	if !strings.Contains(lines[1], `/tmp/evil\n\x1b[1A/usr/bin/ssh`) {
		t.Errorf("the exe is not escaped: %q", lines[1])
	}
	if !strings.Contains(lines[2], "interlock approvals show r1") {
		t.Errorf("no way to see all of it: %q", lines[2])
	}
}

func TestShowPrintsEveryByteAndTheHash(t *testing.T) {
	var b bytes.Buffer
	printRequest(&b, spoofPending())
	out := b.String()
	noRawControl(t, out)
	for _, want := range []string{
		"  1| sudo -n true\n",
		"  2| \\x1b[8mrm -rf /srv/data\\x1b[0m # \\u202eexe.txt\n",
		"  3| " + strings.Repeat("x", 220) + "\n",
		"sha256 " + textview.Hash(spoofText),
		"interlock approvals approve r1 --expect " + textview.Hash(spoofText),
		fmt.Sprintf("text       %d bytes, 3 lines, sha256", len(spoofText)),
	} {
		if !strings.Contains(out, want) {
			t.Errorf("show lacks %q:\n%s", want, out)
		}
	}
}

// A show whose text does not hash to the request's hash (altered on the
// way) offers no approve command.
func TestShowWarnsOnAlteredText(t *testing.T) {
	p := spoofPending()
	p.Request.Operation.Text = "sudo -n true"
	var b bytes.Buffer
	printRequest(&b, p)
	if !strings.Contains(b.String(), "WARNING") || strings.Contains(b.String(), "--expect") {
		t.Errorf("altered text shown as approvable:\n%s", b.String())
	}
}

// An executable path with a newline and a cursor-up sequence would print
// as a second session row naming another program.
func TestSessionsListEscapesTheExe(t *testing.T) {
	var b bytes.Buffer
	err := printSessions(&b, []journal.SessionSummary{{ID: "s1", Target: "db", Open: time.Now(),
		Exe: "/tmp/x\n\x1b[1A/usr/bin/psql", Error: "statement \x1b[31m" + strings.Repeat("y", 80)}})
	if err != nil {
		t.Fatal(err)
	}
	out := b.String()
	noRawControl(t, out)
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 3 || !strings.Contains(lines[1], `/tmp/x\n\x1b[1A/usr/bin/psql`) {
		t.Fatalf("want header, one escaped row and a note:\n%s", out)
	}
	if !strings.Contains(lines[1], "more bytes") || !strings.Contains(lines[2], "--json") {
		t.Errorf("the cut error is not counted or has no way to see it whole:\n%s", out)
	}
}
