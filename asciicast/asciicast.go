// Package asciicast renders a recorded SSH terminal session (its ssh.*
// journal entries) as an asciicast v2 file, the format asciinema plays
// (https://docs.asciinema.org/manual/asciicast/v2/).
//
// The rendering is a pure function of the records: the same entries always
// give the same bytes. The terminal is the first session channel that asked
// for a pty; time zero is its pty-req, and event times are the recorded
// monotonic offsets, with microsecond resolution. Output (stdout and
// stderr, which a pty merges anyway) becomes "o" events, what the client
// typed "i" events, window changes "r" events; a journal gap or terminal
// bytes deleted by retention become "m" (marker) events, so a reader sees
// that something is missing.
package asciicast

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"strconv"
	"unicode/utf8"

	"github.com/interlock/interlock/model"
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

// Header is the first line of an asciicast v2 file.
type Header struct {
	Version int `json:"version"`
	Width   int `json:"width"`
	Height  int `json:"height"`
	// Timestamp is the Unix time (seconds) the terminal was opened.
	Timestamp int64             `json:"timestamp"`
	Env       map[string]string `json:"env,omitempty"`
}

// Event is one line after the header.
type Event struct {
	// TimeNS is the time since the terminal opened.
	TimeNS int64
	// Type is "o" (output), "i" (input), "r" (resize, Data "COLSxROWS")
	// or "m" (marker).
	Type string
	Data string
}

// Decode turns a session's records, in sequence order, into the header
// and the events of its terminal. header is called once, before any event.
// It returns ErrNoTerminal, having called neither, when no channel asked
// for a pty.
func Decode(records iter.Seq2[Record, error], header func(Header) error, event func(Event) error) error {
	var (
		openNS   int64
		haveOpen bool
		started  bool
		ch       uint32
		base     int64
		last     int64
		carry    = map[string][]byte{}
	)
	emit := func(offset int64, typ, data string) error {
		t := max(offset-base, last)
		last = t
		return event(Event{TimeNS: t, Type: typ, Data: data})
	}
	for rec, err := range records {
		if err != nil {
			return err
		}
		switch rec.Kind {
		case model.KindSessionOpen:
			openNS, haveOpen = rec.TimeNS, true
		case model.KindSSHRequest:
			var r model.SSHRequest
			if started || json.Unmarshal(rec.Data, &r) != nil || r.Type != "pty-req" {
				continue
			}
			started, ch, base = true, r.Channel, r.OffsetNS
			h := Header{Version: 2, Width: int(r.Cols), Height: int(r.Rows)}
			if h.Width == 0 || h.Height == 0 {
				h.Width, h.Height = 80, 24
			}
			ts := rec.TimeNS
			if haveOpen {
				ts = openNS + r.OffsetNS
			}
			h.Timestamp = ts / 1e9
			if r.Term != "" {
				h.Env = map[string]string{"TERM": r.Term}
			}
			if err := header(h); err != nil {
				return err
			}
		case model.KindSSHIO:
			var r model.SSHIO
			if !started || json.Unmarshal(rec.Data, &r) != nil || r.Channel != ch {
				continue
			}
			typ := "o"
			if r.Stream == "i" {
				typ = "i"
			}
			if rec.Payload == nil && r.Bytes > 0 {
				if err := emit(r.OffsetNS, "m", fmt.Sprintf("%d bytes of %s not kept (deleted by retention)", r.Bytes, streamName(r.Stream))); err != nil {
					return err
				}
				continue
			}
			text := decodeUTF8(carry, r.Stream, rec.Payload)
			if text == "" {
				continue
			}
			if err := emit(r.OffsetNS, typ, text); err != nil {
				return err
			}
		case model.KindSSHResize:
			var r model.SSHResize
			if !started || json.Unmarshal(rec.Data, &r) != nil || r.Channel != ch {
				continue
			}
			if err := emit(r.OffsetNS, "r", fmt.Sprintf("%dx%d", r.Cols, r.Rows)); err != nil {
				return err
			}
		case model.KindGap:
			var g model.Gap
			if !started || json.Unmarshal(rec.Data, &g) != nil {
				continue
			}
			if err := emit(last+base, "m", fmt.Sprintf("journal gap: %d records lost", g.Lost)); err != nil {
				return err
			}
		}
	}
	if !started {
		return ErrNoTerminal
	}
	// Bytes of a character the session never finished.
	for _, s := range []string{"o", "e", "i"} {
		if b := carry[s]; len(b) > 0 {
			typ := "o"
			if s == "i" {
				typ = "i"
			}
			if err := emit(last+base, typ, string(bytes.ToValidUTF8(b, []byte("\uFFFD")))); err != nil {
				return err
			}
		}
	}
	return nil
}

func streamName(s string) string {
	switch s {
	case "i":
		return "input"
	case "e":
		return "stderr"
	}
	return "output"
}

// decodeUTF8 returns the text of p after what was carried over from the
// stream's previous chunk, holding back a character split across chunks.
// Invalid bytes become U+FFFD.
func decodeUTF8(carry map[string][]byte, stream string, p []byte) string {
	if stream == "e" {
		stream = "o" // a pty merges them: one byte stream
	}
	b := append(carry[stream], p...)
	cut := len(b)
	// A trailing incomplete sequence is at most 3 bytes long.
	for i := len(b) - 1; i >= 0 && i >= len(b)-3; i-- {
		if utf8.RuneStart(b[i]) {
			if !utf8.FullRune(b[i:]) {
				cut = i
			}
			break
		}
	}
	carry[stream] = append([]byte(nil), b[cut:]...)
	return string(bytes.ToValidUTF8(b[:cut], []byte("\uFFFD")))
}

// Write renders the records of one session, in sequence order, as
// asciicast v2 on w.
func Write(w io.Writer, records iter.Seq2[Record, error]) error {
	bw := bufio.NewWriter(w)
	var line bytes.Buffer
	enc := json.NewEncoder(&line)
	enc.SetEscapeHTML(false)
	err := Decode(records,
		func(h Header) error {
			line.Reset()
			if err := enc.Encode(h); err != nil {
				return err
			}
			_, err := bw.Write(line.Bytes())
			return err
		},
		func(e Event) error {
			line.Reset()
			line.WriteByte('[')
			line.WriteString(FormatTime(e.TimeNS))
			line.WriteString(`, "`)
			line.WriteString(e.Type)
			line.WriteString(`", `)
			if err := enc.Encode(e.Data); err != nil {
				return err
			}
			line.Truncate(line.Len() - 1) // Encode's newline
			line.WriteString("]\n")
			_, err := bw.Write(line.Bytes())
			return err
		})
	if err != nil {
		return err
	}
	return bw.Flush()
}

// FormatTime writes nanoseconds as seconds with six decimals, from
// integers only, so the text never depends on float formatting.
func FormatTime(ns int64) string {
	if ns < 0 {
		ns = 0
	}
	us := ns / 1000
	frac := strconv.FormatInt(us%1e6, 10)
	for len(frac) < 6 {
		frac = "0" + frac
	}
	return strconv.FormatInt(us/1e6, 10) + "." + frac
}
