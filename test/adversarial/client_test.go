package adversarial

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/interlock/interlock/internal/testkit"
	"github.com/interlock/interlock/test/adversarial/rawpg"
)

// The client processes under `interlock run` (advclient) and the
// protocol the test drives them with: sessions, messages, psql.

// Sessions are numbered; session n lives in client process
// n/sessionsPerProcess, so a case opens a session in another client
// process just by its number:
//
//   - procMain, sessions 0-99: the case's advclient, under the case's
//     `interlock run`;
//   - procOtherJob, sessions 100-199: a second advclient under an
//     `interlock run` of its own (another job, with its own configuration
//     file and journal, the case's policy), as another program on the
//     host would be;
//   - procSameJob, sessions 200-299: a second advclient process that the
//     first one starts, inside the case's `interlock run` (the same job,
//     another process).
//
// A process starts when a case first uses one of its sessions. In control
// runs (direct) every session is a direct connection of the test.
const sessionsPerProcess = 100

const (
	procMain = iota
	procOtherJob
	procSameJob
	procCount
)

// procOf is the client process session n lives in.
func procOf(n int) int { return n / sessionsPerProcess }

// clientProc is advclient under `interlock run`.
type clientProc struct {
	// proc is the client process's number; journalPath is its run's
	// journal.
	proc        int
	journalPath string
	cmd         *exec.Cmd
	stdin       io.WriteCloser
	out         *json.Decoder
	stderr      testkit.SyncBuffer
	// exited is closed when `interlock run` has exited.
	exited chan struct{}
}

type clientReply struct {
	rawpg.Reply
	PID    uint32            `json:"pid,omitempty"`
	Params map[string]string `json:"params,omitempty"`
	Stdout string            `json:"stdout,omitempty"`
	Stderr string            `json:"stderr,omitempty"`
	Code   int               `json:"code"`
}

// start runs advclient under the case's `interlock run`.
func (c *caseRun) start() {
	c.startRun(procMain, c.cfgPath, c.journalPath)
}

// startOtherJob runs client process proc under an `interlock run` of its
// own, with a configuration (and so a journal) of its own in a
// subdirectory of the case's: the case's policy and target.
func (c *caseRun) startOtherJob(proc int) {
	dir := filepath.Join(c.dir, fmt.Sprintf("job%d", proc))
	if err := os.Mkdir(dir, 0o755); err != nil {
		c.t.Fatal(err)
	}
	f := runFiles{
		cfg:     filepath.Join(dir, "interlock.yaml"),
		dir:     dir,
		journal: filepath.Join(dir, "journal.db"),
		pin:     "/sys/fs/bpf/interlock-adv-" + randHex(4),
	}
	c.writeRunConfig(f, c.cs.policy)
	c.startRun(proc, f.cfg, f.journal)
	c.logf("client process %d: advclient under an `interlock run` of its own (journal %s)", proc, f.journal)
}

// startRun runs advclient under `interlock run -c cfg` as client process
// proc.
func (c *caseRun) startRun(proc int, cfg, journalPath string) {
	t := c.t
	p := &clientProc{proc: proc, journalPath: journalPath, exited: make(chan struct{})}
	p.cmd = exec.Command(interlockBin, "run", "-c", cfg, "--", advclientBin, "-proc", strconv.Itoa(proc))
	var err error
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.out = json.NewDecoder(stdout)
	p.cmd.Stderr = &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.exited) }()
	c.runs[proc] = p
	c.jobs = append(c.jobs, p)
	t.Cleanup(func() { c.stop() })
}

// stop ends every advclient and waits for each `interlock run` to close
// its journal.
func (c *caseRun) stop() {
	for _, p := range c.jobs {
		if c.runs[p.proc] != p {
			continue
		}
		delete(c.runs, p.proc)
		p.stdin.Close()
		select {
		case <-p.exited:
		case <-time.After(30 * time.Second):
			p.cmd.Process.Kill()
			<-p.exited
			c.t.Errorf("interlock run (client process %d) did not end within 30s of its command's input closing", p.proc)
		}
		if p.proc == procMain {
			c.runStderr = p.stderr.String()
		} else {
			c.jobStderr[p.proc] = p.stderr.String()
		}
	}
}

// call sends a command to the case's advclient (client process procMain)
// and returns its answer.
func (c *caseRun) call(cmd map[string]any, wait time.Duration) clientReply {
	c.t.Helper()
	return c.callProc(procMain, cmd, wait)
}

// callSession sends a command about session n to the client process the
// session lives in, starting that process when it is not running yet.
func (c *caseRun) callSession(n int, cmd map[string]any, wait time.Duration) clientReply {
	c.t.Helper()
	cmd["conn"] = n
	return c.callProc(procOf(n), cmd, wait)
}

// callProc sends a command to client process proc: to its own `interlock
// run`, or through the advclient that started it.
func (c *caseRun) callProc(proc int, cmd map[string]any, wait time.Duration) clientReply {
	c.t.Helper()
	switch proc {
	case procMain:
		return c.roundTrip(c.runs[procMain], cmd, wait)
	case procOtherJob:
		if !c.started[proc] {
			c.started[proc] = true
			c.startOtherJob(proc)
		}
		return c.roundTrip(c.runs[proc], cmd, wait)
	case procSameJob:
		if !c.started[proc] {
			c.started[proc] = true
			rep := c.roundTrip(c.runs[procMain], map[string]any{"op": "spawn", "proc": proc}, 10*time.Second)
			if rep.Err != "" {
				c.t.Fatalf("client process %d: advclient could not start it: %s", proc, rep.Err)
			}
			c.logf("client process %d: a second advclient process (pid %d) in the case's `interlock run`", proc, rep.PID)
		}
		cmd["proc"] = proc
		return c.roundTrip(c.runs[procMain], cmd, wait)
	}
	c.t.Fatalf("no client process %d: session numbers go up to %d", proc, procCount*sessionsPerProcess-1)
	return clientReply{}
}

// roundTrip writes one command line to advclient and reads its answer.
func (c *caseRun) roundTrip(p *clientProc, cmd map[string]any, wait time.Duration) clientReply {
	c.t.Helper()
	if p == nil {
		c.t.Fatalf("the client is not running")
	}
	line, _ := json.Marshal(cmd)
	if _, err := p.stdin.Write(append(line, '\n')); err != nil {
		c.t.Fatalf("client: %v (interlock run stderr: %s)", err, testkit.Tail(p.stderr.String(), 2000))
	}
	ch := make(chan clientReply, 1)
	errc := make(chan error, 1)
	go func() {
		var r clientReply
		if err := p.out.Decode(&r); err != nil {
			errc <- err
			return
		}
		ch <- r
	}()
	select {
	case r := <-ch:
		return r
	case err := <-errc:
		select {
		case <-p.exited:
		case <-time.After(5 * time.Second):
		}
		c.t.Fatalf("client died: %v; interlock run stderr:\n%s", err, headTail(p.stderr.String(), 2500))
	case <-time.After(wait + 15*time.Second):
		c.t.Fatalf("client did not answer %s within %s", line, wait+15*time.Second)
	}
	return clientReply{}
}

func (c *caseRun) startupParams(extra map[string]string) map[string]string {
	p := map[string]string{"user": c.role, "database": c.db, "application_name": "advclient"}
	for k, v := range extra {
		p[k] = v
	}
	return p
}

// connect opens session n (in the client process procOf(n)). extra adds
// StartupMessage parameters.
func (c *caseRun) connect(n int, extra map[string]string) (pid uint32, r rawpg.Reply) {
	c.t.Helper()
	params := c.startupParams(extra)
	if c.direct {
		conn, err := rawpg.DialPassword(context.Background(),
			fmt.Sprintf("host=%s port=%d user=%s password=%s dbname=%s sslmode=disable", srv.Host, srv.Port, c.role, c.password, c.db), extraOnly(params))
		if err != nil {
			c.t.Fatalf("direct connect: %v", err)
		}
		c.directs[n] = conn
		c.logf("session %d: connected directly, backend pid %d", n, conn.PID)
		return conn.PID, rawpg.Reply{}
	}
	rep := c.callSession(n, map[string]any{"op": "connect", "addr": srv.Addr(), "params": params}, 20*time.Second)
	c.record(fmt.Sprintf("session %d: connect %v", n, extra), rep.Reply)
	if rep.Err != "" {
		c.loginError = rep.Err
		if n == 0 && c.cs.loginMayBeRefused {
			for _, e := range rep.Errors() {
				if e.Severity == "FATAL" {
					c.loginRefused = e.Message
				}
			}
			if c.loginRefused != "" {
				return 0, rep.Reply
			}
		}
		c.t.Fatalf("session %d could not log in through interlock: %s; %s", n, rep.Err, summarize(rep.Reply))
	}
	return rep.PID, rep.Reply
}

func extraOnly(p map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range p {
		if k != "user" && k != "database" {
			out[k] = v
		}
	}
	return out
}

// send writes msgs to session n in one write and reads the answers.
func (c *caseRun) send(n int, msgs ...rawpg.Msg) rawpg.Reply {
	c.t.Helper()
	return c.sendOpts(n, -1, 20*time.Second, msgs...)
}

func (c *caseRun) sendOpts(n, ready int, timeout time.Duration, msgs ...rawpg.Msg) rawpg.Reply {
	c.t.Helper()
	var r rawpg.Reply
	if c.hung[n] {
		r = rawpg.Reply{Err: "not sent: this session hung earlier"}
		c.record(fmt.Sprintf("session %d: %s", n, describeMsgs(msgs)), r)
		return r
	}
	if c.direct {
		conn := c.directs[n]
		if conn == nil {
			c.t.Fatalf("no session %d", n)
		}
		r = conn.Exchange(msgs, ready, timeout)
	} else {
		rep := c.callSession(n, map[string]any{"op": "send", "msgs": msgs, "ready": ready, "timeout_ms": timeout.Milliseconds()}, timeout)
		r = rep.Reply
	}
	c.record(fmt.Sprintf("session %d: %s", n, describeMsgs(msgs)), r)
	if strings.HasPrefix(r.Err, "timeout") && ready != 0 {
		c.hung[n] = true
		c.t.Errorf("HUNG: session %d got no complete answer within %s to %s (got: %s)", n, timeout, short(describeMsgs(msgs), 300), summarize(r))
	}
	return r
}

// drain reads what a session may still answer (a ReadyForQuery whose
// coming depends on whether an earlier message failed), without calling
// a silence a hang.
func (c *caseRun) drain(n int, timeout time.Duration) rawpg.Reply {
	c.t.Helper()
	var r rawpg.Reply
	if c.direct {
		r = c.directs[n].Exchange(nil, 1, timeout)
	} else {
		r = c.callSession(n, map[string]any{"op": "send", "ready": 1, "timeout_ms": timeout.Milliseconds()}, timeout).Reply
	}
	if strings.HasPrefix(r.Err, "timeout") {
		r.Err = ""
	}
	c.record(fmt.Sprintf("session %d: (drain)", n), r)
	return r
}

func (c *caseRun) closeSession(n int) {
	if c.direct {
		if conn := c.directs[n]; conn != nil {
			conn.Close()
		}
		delete(c.directs, n)
		return
	}
	c.callSession(n, map[string]any{"op": "close"}, time.Second)
}

// psqlResult is one psql run.
type psqlResult struct {
	Stdout, Stderr string
	Code           int
}

// psql runs psql inside the intercepted cgroup (or directly, for control
// runs) with the script on its standard input.
func (c *caseRun) psql(script string, args ...string) psqlResult {
	c.t.Helper()
	conninfo := fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable", srv.Host, srv.Port, c.role, c.db)
	argv := append([]string{"setsid", "-w", psqlBin, "-X", "-v", "VERBOSITY=verbose", "-v", "ON_ERROR_STOP=0", "-A", "-t"}, args...)
	argv = append(argv, conninfo)
	var r psqlResult
	if c.direct {
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Stdin = strings.NewReader(script)
		cmd.Env = append(os.Environ(), "PGPASSWORD="+c.password)
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		err := cmd.Run()
		r = psqlResult{o.String(), e.String(), 0}
		if ee, ok := err.(*exec.ExitError); ok {
			r.Code = ee.ExitCode()
		}
	} else {
		rep := c.call(map[string]any{"op": "exec", "argv": argv, "stdin": script, "timeout_ms": 60000}, 60*time.Second)
		r = psqlResult{rep.Stdout, rep.Stderr, rep.Code}
		if rep.Err != "" {
			r.Stderr += "\n[advclient: " + rep.Err + "]"
		}
	}
	c.mu.Lock()
	c.outputs = append(c.outputs, r.Stdout+"\n"+r.Stderr)
	c.transcript = append(c.transcript, fmt.Sprintf("psql %q <<< %q\n    -> exit %d, stdout %q, stderr %q", strings.Join(args, " "), short(script, 300), r.Code, short(r.Stdout, 400), short(r.Stderr, 600)))
	c.mu.Unlock()
	return r
}
