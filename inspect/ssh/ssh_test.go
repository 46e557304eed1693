package ssh

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"iter"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/interlock/interlock/asciicast"
	"github.com/interlock/interlock/internal/testkit"
	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/test/testenv"
)

func TestExecIsRelayedAndRecorded(t *testing.T) {
	r := newRig(t, rigOpts{})
	c := r.mustDial()
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	sess.Stdout, sess.Stderr = &stdout, &stderr
	err = sess.Run("echo hello; echo oops >&2; exit 3")
	var ee *gossh.ExitError
	if !errors.As(err, &ee) || ee.ExitStatus() != 3 {
		t.Fatalf("run: %v, want exit status 3", err)
	}
	if stdout.String() != "hello\n" || stderr.String() != "oops\n" {
		t.Errorf("stdout %q stderr %q", stdout.String(), stderr.String())
	}
	c.Close()
	r.waitClosed(1)

	opens := testkit.Data[model.SessionOpen](r.j, model.KindSessionOpen)
	if len(opens) != 1 || opens[0].SSH == nil {
		t.Fatalf("session.open: %+v", opens)
	}
	st := opens[0].SSH
	if st.User != "alice" || st.AuthMethod != "publickey" || st.KeyFingerprint != gossh.FingerprintSHA256(r.clientKey.PublicKey()) {
		t.Errorf("startup %+v", st)
	}
	if st.UpstreamHostKey != gossh.FingerprintSHA256(r.target.hostKey.PublicKey()) || !strings.HasPrefix(st.ClientVersion, "SSH-2.0-Go") {
		t.Errorf("startup %+v", st)
	}
	if !r.j.Synced(model.KindSessionOpen, func(model.Record) bool { return true }) {
		t.Error("session.open not synced")
	}
	var execReq *model.SSHRequest
	for _, q := range testkit.Data[model.SSHRequest](r.j, model.KindSSHRequest) {
		if q.Type == "exec" {
			execReq = &q
		}
	}
	if execReq == nil || execReq.Command != "echo hello; echo oops >&2; exit 3" || execReq.Decision.Action != model.Allow {
		t.Fatalf("exec request: %+v", execReq)
	}
	if !r.j.Synced(model.KindSSHRequest, func(rec model.Record) bool { return rec.Data.(model.SSHRequest).Type == "exec" }) {
		t.Error("exec request not synced before it ran")
	}
	exits := testkit.Data[model.SSHExit](r.j, model.KindSSHExit)
	if len(exits) != 1 || exits[0].ExitStatus == nil || *exits[0].ExitStatus != 3 {
		t.Errorf("exits %+v", exits)
	}
	got := map[string]string{}
	for _, rec := range r.j.Records() {
		if rec.Kind == model.KindSSHIO {
			got[rec.Data.(model.SSHIO).Stream] += string(rec.Payload.([]byte))
		}
	}
	if got["o"] != "hello\n" || got["e"] != "oops\n" {
		t.Errorf("recorded io %q", got)
	}
	cl := testkit.Data[model.SessionClose](r.j, model.KindSessionClose)[0]
	if cl.BytesDown != 11 || cl.Error != "" {
		t.Errorf("close %+v", cl)
	}
}

func TestDeniedExecNeverReachesTheTarget(t *testing.T) {
	r := newRig(t, rigOpts{})
	c := r.mustDial()
	sess, _ := c.NewSession()
	var stderr bytes.Buffer
	sess.Stderr = &stderr
	err := sess.Run("touch /tmp/forbidden")
	var ee *gossh.ExitError
	if !errors.As(err, &ee) || ee.ExitStatus() != 126 {
		t.Fatalf("run: %v, want exit status 126", err)
	}
	if !strings.Contains(stderr.String(), "refused by policy (test): denied by the test") {
		t.Errorf("stderr %q", stderr.String())
	}
	// The session goes on.
	sess2, _ := c.NewSession()
	if out, err := sess2.Output("echo still here"); err != nil || string(out) != "still here\n" {
		t.Errorf("next exec: %q %v", out, err)
	}
	for _, cmd := range r.target.commands() {
		if strings.Contains(cmd, "forbidden") {
			t.Errorf("the target ran %q", cmd)
		}
	}
	if !r.j.Synced(model.KindSSHRequest, func(rec model.Record) bool {
		q := rec.Data.(model.SSHRequest)
		return q.Type == "exec" && q.Decision.Action == model.Deny
	}) {
		t.Error("the denial is not journaled as synced")
	}
}

func TestDeniedShell(t *testing.T) {
	r := newRig(t, rigOpts{policy: testPolicy{denyShell: true}})
	c := r.mustDial()
	sess, _ := c.NewSession()
	stderr, _ := sess.StderrPipe()
	if err := sess.Shell(); err == nil {
		t.Fatal("shell accepted")
	}
	msg, _ := io.ReadAll(stderr)
	if !strings.Contains(string(msg), "interlock: shell refused by policy") {
		t.Errorf("stderr %q", msg)
	}
	if len(r.target.commands()) != 0 {
		t.Errorf("the target ran %v", r.target.commands())
	}
}

func TestForwardingRefusedAndUnknownRequestsFalse(t *testing.T) {
	r := newRig(t, rigOpts{})
	c := r.mustDial()
	_, err := c.Dial("tcp", "127.0.0.1:22")
	var oe *gossh.OpenChannelError
	if !errors.As(err, &oe) || oe.Reason != gossh.Prohibited {
		t.Errorf("direct-tcpip: %v", err)
	}
	if _, err := c.Listen("tcp", "127.0.0.1:0"); err == nil {
		t.Error("tcpip-forward accepted")
	}
	if ok, _, err := c.SendRequest("interlock-test@example.com", true, nil); ok || err != nil {
		t.Errorf("unknown global request: %v %v", ok, err)
	}
	sess, _ := c.NewSession()
	if ok, err := sess.SendRequest("auth-agent-req@openssh.com", true, nil); ok || err != nil {
		t.Errorf("agent forwarding: %v %v", ok, err)
	}
	if ok, err := sess.SendRequest("x-unknown", true, nil); ok || err != nil {
		t.Errorf("unknown channel request: %v %v", ok, err)
	}
	if _, _, err := c.OpenChannel("x-weird", nil); err == nil {
		t.Error("unknown channel type opened")
	}
	c.Close()
	r.waitClosed(1)
	var sawDirect bool
	for _, ch := range testkit.Data[model.SSHChannel](r.j, model.KindSSHChannel) {
		if ch.Type == "direct-tcpip" {
			sawDirect = ch.Decision.Action == model.Deny && strings.HasPrefix(ch.Detail, "127.0.0.1:22 from ")
		}
	}
	if !sawDirect {
		t.Errorf("direct-tcpip refusal not journaled: %+v", testkit.Data[model.SSHChannel](r.j, model.KindSSHChannel))
	}
	types := map[string]model.Action{}
	for _, q := range testkit.Data[model.SSHRequest](r.j, model.KindSSHRequest) {
		types[q.Type] = q.Decision.Action
	}
	for _, typ := range []string{"tcpip-forward", "interlock-test@example.com", "auth-agent-req@openssh.com", "x-unknown"} {
		if types[typ] != model.Deny {
			t.Errorf("%s journaled as %q", typ, types[typ])
		}
	}
	for _, q := range r.target.gotReqs {
		if q == "global:tcpip-forward" || q == "auth-agent-req@openssh.com" {
			t.Errorf("the target got %s", q)
		}
	}
}

func TestForwardingAllowedByPolicy(t *testing.T) {
	r := newRig(t, rigOpts{policy: testPolicy{allowForward: true}})
	c := r.mustDial()
	// The fake target refuses direct-tcpip itself: the channel reached it.
	_, err := c.Dial("tcp", "127.0.0.1:22")
	var oe *gossh.OpenChannelError
	if !errors.As(err, &oe) || oe.Message != "no" {
		t.Errorf("direct-tcpip: %v", err)
	}
}

func TestPtyShellRendersAsAsciicast(t *testing.T) {
	r := newRig(t, rigOpts{})
	c := r.mustDial()
	sess, _ := c.NewSession()
	if err := sess.RequestPty("xterm", 30, 100, gossh.TerminalModes{}); err != nil {
		t.Fatal(err)
	}
	in, _ := sess.StdinPipe()
	var out bytes.Buffer
	sess.Stdout = &out
	if err := sess.Shell(); err != nil {
		t.Fatal(err)
	}
	io.WriteString(in, "echo $((6*7))\n")
	time.Sleep(50 * time.Millisecond)
	sess.WindowChange(40, 120)
	io.WriteString(in, "exit 0\n")
	sess.Wait()
	c.Close()
	r.waitClosed(1)

	var cast bytes.Buffer
	if err := asciicast.Write(&cast, r.records()); err != nil {
		t.Fatal(err)
	}
	s := cast.String()
	if !strings.HasPrefix(s, `{"version":2,"width":100,"height":30,`) || !strings.Contains(s, `"o", "42`) ||
		!strings.Contains(s, `"i", "echo $((6*7))\n"]`) || !strings.Contains(s, `"r", "120x40"]`) {
		t.Errorf("cast:\n%s", s)
	}
}

// records returns the journal as asciicast records.
func (r *rig) records() iter.Seq2[asciicast.Record, error] {
	return func(yield func(asciicast.Record, error) bool) {
		recs := r.j.Records()
		for i, rec := range recs {
			data, _ := json.Marshal(rec.Data)
			p, _ := rec.Payload.([]byte)
			if !yield(asciicast.Record{Seq: uint64(i + 1), Kind: rec.Kind, TimeNS: rec.Time.UnixNano(), Data: data, Payload: p}, nil) {
				return
			}
		}
	}
}

func TestSFTPOperationsAreJournaled(t *testing.T) {
	_, err := os.Stat(sftpServer)
	testenv.Require(t, "sftp-server (openssh-server installs it)", err)
	r := newRig(t, rigOpts{})
	c := r.mustDial()
	sess, _ := c.NewSession()
	w, _ := sess.StdinPipe()
	rd, _ := sess.StdoutPipe()
	if err := sess.RequestSubsystem("sftp"); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "up.bin")
	data := bytes.Repeat([]byte("0123456789abcdef"), 10000) // 160000 bytes
	send := func(p []byte) {
		if _, err := w.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	expect := func(want byte) (uint32, []byte) {
		typ, id, rest := readSFTP(t, rd)
		if typ != want {
			t.Fatalf("got packet type %d (%q), want %d", typ, rest, want)
		}
		return id, rest
	}
	send(sftpPacket(fxpInit, 0, uint32(3)))
	expect(2)
	send(sftpPacket(fxpOpen, 1, file, uint32(2|8|0x10), uint32(0)))
	_, h := expect(fxpHandle)
	handle := string(h[4:])
	// Pipelined writes in 32 KiB blocks.
	n := 0
	for off := 0; off < len(data); off += 32768 {
		end := min(off+32768, len(data))
		send(sftpPacket(fxpWrite, uint32(10+n), handle, uint64(off), data[off:end]))
		n++
	}
	for i := 0; i < n; i++ {
		expect(fxpStatus)
	}
	send(sftpPacket(fxpClose, 2, handle))
	expect(fxpStatus)
	send(sftpPacket(fxpMkdir, 3, filepath.Join(dir, "d"), uint32(0)))
	expect(fxpStatus)
	send(sftpPacket(fxpExtended, 4, "posix-rename@openssh.com", file, filepath.Join(dir, "d", "moved.bin")))
	expect(fxpStatus)
	send(sftpPacket(fxpSetstat, 5, filepath.Join(dir, "d", "moved.bin"), uint32(4), uint32(0o600)))
	expect(fxpStatus)
	// Read it back.
	send(sftpPacket(fxpOpen, 6, filepath.Join(dir, "d", "moved.bin"), uint32(1), uint32(0)))
	_, h = expect(fxpHandle)
	handle = string(h[4:])
	var got []byte
	for off := 0; ; off += 32768 {
		send(sftpPacket(fxpRead, 7, handle, uint64(off), uint32(32768)))
		typ, _, rest := readSFTP(t, rd)
		if typ == fxpStatus {
			break
		}
		got = append(got, rest[4:]...)
	}
	send(sftpPacket(fxpClose, 8, handle))
	expect(fxpStatus)
	// Denied by policy: never reaches the target, even behind a request
	// sent in the same write (an lstat of a longer path).
	secret := filepath.Join(dir, "secret")
	os.WriteFile(secret, []byte("x"), 0o600)
	const fxpLstat = 7
	send(append(sftpPacket(fxpLstat, 11, filepath.Join(dir, "d", "moved.bin")), sftpPacket(fxpRemove, 9, secret)...))
	for range 2 {
		typ, id, st := readSFTP(t, rd)
		switch {
		case id == 11 && typ != 105: // SSH_FXP_ATTRS
			t.Errorf("lstat: packet type %d (%q)", typ, st)
		case id == 9 && (typ != fxpStatus || st[3] != fxPermissionDenied):
			t.Errorf("remove of secret: packet type %d (%q)", typ, st)
		case id != 9 && id != 11:
			t.Errorf("reply to request %d, type %d", id, typ)
		}
	}
	// The stream is still in step.
	send(sftpPacket(fxpMkdir, 12, filepath.Join(dir, "e"), uint32(0)))
	expect(fxpStatus)
	if _, err := os.Stat(secret); err != nil {
		t.Errorf("the target removed the secret: %v", err)
	}
	w.Close()
	sess.Wait()
	c.Close()
	r.waitClosed(1)

	if sha256.Sum256(got) != sha256.Sum256(data) {
		t.Errorf("read back %d bytes, different from the %d written", len(got), len(data))
	}
	var ops []string
	for _, op := range testkit.Data[model.SSHSFTP](r.j, model.KindSSHSFTP) {
		s := op.Op + " " + strings.TrimPrefix(op.Path, dir) + " " + strings.TrimPrefix(op.Target, dir) + " " + op.Status + " " + strings.Join(op.Flags, ",")
		if op.Op == "close" {
			s += " r" + itoa(op.BytesRead) + " w" + itoa(op.BytesWritten)
		}
		ops = append(ops, s)
	}
	want := []string{
		"open /up.bin  ok write,create,truncate",
		"close /up.bin  ok write,create,truncate r0 w160000",
		"mkdir /d  ok ",
		"rename /up.bin /d/moved.bin ok ",
		"setstat /d/moved.bin  ok mode=0600",
		"open /d/moved.bin  ok read",
		"close /d/moved.bin  ok read r160000 w0",
		"remove /secret  denied ",
		"mkdir /e  ok ",
	}
	if strings.Join(ops, "\n") != strings.Join(want, "\n") {
		t.Errorf("sftp ops:\n%s\nwant:\n%s", strings.Join(ops, "\n"), strings.Join(want, "\n"))
	}
}

func TestMalformedClientsDoNotHurtOthers(t *testing.T) {
	r := newRig(t, rigOpts{handshake: 500 * time.Millisecond})
	dial := func() net.Conn {
		c, err := net.Dial("tcp", r.ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	// Garbage after the banner.
	g := dial()
	io.WriteString(g, "SSH-2.0-garbage\r\n")
	g.Write(bytes.Repeat([]byte{0xff, 0x00, 0x13}, 20000))
	// An oversized packet.
	o := dial()
	io.WriteString(o, "SSH-2.0-big\r\n")
	o.Write([]byte{0x7f, 0xff, 0xff, 0xff, 10})
	// No banner at all: lines of junk.
	n := dial()
	io.WriteString(n, strings.Repeat("GET / HTTP/1.1\r\n", 100))
	// A client that stops in the middle of the key exchange.
	s := dial()
	io.WriteString(s, "SSH-2.0-stall\r\n")
	for _, c := range []net.Conn{g, o, n, s} {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		start := time.Now()
		_, err := io.Copy(io.Discard, c)
		if err != nil && !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("connection not closed by interlock: %v", err)
		}
		if time.Since(start) > 3*time.Second {
			t.Errorf("closed after %v", time.Since(start))
		}
		c.Close()
	}
	// A good client still works.
	c := r.mustDial()
	sess, _ := c.NewSession()
	if out, err := sess.Output("echo ok"); err != nil || string(out) != "ok\n" {
		t.Errorf("good client: %q %v", out, err)
	}
	c.Close()
	r.waitClosed(5)
	refused := 0
	for _, o := range testkit.Data[model.SessionOpen](r.j, model.KindSessionOpen) {
		if o.Decision.Rule == "ssh-handshake" {
			refused++
		}
	}
	if refused != 4 {
		t.Errorf("%d handshake refusals journaled, want 4", refused)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// blockingPolicy holds every exec until the session's context ends.
type blockingPolicy struct {
	testPolicy
	entered chan struct{}
}

func (p blockingPolicy) Decide(ctx context.Context, o model.Origin, op model.Operation) model.Decision {
	if op.Kind == "exec" {
		p.entered <- struct{}{}
		<-ctx.Done()
		return model.Decision{Action: model.Deny, Rule: "review", Reason: "no decision before the session ended"}
	}
	return p.testPolicy.Decide(ctx, o, op)
}

func TestSessionEndsWhilePolicyHolds(t *testing.T) {
	p := blockingPolicy{entered: make(chan struct{}, 1)}
	r := newRig(t, rigOpts{policy: p})
	c := r.mustDial()
	sess, _ := c.NewSession()
	go sess.Run("echo held")
	<-p.entered
	c.Close()
	r.waitClosed(1)
	if len(r.target.commands()) != 0 {
		t.Errorf("the target ran %v", r.target.commands())
	}
}

func TestConnectDeniedByPolicy(t *testing.T) {
	r := newRig(t, rigOpts{policy: testPolicy{denyConnect: true}})
	var banner string
	_, err := gossh.Dial("tcp", r.ln.Addr().String(), &gossh.ClientConfig{
		User: "alice", Auth: []gossh.AuthMethod{gossh.PublicKeys(r.clientKey)},
		HostKeyCallback: r.hostKeyCB, BannerCallback: func(m string) error { banner += m; return nil },
	})
	if err == nil || !strings.Contains(banner, "refused by policy (test-connect): no sessions today") {
		t.Fatalf("err %v banner %q", err, banner)
	}
	r.waitClosed(1)
	o := testkit.Data[model.SessionOpen](r.j, model.KindSessionOpen)[0]
	if o.Decision.Rule != "test-connect" || o.Decision.Action != model.Deny {
		t.Errorf("open %+v", o.Decision)
	}
	if len(r.target.commands()) != 0 || len(r.target.gotReqs) != 0 {
		t.Error("the target was reached")
	}
}

// TestSecondProgramRefusedAndJournaledWithItsCommand: a second exec on a
// channel that already runs one is refused, never reaches the target, and
// is journaled with the command it carried.
func TestSecondProgramRefusedAndJournaledWithItsCommand(t *testing.T) {
	r := newRig(t, rigOpts{})
	c := r.mustDial()
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.Start("sleep 0.5"); err != nil {
		t.Fatal(err)
	}
	second := "echo second; touch /tmp/should-not-run"
	ok, err := sess.SendRequest("exec", true, gossh.Marshal(struct{ Command string }{second}))
	if err != nil || ok {
		t.Fatalf("second exec: ok=%v err=%v, want refused", ok, err)
	}
	sess.Wait()
	c.Close()
	r.waitClosed(1)
	var refused *model.SSHRequest
	for _, q := range testkit.Data[model.SSHRequest](r.j, model.KindSSHRequest) {
		if q.Decision.Rule == "already-started" {
			refused = &q
		}
	}
	if refused == nil || refused.Command != second || refused.Decision.Action != model.Deny {
		t.Fatalf("the refused exec's record: %+v", refused)
	}
	for _, ran := range r.target.commands() {
		if strings.Contains(ran, "should-not-run") {
			t.Fatalf("the target ran the second exec: %q", ran)
		}
	}
}
