package ssh

import (
	"bufio"
	"bytes"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Cipher choice. In SSH the client's order decides among the ciphers both
// sides offer, and OpenSSH puts chacha20-poly1305 first. Go implements
// chacha20 without assembly on amd64 (a few hundred MB/s a core), AES-GCM
// with the CPU's AES and carry-less multiply instructions (GB/s). So an
// OpenSSH client, which has supported AES-GCM since 6.2 (2013), is offered
// AES-GCM only; other clients (older paramiko has no AES-GCM) get the full
// list, AES-GCM first.
var (
	ciphers = []string{
		"aes128-gcm@openssh.com", "aes256-gcm@openssh.com",
		"chacha20-poly1305@openssh.com",
		"aes128-ctr", "aes192-ctr", "aes256-ctr",
	}
	gcmCiphers = []string{"aes128-gcm@openssh.com", "aes256-gcm@openssh.com"}
)

// ciphersFor picks the client leg's ciphers from the client's version line.
func ciphersFor(version string) []string {
	// "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10"
	_, soft, ok := strings.Cut(version, "-OpenSSH_")
	if !ok || !strings.HasPrefix(version, "SSH-2.0-") {
		return ciphers
	}
	soft = strings.TrimPrefix(soft, "for_Windows_")
	major, rest, _ := strings.Cut(soft, ".")
	minorDigits := strings.TrimLeft(rest, "0123456789")
	minor := rest[:len(rest)-len(minorDigits)]
	ma, err1 := strconv.Atoi(major)
	mi, err2 := strconv.Atoi(minor)
	if err1 != nil || err2 != nil || ma < 6 || ma == 6 && mi < 2 {
		return ciphers
	}
	return gcmCiphers
}

// peekConn is the client connection with interlock's version line already
// sent and the client's already read: it replays what was read ahead and
// drops the library's own copy of the version line.
type peekConn struct {
	net.Conn
	pending []byte
	skip    []byte
	// io, when set, is stamped with the time of each read or write that
	// moved bytes (the idle timer's clock).
	io *atomic.Int64
}

// peekVersion sends interlock's version line and reads the client's, so
// the key exchange can be set up for that client. Both lines still pass
// through the returned connection as the library expects them. A client
// that sends no version line gets the full cipher list; the library then
// rejects it.
func peekVersion(c net.Conn) (version string, pc *peekConn, err error) {
	line := []byte(serverVersion + "\r\n")
	if _, err := c.Write(line); err != nil {
		return "", nil, err
	}
	pc = &peekConn{Conn: c, skip: line}
	br := bufio.NewReaderSize(c, 512)
	l, err := br.ReadSlice('\n')
	pc.pending = append(append([]byte(nil), l...), peekBuffered(br)...)
	if err != nil && err != bufio.ErrBufferFull {
		return "", nil, err
	}
	return string(bytes.TrimRight(l, "\r\n")), pc, nil
}

func peekBuffered(br *bufio.Reader) []byte {
	b, _ := br.Peek(br.Buffered())
	return b
}

func (p *peekConn) Read(b []byte) (int, error) {
	if len(p.pending) > 0 {
		n := copy(b, p.pending)
		p.pending = p.pending[n:]
		return n, nil
	}
	n, err := p.Conn.Read(b)
	p.stamp(n)
	return n, err
}

func (p *peekConn) stamp(n int) {
	if n > 0 && p.io != nil {
		p.io.Store(time.Now().UnixNano())
	}
}

func (p *peekConn) Write(b []byte) (int, error) {
	if p.skip != nil {
		skip := p.skip
		p.skip = nil
		if bytes.Equal(b, skip) {
			return len(b), nil
		}
	}
	n, err := p.Conn.Write(b)
	p.stamp(n)
	return n, err
}
