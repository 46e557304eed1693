package postgres

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Sizes that bound what one session holds in memory. A message whose
// body fits in bufSize is read and forwarded in place (no copy); up to its
// type's limit it is read whole; beyond that it is streamed through, if
// its type can be (DataRow, CopyData, Bind, FunctionCall and its
// response), or refused.
const (
	bufSize = 64 << 10
	// maxWhole is the most of a non-text message read into memory.
	maxWhole = 1 << 20
	// maxText bounds Query and Parse: their SQL must be read whole to be
	// parsed and journaled.
	maxText = 16 << 20
	// maxServerWhole bounds the server messages that cannot be streamed
	// (RowDescription, ErrorResponse, ...).
	maxServerWhole = 16 << 20
	// maxProtocolLen is PostgreSQL's own limit for any message.
	maxProtocolLen = 1<<30 - 1
)

// protoError is a protocol violation by one side. It ends the session with
// a FATAL 08P01 to the client.
type protoError struct {
	side string // "client" or "server"
	msg  string
}

func (e *protoError) Error() string { return "invalid message from the " + e.side + ": " + e.msg }

func clientErr(format string, a ...any) error {
	return &protoError{side: "client", msg: fmt.Sprintf(format, a...)}
}

func serverErr(format string, a ...any) error {
	return &protoError{side: "server", msg: fmt.Sprintf(format, a...)}
}

// msg is one message as read. raw (header included) and body are valid
// until the next call to next; both are nil for a streamed message, whose
// n body bytes the caller must consume from the reader.
type msg struct {
	typ    byte
	raw    []byte
	body   []byte
	n      int
	stream bool
}

// reader frames the messages of one direction.
type reader struct {
	br      *bufio.Reader
	side    string
	scratch []byte
	// discard is what the previous in-place message left in br.
	discard int
	// limit says how much of a message of a type may be read whole, and
	// whether larger ones may be streamed.
	limit func(typ byte) (whole int, streamable bool)
}

func newReader(r io.Reader, side string, limit func(byte) (int, bool)) *reader {
	return &reader{br: bufio.NewReaderSize(r, bufSize), side: side, limit: limit}
}

func (r *reader) err(format string, a ...any) error {
	return &protoError{side: r.side, msg: fmt.Sprintf(format, a...)}
}

// buffered says whether more input is already here: when it is not, the
// writer on the other side is flushed.
func (r *reader) buffered() int { return r.br.Buffered() - r.discard }

// whole reports whether a complete message is buffered: next will not
// wait for the client.
func (r *reader) whole() bool {
	n := r.buffered()
	if n < 5 {
		return false
	}
	b, err := r.br.Peek(r.discard + 5)
	if err != nil {
		return false
	}
	return int64(n) >= 1+int64(binary.BigEndian.Uint32(b[r.discard+1:]))
}

func (r *reader) next() (msg, error) {
	if r.discard > 0 {
		if _, err := r.br.Discard(r.discard); err != nil {
			return msg{}, err
		}
		r.discard = 0
	}
	if cap(r.scratch) > maxWhole {
		r.scratch = nil // do not keep a large buffer beyond its message
	}
	hdr, err := r.br.Peek(5)
	if err != nil {
		if len(hdr) > 0 && errors.Is(err, io.EOF) {
			return msg{}, r.err("truncated message header")
		}
		return msg{}, err
	}
	typ := hdr[0]
	length := int64(int32(binary.BigEndian.Uint32(hdr[1:])))
	if length < 4 || length > maxProtocolLen {
		return msg{}, r.err("message %q has an invalid length %d", printable(typ), length)
	}
	n := int(length) - 4
	total := n + 5
	whole, streamable := r.limit(typ)
	if whole < 0 {
		return msg{}, r.err("unexpected message type %q", printable(typ))
	}
	if total <= r.br.Size() {
		raw, err := r.br.Peek(total)
		if err != nil {
			return msg{}, truncated(r, err)
		}
		r.discard = total
		return msg{typ: typ, raw: raw, body: raw[5:], n: n}, nil
	}
	if n <= whole {
		if cap(r.scratch) < total {
			r.scratch = make([]byte, total)
		}
		raw := r.scratch[:total]
		if _, err := io.ReadFull(r.br, raw); err != nil {
			return msg{}, truncated(r, err)
		}
		return msg{typ: typ, raw: raw, body: raw[5:], n: n}, nil
	}
	if !streamable {
		return msg{}, r.err("message %q of %d bytes is larger than interlock's limit of %d", printable(typ), n, whole)
	}
	if _, err := r.br.Discard(5); err != nil {
		return msg{}, truncated(r, err)
	}
	return msg{typ: typ, n: n, stream: true}, nil
}

func truncated(r *reader, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return r.err("truncated message")
	}
	return err
}

func printable(b byte) string {
	if b >= 0x20 && b < 0x7f {
		return string(rune(b))
	}
	return fmt.Sprintf("\\x%02x", b)
}

// header appends a message header for a body of n bytes.
func header(dst []byte, typ byte, n int) []byte {
	return append(dst, typ, byte((n+4)>>24), byte((n+4)>>16), byte((n+4)>>8), byte(n+4))
}

// body is a streamed message body: reads are bounded by what is left, and
// every byte read is forwarded to dst as it is consumed, except that with
// hold the last byte is kept back until release (the peer cannot act on a
// message before its last byte).
type body struct {
	src    *bufio.Reader
	dst    io.Writer
	left   int
	hold   bool
	last   byte
	side   string
	werr   error
	scrap  [8]byte
	parsed int
}

func (b *body) err(format string, a ...any) error {
	return &protoError{side: b.side, msg: fmt.Sprintf(format, a...)}
}

// read fills p from the body, forwarding what it read.
func (b *body) read(p []byte) error {
	if len(p) > b.left {
		return b.err("field runs past the end of the message")
	}
	if _, err := io.ReadFull(b.src, p); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return b.err("truncated message")
		}
		return err
	}
	b.left -= len(p)
	b.parsed += len(p)
	out := p
	if b.hold && b.left == 0 && len(out) > 0 {
		b.last = out[len(out)-1]
		out = out[:len(out)-1]
	}
	if b.dst != nil && len(out) > 0 && b.werr == nil {
		_, b.werr = b.dst.Write(out)
	}
	return nil
}

func (b *body) int16() (int, error) {
	if err := b.read(b.scrap[:2]); err != nil {
		return 0, err
	}
	return int(int16(binary.BigEndian.Uint16(b.scrap[:2]))), nil
}

func (b *body) int32() (int, error) {
	if err := b.read(b.scrap[:4]); err != nil {
		return 0, err
	}
	return int(int32(binary.BigEndian.Uint32(b.scrap[:4]))), nil
}

// cstring reads a NUL-terminated string of at most max bytes.
func (b *body) cstring(max int) (string, error) {
	var s []byte
	for {
		if err := b.read(b.scrap[:1]); err != nil {
			return "", err
		}
		if b.scrap[0] == 0 {
			return string(s), nil
		}
		if len(s) >= max {
			return "", b.err("string longer than %d bytes", max)
		}
		s = append(s, b.scrap[0])
	}
}

// bytes consumes n bytes and returns at most the first keep of them.
func (b *body) bytes(n, keep int) ([]byte, error) {
	if n > b.left {
		return nil, b.err("value of %d bytes runs past the end of the message", n)
	}
	k := min(n, keep)
	out := make([]byte, k)
	if err := b.read(out); err != nil {
		return nil, err
	}
	var buf [32 << 10]byte
	for rest := n - k; rest > 0; {
		c := min(rest, len(buf))
		if err := b.read(buf[:c]); err != nil {
			return nil, err
		}
		rest -= c
	}
	return out, nil
}

// rest consumes whatever is left of the body.
func (b *body) rest() error {
	_, err := b.bytes(b.left, 0)
	return err
}

// release forwards the held-back last byte.
func (b *body) release() error {
	if b.werr != nil {
		return b.werr
	}
	if b.hold && b.dst != nil {
		_, b.werr = b.dst.Write([]byte{b.last})
	}
	return b.werr
}

// cursor parses a message body held in memory.
type cursor struct {
	b    []byte
	side string
}

func (c *cursor) err(format string, a ...any) error {
	return &protoError{side: c.side, msg: fmt.Sprintf(format, a...)}
}

func (c *cursor) int16() (int, error) {
	if len(c.b) < 2 {
		return 0, c.err("truncated message")
	}
	v := int(int16(binary.BigEndian.Uint16(c.b)))
	c.b = c.b[2:]
	return v, nil
}

func (c *cursor) int32() (int, error) {
	if len(c.b) < 4 {
		return 0, c.err("truncated message")
	}
	v := int(int32(binary.BigEndian.Uint32(c.b)))
	c.b = c.b[4:]
	return v, nil
}

func (c *cursor) cstring() (string, error) {
	for i, ch := range c.b {
		if ch == 0 {
			s := string(c.b[:i])
			c.b = c.b[i+1:]
			return s, nil
		}
	}
	return "", c.err("unterminated string")
}

func (c *cursor) bytes(n int) ([]byte, error) {
	if n < 0 || n > len(c.b) {
		return nil, c.err("value of %d bytes runs past the end of the message", n)
	}
	v := c.b[:n]
	c.b = c.b[n:]
	return v, nil
}
