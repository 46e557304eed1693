package postgres

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"io"
	"math/rand"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// fakeServer is a minimal PostgreSQL server: it accepts any login, then
// either sends script and closes (fuzzing the server leg) or discards
// what it receives.
func fakeServer(t testing.TB, script func() []byte) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				be := pgproto3.NewBackend(c, c)
				if _, err := be.ReceiveStartupMessage(); err != nil {
					return
				}
				be.Send(&pgproto3.AuthenticationOk{})
				be.Send(&pgproto3.ParameterStatus{Name: "server_version", Value: "15.0"})
				be.Send(&pgproto3.ParameterStatus{Name: "standard_conforming_strings", Value: "on"})
				be.Send(&pgproto3.ParameterStatus{Name: "client_encoding", Value: "UTF8"})
				be.Send(&pgproto3.BackendKeyData{ProcessID: 4242, SecretKey: []byte{1, 2, 3, 4}})
				be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
				if be.Flush() != nil {
					return
				}
				if script != nil {
					// Wait for the client's first message, then answer
					// with the script.
					var b [1]byte
					c.Read(b[:])
					c.Write(script())
					return
				}
				io.Copy(io.Discard, c)
			}()
		}
	}()
	return ln.Addr().String()
}

func startupPacket(version uint32, params ...string) []byte {
	b := binary.BigEndian.AppendUint32(make([]byte, 4), version)
	for _, p := range params {
		b = append(append(b, p...), 0)
	}
	b = append(b, 0)
	binary.BigEndian.PutUint32(b, uint32(len(b)))
	return b
}

func dialProxy(t testing.TB, p *proxy) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

// readMsgs reads backend messages until ReadyForQuery, an error or EOF.
func readMsgs(c net.Conn) []pgproto3.BackendMessage {
	fe := pgproto3.NewFrontend(c, c)
	var out []pgproto3.BackendMessage
	for {
		m, err := fe.Receive()
		if err != nil {
			return out
		}
		switch x := m.(type) {
		case *pgproto3.ErrorResponse:
			e := *x
			out = append(out, &e)
			if x.Severity == "FATAL" {
				return out
			}
		case *pgproto3.NegotiateProtocolVersion:
			n := *x
			n.UnrecognizedOptions = append([]string(nil), x.UnrecognizedOptions...)
			out = append(out, &n)
		case *pgproto3.ReadyForQuery:
			out = append(out, &pgproto3.ReadyForQuery{TxStatus: x.TxStatus})
			return out
		default:
			out = append(out, m)
		}
	}
}

func fatalCode(msgs []pgproto3.BackendMessage) string {
	for _, m := range msgs {
		if e, ok := m.(*pgproto3.ErrorResponse); ok {
			return e.Code
		}
	}
	return ""
}

func TestStartupNegotiation(t *testing.T) {
	p := startProxy(t, proxyOpts{upstream: fakeServer(t, nil), tls: "disable"})
	user := []string{"user", "app", "database", "appdb"}

	// A newer minor version and an unknown protocol option: answered
	// with NegotiateProtocolVersion, then the session goes on as 3.2.
	c := dialProxy(t, p)
	c.Write(startupPacket(3<<16|5, append(user, "_pq_.magic", "1")...))
	msgs := readMsgs(c)
	c.Close()
	npv, ok := msgs[0].(*pgproto3.NegotiateProtocolVersion)
	if !ok || npv.NewestMinorProtocol != 2 || len(npv.UnrecognizedOptions) != 1 || npv.UnrecognizedOptions[0] != "_pq_.magic" {
		t.Fatalf("negotiation: %#v", msgs)
	}
	if _, ok := msgs[len(msgs)-1].(*pgproto3.ReadyForQuery); !ok {
		t.Fatalf("no ReadyForQuery after negotiation: %#v", msgs)
	}
	var key *pgproto3.BackendKeyData
	for _, m := range msgs {
		if k, ok := m.(*pgproto3.BackendKeyData); ok {
			key = k
		}
	}
	if key == nil || len(key.SecretKey) != 32 || key.ProcessID != 4242 {
		t.Errorf("minted key %+v", key)
	}

	// Protocol 2 is refused.
	c = dialProxy(t, p)
	c.Write(startupPacket(2<<16, user...))
	if code := fatalCode(readMsgs(c)); code != "0A000" {
		t.Errorf("protocol 2: %q", code)
	}
	c.Close()

	// GSSENCRequest gets N, then SSLRequest gets S, TLS, and the session.
	c = dialProxy(t, p)
	c.Write([]byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30})
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil || b[0] != 'N' {
		t.Fatalf("GSSENC answer %q %v", b, err)
	}
	c.Write([]byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f})
	if _, err := io.ReadFull(c, b[:]); err != nil || b[0] != 'S' {
		t.Fatalf("SSL answer %q %v", b, err)
	}
	tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true})
	tc.Write(startupPacket(3<<16, user...))
	if _, ok := readMsgs(tc)[0].(*pgproto3.AuthenticationOk); !ok {
		t.Errorf("no login over TLS")
	}
	tc.Close()

	// Plaintext sent right behind an SSLRequest is refused, never taken
	// into the TLS session.
	c = dialProxy(t, p)
	c.Write(append([]byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f}, startupPacket(3<<16, user...)...))
	time.Sleep(50 * time.Millisecond)
	rest, _ := io.ReadAll(c)
	if !bytes.Contains(rest, []byte("unencrypted data after SSL request")) {
		t.Errorf("buffered plaintext after SSLRequest: got %q", rest)
	}
	c.Close()

	// Direct TLS without ALPN postgresql is refused.
	c = dialProxy(t, p)
	tc = tls.Client(c, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	if err := tc.Handshake(); err == nil {
		t.Errorf("direct TLS with a foreign ALPN was accepted")
	}
	c.Close()
	c = dialProxy(t, p)
	tc = tls.Client(c, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"postgresql"}})
	tc.Write(startupPacket(3<<16, user...))
	if _, ok := readMsgs(tc)[0].(*pgproto3.AuthenticationOk); !ok {
		t.Errorf("direct TLS with ALPN postgresql failed")
	}
	tc.Close()
}

// session runs one client session on a fake server; it returns what the
// client got.
func fuzzSession(t testing.TB, p *proxy, clientBytes []byte) []byte {
	c := dialProxy(t, p)
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write(startupPacket(3<<16, "user", "app", "database", "appdb"))
	readMsgs(c)
	c.Write(clientBytes)
	if tcp, ok := c.(*net.TCPConn); ok {
		tcp.CloseWrite()
	}
	out, _ := io.ReadAll(c)
	return out
}

var fuzzSeeds = [][]byte{
	{},
	[]byte("Q\x00\x00\x00\x0dSELECT 1\x00"),
	[]byte("Q\x00\x00\x00\x05"),
	[]byte("Q\xff\xff\xff\xff"),
	[]byte("Q\x00\x00\x00\x03"),
	[]byte("P\x00\x00\x00\x10\x00SELECT $1\x00\x00\x01"),
	[]byte("B\x00\x00\x00\x0e\x00\x00\x00\x01\x00\x01\x00\x01\x7f\xff\xff\xff"),
	[]byte("B\x00\x00\x00\x0c\x00\x00\x00\x00\x00\x01\xff\xff\xff\xfe"),
	[]byte("E\x00\x00\x00\x09\x00\x00\x00\x00\x00S\x00\x00\x00\x04"),
	[]byte("D\x00\x00\x00\x06Sx"),
	[]byte("C\x00\x00\x00\x06Z\x00"),
	[]byte("F\x00\x00\x00\x08\x00\x00\x00\x01"),
	[]byte("d\x00\x00\x00\x08abcd"),
	[]byte("Z\x00\x00\x00\x05I"),
	[]byte("X\x00\x00\x00\x04"),
}

var serverSeeds = [][]byte{
	{},
	[]byte("T\x00\x00\x00\x06\x00\x01"),
	[]byte("D\x00\x00\x00\x0a\x00\x01\x00\x00\x00\x10ab"),
	[]byte("D\xff\xff\xff\xff"),
	[]byte("C\x00\x00\x00\x0dSELECT 1\x00Z\x00\x00\x00\x05I"),
	[]byte("E\x00\x00\x00\x05\x00"),
	[]byte("E\x00\x00\x00\x08SERR"),
	[]byte("Z\x00\x00\x00\x05I"),
	[]byte("Z\x00\x00\x00\x04"),
	[]byte("R\x00\x00\x00\x08\x00\x00\x00\x00"),
	[]byte("W\x00\x00\x00\x07\x00\x00\x00"),
	[]byte("A\x00\x00\x00\x08\x00\x00\x00\x01"),
	[]byte("S\x00\x00\x00\x06a\x00"),
	[]byte("V\x00\x00\x00\x08\x00\x00\x00\x10"),
	[]byte("1\x00\x00\x00\x04"),
}

// FuzzClientMessages feeds arbitrary bytes as the client's messages after
// a valid login. Nothing may panic; the daemon must keep serving.
func FuzzClientMessages(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	p := startProxy(f, proxyOpts{upstream: fakeServer(f, nil), tls: "disable"})
	f.Fuzz(func(t *testing.T, b []byte) {
		fuzzSession(t, p, b)
		if p.life.Panics() != 0 {
			t.Fatalf("panic on client input %q", b)
		}
	})
}

// FuzzServerMessages feeds arbitrary bytes as the server's answer to a
// query.
func FuzzServerMessages(f *testing.F) {
	for _, s := range serverSeeds {
		f.Add(s)
	}
	var current atomic.Pointer[[]byte]
	up := fakeServer(f, func() []byte { return *current.Load() })
	p := startProxy(f, proxyOpts{upstream: up, tls: "disable"})
	f.Fuzz(func(t *testing.T, b []byte) {
		current.Store(&b)
		fuzzSession(t, p, []byte("Q\x00\x00\x00\x0dSELECT 1\x00"))
		if p.life.Panics() != 0 {
			t.Fatalf("panic on server input %q", b)
		}
	})
}

// TestMalformedInputKeepsOthersServing runs random mutations of the seeds
// on both legs for a short while, as the normal test run's share of the
// fuzzing, with a healthy session open all along.
func TestMalformedInputKeepsOthersServing(t *testing.T) {
	var current atomic.Pointer[[]byte]
	up := fakeServer(t, func() []byte { return *current.Load() })
	p := startProxy(t, proxyOpts{upstream: up, tls: "disable"})
	clean := startProxy(t, proxyOpts{upstream: fakeServer(t, nil), tls: "disable"})
	healthy := dialProxy(t, clean)
	healthy.SetDeadline(time.Now().Add(time.Minute))
	healthy.Write(startupPacket(3<<16, "user", "app", "database", "appdb"))
	readMsgs(healthy)

	rng := rand.New(rand.NewSource(1))
	mutate := func(seed []byte) []byte {
		b := append([]byte(nil), seed...)
		for k := rng.Intn(4); k > 0; k-- {
			switch op := rng.Intn(4); {
			case op == 0 && len(b) > 0:
				b[rng.Intn(len(b))] = byte(rng.Intn(256))
			case op == 1 && len(b) > 0:
				b = b[:rng.Intn(len(b))]
			case op == 2:
				b = append(b, fuzzSeeds[rng.Intn(len(fuzzSeeds))]...)
			default:
				i := rng.Intn(len(b) + 1)
				b = append(b[:i], append([]byte{byte(rng.Intn(256))}, b[i:]...)...)
			}
		}
		return b
	}
	deadline := time.Now().Add(3 * time.Second)
	n := 0
	for time.Now().Before(deadline) {
		m := mutate(serverSeeds[rng.Intn(len(serverSeeds))])
		current.Store(&m)
		fuzzSession(t, p, []byte("Q\x00\x00\x00\x0dSELECT 1\x00"))
		fuzzSession(t, clean, mutate(fuzzSeeds[rng.Intn(len(fuzzSeeds))]))
		n++
	}
	if p.life.Panics()+clean.life.Panics() != 0 {
		t.Fatalf("sessions panicked")
	}
	// The healthy session still works: a Sync gets its ReadyForQuery
	// through the fake server... which discards; so ask for a local
	// answer: a malformed message gets a FATAL, proving the loop runs.
	healthy.Write([]byte("Q\x00\x00\x00\x03"))
	msgs := readMsgs(healthy)
	if fatalCode(msgs) != "08P01" {
		t.Errorf("healthy session did not answer: %#v", msgs)
	}
	t.Logf("%d mutated sessions on each leg", n)
	// And a new session logs in.
	c := dialProxy(t, clean)
	c.Write(startupPacket(3<<16, "user", "app", "database", "appdb"))
	if msgs := readMsgs(c); len(msgs) == 0 || !isReady(msgs[len(msgs)-1]) {
		t.Errorf("new session after fuzzing: %#v", msgs)
	}
	c.Close()
}

func isReady(m pgproto3.BackendMessage) bool {
	_, ok := m.(*pgproto3.ReadyForQuery)
	return ok
}
