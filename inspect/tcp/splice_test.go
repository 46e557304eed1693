package tcp

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/interlock/interlock/inspect"
)

// relayed is a client and a server joined through Relay.
type relayed struct {
	client, server net.Conn
	done           chan struct{}
	up, down       int64
	err            error
}

func relayPair(t *testing.T, p *Pipes, idle time.Duration, wrap func(net.Conn) net.Conn) *relayed {
	t.Helper()
	client, proxyClientSide := pair(t)
	proxyUpSide, server := pair(t)
	if wrap != nil {
		proxyClientSide = wrap(proxyClientSide)
	}
	r := &relayed{client: client, server: server, done: make(chan struct{})}
	go func() {
		r.up, r.down, r.err = p.Relay(context.Background(), proxyClientSide, proxyUpSide, idle)
		close(r.done)
	}()
	return r
}

func (r *relayed) wait(t *testing.T, within time.Duration) {
	t.Helper()
	select {
	case <-r.done:
	case <-time.After(within):
		t.Fatalf("Relay still running after %s", within)
	}
}

// openFDs counts this process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestRelayIdle: a session with no byte either way for the idle period is
// ended with inspect.ErrIdle, and both sockets are closed.
func TestRelayIdle(t *testing.T) {
	p := NewPipes(8, 8)
	defer p.Close()
	start := time.Now()
	r := relayPair(t, p, 300*time.Millisecond, nil)
	r.wait(t, 3*time.Second)
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Errorf("ended after %s, before the idle period", took)
	}
	if !errors.Is(r.err, inspect.ErrIdle) {
		t.Fatalf("err = %v, want ErrIdle", r.err)
	}
	r.client.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := r.client.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("the client was not closed: %v", err)
	}
}

// TestRelayNotIdleWhileOneWayMoves: output that keeps flowing to a silent
// client (a long report, a log tail) is not idle.
func TestRelayNotIdleWhileOneWayMoves(t *testing.T) {
	p := NewPipes(8, 8)
	defer p.Close()
	r := relayPair(t, p, 300*time.Millisecond, nil)
	go io.Copy(io.Discard, r.client)
	for i := 0; i < 12; i++ {
		if _, err := r.server.Write([]byte("tick\n")); err != nil {
			t.Fatalf("write %d: %v (ended as %v)", i, err, r.err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	select {
	case <-r.done:
		t.Fatalf("ended while the server was talking: %v", r.err)
	default:
	}
	r.server.Close()
	r.client.Close()
	r.wait(t, 3*time.Second)
}

// TestPipesHeldOnlyWhileBytesMove: idle sessions hold no pipe, so the
// process's fds are the sockets, and the pool keeps at most keep pipes
// after a burst; a pool at its maximum copies through a buffer and every
// byte arrives.
func TestPipesHeldOnlyWhileBytesMove(t *testing.T) {
	p := NewPipes(4, 2)
	defer p.Close()
	before := openFDs(t)
	const sessions = 40
	var rs []*relayed
	for i := 0; i < sessions; i++ {
		r := relayPair(t, p, 0, nil)
		r.client.Write([]byte("ping\n"))
		buf := make([]byte, 5)
		if _, err := io.ReadFull(r.server, buf); err != nil {
			t.Fatal(err)
		}
		r.server.Write([]byte("pong\n"))
		if _, err := io.ReadFull(r.client, buf); err != nil {
			t.Fatal(err)
		}
		rs = append(rs, r)
	}
	// Each session: four sockets (both ends of both pairs), no pipe.
	if got, sockets := openFDs(t)-before, 4*sessions; got > sockets+2*2 {
		t.Errorf("%d sessions idle after a burst hold %d fds, want at most %d (sockets, and the %d pipes kept idle)", sessions, got, sockets+4, 2)
	}
	if n := p.Open(); n > 2 {
		t.Errorf("%d pipes open with every session idle, want at most 2 kept", n)
	}

	// All at once, with big payloads: at most 4 pipes, the rest through a
	// buffer, every byte right.
	var wg sync.WaitGroup
	var bad atomic.Int32
	for _, r := range rs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			payload := make([]byte, 2<<20)
			rand.Read(payload)
			want := sha256.Sum256(payload)
			go func() {
				r.client.Write(payload)
				r.client.(*net.TCPConn).CloseWrite()
			}()
			h := sha256.New()
			io.Copy(h, r.server)
			if !bytes.Equal(h.Sum(nil), want[:]) {
				bad.Add(1)
			}
			r.server.Close()
		}()
	}
	wg.Wait()
	if bad.Load() != 0 {
		t.Fatalf("%d sessions lost or changed bytes", bad.Load())
	}
	for _, r := range rs {
		r.wait(t, 5*time.Second)
		r.client.Close()
	}
	if n := p.Open(); n > 2 {
		t.Errorf("%d pipes open after every session ended, want at most 2 kept", n)
	}
	p.Close()
	if n := p.Open(); n != 0 {
		t.Errorf("%d pipes open after Close", n)
	}
}

// firstByteConn stands for the engine's first-byte guard: a wrapper whose
// reads must see the first bytes.
type firstByteConn struct {
	net.Conn
	reads atomic.Int32
}

func (c *firstByteConn) Read(b []byte) (int, error) {
	c.reads.Add(1)
	return c.Conn.Read(b)
}

func (c *firstByteConn) NetConn() net.Conn { return c.Conn }

// TestRelayWrappedClient: the first bytes are read through the wrapper,
// the rest are spliced underneath it, and nothing is lost or reordered.
func TestRelayWrappedClient(t *testing.T) {
	p := NewPipes(8, 8)
	defer p.Close()
	var w *firstByteConn
	r := relayPair(t, p, 0, func(c net.Conn) net.Conn { w = &firstByteConn{Conn: c}; return w })
	payload := make([]byte, 8<<20)
	rand.Read(payload)
	want := sha256.Sum256(payload)
	go func() {
		r.client.Write(payload)
		r.client.(*net.TCPConn).CloseWrite()
	}()
	h := sha256.New()
	n, _ := io.Copy(h, r.server)
	if n != int64(len(payload)) || !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatalf("server got %d bytes, or other bytes", n)
	}
	r.server.Close()
	r.wait(t, 5*time.Second)
	if got := w.reads.Load(); got < 1 || got > 4 {
		t.Errorf("%d reads through the wrapper: want the first one only (then splice)", got)
	}
	if r.err != nil || r.up != int64(len(payload)) {
		t.Errorf("Relay = up %d, err %v", r.up, r.err)
	}
}
