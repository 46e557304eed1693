package main

import (
	"bytes"
	"context"
	"testing"

	"github.com/interlock/interlock/asciicast"
)

// TestReplayPlayInput: output is played as recorded; typed input (with
// --input) and markers are escaped, so neither acts on the terminal, and
// a typed "]" cannot end the input mark early.
func TestReplayPlayInput(t *testing.T) {
	var out, notes bytes.Buffer
	events := []asciicast.Event{
		{TimeNS: 0, Type: "o", Data: "$ \x1b[1m"},
		{TimeNS: 1000, Type: "i", Data: "pw] \x1b[2J\r"},
		{TimeNS: 2000, Type: "m", Data: "journal gap: \x1b]0;x\x07"},
	}
	if err := replayPlay(context.Background(), &out, &notes, events, 1000, 0, [2]string{"[input: ", "]"}); err != nil {
		t.Fatal(err)
	}
	if want := "$ \x1b[1m[input: pw\\] \\x1b[2J\\r]"; out.String() != want {
		t.Errorf("played %q, want %q", out.String(), want)
	}
	if want := "\r\n[interlock: journal gap: \\x1b]0;x\\x07]\r\n"; notes.String() != want {
		t.Errorf("notes %q, want %q", notes.String(), want)
	}
}
