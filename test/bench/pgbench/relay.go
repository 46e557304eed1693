package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/interlock/interlock/internal/rawconn"
)

// relayServeFlag makes this binary the "go relay" leg's process instead of
// the bench: `pgbench -relay-serve LISTEN TARGET`. It is read before
// flag.Parse so that -help does not list it; nobody runs it by hand.
const relayServeFlag = "-relay-serve"

// relayBufSize is each direction's buffer: what io.Copy would use.
const relayBufSize = 32 << 10

// serveRelay is the go relay: the floor any Go proxy pays on this machine
// for PostgreSQL's traffic, with no parsing and no journal. It prints the
// address it listens on as its first line of output, then relays every
// connection to target until it is killed.
func serveRelay(listen, target string) error {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("relay: listen: %w", err)
	}
	fmt.Printf("listening %s\n", ln.Addr())
	for {
		c, err := ln.Accept()
		if err != nil {
			return fmt.Errorf("relay: accept: %w", err)
		}
		go relayConn(c, target)
	}
}

// relayConn relays one client connection to a new connection to target.
func relayConn(client net.Conn, target string) {
	defer client.Close()
	server, err := net.Dial("tcp", target)
	if err != nil {
		fmt.Fprintln(os.Stderr, "relay: dial:", err)
		return
	}
	defer server.Close()
	// Raw system calls, as interlock's sessions read and write (without
	// them the relay spent a third more CPU here: internal/rawconn).
	client, server = rawconn.Wrap(client), rawconn.Wrap(server)
	// Two goroutines per connection, this one and another, one per
	// direction.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); pump(server, client) }()
	pump(client, server)
	wg.Wait()
}

// pump moves bytes from src to dst through user space, a Read and a Write
// at a time. Not io.Copy: between two TCP connections on Linux it splices
// in the kernel, which no proxy that reads what it forwards can do, so it
// would not be the floor of one.
func pump(dst, src net.Conn) {
	buf := make([]byte, relayBufSize)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				// The other direction's reader stops too.
				src.Close()
				return
			}
		}
		if err != nil {
			// The peer's half-close goes on, so the other direction
			// ends on its own; a reset closes both.
			if cw, ok := dst.(interface{ CloseWrite() error }); ok && errors.Is(err, io.EOF) {
				cw.CloseWrite()
			} else {
				dst.Close()
			}
			return
		}
	}
}

// startRelay runs the go relay as a process of its own (this binary again),
// in front of target, with the default GOMAXPROCS like interlock's. It
// returns the port it listens on at 127.0.0.1, its pid (for its CPU time)
// and how to stop it.
func startRelay(target string) (port, pid int, stop func(), err error) {
	self, err := os.Executable()
	if err != nil {
		return 0, 0, nil, fmt.Errorf("relay: %w", err)
	}
	cmd := exec.Command(self, relayServeFlag, "127.0.0.1:0", target)
	cmd.Stderr = os.Stderr
	// It must not outlive the bench, whichever way the bench ends.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, 0, nil, fmt.Errorf("relay: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return 0, 0, nil, fmt.Errorf("relay: start: %w", err)
	}
	stop = func() { stopProcess(cmd) }
	line, err := bufio.NewReader(out).ReadString('\n')
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "listening ")
	if err != nil || !ok {
		stop()
		return 0, 0, nil, fmt.Errorf("relay: did not start listening (%v): %q", err, line)
	}
	_, p, err := net.SplitHostPort(addr)
	if err == nil {
		port, err = strconv.Atoi(p)
	}
	if err != nil {
		stop()
		return 0, 0, nil, fmt.Errorf("relay: its address %q: %w", addr, err)
	}
	return port, cmd.Process.Pid, stop, nil
}
