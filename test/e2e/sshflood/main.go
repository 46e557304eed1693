// Command sshflood is the end-to-end tests' hostile SSH client: over
// several connections it sends as many made-up requests as it can
// (want_reply false) for a while, global ones or (-on channel) on a session
// channel of each connection, and on the first connection it also
// types commands into a pty shell. It prints what it sent and what the
// shell printed as one JSON line. Its code knows nothing of interlock: it
// talks to the target's address and is intercepted like any client.
package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	gossh "golang.org/x/crypto/ssh"
)

type result struct {
	// Sent counts the flood requests written, per connection, the last
	// one (which wants a reply, to order it after the rest) included.
	Sent []uint64 `json:"sent"`
	// Typed are the command lines written into the shell.
	Typed  []string `json:"typed"`
	Output string   `json:"output"`
	Error  string   `json:"error,omitempty"`
}

func main() {
	addr := flag.String("addr", "", "the target's host:port")
	user := flag.String("user", "root", "the user to log in as")
	conns := flag.Int("conns", 2, "flooding connections")
	dur := flag.Duration("duration", 4*time.Second, "how long to flood")
	reqType := flag.String("type", "flood@example.com", "the made-up request type")
	commands := flag.Int("commands", 8, "commands to type into the pty shell, spread over the flood")
	on := flag.String("on", "global", "global: connection-level requests; channel: requests on a session channel")
	flag.Parse()
	res, err := run(*addr, *user, *conns, *dur, *reqType, *commands, *on == "channel")
	if err != nil {
		res.Error = err.Error()
	}
	json.NewEncoder(os.Stdout).Encode(res)
	if err != nil {
		os.Exit(1)
	}
}

func run(addr, user string, n int, dur time.Duration, reqType string, commands int, onChannel bool) (result, error) {
	res := result{Sent: make([]uint64, n)}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return res, err
	}
	signer, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		return res, err
	}
	cfg := &gossh.ClientConfig{User: user, Auth: []gossh.AuthMethod{gossh.PublicKeys(signer)},
		// The host key is not what this client tests.
		HostKeyCallback: gossh.InsecureIgnoreHostKey(), Timeout: 20 * time.Second}
	clients := make([]*gossh.Client, n)
	for i := range clients {
		if clients[i], err = gossh.Dial("tcp", addr, cfg); err != nil {
			return res, fmt.Errorf("connection %d: %w", i, err)
		}
		defer clients[i].Close()
	}

	// The shell on the first connection: its session floods too.
	sess, err := clients[0].NewSession()
	if err != nil {
		return res, err
	}
	if err := sess.RequestPty("xterm", 24, 80, gossh.TerminalModes{}); err != nil {
		return res, err
	}
	in, _ := sess.StdinPipe()
	out, _ := sess.StdoutPipe()
	var output bytes.Buffer
	read := make(chan struct{})
	go func() { io.Copy(&output, out); close(read) }()
	if err := sess.Shell(); err != nil {
		return res, err
	}

	// send sends one request of the flood on connection i.
	send := make([]func(wantReply bool) error, n)
	for i, c := range clients {
		send[i] = func(wantReply bool) error {
			_, _, err := c.SendRequest(reqType, wantReply, nil)
			return err
		}
		if onChannel {
			ch, err := c.NewSession()
			if err != nil {
				return res, fmt.Errorf("flood channel on connection %d: %w", i, err)
			}
			defer ch.Close()
			send[i] = func(wantReply bool) error {
				_, err := ch.SendRequest(reqType, wantReply, nil)
				return err
			}
		}
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				if err := send[i](false); err != nil {
					errs[i] = err
					return
				}
				res.Sent[i]++
			}
			// A request that wants a reply is answered after every one
			// before it was read.
			if err := send[i](true); err != nil {
				errs[i] = err
				return
			}
			res.Sent[i]++
		}()
	}
	for k := range commands {
		time.Sleep(dur / time.Duration(commands+1))
		line := fmt.Sprintf("echo result-$((%d+%d))", 1000, k)
		if _, err := io.WriteString(in, line+"\n"); err != nil {
			return res, err
		}
		res.Typed = append(res.Typed, line)
	}
	time.Sleep(dur / time.Duration(commands+1))
	stop.Store(true)
	wg.Wait()
	io.WriteString(in, "exit\n")
	werr := sess.Wait()
	<-read
	res.Output = output.String()
	for i, err := range errs {
		if err != nil {
			return res, fmt.Errorf("flood on connection %d: %w", i, err)
		}
	}
	if werr != nil {
		return res, fmt.Errorf("shell: %w", werr)
	}
	return res, nil
}
