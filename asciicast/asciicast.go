// Package asciicast renders a recorded SSH terminal session (its ssh.*
// journal entries) as an asciicast v2 file, the format asciinema plays.
//
// STUB: the SSH work fills this in; until then Write refuses.
package asciicast

import (
	"errors"
	"io"
	"iter"
)

// Record is one journal entry of a session, as the journal stores it.
type Record struct {
	Seq    uint64
	Kind   string
	TimeNS int64
	// Data is the entry's "data" JSON object.
	Data []byte
	// Payload is the entry's payload (terminal bytes for ssh.io), nil if
	// a retention job deleted it.
	Payload []byte
}

// ErrNoTerminal means the session never had a pty: there is nothing to
// play.
var ErrNoTerminal = errors.New("asciicast: the session had no terminal")

// Write renders the records of one session, in sequence order, as
// asciicast v2 on w.
func Write(w io.Writer, records iter.Seq2[Record, error]) error {
	return errors.New("asciicast: not implemented yet")
}
