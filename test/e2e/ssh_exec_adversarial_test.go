package e2e

// Issue 13, class 6 ("exec, honestly") against a real sshd with the real
// ssh, scp and rsync clients (and a raw x/crypto/ssh client where the bytes
// matter) under `interlock run`. Globs on shell text are advisory; these
// cases check what is a boundary: the exec allowlist, execs judged as the
// shells they start, and tunnels ended. Each attack carries a payload that
// would leave a file on the target, and each case checks that file, what
// sshd started, and what the journal says.

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/interlock/interlock/model"
)

// execRequest returns the journaled exec requests whose command holds
// part.
func execRequests(e *env, part string) []model.SSHRequest {
	var out []model.SSHRequest
	for _, q := range entriesOf[model.SSHRequest](e, model.KindSSHRequest) {
		if q.Type == "exec" && strings.Contains(q.Command, part) {
			out = append(out, q)
		}
	}
	return out
}

// tunnelRecords returns the journaled tunnel refusals.
func tunnelRecords(e *env) []model.SSHRequest {
	var out []model.SSHRequest
	for _, q := range entriesOf[model.SSHRequest](e, model.KindSSHRequest) {
		if q.Type == "tunnel" {
			out = append(out, q)
		}
	}
	return out
}

// wantRefused checks that exactly one exec of cmd (or, when cmd starts
// with "~", holding the rest) was journaled, refused by rule with a reason
// holding reason, and that the client saw the refusal.
func wantRefused(t *testing.T, e *env, cmd, rule, reason, stderr string) {
	t.Helper()
	var qs []model.SSHRequest
	if part, ok := strings.CutPrefix(cmd, "~"); ok {
		qs = execRequests(e, part)
	} else {
		for _, q := range execRequests(e, cmd) {
			if q.Command == cmd {
				qs = append(qs, q)
			}
		}
	}
	if len(qs) != 1 {
		t.Fatalf("%d exec records of %q, want 1: %+v", len(qs), cmd, qs)
	}
	d := qs[0].Decision
	if d.Action != model.Deny || d.Rule != rule || !strings.Contains(d.Reason, reason) {
		t.Errorf("exec %q journaled as %+v, want a deny by %s saying %q", qs[0].Command, d, rule, reason)
	}
	if !strings.Contains(stderr, "refused by policy ("+rule+")") {
		t.Errorf("the client was not told of the refusal: %q", stderr)
	}
}

// sessionOfExec is the session id of the journaled exec of cmd.
func sessionOfExec(e *env, cmd string) string {
	for _, en := range e.entries() {
		if en.Kind != model.KindSSHRequest {
			continue
		}
		var q model.SSHRequest
		if json.Unmarshal(en.Data, &q) == nil && q.Type == "exec" && q.Command == cmd {
			return en.Session
		}
	}
	return ""
}

// replay is `interlock sessions replay` of the session of the exec of cmd.
func replay(t *testing.T, e *env, cmd string) string {
	t.Helper()
	id := sessionOfExec(e, cmd)
	if id == "" {
		t.Fatalf("no session journaled an exec of %q", cmd)
	}
	out, stderr, code := e.interlock("sessions", "replay", "-c", e.cfgPath, "--speed", "50", id)
	if code != 0 {
		t.Fatalf("replay %s: exit %d: %s", id, code, stderr)
	}
	return out
}

// noCommand fails when sshd started a command since before.
func noCommand(t *testing.T, st *sshTarget, before int) {
	t.Helper()
	if n := st.started("command") - before; n != 0 {
		t.Errorf("sshd started %d commands, want none", n)
	}
}

// TestSSHAdversarialExecAllowlist: under exec.mode allowlist, a listed
// argv runs and every other way of writing a command is refused before it
// reaches the target, whatever would have matched a glob.
func TestSSHAdversarialExecAllowlist(t *testing.T) {
	requireTools(t, "bash", "base64", "rsync")
	st := startSSHD(t)
	d := st.dir
	e := newSSHEnv(t, st, sshTargetOpts{extra: fmt.Sprintf(
		`exec: {mode: allowlist, allow: ["touch %[1]s/ok-*", "find %[1]s -name *", "cat %[1]s/*", "scp -t %[1]s/ok-*"]}`, d)})
	ssh := func(args ...string) string { return shellQuote(st.sshArgv(args...)) }
	port := strconv.Itoa(st.port)

	t.Run("allowed argv runs", func(t *testing.T) {
		before := st.started("command")
		os.WriteFile(filepath.Join(d, "victim-a"), []byte("x"), 0o644)
		out, stderr, code := e.runUnder("sh", "-c", ssh("touch "+d+"/ok-1")+" && "+ssh("find "+d+" -name victim-a"))
		if code != 0 || !strings.Contains(out, d+"/victim-a") {
			t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, stderr)
		}
		if _, err := os.Stat(filepath.Join(d, "ok-1")); err != nil {
			t.Errorf("the listed command did not run: %v", err)
		}
		if n := st.started("command") - before; n != 2 {
			t.Errorf("sshd started %d commands, want 2", n)
		}
		for _, part := range []string{"ok-1", "-name victim-a"} {
			if qs := execRequests(e, part); len(qs) != 1 || qs[0].Decision.Action != model.Allow {
				t.Errorf("exec %q journaled as %+v", part, qs)
			}
		}
	})

	// Each attack would create pwned-NAME on the target if it ran.
	attacks := []struct {
		name, cmd, stdin string
		reason           string // part of the journaled reason
	}{
		{"double space", "touch  " + d + "/pwned-spacing", "", "not plain"},
		{"tab", "touch\t" + d + "/pwned-tab", "", "a tab"},
		{"listed prefix then semicolon", "touch " + d + "/ok-2;touch " + d + "/pwned-semicolon", "", `';'`},
		{"quoted program", "'touch' " + d + "/pwned-quoted", "", `'\''`},
		{"backslash in program", `t\ouch ` + d + "/pwned-backslash", "", `'\\'`},
		{"sh -c", "sh -c 'touch " + d + "/pwned-shc'", "", `'\''`},
		{"base64 into sh", "echo " + base64.StdEncoding.EncodeToString([]byte("touch "+d+"/pwned-base64")) + " | base64 -d | sh", "", "not an exact entry"},
		{"variable expansion", "T=touch; $T " + d + "/pwned-var", "", `'='`},
		{"leading assignment", "LD_X=1 touch " + d + "/ok-pwned-assign", "", `'='`},
		{"xargs with names on stdin", "xargs touch", d + "/pwned-xargs\n", "no entry"},
		{"here-document", "sh <<EOF\ntouch " + d + "/pwned-heredoc\nEOF", "", `'<'`},
		{"command substitution", "touch " + d + "/ok-$(touch " + d + "/pwned-subst)", "", `'$'`},
		{"glob in an argument", "touch " + d + "/ok-?x", "", `'?'`},
		{"interactive shell on a pty", "exec bash -i", "touch " + d + "/pwned-ptyshell\nexit\n", "no entry"},
	}
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			before := st.started("command")
			script := ssh(a.cmd)
			if a.name == "interactive shell on a pty" {
				script = shellQuote(append(st.sshArgv()[:1], append([]string{"-tt"}, st.sshArgv(a.cmd)[1:]...)...))
			}
			if a.stdin != "" {
				script = "printf '%s' " + shellQuote([]string{a.stdin}) + " | " + script
			}
			out, stderr, code := e.runUnder("sh", "-c", script+"; echo status=$?")
			if code != 0 || !strings.Contains(out, "status=126") {
				t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, stderr)
			}
			for _, f := range []string{"ok-2", "ok-?x", "ok-"} {
				absent(t, filepath.Join(d, f))
			}
			matches, _ := filepath.Glob(filepath.Join(d, "*pwned*"))
			if len(matches) > 0 {
				t.Errorf("the target has %v", matches)
			}
			noCommand(t, st, before)
			wantRefused(t, e, a.cmd, "targets.box.exec-allowlist", a.reason, stderr)
		})
	}

	t.Run("find -delete", func(t *testing.T) {
		victim := filepath.Join(d, "victim-delete")
		os.WriteFile(victim, []byte("x"), 0o644)
		before := st.started("command")
		cmd := "find " + d + " -name victim-delete -delete"
		_, stderr, _ := e.runUnder(st.sshArgv(cmd)...)
		if _, err := os.Stat(victim); err != nil {
			t.Errorf("the target lost %s: %v", victim, err)
		}
		noCommand(t, st, before)
		wantRefused(t, e, cmd, "targets.box.exec-allowlist", "no entry", stderr)
	})

	t.Run("find -exec", func(t *testing.T) {
		victim := filepath.Join(d, "victim-exec")
		os.WriteFile(victim, []byte("x"), 0o644)
		before := st.started("command")
		cmd := "find " + d + " -name victim-exec -exec rm {} ;"
		_, stderr, _ := e.runUnder(st.sshArgv(cmd)...)
		if _, err := os.Stat(victim); err != nil {
			t.Errorf("the target lost %s: %v", victim, err)
		}
		noCommand(t, st, before)
		wantRefused(t, e, cmd, "targets.box.exec-allowlist", `'{'`, stderr)
	})

	t.Run("uploaded script run by sh", func(t *testing.T) {
		local := filepath.Join(t.TempDir(), "up.sh")
		os.WriteFile(local, []byte("touch "+d+"/pwned-script\n"), 0o755)
		before := st.started("command")
		scp := append([]string{"scp"}, st.clientOpts("")...)
		scp = append(scp, "-P", port, local, "root@127.0.0.3:"+d+"/up.sh")
		cmd := "sh " + d + "/up.sh"
		out, stderr, code := e.runUnder("sh", "-c", shellQuote(scp)+" && "+ssh(cmd)+"; echo status=$?")
		if code != 0 || !strings.Contains(out, "status=126") {
			t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, stderr)
		}
		if _, err := os.Stat(filepath.Join(d, "up.sh")); err != nil {
			t.Errorf("the upload (sftp, not an exec) did not arrive: %v", err)
		}
		absent(t, filepath.Join(d, "pwned-script"))
		noCommand(t, st, before)
		wantRefused(t, e, cmd, "targets.box.exec-allowlist", "no entry", stderr)
	})

	t.Run("background worker for files dropped by sftp", func(t *testing.T) {
		drop := filepath.Join(d, "drop")
		os.MkdirAll(drop, 0o755)
		local := filepath.Join(t.TempDir(), "job.sh")
		os.WriteFile(local, []byte("touch "+d+"/pwned-worker\n"), 0o644)
		before := st.started("command")
		cmd := "nohup sh -c 'while sleep 0.1; do for f in " + drop + "/*.sh; do sh \"$f\"; done; done' >/dev/null 2>&1 &"
		scp := append([]string{"scp"}, st.clientOpts("")...)
		scp = append(scp, "-P", port, local, "root@127.0.0.3:"+drop+"/job.sh")
		out, stderr, code := e.runUnder("sh", "-c", ssh(cmd)+"; echo status=$?; "+shellQuote(scp))
		if code != 0 || !strings.Contains(out, "status=126") {
			t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, stderr)
		}
		if _, err := os.Stat(filepath.Join(drop, "job.sh")); err != nil {
			t.Fatalf("the drop did not arrive: %v", err)
		}
		time.Sleep(time.Second) // a worker would have run it by now
		absent(t, filepath.Join(d, "pwned-worker"))
		noCommand(t, st, before)
		wantRefused(t, e, cmd, "targets.box.exec-allowlist", `'\''`, stderr)
		// The drop itself is journaled as the sftp write it is.
		dropped := false
		for _, f := range entriesOf[model.SSHSFTP](e, model.KindSSHSFTP) {
			dropped = dropped || strings.HasSuffix(f.Path, "/drop/job.sh")
		}
		if !dropped {
			t.Errorf("the sftp drop is not journaled")
		}
	})

	t.Run("startup files planted by sftp", func(t *testing.T) {
		// ~/.ssh/rc, authorized_keys (command="...") and the shells'
		// startup files run with every exec. The login directory here is
		// root's, so the files are planted under a home of the test's:
		// the rule matches them at any depth.
		home := filepath.Join(d, "home")
		os.MkdirAll(filepath.Join(home, ".ssh"), 0o755)
		local := filepath.Join(t.TempDir(), "rc")
		os.WriteFile(local, []byte("touch "+d+"/pwned-rc\n"), 0o644)
		for _, dst := range []string{".ssh/rc", ".ssh/authorized_keys", ".bashrc", ".zshenv"} {
			scp := append([]string{"scp"}, st.clientOpts("")...)
			scp = append(scp, "-P", port, local, "root@127.0.0.3:"+filepath.Join(home, dst))
			out, stderr, code := e.runUnder(scp...)
			if code == 0 {
				t.Errorf("scp to %s succeeded: %s %s", dst, out, stderr)
			}
			absent(t, filepath.Join(home, dst))
			refused := false
			for _, f := range entriesOf[model.SSHSFTP](e, model.KindSSHSFTP) {
				if f.Path == filepath.Join(home, dst) && f.Decision.Action == model.Deny && f.Decision.Rule == "targets.box.exec-allowlist" {
					refused = true
				}
			}
			if !refused {
				t.Errorf("no sftp refusal of %s journaled", dst)
			}
		}
	})

	t.Run("listed scp -O upload runs", func(t *testing.T) {
		local := filepath.Join(t.TempDir(), "f")
		os.WriteFile(local, []byte("legacy"), 0o644)
		scp := append([]string{"scp", "-O"}, st.clientOpts("")...)
		scp = append(scp, "-P", port, local, "root@127.0.0.3:"+d+"/ok-scp")
		out, stderr, code := e.runUnder(scp...)
		if code != 0 {
			t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, stderr)
		}
		fileIs(t, filepath.Join(d, "ok-scp"), "legacy")
		if qs := execRequests(e, "scp -t "+d+"/ok-scp"); len(qs) != 1 || qs[0].Decision.Action != model.Allow {
			t.Errorf("scp's remote command journaled as %+v", qs)
		}
	})

	t.Run("scp -O remote command injection", func(t *testing.T) {
		local := filepath.Join(t.TempDir(), "f")
		os.WriteFile(local, []byte("x"), 0o644)
		before := st.started("command")
		scp := append([]string{"scp", "-O"}, st.clientOpts("")...)
		scp = append(scp, "-P", port, local, "root@127.0.0.3:"+d+"/x;touch "+d+"/pwned-scp")
		out, stderr, code := e.runUnder("sh", "-c", shellQuote(scp)+"; echo status=$?")
		if code != 0 || strings.Contains(out, "status=0") {
			t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, stderr)
		}
		absent(t, filepath.Join(d, "pwned-scp"))
		noCommand(t, st, before)
		wantRefused(t, e, "~pwned-scp", "targets.box.exec-allowlist", `';'`, stderr)
		if qs := execRequests(e, "pwned-scp"); len(qs) == 1 && !strings.HasPrefix(qs[0].Command, "scp ") {
			t.Errorf("the journal does not show scp's remote command: %q", qs[0].Command)
		}
	})

	t.Run("rsync --rsync-path", func(t *testing.T) {
		local := filepath.Join(t.TempDir(), "f")
		os.WriteFile(local, []byte("x"), 0o644)
		before := st.started("command")
		sshCmd := strings.Join(append(append([]string{"ssh"}, st.clientOpts("")...), "-p", port), " ")
		rsync := []string{"rsync", "-e", sshCmd, "--rsync-path=touch " + d + "/pwned-rsync; rsync", local, "root@127.0.0.3:" + d + "/rsynced"}
		out, stderr, code := e.runUnder("sh", "-c", shellQuote(rsync)+"; echo status=$?")
		if code != 0 || strings.Contains(out, "status=0") {
			t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, stderr)
		}
		absent(t, filepath.Join(d, "pwned-rsync"))
		absent(t, filepath.Join(d, "rsynced"))
		noCommand(t, st, before)
		wantRefused(t, e, "~pwned-rsync", "targets.box.exec-allowlist", `';'`, stderr)
	})

	t.Run("env request BASH_ENV", func(t *testing.T) {
		script := filepath.Join(d, "env.sh")
		os.WriteFile(script, []byte("touch "+d+"/pwned-bashenv\n"), 0o644)
		argv := st.sshArgv("touch " + d + "/ok-env")
		argv = append(argv[:1], append([]string{"-o", "SetEnv=BASH_ENV=" + script}, argv[1:]...)...)
		out, stderr, code := e.runUnder(argv...)
		if code != 0 {
			t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, stderr)
		}
		absent(t, filepath.Join(d, "pwned-bashenv"))
		var env *model.SSHRequest
		for _, q := range entriesOf[model.SSHRequest](e, model.KindSSHRequest) {
			if q.Type == "env" && strings.HasPrefix(q.Env, "BASH_ENV=") {
				env = &q
			}
		}
		if env == nil || env.Decision.Action != model.Deny || env.Decision.Rule != "exec-allowlist" {
			t.Errorf("env request journaled as %+v", env)
		}
	})

	t.Run("shell request", func(t *testing.T) {
		before := st.started("shell")
		argv := append(st.sshArgv()[:1], append([]string{"-tt"}, st.sshArgv()[1:]...)...)
		cmd := exec.Command(interlockBin, append([]string{"run", "-c", e.cfgPath, "--"}, argv...)...)
		cmd.Stdin = strings.NewReader("touch " + d + "/pwned-shellreq\nexit\n")
		_, stderr, _ := runCmd(t, cmd)
		absent(t, filepath.Join(d, "pwned-shellreq"))
		if n := st.started("shell") - before; n != 0 {
			t.Errorf("sshd started %d shells", n)
		}
		var shell *model.SSHRequest
		for _, q := range entriesOf[model.SSHRequest](e, model.KindSSHRequest) {
			if q.Type == "shell" {
				shell = &q
			}
		}
		if shell == nil || shell.Decision.Action != model.Deny || shell.Decision.Rule != "targets.box.exec-allowlist" {
			t.Errorf("shell journaled as %+v; stderr %q", shell, stderr)
		}
	})
}

// TestSSHAdversarialExecReview: under unlisted: review an unlisted command
// is held; the approvals list shows its exact bytes (and their hash) with
// the reason it is not listed; nothing reaches the target until an
// approver (another uid) approves the text they read; a denial refuses it.
func TestSSHAdversarialExecReview(t *testing.T) {
	st := startSSHD(t)
	d := st.dir
	e := newSSHEnv(t, st, sshTargetOpts{extra: fmt.Sprintf(
		`exec: {mode: allowlist, allow: ["touch %s/ok-*"], unlisted: review, review: {approvers: [daemon], timeout: 30s}}`, d)})
	const rule = "targets.box.exec-allowlist"
	start := func(cmd string) (*exec.Cmd, *strings.Builder) {
		c := exec.Command(interlockBin, append([]string{"run", "-q", "-c", e.cfgPath, "--"}, st.sshArgv(cmd)...)...)
		var stderr strings.Builder
		c.Stderr = &stderr
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { stopRun(c) })
		return c, &stderr
	}
	pending := func(id string) model.ApprovalRequest {
		o, _, _ := asUser(t, "daemon", "approvals", "list", "-c", e.cfgPath, "--json")
		var l pendingList
		json.Unmarshal([]byte(o), &l)
		for _, p := range l {
			if p.Request.ID == id {
				return p.Request
			}
		}
		t.Fatalf("request %s is not listed: %s", id, o)
		return model.ApprovalRequest{}
	}

	t.Run("approved after reading the exact text", func(t *testing.T) {
		cmd := "touch " + d + "/held-1;touch " + d + "/held-2"
		c, stderr := start(cmd)
		id := waitRequest(t, e, rule)
		req := pending(id)
		sum := sha256.Sum256([]byte(cmd))
		if req.Operation.Text != cmd || req.TextSHA256 != hex.EncodeToString(sum[:]) || !strings.Contains(req.Reason, "not on the target's exec allowlist") {
			t.Errorf("pending request %+v", req)
		}
		absent(t, filepath.Join(d, "held-1"))
		if n := st.started("command"); n != 0 {
			t.Errorf("sshd started %d commands while the exec was held", n)
		}
		if o, se, code := asUser(t, "daemon", "approvals", "approve", id, "-c", e.cfgPath, "--expect", req.TextSHA256, "--reason", "ticket 9"); code != 0 {
			t.Fatalf("approve: exit %d %s %s", code, o, se)
		}
		if err := c.Wait(); err != nil {
			t.Fatalf("the approved exec failed: %v %s", err, stderr)
		}
		for _, f := range []string{"held-1", "held-2"} {
			if _, err := os.Stat(filepath.Join(d, f)); err != nil {
				t.Errorf("the approved command did not run: %v", err)
			}
		}
		qs := execRequests(e, "held-1")
		if len(qs) != 1 || qs[0].Decision.Action != model.Allow || qs[0].Decision.Request != id {
			t.Errorf("exec journaled as %+v, want allowed by request %s", qs, id)
		}
	})

	t.Run("denied by the approver", func(t *testing.T) {
		before := st.started("command")
		cmd := "sh -c 'touch " + d + "/held-3'"
		c, stderr := start(cmd)
		id := waitRequest(t, e, rule)
		if _, se, code := asUser(t, "daemon", "approvals", "deny", id, "-c", e.cfgPath, "--reason", "no"); code != 0 {
			t.Fatalf("deny: exit %d %s", code, se)
		}
		err := c.Wait()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 126 {
			t.Errorf("the denied exec: %v %s", err, stderr)
		}
		absent(t, filepath.Join(d, "held-3"))
		noCommand(t, st, before)
		qs := execRequests(e, "held-3")
		if len(qs) != 1 || qs[0].Decision.Action != model.Deny || qs[0].Decision.Request != id {
			t.Errorf("exec journaled as %+v", qs)
		}
	})
}
