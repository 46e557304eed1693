package tcp

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// pair returns both ends of a real loopback TCP connection.
func pair(t *testing.T) (a, b net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ch := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		ch <- c
	}()
	a, err = net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b = <-ch
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// TestPipeHalfClose: the client sends, shuts down its write side, and still
// reads the server's answer; byte counts are exact.
func TestPipeHalfClose(t *testing.T) {
	client, proxyClientSide := pair(t)
	proxyUpSide, server := pair(t)
	done := make(chan struct{})
	var up, down int64
	var perr error
	go func() {
		up, down, perr = Pipe(context.Background(), proxyClientSide, proxyUpSide)
		close(done)
	}()
	payload := make([]byte, 3<<20)
	go func() {
		client.Write(payload)
		client.(*net.TCPConn).CloseWrite()
	}()
	n, err := io.Copy(io.Discard, server)
	if err != nil || n != int64(len(payload)) {
		t.Fatalf("server got %d bytes (%v), want %d", n, err, len(payload))
	}
	// The server answers after the client's EOF, then closes.
	server.Write([]byte("done\n"))
	server.(*net.TCPConn).CloseWrite()
	reply, err := io.ReadAll(client)
	if err != nil || string(reply) != "done\n" {
		t.Fatalf("client read %q, %v", reply, err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Pipe did not return after both sides closed")
	}
	if perr != nil || up != int64(len(payload)) || down != 5 {
		t.Errorf("Pipe = up %d down %d err %v; want %d, 5, nil", up, down, perr, len(payload))
	}
}

// TestPipeAbortOnReset: a reset on one side ends both directions.
func TestPipeAbortOnReset(t *testing.T) {
	client, proxyClientSide := pair(t)
	proxyUpSide, server := pair(t)
	done := make(chan error, 1)
	go func() {
		_, _, err := Pipe(context.Background(), proxyClientSide, proxyUpSide)
		done <- err
	}()
	client.Write([]byte("x"))
	buf := make([]byte, 1)
	io.ReadFull(server, buf)
	client.(*net.TCPConn).SetLinger(0)
	client.Close() // RST
	select {
	case err := <-done:
		if err == nil {
			t.Errorf("a reset was not reported")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Pipe hung after a reset")
	}
	server.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := server.Read(buf); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("the upstream side was left open: %v", err)
	}
}

// TestPipeCancel: shutting interlock down ends an idle session.
func TestPipeCancel(t *testing.T) {
	_, proxyClientSide := pair(t)
	proxyUpSide, _ := pair(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, _, err := Pipe(ctx, proxyClientSide, proxyUpSide)
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err == nil {
			t.Errorf("cancelled session reported no error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Pipe ignored cancellation")
	}
}
