package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/interlock/interlock/internal/testkit"
	"github.com/interlock/interlock/model"
)

// TestSSHExecIsJournaled: `ssh host uname -a` through interlock works with
// an ordinary known_hosts and the client's own key (the target does not
// know it), and the journal holds the session, the command and its exit
// status; a failing command's status comes back and is journaled too.
func TestSSHExecIsJournaled(t *testing.T) {
	st := startSSHD(t)
	e := newSSHEnv(t, st, sshTargetOpts{})
	script := shellQuote(st.sshArgv("uname -a")) + "; " + shellQuote(st.sshArgv("exit 3")) + "; echo status=$?"
	out, stderr, code := e.runUnder("sh", "-c", script)
	if code != 0 || !strings.Contains(out, "Linux") || !strings.Contains(out, "status=3") {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, stderr)
	}
	if !strings.Contains(stderr, "interlock: 2 sessions (box×2)") {
		t.Errorf("summary: %q", stderr)
	}
	opens := sshOpens(e)
	if len(opens) != 2 {
		t.Fatalf("%d ssh sessions journaled, want 2", len(opens))
	}
	so := opens[0]
	if so.Decision.Action != model.Allow || so.SSH == nil {
		t.Fatalf("session.open %+v", so)
	}
	if so.SSH.User != "root" || so.SSH.AuthMethod != "publickey" || so.SSH.KeyFingerprint != st.clientKey.Fingerprint() {
		t.Errorf("client side: %+v (client key %s)", so.SSH, st.clientKey.Fingerprint())
	}
	if so.SSH.UpstreamHostKey != st.hostKey.Fingerprint() || !strings.HasPrefix(so.SSH.ClientVersion, "SSH-2.0-OpenSSH") {
		t.Errorf("startup: %+v", so.SSH)
	}
	if p := so.Identity.Proc; p == nil || p.Exe != "/usr/bin/ssh" {
		t.Errorf("identity: %+v", so.Identity.Proc)
	}
	cmds := map[string]string{}
	for _, en := range e.entries() {
		switch en.Kind {
		case model.KindSSHRequest:
			var q model.SSHRequest
			json.Unmarshal(en.Data, &q)
			if q.Type == "exec" {
				cmds[en.Session] = q.Command
				if q.Decision.Action != model.Allow {
					t.Errorf("exec %q: %+v", q.Command, q.Decision)
				}
			}
		case model.KindSSHExit:
			var x model.SSHExit
			json.Unmarshal(en.Data, &x)
			if x.ExitStatus == nil {
				t.Errorf("exit without status: %s", en.Data)
				continue
			}
			cmds[en.Session] += " -> " + strconv.Itoa(*x.ExitStatus)
		}
	}
	got := []string{cmds[sessionID(e, 0)], cmds[sessionID(e, 1)]}
	if got[0] != "uname -a -> 0" || got[1] != "exit 3 -> 3" {
		t.Errorf("journaled commands: %q", got)
	}
	// The output is in the journal too.
	var output string
	for _, en := range e.entries() {
		if en.Kind == model.KindSSHIO && en.Session == sessionID(e, 0) {
			output += string(payload(e, en.Seq))
		}
	}
	if !strings.Contains(output, "Linux") {
		t.Errorf("recorded output %q", output)
	}
	if st.started("command") != 2 {
		t.Errorf("sshd started %d commands, want 2", st.started("command"))
	}
}

// sessionID is the id of the i-th ssh session in the journal.
func sessionID(e *env, i int) string {
	n := 0
	for _, en := range e.entries() {
		if en.Kind == model.KindSessionOpen && strings.Contains(string(en.Data), `"protocol":"ssh"`) {
			if n == i {
				return en.Session
			}
			n++
		}
	}
	return ""
}

// TestSSHInteractiveSessionReplays: an interactive session in a pty (tmux)
// runs three commands; the exported asciicast and the replay show them
// with their output.
func TestSSHInteractiveSessionReplays(t *testing.T) {
	requireTools(t, "tmux")
	st := startSSHD(t)
	e := newSSHEnv(t, st, sshTargetOpts{})
	sock := filepath.Join(e.dir, "tmux.sock")
	argv := append([]string{interlockBin, "run", "-c", e.cfgPath, "--"}, st.sshArgv()...)
	done := filepath.Join(e.dir, "done")
	tmux := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("tmux", append([]string{"-S", sock}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("tmux %v: %v: %s", args, err, out)
		}
		return string(out)
	}
	tmux("new-session", "-d", "-s", "s", "-x", "100", "-y", "30", shellQuote(argv)+"; touch "+done+"; sleep 30")
	t.Cleanup(func() { exec.Command("tmux", "-S", sock, "kill-server").Run() })
	screenHas := func(s string) bool {
		deadline := time.Now().Add(15 * time.Second)
		for time.Now().Before(deadline) {
			if strings.Contains(tmux("capture-pane", "-p", "-t", "s"), s) {
				return true
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Errorf("screen never showed %q:\n%s", s, tmux("capture-pane", "-p", "-t", "s"))
		return false
	}
	screenHas("~#") // root's prompt
	for _, c := range []struct{ cmd, out string }{
		{"echo $((6*7))", "42"},
		{"echo $(( 1000 + 337 ))-leet", "1337-leet"},
		{"uname -s", "Linux"},
	} {
		tmux("send-keys", "-t", "s", c.cmd, "Enter")
		screenHas(c.out)
	}
	tmux("send-keys", "-t", "s", "exit", "Enter")
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, err := os.Stat(done); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the session did not end:\n%s", tmux("capture-pane", "-p", "-t", "s"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	id := sessionID(e, 0)
	if id == "" {
		t.Fatal("no ssh session in the journal")
	}
	if st.started("shell on pts") != 1 {
		t.Errorf("sshd started %d shells in a pty", st.started("shell on pts"))
	}

	cast := filepath.Join(e.dir, "s.cast")
	_, stderr, code := e.interlock("sessions", "export", "-c", e.cfgPath, id[:13], "--format", "asciicast", "--out", cast)
	if code != 0 {
		t.Fatalf("export: exit %d: %s", code, stderr)
	}
	b, err := os.ReadFile(cast)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	var hdr struct {
		Version, Width, Height int
	}
	if err := json.Unmarshal([]byte(lines[0]), &hdr); err != nil || hdr.Version != 2 || hdr.Width != 100 || hdr.Height != 30 {
		t.Errorf("header %s: %v", lines[0], err)
	}
	var out, in strings.Builder
	last := -1.0
	for _, l := range lines[1:] {
		var ev []any
		if err := json.Unmarshal([]byte(l), &ev); err != nil || len(ev) != 3 {
			t.Fatalf("event %s: %v", l, err)
		}
		ts := ev[0].(float64)
		if ts < last {
			t.Errorf("time goes back at %s", l)
		}
		last = ts
		switch ev[1] {
		case "o":
			out.WriteString(ev[2].(string))
		case "i":
			in.WriteString(ev[2].(string))
		}
	}
	for _, s := range []string{"echo $((6*7))\r", "uname -s\r", "exit\r"} {
		if !strings.Contains(in.String(), s) {
			t.Errorf("input events lack %q: %q", s, in.String())
		}
	}
	for _, s := range []string{"42\r\n", "1337-leet\r\n", "Linux\r\n", "logout"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("output events lack %q", s)
		}
	}
	// The three commands took more than a second of real time: the
	// replay at 50x is quick and shows the same output.
	start := time.Now()
	replay, stderr, code := e.interlock("sessions", "replay", "-c", e.cfgPath, "--speed", "50", id)
	if code != 0 {
		t.Fatalf("replay: exit %d: %s", code, stderr)
	}
	if replay != out.String() {
		t.Errorf("replay differs from the cast's output:\n%q\n%q", replay, out.String())
	}
	if time.Since(start) > 10*time.Second {
		t.Errorf("replay at 50x took %v", time.Since(start))
	}
	if !strings.Contains(stderr, "recorded at 100x30") {
		t.Errorf("replay stderr %q", stderr)
	}
}

// TestSSHDenyExec: an exec matching deny_exec gets exit status 126 and a
// message, and the target never runs it.
func TestSSHDenyExec(t *testing.T) {
	st := startSSHD(t)
	e := newSSHEnv(t, st, sshTargetOpts{extra: `deny_exec: ["*pwned*", "rm -rf *"]`})
	marker := filepath.Join(st.dir, "pwned")
	script := shellQuote(st.sshArgv("touch "+marker)) + "; echo status=$?; " + shellQuote(st.sshArgv("echo allowed"))
	out, stderr, code := e.runUnder("sh", "-c", script)
	if code != 0 || !strings.Contains(out, "status=126") || !strings.Contains(out, "allowed") {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, stderr)
	}
	if !strings.Contains(stderr, "refused by policy (targets.box.deny_exec)") {
		t.Errorf("stderr lacks the refusal: %q", stderr)
	}
	// Checked on the target: no file, and sshd started only the allowed
	// command.
	if _, err := os.Stat(marker); err == nil {
		t.Error("the target ran the denied command")
	}
	if n := st.started("command"); n != 1 {
		t.Errorf("sshd started %d commands, want 1 (the allowed one)", n)
	}
	var denied *model.SSHRequest
	for _, q := range entriesOf[model.SSHRequest](e, model.KindSSHRequest) {
		if q.Type == "exec" && strings.Contains(q.Command, "pwned") {
			denied = &q
		}
	}
	if denied == nil || denied.Decision.Action != model.Deny || denied.Decision.Rule != "targets.box.deny_exec" {
		t.Errorf("denied exec journaled as %+v", denied)
	}
	exits := entriesOf[model.SSHExit](e, model.KindSSHExit)
	if len(exits) == 0 || exits[0].ExitStatus == nil || *exits[0].ExitStatus != 126 {
		t.Errorf("exits %+v", exits)
	}
}

// TestSSHPortForwardingRefused: ssh -L is refused by default and journaled,
// and the target never sees the forwarding; -R likewise.
func TestSSHPortForwardingRefused(t *testing.T) {
	requireTools(t, "bash")
	st := startSSHD(t)
	e := newSSHEnv(t, st, sshTargetOpts{})
	local := testkit.FreePort(t, "127.0.0.1")
	fwd := append([]string(nil), st.sshArgv()...)
	fwd = append(fwd[:1], append([]string{"-L", "127.0.0.1:" + strconv.Itoa(local) + ":127.0.0.3:" + strconv.Itoa(st.port)}, fwd[1:]...)...)
	rfwd := append([]string(nil), st.sshArgv("true")...)
	rfwd = append(rfwd[:1], append([]string{"-o", "ExitOnForwardFailure=yes", "-R", "127.0.0.1:0:127.0.0.1:9"}, rfwd[1:]...)...)
	// -L: a connection to the local port makes ssh open a direct-tcpip
	// channel, which interlock refuses: the local connection is closed.
	script := shellQuote(append(fwd, "sleep 3")) + ` & pid=$!
for i in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/` + strconv.Itoa(local) + `) 2>/dev/null && break; sleep 0.1; done
exec 3<>/dev/tcp/127.0.0.1/` + strconv.Itoa(local) + `
if timeout 10 head -c 1 <&3 | grep -q .; then echo forwarded; else echo refused; fi
exec 3<&-
wait $pid; echo L=$?
` + shellQuote(rfwd) + `; echo R=$?
`
	out, stderr, code := e.runUnder("bash", "-c", script)
	if code != 0 || !strings.Contains(out, "refused") || !strings.Contains(out, "L=0") || !strings.Contains(out, "R=255") {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, stderr)
	}
	if !strings.Contains(stderr, "administratively prohibited") {
		t.Errorf("ssh did not report the refusal: %q", stderr)
	}
	var direct *model.SSHChannel
	for _, c := range entriesOf[model.SSHChannel](e, model.KindSSHChannel) {
		if c.Type == "direct-tcpip" {
			direct = &c
		}
	}
	wantDetail := "127.0.0.3:" + strconv.Itoa(st.port) + " from 127.0.0.1:"
	if direct == nil || direct.Decision.Action != model.Deny || direct.Decision.Rule != "targets.box.allow" || !strings.HasPrefix(direct.Detail, wantDetail) {
		t.Errorf("direct-tcpip journaled as %+v", direct)
	}
	var remote *model.SSHRequest
	for _, q := range entriesOf[model.SSHRequest](e, model.KindSSHRequest) {
		if q.Type == "tcpip-forward" {
			remote = &q
		}
	}
	if remote == nil || remote.Decision.Action != model.Deny || !remote.Global || remote.Command != "127.0.0.1:0" {
		t.Errorf("tcpip-forward journaled as %+v", remote)
	}
	b, _ := os.ReadFile(st.log)
	if strings.Contains(string(b), "direct-tcpip") || strings.Contains(string(b), "tcpip-forward") {
		t.Errorf("the target saw a forwarding request:\n%s", b)
	}
}

// TestSSHPolicyRuleDeniesExec: a policy rule (not the target shorthand)
// denies `rm -rf ...`: exit status 126, nothing removed on the target, the
// rule journaled, and `policy test` gives the same decision.
func TestSSHPolicyRuleDeniesExec(t *testing.T) {
	st := startSSHD(t)
	e := newSSHEnv(t, st, sshTargetOpts{global: `policy:
  rules:
    - name: no-rm-rf
      match: {protocols: [ssh], operation: {commands: ["rm -rf *"]}}
      action: deny
      reason: deletions go through change management
`})
	data := filepath.Join(st.dir, "srv-data")
	if err := os.MkdirAll(filepath.Join(data, "keep"), 0o755); err != nil {
		t.Fatal(err)
	}
	script := shellQuote(st.sshArgv("rm -rf "+data)) + "; echo status=$?"
	out, stderr, code := e.runUnder("sh", "-c", script)
	if code != 0 || !strings.Contains(out, "status=126") {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, stderr)
	}
	if !strings.Contains(stderr, "no-rm-rf") {
		t.Errorf("stderr does not name the rule: %q", stderr)
	}
	if _, err := os.Stat(filepath.Join(data, "keep")); err != nil {
		t.Errorf("the target ran the denied command: %v", err)
	}
	if n := st.started("command"); n != 0 {
		t.Errorf("sshd started %d commands, want 0", n)
	}
	var denied bool
	for _, q := range entriesOf[model.SSHRequest](e, model.KindSSHRequest) {
		denied = denied || (q.Type == "exec" && q.Decision.Action == model.Deny && q.Decision.Rule == "no-rm-rf")
	}
	if !denied {
		t.Errorf("the denial is not journaled with its rule")
	}
	pout, perr, pcode := e.interlock("policy", "test", "-c", e.cfgPath, "--target", "box", "--command", "rm -rf "+data, "--json")
	if pcode != 0 || !strings.Contains(pout, `"action": "deny"`) || !strings.Contains(pout, `"rule": "no-rm-rf"`) {
		t.Errorf("policy test: %d %s %s", pcode, pout, perr)
	}
}
