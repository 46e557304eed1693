// Package asciicast renders a recorded terminal session (the ssh.* journal
// entries of an SSH session, the k8s.exec stream records of a kubernetes
// one) as an asciicast v2 file, the format asciinema plays
// (https://docs.asciinema.org/manual/asciicast/v2/).
//
// The rendering is a pure function of the records: the same entries always
// give the same bytes. The terminal is the first session channel that asked
// for a pty; time zero is its pty-req, and event times are the recorded
// monotonic offsets, with microsecond resolution. Output (stdout and
// stderr, which a pty merges anyway) becomes "o" events, what the client
// typed "i" events (echo off or not: a password typed at a prompt is in
// them, as the journal has it), window changes "r" events; a journal gap
// or terminal bytes deleted by retention become "m" (marker) events, so a
// reader sees that something is missing. DecodeChannel and WriteChannel
// render any other pty, shell or exec channel of the session.
//
// asciicast is JSON, whose strings are UTF-8: bytes that are not valid
// UTF-8 become U+FFFD here, and a cast is a picture of the screen, not
// evidence of the bytes. The byte-exact view of a session is sessionview
// (`interlock sessions show`).
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
	"strings"
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
// and the events of its terminal: the first channel that asked for a pty.
// header is called once, before any event. It returns ErrNoTerminal,
// having called neither, when no channel asked for a pty.
func Decode(records iter.Seq2[Record, error], header func(Header) error, event func(Event) error) error {
	return decode(records, nil, header, event)
}

// ErrNoChannel means the channel DecodeChannel was asked for never asked
// for a pty or a program: it has no stream to play.
var ErrNoChannel = errors.New("asciicast: the channel ran no shell or command")

// DecodeChannel is Decode for one channel of the session (its number in
// the ssh.* records): a pty channel or one that ran a shell, a command or
// a subsystem without a pty. Time zero is its pty-req, or its shell, exec
// or subsystem request when it had no pty. Without a pty, a program's "\n" reaches a terminal
// as a line feed alone, so output gets a "\r" before each "\n" that
// lacks one (what a pty's onlcr would have added); the plain view
// (sessionview) keeps the bytes as they were. It returns ErrNoChannel when
// the channel never started.
func DecodeChannel(records iter.Seq2[Record, error], channel uint32, header func(Header) error, event func(Event) error) error {
	return decode(records, &channel, header, event)
}

// decode renders the channel want, or the first pty channel when want is
// nil.
func decode(records iter.Seq2[Record, error], want *uint32, header func(Header) error, event func(Event) error) error {
	var (
		openNS   int64
		haveOpen bool
		started  bool
		pty      bool
		prevCR   bool // the last output byte was '\r' (channels without a pty)
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
	// output adds the CR a pty would have, for channels without one.
	output := func(text string) string {
		if pty || text == "" {
			return text
		}
		var b strings.Builder
		for i := 0; i < len(text); i++ {
			if text[i] == '\n' && !prevCR {
				b.WriteByte('\r')
			}
			prevCR = text[i] == '\r'
			b.WriteByte(text[i])
		}
		return b.String()
	}
	for rec, err := range records {
		if err != nil {
			return err
		}
		// A kubernetes exec's stream records carry the ssh ones' data.
		rec.Kind = model.SSHDataKind(rec.Kind)
		switch rec.Kind {
		case model.KindSessionOpen:
			openNS, haveOpen = rec.TimeNS, true
		case model.KindK8sExec:
			var r model.K8sExec
			if started || json.Unmarshal(rec.Data, &r) != nil {
				continue
			}
			if want == nil && !r.TTY || want != nil && r.Channel != *want {
				continue
			}
			started, pty, ch, base = true, r.TTY, r.Channel, r.OffsetNS
			ts := rec.TimeNS
			if haveOpen {
				ts = openNS + r.OffsetNS
			}
			if err := header(Header{Version: 2, Width: 80, Height: 24, Timestamp: ts / 1e9}); err != nil {
				return err
			}
		case model.KindSSHRequest:
			var r model.SSHRequest
			if started || json.Unmarshal(rec.Data, &r) != nil || r.Global {
				continue
			}
			switch {
			case want == nil && r.Type == "pty-req":
			case want != nil && r.Channel == *want && (r.Type == "pty-req" || r.Type == "shell" || r.Type == "exec" || r.Type == "subsystem"):
			default:
				continue
			}
			started, pty, ch, base = true, r.Type == "pty-req", r.Channel, r.OffsetNS
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
			if typ == "o" {
				text = output(text)
			}
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
		if want != nil {
			return ErrNoChannel
		}
		return ErrNoTerminal
	}
	// Bytes of a character the session never finished.
	for _, s := range []string{"o", "e", "i"} {
		if b := carry[s]; len(b) > 0 {
			typ := "o"
			text := string(bytes.ToValidUTF8(b, []byte("\uFFFD")))
			if s == "i" {
				typ = "i"
			} else {
				text = output(text)
			}
			if err := emit(last+base, typ, text); err != nil {
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
// asciicast v2 on w: its first pty channel.
func Write(w io.Writer, records iter.Seq2[Record, error]) error {
	return write(w, records, nil)
}

// WriteChannel renders one channel of a session (see DecodeChannel) as
// asciicast v2 on w.
func WriteChannel(w io.Writer, records iter.Seq2[Record, error], channel uint32) error {
	return write(w, records, &channel)
}

func write(w io.Writer, records iter.Seq2[Record, error], want *uint32) error {
	bw := bufio.NewWriter(w)
	var line bytes.Buffer
	enc := json.NewEncoder(&line)
	enc.SetEscapeHTML(false)
	err := decode(records, want,
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
