package ssh

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	gossh "golang.org/x/crypto/ssh"

	"github.com/interlock/interlock/internal/testkit"
	"github.com/interlock/interlock/model"
)

// TestExecJudgedAsShell: with shells denied, an exec on a pty and an exec
// that starts a shell are refused (status 126, synced, never at the
// target); a plain exec without a pty runs.
func TestExecJudgedAsShell(t *testing.T) {
	r := newRig(t, rigOpts{policy: testPolicy{denyShell: true}})
	c := r.mustDial()
	run := func(cmd string, pty bool) (string, error) {
		sess, err := c.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		defer sess.Close()
		if pty {
			if err := sess.RequestPty("xterm", 24, 80, gossh.TerminalModes{}); err != nil {
				t.Fatal(err)
			}
		}
		var stderr bytes.Buffer
		sess.Stderr = &stderr
		err = sess.Run(cmd)
		return stderr.String(), err
	}
	if _, err := run("echo plain", false); err != nil {
		t.Fatalf("plain exec: %v", err)
	}
	for _, tc := range []struct {
		cmd string
		pty bool
		why string
	}{
		{"exec bash -i", true, "pty"},
		{"id", true, "pty"},
		{"bash", false, "bash reads commands"},
		{"env sh -s", false, "sh reads commands"},
	} {
		stderr, err := run(tc.cmd, tc.pty)
		var ee *gossh.ExitError
		if !errors.As(err, &ee) || ee.ExitStatus() != 126 || !strings.Contains(stderr, "judged as a shell") {
			t.Errorf("%q (pty %v): err %v, stderr %q", tc.cmd, tc.pty, err, stderr)
		}
		var rec *model.SSHRequest
		for _, q := range testkit.Data[model.SSHRequest](r.j, model.KindSSHRequest) {
			if q.Type == "exec" && q.Command == tc.cmd {
				rec = &q
			}
		}
		if rec == nil || rec.Decision.Action != model.Deny || !strings.Contains(rec.Decision.Reason, tc.why) {
			t.Errorf("%q journaled as %+v", tc.cmd, rec)
		}
	}
	for _, ran := range r.target.commands() {
		if !strings.Contains(ran, "echo plain") {
			t.Errorf("the target ran %q", ran)
		}
	}
}

// TestTunnelEndsChannel: an SSH banner in an exec's output (split across
// writes, after other output) ends the channel: the client gets what came
// before, not the banner, and the journal a synced tunnel refusal.
func TestTunnelEndsChannel(t *testing.T) {
	// #chunked: the target writes the output 7 bytes at a time; without
	// it, in one write, so the banner and what precedes it arrive in one
	// read, and what precedes it must still reach the client.
	for _, chunked := range []bool{true, false} {
		t.Run(fmt.Sprintf("chunked=%v", chunked), func(t *testing.T) { tunnelEndsChannel(t, chunked) })
	}
}

func tunnelEndsChannel(t *testing.T, chunked bool) {
	r := newRig(t, rigOpts{})
	c := r.mustDial()
	sess, _ := c.NewSession()
	out, _ := sess.StdoutPipe()
	cmd := "printf 'hello\\nSSH-2.0-relayed\\r\\n'; sleep 2"
	if chunked {
		cmd += " #chunked"
	}
	if err := sess.Start(cmd); err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(out)
	sess.Wait()
	if strings.Contains(string(got), "SSH-2.0-") || !strings.HasPrefix(string(got), "hello\n") {
		t.Errorf("client got %q", got)
	}
	recs := testkit.Data[model.SSHRequest](r.j, model.KindSSHRequest)
	var tun *model.SSHRequest
	for _, q := range recs {
		if q.Type == "tunnel" {
			tun = &q
		}
	}
	if tun == nil || tun.Decision.Rule != "tunnel" || !strings.Contains(tun.Command, "printf") {
		t.Fatalf("tunnel journaled as %+v", tun)
	}
	if !r.j.Synced(model.KindSSHRequest, func(rec model.Record) bool {
		q, ok := rec.Data.(model.SSHRequest)
		return ok && q.Type == "tunnel"
	}) {
		t.Error("the tunnel refusal was not synced")
	}
}
