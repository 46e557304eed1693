// Package sessionview reads one recorded SSH session back as what was
// done: every request (pty, shell, exec with its exact command, subsystem,
// refused ones with their decision), every sftp operation and every chunk
// of input, output and stderr, with its channel and time offset. A
// kubernetes session reads the same way: every API request with its
// caller and decision, its response, each exec or attach as a channel
// with its stream, port-forward streams and bearer token owners.
//
// It is the evidence view, beside the terminal picture asciicast draws. A
// terminal interprets what it is shown: a command line erased with
// backspaces or escape codes vanishes from the screen, text typed with echo
// off never appears, and bytes that are not UTF-8 cannot be drawn. Here
// nothing is interpreted: the plain text form escapes every byte a
// terminal would act on or hide (textview), so an erased line and an
// escape sequence read as bytes; the JSON form carries each chunk's exact
// bytes (base64) beside that escaped text.
package sessionview

import (
	"encoding/json"
	"iter"
	"slices"
	"strings"

	"github.com/interlock/interlock/asciicast"
	"github.com/interlock/interlock/internal/textview"
	"github.com/interlock/interlock/model"
)

// Record is one journal entry of the session, as the journal stores it.
type Record = asciicast.Record

// Event is one journal entry of the session, as the views show it.
type Event struct {
	Seq uint64 `json:"seq"`
	// TimeNS is the entry's wall-clock time (Unix nanoseconds); OffsetNS
	// the time since the session started: the recorded monotonic offset
	// where the entry has one, else the distance from session.open.
	TimeNS   int64  `json:"time_ns"`
	OffsetNS int64  `json:"offset_ns"`
	Kind     string `json:"kind"`
	// Channel is the session channel the entry is about (nil for
	// session-wide entries and global requests); Stream is an ssh.io
	// chunk's direction: "i" (typed by the client), "o" (stdout), "e"
	// (stderr).
	Channel *uint32 `json:"channel,omitempty"`
	Stream  string  `json:"stream,omitempty"`
	// Data is the entry's data exactly as journaled.
	Data json.RawMessage `json:"data"`
	// Payload is the entry's payload, byte for byte (base64 in JSON): the
	// chunk of an ssh.io entry, the keyed hashes of an ssh.mask entry.
	Payload []byte `json:"payload_b64,omitempty"`
	// PayloadDeleted says a retention job deleted the payload the entry
	// had; the entry itself still verifies.
	PayloadDeleted bool `json:"payload_deleted,omitempty"`
	// Text is an ssh.io chunk escaped for reading (textview.Escape):
	// controls as \r, \x1b ..., invalid UTF-8 as \xNN, a backslash
	// doubled. It reads back to exactly the payload.
	Text *string `json:"text,omitempty"`
}

// Channel sums up one session channel from its records.
type Channel struct {
	Channel uint32 `json:"channel"`
	// Type is the channel type (session, direct-tcpip, ...) and Open the
	// decision on opening it, from its ssh.channel entry.
	Type string          `json:"type,omitempty"`
	Open *model.Decision `json:"open_decision,omitempty"`
	// PTY is the channel's pty-req, when it asked for a terminal.
	PTY *model.SSHRequest `json:"pty,omitempty"`
	// Program is the first shell, exec or subsystem request on the
	// channel, with its command and decision; Refused are the later ones
	// (a channel runs one program; the rest are refused and journaled).
	Program *model.SSHRequest  `json:"program,omitempty"`
	Refused []model.SSHRequest `json:"refused,omitempty"`
	// StartNS is the offset of the pty-req, or of the program request for
	// a channel without a pty: where its recording starts.
	StartNS int64          `json:"start_offset_ns"`
	Exit    *model.SSHExit `json:"exit,omitempty"`
	// Bytes counts the recorded bytes by stream (i, o, e).
	Bytes map[string]int64 `json:"bytes,omitempty"`
	// SFTPOps counts the channel's sftp operations (an sftp channel is
	// recorded as operations, not bytes).
	SFTPOps int `json:"sftp_ops,omitempty"`
	started bool
}

// Terminal reports whether the channel has a terminal stream to play: it
// asked for a pty, ran (or tried to run) a shell or a command, or ran a
// subsystem other than sftp that carried bytes. An sftp channel is
// operations, not a stream.
func (c *Channel) Terminal() bool {
	if c.SFTPOps > 0 {
		return false
	}
	if c.PTY != nil {
		return true
	}
	p := c.Program
	switch {
	case p == nil:
		return false
	case p.Type == "shell" || p.Type == "exec":
		return true
	}
	return p.Type == "subsystem" && p.Command != "sftp" && len(c.Bytes) > 0
}

// Describe is a one-line summary of the channel for a person: its pty, its
// program with the exact command (escaped) and decision, and how it ended.
func (c *Channel) Describe() string {
	var parts []string
	if c.PTY != nil {
		parts = append(parts, "pty "+ptyText(*c.PTY))
	}
	if p := c.Program; p != nil {
		s := word(p.Type)
		if p.Command != "" {
			s += " " + Quote(model.ExactText(p.Command, p.CommandBase64))
		}
		parts = append(parts, s+": "+DecisionText(p.Decision))
	}
	for _, r := range c.Refused {
		parts = append(parts, "then "+word(r.Type)+" "+Quote(model.ExactText(r.Command, r.CommandBase64))+" refused: "+DecisionText(r.Decision))
	}
	if c.Exit != nil {
		parts = append(parts, exitText(*c.Exit))
	}
	if len(parts) == 0 {
		return "no program"
	}
	return strings.Join(parts, ", ")
}

// Session is what a scan of the session's records found, beside the
// events it passed on.
type Session struct {
	Open     *model.SessionOpen  `json:"open,omitempty"`
	OpenNS   int64               `json:"open_time_ns,omitempty"`
	Close    *model.SessionClose `json:"close,omitempty"`
	Channels []*Channel          `json:"channels"`
}

// Terminals returns the channels that have a terminal stream, in the order
// they started.
func (s *Session) Terminals() []*Channel {
	var out []*Channel
	for _, c := range s.Channels {
		if c.Terminal() {
			out = append(out, c)
		}
	}
	slices.SortStableFunc(out, func(a, b *Channel) int {
		switch {
		case a.StartNS < b.StartNS:
			return -1
		case a.StartNS > b.StartNS:
			return 1
		}
		return 0
	})
	return out
}

// Channel returns the channel numbered id, or nil.
func (s *Session) Channel(id uint32) *Channel {
	for _, c := range s.Channels {
		if c.Channel == id {
			return c
		}
	}
	return nil
}

// common are the fields many ssh.* records share.
type common struct {
	Channel  *uint32 `json:"channel"`
	Global   bool    `json:"global"`
	Stream   string  `json:"stream"`
	OffsetNS *int64  `json:"offset_ns"`
	Bytes    int64   `json:"bytes"`
}

// Read scans a session's records, in sequence order, passing each on to
// event (when not nil) as an Event, and returns what it found about the
// session and its channels.
func Read(records iter.Seq2[Record, error], event func(Event) error) (*Session, error) {
	s := &Session{Channels: []*Channel{}}
	haveOpen := false
	// k8sDecided is the decision of each kubernetes request (by its
	// k8s.request seq), which an exec stream of it ran under.
	k8sDecided := map[uint64]model.Decision{}
	channel := func(id uint32) *Channel {
		if c := s.Channel(id); c != nil {
			return c
		}
		c := &Channel{Channel: id}
		s.Channels = append(s.Channels, c)
		return c
	}
	for rec, err := range records {
		if err != nil {
			return s, err
		}
		var cm common
		json.Unmarshal(rec.Data, &cm)
		ev := Event{Seq: rec.Seq, TimeNS: rec.TimeNS, Kind: rec.Kind, Data: rec.Data, Payload: rec.Payload}
		switch {
		case cm.OffsetNS != nil:
			ev.OffsetNS = *cm.OffsetNS
		case haveOpen:
			ev.OffsetNS = rec.TimeNS - s.OpenNS
		}
		if (strings.HasPrefix(rec.Kind, "ssh.") || rec.Kind == model.KindK8sExec || rec.Kind == model.KindK8sIO ||
			rec.Kind == model.KindK8sResize || rec.Kind == model.KindK8sExit) && cm.Channel != nil && !cm.Global {
			ev.Channel = cm.Channel
		}
		// A kubernetes exec's stream records carry the ssh ones' data.
		kind := model.SSHDataKind(rec.Kind)
		switch kind {
		case model.KindK8sRequest:
			var m model.K8sRequest
			if json.Unmarshal(rec.Data, &m) == nil && (m.Verb == "exec" || m.Verb == "attach") {
				k8sDecided[m.Seq] = m.Decision
			}
		case model.KindK8sExec:
			var m model.K8sExec
			if json.Unmarshal(rec.Data, &m) != nil {
				break
			}
			c := channel(m.Channel)
			c.Type = "k8s." + m.Type
			if m.TTY && c.PTY == nil {
				c.PTY = &model.SSHRequest{Channel: m.Channel, Type: "pty-req", OffsetNS: m.OffsetNS}
			}
			if c.Program == nil {
				c.Program = &model.SSHRequest{Channel: m.Channel, Type: "exec", Command: strings.Join(m.Command, " "), OffsetNS: m.OffsetNS,
					Decision: k8sDecided[m.Seq]}
				c.started, c.StartNS = true, m.OffsetNS
			}
		case model.KindSessionOpen:
			var o model.SessionOpen
			if json.Unmarshal(rec.Data, &o) == nil && !haveOpen {
				s.Open, s.OpenNS, haveOpen = &o, rec.TimeNS, true
				ev.OffsetNS = 0
			}
		case model.KindSessionClose:
			var c model.SessionClose
			if json.Unmarshal(rec.Data, &c) == nil {
				s.Close = &c
			}
		case model.KindSSHChannel:
			var m model.SSHChannel
			if json.Unmarshal(rec.Data, &m) == nil {
				c := channel(m.Channel)
				c.Type, c.Open = m.Type, &m.Decision
			}
		case model.KindSSHRequest:
			var m model.SSHRequest
			if json.Unmarshal(rec.Data, &m) != nil || m.Global {
				break
			}
			c := channel(m.Channel)
			switch m.Type {
			case "pty-req":
				if c.PTY == nil {
					c.PTY = &m
					if !c.started {
						c.started, c.StartNS = true, m.OffsetNS
					}
				}
			case "shell", "exec", "subsystem":
				if c.Program == nil {
					c.Program = &m
					if !c.started {
						c.started, c.StartNS = true, m.OffsetNS
					}
				} else {
					c.Refused = append(c.Refused, m)
				}
			}
		case model.KindSSHExit:
			var m model.SSHExit
			if json.Unmarshal(rec.Data, &m) == nil {
				channel(m.Channel).Exit = &m
			}
		case model.KindSSHIO:
			ev.Stream = cm.Stream
			if ev.Channel != nil {
				c := channel(*ev.Channel)
				if c.Bytes == nil {
					c.Bytes = map[string]int64{}
				}
				c.Bytes[cm.Stream] += cm.Bytes
			}
			if rec.Payload == nil && cm.Bytes > 0 {
				ev.PayloadDeleted = true
				break
			}
			t := textview.Escape(string(rec.Payload))
			ev.Text = &t
		case model.KindSSHSFTP:
			if ev.Channel != nil {
				channel(*ev.Channel).SFTPOps++
			}
		}
		if event != nil {
			if err := event(ev); err != nil {
				return s, err
			}
		}
	}
	return s, nil
}
