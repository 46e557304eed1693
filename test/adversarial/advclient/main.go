// Command advclient is the adversarial suite's client inside the
// intercepted cgroup. The test runs it under `interlock run` and drives it
// over stdin and stdout, one JSON object per line each way:
//
//	{"op":"connect","conn":0,"addr":"127.0.0.2:5432","params":{"user":"u","database":"d"}}
//	{"op":"send","conn":0,"msgs":[{"t":"Q","sql":"SELECT 1"}],"ready":-1,"timeout_ms":20000}
//	{"op":"close","conn":0}
//	{"op":"exec","argv":["psql","-c","SELECT 1"],"stdin":"...","env":["PGX=1"]}
//	{"op":"spawn","proc":2}
//	{"op":"send","proc":2,"conn":200,"msgs":[{"t":"Q","sql":"SELECT 1"}]}
//
// Each command gets one reply line. Sessions connect without a password:
// interlock authenticates the process.
//
// -proc N is the process's own number (0 unless told). "spawn" starts
// another advclient process, numbered proc, as a child of this one (so in
// the same cgroup: the same `interlock run`, another process); a command
// whose proc is neither 0 nor this process's number goes, as is, to that
// child, and its reply line comes back as is. The reply to "spawn" has the
// child's pid.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"time"

	"github.com/interlock/interlock/test/adversarial/rawpg"
)

type command struct {
	Op        string            `json:"op"`
	Proc      int               `json:"proc,omitempty"`
	Conn      int               `json:"conn"`
	Addr      string            `json:"addr,omitempty"`
	Params    map[string]string `json:"params,omitempty"`
	Msgs      []rawpg.Msg       `json:"msgs,omitempty"`
	Ready     *int              `json:"ready,omitempty"`
	TimeoutMS int               `json:"timeout_ms,omitempty"`
	Argv      []string          `json:"argv,omitempty"`
	Stdin     string            `json:"stdin,omitempty"`
	Env       []string          `json:"env,omitempty"`
}

type reply struct {
	rawpg.Reply
	PID    uint32            `json:"pid,omitempty"`
	Params map[string]string `json:"params,omitempty"`
	Stdout string            `json:"stdout,omitempty"`
	Stderr string            `json:"stderr,omitempty"`
	Code   int               `json:"code"`
}

// child is another advclient process this one started.
type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
}

// forward passes one command line to the child and returns its reply line.
func (c *child) forward(line []byte) ([]byte, error) {
	if _, err := c.stdin.Write(append(bytes.TrimRight(line, "\n"), '\n')); err != nil {
		return nil, err
	}
	return c.out.ReadBytes('\n')
}

func spawn(proc int) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	c := &child{cmd: exec.Command(exe, "-proc", strconv.Itoa(proc))}
	c.cmd.Stderr = os.Stderr
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	c.out = bufio.NewReader(stdout)
	return c, c.cmd.Start()
}

func main() {
	self := flag.Int("proc", 0, "this process's number")
	flag.Parse()
	conns := map[int]*rawpg.Conn{}
	children := map[int]*child{}
	in := bufio.NewReader(os.Stdin)
	out := json.NewEncoder(os.Stdout)
	for {
		line, rerr := in.ReadBytes('\n')
		if len(bytes.TrimSpace(line)) == 0 {
			if rerr != nil {
				break
			}
			continue
		}
		var cmd command
		if err := json.Unmarshal(line, &cmd); err != nil {
			out.Encode(reply{Reply: rawpg.Reply{Err: "bad command: " + err.Error()}})
			continue
		}
		if cmd.Proc != 0 && cmd.Proc != *self && cmd.Op != "spawn" {
			ch := children[cmd.Proc]
			if ch == nil {
				out.Encode(reply{Reply: rawpg.Reply{Err: fmt.Sprintf("no process %d", cmd.Proc)}})
				continue
			}
			rl, err := ch.forward(line)
			if err != nil {
				out.Encode(reply{Reply: rawpg.Reply{Err: fmt.Sprintf("process %d: %v", cmd.Proc, err)}})
				continue
			}
			os.Stdout.Write(rl)
			continue
		}
		timeout := time.Duration(cmd.TimeoutMS) * time.Millisecond
		if timeout <= 0 {
			timeout = 20 * time.Second
		}
		var r reply
		switch cmd.Op {
		case "connect":
			if old := conns[cmd.Conn]; old != nil {
				old.Close()
			}
			c, rr, err := rawpg.Dial(cmd.Addr, cmd.Params, timeout)
			r.Reply = rr
			if err != nil {
				r.Err = err.Error()
				break
			}
			conns[cmd.Conn] = c
			r.PID, r.Params = c.PID, c.Params
		case "send":
			c := conns[cmd.Conn]
			if c == nil {
				r.Err = fmt.Sprintf("no session %d", cmd.Conn)
				break
			}
			ready := -1
			if cmd.Ready != nil {
				ready = *cmd.Ready
			}
			r.Reply = c.Exchange(cmd.Msgs, ready, timeout)
		case "close":
			if c := conns[cmd.Conn]; c != nil {
				c.Close()
				delete(conns, cmd.Conn)
			}
		case "exec":
			x := exec.Command(cmd.Argv[0], cmd.Argv[1:]...)
			x.Stdin = bytes.NewBufferString(cmd.Stdin)
			x.Env = append(os.Environ(), cmd.Env...)
			var o, e bytes.Buffer
			x.Stdout, x.Stderr = &o, &e
			done := make(chan error, 1)
			var err error
			if err = x.Start(); err != nil {
				r.Err = err.Error()
				r.Code = -1
				break
			}
			go func() { done <- x.Wait() }()
			select {
			case err = <-done:
			case <-time.After(timeout):
				x.Process.Kill()
				err = <-done
				r.Err = "timeout"
			}
			r.Stdout, r.Stderr = o.String(), e.String()
			if ee, ok := err.(*exec.ExitError); ok {
				r.Code = ee.ExitCode()
			} else if err != nil {
				r.Code = -1
				r.Err = err.Error()
			}
		case "spawn":
			if children[cmd.Proc] != nil || cmd.Proc == 0 || cmd.Proc == *self {
				r.Err = fmt.Sprintf("process %d exists", cmd.Proc)
				break
			}
			ch, err := spawn(cmd.Proc)
			if err != nil {
				r.Err = err.Error()
				break
			}
			children[cmd.Proc] = ch
			r.PID = uint32(ch.cmd.Process.Pid)
		default:
			r.Err = "unknown op " + cmd.Op
		}
		out.Encode(r)
		if rerr != nil {
			break
		}
	}
	for _, c := range conns {
		c.Close()
	}
	// The children end when their input closes; their sessions close
	// before this process exits.
	for _, ch := range children {
		ch.stdin.Close()
	}
	for _, ch := range children {
		done := make(chan struct{})
		go func() { ch.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			ch.cmd.Process.Kill()
		}
	}
}
