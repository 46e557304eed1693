package sessionview

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"iter"
)

// WriteJSON is the JSON view of a session's records, for scripts: one
// object {"session", "events", "channels"}, where each event carries the
// entry's data as journaled and its payload byte for byte (payload_b64),
// so nothing is lost to escaping or to UTF-8. Events are written as they
// are read: a long session is not held in memory. When channel is not
// nil, the events of other channels are left out.
func WriteJSON(w io.Writer, id string, records iter.Seq2[Record, error], channel *uint32) (*Session, error) {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	idJSON, _ := json.Marshal(id)
	bw.WriteString(`{"session":`)
	bw.Write(idJSON)
	bw.WriteString(",\n\"events\":[\n")
	first := true
	s, err := Read(records, func(e Event) error {
		if channel != nil && e.Channel != nil && *e.Channel != *channel {
			return nil
		}
		if !first {
			bw.WriteString(",")
		}
		first = false
		return enc.Encode(e)
	})
	if err != nil {
		return s, err
	}
	chans := s.Channels
	if channel != nil {
		chans = nil
		if c := s.Channel(*channel); c != nil {
			chans = []*Channel{c}
		}
	}
	bw.WriteString("],\n\"channels\":")
	if chans == nil {
		chans = []*Channel{}
	}
	if err := enc.Encode(chans); err != nil {
		return s, err
	}
	bw.WriteString("}\n")
	return s, bw.Flush()
}

// WriteJSONL writes the events of a session's records as JSON Lines, one
// event (as in WriteJSON) a line: the byte-exact export.
func WriteJSONL(w io.Writer, records iter.Seq2[Record, error], channel *uint32) (*Session, error) {
	bw := bufio.NewWriter(w)
	var line bytes.Buffer
	enc := json.NewEncoder(&line)
	enc.SetEscapeHTML(false)
	s, err := Read(records, func(e Event) error {
		if channel != nil && e.Channel != nil && *e.Channel != *channel {
			return nil
		}
		line.Reset()
		if err := enc.Encode(e); err != nil {
			return err
		}
		_, err := bw.Write(line.Bytes())
		return err
	})
	if err != nil {
		return s, err
	}
	return s, bw.Flush()
}

// WriteRaw writes the exact bytes one channel's stream carried ("i", "o"
// or "e"), concatenated in order: what `cmp` compares with the original.
// It returns the count of bytes retention deleted from that stream
// (written as nothing: the caller must say the copy is incomplete).
func WriteRaw(w io.Writer, records iter.Seq2[Record, error], channel uint32, stream string) (s *Session, deleted int64, err error) {
	bw := bufio.NewWriter(w)
	s, err = Read(records, func(e Event) error {
		if e.Kind != "ssh.io" || e.Channel == nil || *e.Channel != channel || e.Stream != stream {
			return nil
		}
		if e.PayloadDeleted {
			var m struct {
				Bytes int64 `json:"bytes"`
			}
			json.Unmarshal(e.Data, &m)
			deleted += m.Bytes
			return nil
		}
		_, err := bw.Write(e.Payload)
		return err
	})
	if err != nil {
		return s, deleted, err
	}
	return s, deleted, bw.Flush()
}
