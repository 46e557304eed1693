package sessionview

import (
	"encoding/json"
	"fmt"
	"io"
	"iter"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/interlock/interlock/asciicast"
	"github.com/interlock/interlock/internal/textview"
	"github.com/interlock/interlock/model"
)

// Quote is client-controlled text on one line of a view: escaped by
// textview, a double quote as \" too, between double quotes. What a
// client puts in a command or a path then cannot close the quotes and
// print a decision of its own after them.
func Quote(s string) string {
	return `"` + strings.ReplaceAll(textview.Escape(s), `"`, `\"`) + `"`
}

// word is a protocol name (a request type, an sftp op) as is when it is
// a plain token, quoted otherwise: most are fixed words, but the client
// chooses an unknown request's type.
func word(s string) string {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("@._-", r)) {
			return Quote(s)
		}
	}
	if s == "" {
		return `""`
	}
	return s
}

// DecisionText is a decision for a person: "allow (default)", "deny
// (rule): reason", with the approval request or grant behind it.
func DecisionText(d model.Decision) string {
	if d.Action == "" {
		return "no decision"
	}
	s := textview.Escape(string(d.Action))
	if d.Rule != "" {
		s += " (" + textview.Escape(d.Rule) + ")"
	}
	if d.Request != "" {
		s += " request " + textview.Escape(d.Request)
	}
	if d.Grant != "" {
		s += " grant " + textview.Escape(d.Grant)
	}
	if d.Reason != "" {
		s += ": " + Quote(d.Reason)
	}
	return s
}

func ptyText(r model.SSHRequest) string {
	if r.Term == "" && r.Cols == 0 && r.Rows == 0 {
		// A kubernetes exec's tty: its size comes as resizes.
		return "(no size)"
	}
	return fmt.Sprintf("%s %dx%d", Quote(r.Term), r.Cols, r.Rows)
}

func exitText(x model.SSHExit) string {
	switch {
	case x.ExitStatus != nil:
		return "exit status " + strconv.Itoa(*x.ExitStatus)
	case x.ExitSignal != "":
		return "exit signal " + Quote(x.ExitSignal)
	}
	return "exit"
}

// streamWord names an ssh.io stream in the plain view, padded to one
// width so the data column lines up.
func streamWord(s string) string {
	switch s {
	case "i":
		return "in "
	case "o":
		return "out"
	case "e":
		return "err"
	}
	return Quote(s)
}

// Lines renders one event as lines of plain text: its time offset, its
// channel and what it says, every client-controlled byte escaped. An
// ssh.io (or k8s.io) chunk is split after each newline (escaped as \n, so the lines
// join back to the exact chunk); the continuation lines are indented under
// the first.
func Lines(e Event) []string {
	ch := "    "
	if e.Channel != nil {
		ch = fmt.Sprintf("ch %d", *e.Channel)
	}
	prefix := fmt.Sprintf("+%s %-5s ", asciicast.FormatTime(e.OffsetNS), ch)
	if e.Kind == model.KindSSHIO || e.Kind == model.KindK8sIO {
		head := prefix + streamWord(e.Stream) + " "
		if e.PayloadDeleted {
			var m model.SSHIO
			json.Unmarshal(e.Data, &m)
			return []string{head + fmt.Sprintf("[%d bytes not kept: deleted by retention]", m.Bytes)}
		}
		pieces := splitAfterNewline(string(e.Payload))
		out := make([]string, len(pieces))
		pad := strings.Repeat(" ", len(head))
		for i, p := range pieces {
			if i == 0 {
				out[i] = head + Quote(p)
			} else {
				out[i] = pad + Quote(p)
			}
		}
		return out
	}
	return []string{prefix + describe(e)}
}

// splitAfterNewline cuts s after each "\n"; an empty s is one empty piece.
func splitAfterNewline(s string) []string {
	if s == "" {
		return []string{""}
	}
	var out []string
	for s != "" {
		i := strings.IndexByte(s, '\n')
		if i < 0 || i == len(s)-1 {
			out = append(out, s)
			break
		}
		out = append(out, s[:i+1])
		s = s[i+1:]
	}
	return out
}

// describe is the text of an event other than an ssh.io or k8s.io chunk.
func describe(e Event) string {
	if s, ok := describeK8s(e); ok {
		return s
	}
	// A kubernetes exec's resize and exit, and a response's masking,
	// carry the ssh entries' data.
	kind := model.SSHDataKind(e.Kind)
	switch kind {
	case model.KindSessionOpen:
		var m model.SessionOpen
		if json.Unmarshal(e.Data, &m) != nil {
			break
		}
		s := fmt.Sprintf("session open: target %s (%s) %s", Quote(m.Target.Name), textview.Escape(string(m.Target.Protocol)), addr(m.OrigDst))
		k := m.Identity.Kernel
		s += fmt.Sprintf(", pid %d uid %d comm %s", k.TGID, k.UID, Quote(k.Comm))
		if p := m.Identity.Proc; p != nil {
			s += " exe " + Quote(p.Exe)
		}
		if h := m.Identity.Human; h != nil {
			s += ", human " + HumanText(h)
		}
		if w := m.Identity.Workload; w != nil {
			s += ", workload " + WorkloadText(w, 0)
		}
		if a := m.Identity.Agent; a != nil {
			s += ", agent " + AgentText(a) + " (" + AgentDetail(a) + ")"
		}
		if m.SSH != nil {
			s += ", user " + Quote(m.SSH.User) + ", client " + Quote(m.SSH.ClientVersion)
		}
		if m.Kubernetes != nil {
			s += ", " + K8sStartupText(*m.Kubernetes)
		}
		return s + ": " + DecisionText(m.Decision)
	case model.KindSessionClose:
		var m model.SessionClose
		if json.Unmarshal(e.Data, &m) != nil {
			break
		}
		s := fmt.Sprintf("session close: %d bytes up, %d down, %s", m.BytesUp, m.BytesDown, time.Duration(m.DurationNS).Round(time.Millisecond))
		if m.Error != "" {
			s += ", error " + Quote(m.Error)
		}
		return s
	case model.KindSSHChannel:
		var m model.SSHChannel
		if json.Unmarshal(e.Data, &m) != nil {
			break
		}
		s := "channel " + word(m.Type)
		if m.Detail != "" {
			s += " to " + Quote(m.Detail)
		}
		return s + ": " + DecisionText(m.Decision)
	case model.KindSSHRequest:
		var m struct {
			model.SSHRequest
			Count uint64 `json:"count"`
		}
		if json.Unmarshal(e.Data, &m) != nil {
			break
		}
		s := "request " + word(m.Type)
		if m.Global {
			s = "global " + s
		}
		switch {
		case m.Type == "pty-req":
			s += " " + ptyText(m.SSHRequest)
		case m.Command != "":
			s += " " + Quote(model.ExactText(m.Command, m.CommandBase64))
		case m.Env != "":
			s += " " + Quote(model.ExactText(m.Env, m.EnvBase64))
		case m.Signal != "":
			s += " " + Quote(m.Signal)
		}
		if m.Count > 0 {
			s += fmt.Sprintf(" ×%d", m.Count)
		}
		return s + ": " + DecisionText(m.Decision)
	case model.KindSSHResize:
		var m model.SSHResize
		if json.Unmarshal(e.Data, &m) != nil {
			break
		}
		return fmt.Sprintf("resize %dx%d", m.Cols, m.Rows)
	case model.KindSSHExit:
		var m model.SSHExit
		if json.Unmarshal(e.Data, &m) != nil {
			break
		}
		return exitText(m)
	case model.KindSSHSFTP:
		var m model.SSHSFTP
		if json.Unmarshal(e.Data, &m) != nil {
			break
		}
		s := "sftp " + word(m.Op) + " " + Quote(model.ExactText(m.Path, m.PathBase64))
		if m.Target != "" {
			s += " -> " + Quote(model.ExactText(m.Target, m.TargetBase64))
		}
		if len(m.Flags) > 0 {
			s += " [" + textview.Escape(strings.Join(m.Flags, ",")) + "]"
		}
		for _, kv := range [][2]string{{"sent", m.SentPath}, {"sent target", m.SentTarget}, {"real", m.RealPath}, {"real target", m.RealTarget}} {
			if kv[1] != "" {
				s += ", " + kv[0] + " " + Quote(kv[1])
			}
		}
		if m.BytesRead > 0 || m.BytesWritten > 0 {
			s += fmt.Sprintf(", read %d written %d bytes", m.BytesRead, m.BytesWritten)
		}
		return s + ", status " + Quote(m.Status) + ": " + DecisionText(m.Decision)
	case model.KindSSHMask:
		var m model.MaskDecision
		if json.Unmarshal(e.Data, &m) != nil {
			break
		}
		return MaskText(m)
	case model.KindGap:
		var m model.Gap
		if json.Unmarshal(e.Data, &m) != nil {
			break
		}
		return fmt.Sprintf("journal gap: %d records lost (queue full); output may be missing here", m.Lost)
	}
	// Anything else is shown as the journal has it, escaped.
	return textview.Escape(e.Kind) + " " + textview.Escape(string(e.Data))
}

func addr(a netip.AddrPort) string {
	if !a.IsValid() {
		return "?"
	}
	return a.String()
}

// WritePlain is the plain text view of a session's records: a header, one
// or more lines per event, and the channels' summary at the end. When
// channel is not nil, the events of other channels are left out
// (session-wide ones stay).
func WritePlain(w io.Writer, id string, records iter.Seq2[Record, error], channel *uint32) (*Session, error) {
	fmt.Fprintf(w, "session %s: time offsets in seconds; client bytes escaped (\\r \\n \\x1b ..., invalid UTF-8 as \\xNN, \\\\ for a backslash)\n", textview.Escape(id))
	s, err := Read(records, func(e Event) error {
		if channel != nil && e.Channel != nil && *e.Channel != *channel {
			return nil
		}
		for _, l := range Lines(e) {
			if _, err := io.WriteString(w, l+"\n"); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return s, err
	}
	fmt.Fprintln(w, "channels:")
	for _, c := range s.Channels {
		if channel != nil && c.Channel != *channel {
			continue
		}
		kind := c.Type
		if kind == "" {
			kind = "?"
		}
		bytes := ""
		if len(c.Bytes) > 0 {
			bytes = fmt.Sprintf(", %d bytes in, %d out, %d err", c.Bytes["i"], c.Bytes["o"], c.Bytes["e"])
		}
		if c.SFTPOps > 0 {
			bytes += fmt.Sprintf(", %d sftp operations", c.SFTPOps)
		}
		fmt.Fprintf(w, "  ch %d %s: %s%s\n", c.Channel, word(kind), c.Describe(), bytes)
	}
	return s, nil
}
