package rawconn

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// pair returns the two ends of a loopback TCP connection, both wrapped.
func pair(t *testing.T) (*Conn, *Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		acc <- c
	}()
	d, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	a := <-acc
	if a == nil {
		t.Fatal("accept failed")
	}
	wa, ok := Wrap(a).(*Conn)
	wd, ok2 := Wrap(d).(*Conn)
	if !ok || !ok2 {
		t.Fatal("Wrap did not wrap a *net.TCPConn")
	}
	t.Cleanup(func() { wa.Close(); wd.Close() })
	return wa, wd
}

func TestWrapKeepsOtherConns(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if Wrap(a) != a {
		t.Fatal("a net.Pipe end was wrapped; only sockets the runtime polls can be")
	}
	x, y := pair(t)
	if _, ok := x.NetConn().(*net.TCPConn); !ok {
		t.Fatalf("NetConn is %T, want *net.TCPConn (splice unwraps through it)", x.NetConn())
	}
	if rc, err := y.SyscallConn(); err != nil || rc == nil {
		t.Fatalf("SyscallConn: %v, %v", rc, err)
	}
}

// A stream larger than both socket buffers, written in one Write while
// the reader reads in odd sizes and the collector runs (its preemption
// signals interrupt the raw calls), arrives whole and in order.
func TestLargeWriteWaitsForRoomAndArrivesWhole(t *testing.T) {
	w, r := pair(t)
	want := make([]byte, 24<<20)
	rand.Read(want)
	stop := make(chan struct{})
	var gcs atomic.Int64
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
				runtime.GC()
				gcs.Add(1)
			}
		}
	}()
	defer close(stop)
	errc := make(chan error, 1)
	var wrote int
	go func() {
		n, err := w.Write(want)
		wrote = n
		if err == nil {
			err = w.CloseWrite()
		}
		errc <- err
	}()
	got := make([]byte, 0, len(want))
	buf := make([]byte, 7919)
	for {
		n, err := r.Read(buf[:1+len(got)%len(buf)])
		got = append(got, buf[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("read after %d bytes: %v", len(got), err)
		}
	}
	if err := <-errc; err != nil {
		t.Fatalf("write: %v", err)
	}
	if wrote != len(want) || !bytes.Equal(got, want) {
		t.Fatalf("wrote %d, read %d bytes; equal %v", wrote, len(got), bytes.Equal(got, want))
	}
	if gcs.Load() == 0 {
		t.Fatal("no collection ran during the transfer")
	}
}

// Concurrent Writes are whole, each one's bytes together, as net.Conn's.
func TestConcurrentWritesDoNotInterleave(t *testing.T) {
	w, r := pair(t)
	const writers, each, size = 4, 200, 10000
	var wg sync.WaitGroup
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := make([]byte, size)
			for k := range each {
				binary.BigEndian.PutUint32(msg, uint32(i))
				binary.BigEndian.PutUint32(msg[4:], uint32(k))
				for j := 8; j < size; j++ {
					msg[j] = byte(i)
				}
				if _, err := w.Write(msg); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	go func() { wg.Wait(); w.CloseWrite() }()
	next := make([]uint32, writers)
	msg := make([]byte, size)
	for n := 0; ; n++ {
		if _, err := io.ReadFull(r, msg); err == io.EOF {
			if n != writers*each {
				t.Fatalf("read %d messages, want %d", n, writers*each)
			}
			return
		} else if err != nil {
			t.Fatal(err)
		}
		i, k := binary.BigEndian.Uint32(msg), binary.BigEndian.Uint32(msg[4:])
		if i >= writers || k != next[i] || bytes.Count(msg[8:], []byte{byte(i)}) != size-8 {
			t.Fatalf("message %d: writer %d seq %d (want %d), body mixed: %v", n, i, k, next[min(i, writers-1)], bytes.Count(msg[8:], []byte{byte(i)}) != size-8)
		}
		next[i]++
	}
}

func TestReadDeadline(t *testing.T) {
	_, r := pair(t)
	r.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
	start := time.Now()
	n, err := r.Read(make([]byte, 10))
	var ne net.Error
	var oe *net.OpError
	switch {
	case n != 0 || err == nil:
		t.Fatalf("read %d, %v; want a timeout", n, err)
	case !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout():
		t.Fatalf("error %v is not a deadline timeout", err)
	case !errors.As(err, &oe) || oe.Op != "read" || oe.Net != "tcp":
		t.Fatalf("error %#v is not a read *net.OpError on tcp", err)
	case time.Since(start) < 25*time.Millisecond:
		t.Fatalf("timed out after %v, before the deadline", time.Since(start))
	}
}

func TestWriteDeadline(t *testing.T) {
	w, _ := pair(t)
	big := make([]byte, 64<<20) // more than both buffers hold; nobody reads
	for i := range big {
		big[i] = byte(i)
	}
	w.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	n, err := w.Write(big)
	if !errors.Is(err, os.ErrDeadlineExceeded) || n == 0 || n >= len(big) {
		t.Fatalf("wrote %d of %d, %v; want part of it and a deadline error", n, len(big), err)
	}
}

func TestCloseEndsParkedRead(t *testing.T) {
	_, r := pair(t)
	errc := make(chan error, 1)
	go func() {
		_, err := r.Read(make([]byte, 10))
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	r.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("read on a closed conn: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a Read parked for data did not end when the conn was closed")
	}
	if _, err := r.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write on a closed conn: %v, want net.ErrClosed", err)
	}
}

func TestEOFAndReset(t *testing.T) {
	a, b := pair(t)
	if _, err := a.Write([]byte("bye")); err != nil {
		t.Fatal(err)
	}
	if err := a.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(b)
	if err != nil || string(got) != "bye" {
		t.Fatalf("ReadAll = %q, %v", got, err)
	}
	if n, err := b.Read(make([]byte, 4)); n != 0 || err != io.EOF {
		t.Fatalf("read after EOF = %d, %v; want exactly io.EOF", n, err)
	}

	c, d := pair(t)
	c.NetConn().(*net.TCPConn).SetLinger(0)
	c.Close() // an RST
	_, err = d.Read(make([]byte, 4))
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read after the peer's reset: %v, want ECONNRESET", err)
	}
	var se *os.SyscallError
	if !errors.As(err, &se) || se.Syscall != "read" {
		t.Fatalf("error %#v does not name the read syscall", err)
	}
}

func TestUnixSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c)
	}()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	w := Wrap(c)
	defer w.Close()
	if _, ok := w.(*Conn); !ok {
		t.Fatalf("a *net.UnixConn was not wrapped (%T)", w)
	}
	if _, err := w.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4)
	if _, err := io.ReadFull(w, got); err != nil || string(got) != "ping" {
		t.Fatalf("echo = %q, %v", got, err)
	}
}

// A unix socket that is not a stream is left alone: there an empty read
// is an empty message, which the wrapper would turn into io.EOF.
func TestUnixNonStreamNotWrapped(t *testing.T) {
	for _, typ := range []int{syscall.SOCK_DGRAM, syscall.SOCK_SEQPACKET} {
		fds, err := syscall.Socketpair(syscall.AF_UNIX, typ|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		f := os.NewFile(uintptr(fds[0]), "pair")
		c, err := net.FileConn(f)
		f.Close()
		syscall.Close(fds[1])
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := c.(*net.UnixConn); !ok {
			t.Fatalf("socket type %d: FileConn gave %T, want *net.UnixConn", typ, c)
		}
		if w := Wrap(c); w != c {
			t.Errorf("socket type %d was wrapped; only SOCK_STREAM may be", typ)
		}
		c.Close()
	}
}

// The sessions run TLS over wrapped connections, both ways.
func TestTLSOverWrapped(t *testing.T) {
	s, c := pair(t)
	cert := selfSigned(t)
	pool := x509.NewCertPool()
	pool.AddCert(cert.Leaf)
	srv := tls.Server(s, &tls.Config{Certificates: []tls.Certificate{cert}})
	cli := tls.Client(c, &tls.Config{RootCAs: pool, ServerName: "rawconn.test"})
	go func() {
		defer srv.Close()
		io.Copy(srv, srv)
	}()
	msg := bytes.Repeat([]byte("0123456789"), 100_000)
	go cli.Write(msg)
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(cli, got); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("TLS echo: %v, equal %v", err, bytes.Equal(got, msg))
	}
}

// A round trip allocates nothing: the raw calls are method values made at
// Wrap, not closures made per call.
func TestRoundTripAllocatesNothing(t *testing.T) {
	a, b := pair(t)
	out, in := []byte("ping"), make([]byte, 16)
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := a.Write(out); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(b, in[:len(out)]); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per round trip, want 0", allocs)
	}
}

func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "rawconn.test"},
		DNSNames: []string{"rawconn.test"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}
