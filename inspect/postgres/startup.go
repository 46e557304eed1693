package postgres

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Startup packet codes.
const (
	codeCancel = 80877102
	codeSSL    = 80877103
	codeGSSENC = 80877104
	proto30    = 3 << 16
	proto32    = 3<<16 | 2
	// maxStartupLen is PostgreSQL's MAX_STARTUP_PACKET_LENGTH.
	maxStartupLen = 10000
)

// startup is what the client sent before authentication.
type startup struct {
	// version is the protocol interlock serves (3.0 or 3.2); requested is
	// what the client asked for.
	version, requested uint32
	params             map[string]string
	// unknown lists the protocol options (_pq_.*) interlock does not
	// support; they are reported in NegotiateProtocolVersion.
	unknown []string
	tls     bool
	cancel  *pgproto3.CancelRequest
}

// fatal is an error answered to the client with a FATAL ErrorResponse.
type fatal struct {
	code, msg, detail, hint string
}

func (f *fatal) Error() string { return f.msg }

func fatalf(code, format string, a ...any) *fatal {
	return &fatal{code: code, msg: fmt.Sprintf(format, a...)}
}

// sendFatal tells the client why its session ends, as well as it can.
func sendFatal(c net.Conn, err error) {
	if c == nil || err == nil {
		return
	}
	e := errorResponse("FATAL", "08P01", err.Error())
	var f *fatal
	var pe *protoError
	var ie *idleError
	switch {
	case errors.As(err, &ie):
		e = errorResponse("FATAL", "57P05", ie.Error())
	case errors.As(err, &f):
		e = errorResponse("FATAL", f.code, f.msg)
		e.Detail, e.Hint = f.detail, f.hint
	case errors.As(err, &pe):
		if pe.side == "server" {
			e = errorResponse("FATAL", "08P01", "interlock received an invalid message from the server: "+pe.msg)
		}
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return
	}
	b, _ := e.Encode(nil)
	c.Write(b)
}

func errorResponse(severity, code, msg string) *pgproto3.ErrorResponse {
	return &pgproto3.ErrorResponse{Severity: severity, SeverityUnlocalized: severity, Code: code, Message: msg}
}

// prefixConn replays bytes already read before the connection's own.
type prefixConn struct {
	net.Conn
	pre []byte
}

func (p *prefixConn) Read(b []byte) (int, error) {
	if len(p.pre) > 0 {
		n := copy(b, p.pre)
		p.pre = p.pre[n:]
		return n, nil
	}
	return p.Conn.Read(b)
}

// readStartup reads startup packets until a StartupMessage or a
// CancelRequest, doing the TLS and GSSAPI negotiation on the way. It
// reads exactly the packets' bytes (no read-ahead), so nothing sent in
// plaintext can be taken as part of the TLS session. The returned
// connection is the one to use from then on (TLS or not).
func (h *Handler) readStartup(raw net.Conn) (net.Conn, *startup, error) {
	c := raw
	st := &startup{}
	gss := false
	for round := 0; round < 4; round++ {
		var hdr [4]byte
		if _, err := io.ReadFull(c, hdr[:1]); err != nil {
			return c, nil, err
		}
		if hdr[0] == 0x16 && !st.tls {
			tc, err := h.directTLS(c, hdr[0])
			if err != nil {
				return c, nil, err
			}
			c, st.tls = tc, true
			continue
		}
		if _, err := io.ReadFull(c, hdr[1:]); err != nil {
			return c, nil, clientErr("truncated startup packet")
		}
		n := int(int32(binary.BigEndian.Uint32(hdr[:])))
		if n < 8 || n > maxStartupLen {
			return c, nil, clientErr("invalid startup packet length %d", n)
		}
		body := make([]byte, n-4)
		if _, err := io.ReadFull(c, body); err != nil {
			return c, nil, clientErr("truncated startup packet")
		}
		code := binary.BigEndian.Uint32(body)
		switch code {
		case codeSSL:
			if st.tls {
				return c, nil, clientErr("SSLRequest on a connection that is already encrypted")
			}
			if n != 8 {
				return c, nil, clientErr("invalid SSLRequest length")
			}
			cfg := h.tls.Load()
			if cfg == nil {
				if _, err := c.Write([]byte{'N'}); err != nil {
					return c, nil, err
				}
				continue
			}
			// Bytes the client sent after the SSLRequest, before our
			// answer, would be plaintext posing as part of the encrypted
			// session (CVE-2021-23214): refuse them.
			if pending(c) {
				return c, nil, clientErr("received unencrypted data after SSL request")
			}
			if _, err := c.Write([]byte{'S'}); err != nil {
				return c, nil, err
			}
			tc := tls.Server(c, cfg)
			if err := tc.Handshake(); err != nil {
				return c, nil, fmt.Errorf("client TLS handshake: %w", err)
			}
			c, st.tls = tc, true
		case codeGSSENC:
			if gss || st.tls || n != 8 {
				return c, nil, clientErr("unexpected GSSENCRequest")
			}
			gss = true
			if pending(c) {
				return c, nil, clientErr("received unencrypted data after GSSENC request")
			}
			if _, err := c.Write([]byte{'N'}); err != nil {
				return c, nil, err
			}
		case codeCancel:
			var cr pgproto3.CancelRequest
			if err := cr.Decode(body); err != nil {
				return c, nil, clientErr("%v", err)
			}
			st.cancel = &cr
			return c, st, nil
		default:
			if err := st.decode(body); err != nil {
				return c, nil, err
			}
			return c, st, nil
		}
	}
	return c, nil, clientErr("too many startup negotiation packets")
}

// directTLS is the PostgreSQL 17 direct TLS handshake: the client starts
// TLS at once, and must name ALPN "postgresql".
func (h *Handler) directTLS(c net.Conn, first byte) (net.Conn, error) {
	cfg := h.tls.Load()
	if cfg == nil {
		return c, clientErr("direct TLS is not available")
	}
	tc := tls.Server(&prefixConn{Conn: c, pre: []byte{first}}, cfg)
	if err := tc.Handshake(); err != nil {
		return c, fmt.Errorf("client direct TLS handshake: %w", err)
	}
	if tc.ConnectionState().NegotiatedProtocol != "postgresql" {
		return tc, fatalf("08P01", "direct TLS connections must use ALPN protocol \"postgresql\"")
	}
	return tc, nil
}

// pending says whether the client has sent bytes that have not been read
// (only checked on TCP connections).
func pending(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var n int
	rc.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, _ = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return true
	})
	return n > 0
}

// decode reads a StartupMessage body: the version, then name/value pairs.
func (st *startup) decode(body []byte) error {
	v := binary.BigEndian.Uint32(body)
	major, minor := v>>16, v&0xffff
	if major != 3 {
		return fatalf("0A000", "unsupported frontend protocol %d.%d: interlock supports protocol 3.0 to 3.2", major, minor)
	}
	st.requested = v
	st.version = proto30
	if minor >= 2 {
		st.version = proto32
	}
	st.params = map[string]string{}
	rest := body[4:]
	for {
		i := bytes.IndexByte(rest, 0)
		if i < 0 {
			return clientErr("startup packet is not terminated")
		}
		if i == 0 {
			if len(rest) != 1 {
				return clientErr("startup packet has data after its terminator")
			}
			break
		}
		name := string(rest[:i])
		rest = rest[i+1:]
		j := bytes.IndexByte(rest, 0)
		if j < 0 {
			return clientErr("startup parameter %q has no value", name)
		}
		val := string(rest[:j])
		rest = rest[j+1:]
		if strings.HasPrefix(name, "_pq_.") {
			st.unknown = append(st.unknown, name)
			continue
		}
		st.params[name] = val
	}
	sort.Strings(st.unknown)
	if st.params["user"] == "" {
		return fatalf("28000", "no PostgreSQL user name specified in startup packet")
	}
	if _, ok := st.params["database"]; !ok || st.params["database"] == "" {
		st.params["database"] = st.params["user"]
	}
	return nil
}

// negotiate is the NegotiateProtocolVersion the client needs, if any.
func (st *startup) negotiate() *pgproto3.NegotiateProtocolVersion {
	if st.requested&0xffff <= 2 && len(st.unknown) == 0 {
		return nil
	}
	return &pgproto3.NegotiateProtocolVersion{NewestMinorProtocol: min(st.requested&0xffff, 2), UnrecognizedOptions: st.unknown}
}

func versionString(v uint32) string { return fmt.Sprintf("%d.%d", v>>16, v&0xffff) }

// replicationRequested reads the replication startup parameter as the
// server would.
func replicationRequested(v string) bool {
	switch strings.ToLower(v) {
	case "", "false", "off", "no", "0":
		return false
	}
	return true
}
