package main

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// server is one of the bench's targets. It runs in the bench process,
// outside any intercepted cgroup, and must never be the bottleneck: a
// goroutine per connection, buffers reused from a pool.
type server struct {
	name     string
	ln       net.Listener
	handle   func(c *net.TCPConn)
	accepted atomic.Int64

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

var bigBufs = sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}

func startServer(name, addr string, handle func(c *net.TCPConn)) (*server, error) {
	ln, err := net.Listen("tcp4", addr)
	if err != nil {
		return nil, err
	}
	s := &server{name: name, ln: ln, handle: handle, conns: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

func (s *server) addr() string { return s.ln.Addr().String() }

func (s *server) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		s.accepted.Add(1)
		s.mu.Lock()
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				c.Close()
			}()
			c.SetDeadline(time.Now().Add(15 * time.Minute))
			s.handle(c.(*net.TCPConn))
		}()
	}
}

// close stops the server and ends its open connections.
func (s *server) close() {
	s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// serveConnect answers the one byte and waits for the client to close.
func serveConnect(c *net.TCPConn) {
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return
	}
	if _, err := c.Write(b[:]); err != nil {
		return
	}
	for {
		if _, err := c.Read(b[:]); err != nil {
			return
		}
	}
}

// serveEcho writes back whatever arrives.
func serveEcho(c *net.TCPConn) {
	buf := make([]byte, 64<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// serveBulk: 'U' → ready, read to EOF, reply the byte count (8 bytes, big
// endian). 'D' → ready, read the count (8 bytes), write that many bytes,
// close.
func serveBulk(c *net.TCPConn) {
	var dir [1]byte
	if _, err := io.ReadFull(c, dir[:]); err != nil {
		return
	}
	if dir[0] != bulkUp && dir[0] != bulkDown {
		return
	}
	if _, err := c.Write([]byte{bulkReady}); err != nil {
		return
	}
	bp := bigBufs.Get().(*[]byte)
	defer bigBufs.Put(bp)
	buf := *bp
	if dir[0] == bulkUp {
		var n int64
		for {
			k, err := c.Read(buf)
			n += int64(k)
			if err == io.EOF {
				break
			}
			if err != nil {
				return
			}
		}
		var out [8]byte
		binary.BigEndian.PutUint64(out[:], uint64(n))
		c.Write(out[:])
		return
	}
	var req [8]byte
	if _, err := io.ReadFull(c, req[:]); err != nil {
		return
	}
	left := int64(binary.BigEndian.Uint64(req[:]))
	chunk := buf[:ioChunk]
	for left > 0 {
		k := int(min(int64(len(chunk)), left))
		w, err := c.Write(chunk[:k])
		left -= int64(w)
		if err != nil {
			return
		}
	}
	c.CloseWrite()
	// Wait for the client's close so the last bytes are not reset away.
	var b [1]byte
	c.Read(b[:])
}
