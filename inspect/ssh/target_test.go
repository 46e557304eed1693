package ssh

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/inspect"
	"github.com/interlock/interlock/model"
)

// fakeTarget is an SSH server standing in for the real target: it runs
// exec commands and shells with /bin/sh and the sftp subsystem with
// OpenSSH's sftp-server, and logs each command it starts.
type fakeTarget struct {
	ln      net.Listener
	hostKey gossh.Signer
	mu      sync.Mutex
	ran     []string
	gotReqs []string
}

const sftpServer = "/usr/lib/openssh/sftp-server"

func newSigner(t testing.TB) (gossh.Signer, []byte) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	block, err := gossh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	return s, pem.EncodeToMemory(block)
}

func startTarget(t testing.TB, user string, authorized gossh.PublicKey) *fakeTarget {
	t.Helper()
	hk, _ := newSigner(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ft := &fakeTarget{ln: ln, hostKey: hk}
	cfg := &gossh.ServerConfig{
		PublicKeyCallback: func(m gossh.ConnMetadata, k gossh.PublicKey) (*gossh.Permissions, error) {
			if m.User() == user && string(k.Marshal()) == string(authorized.Marshal()) {
				return &gossh.Permissions{}, nil
			}
			return nil, io.EOF
		},
	}
	cfg.AddHostKey(hk)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go ft.serve(c, cfg)
		}
	}()
	return ft
}

func (ft *fakeTarget) addr() netip.AddrPort { return ft.ln.Addr().(*net.TCPAddr).AddrPort() }

func (ft *fakeTarget) commands() []string {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	return append([]string(nil), ft.ran...)
}

func (ft *fakeTarget) serve(c net.Conn, cfg *gossh.ServerConfig) {
	sc, chans, reqs, err := gossh.NewServerConn(c, cfg)
	if err != nil {
		return
	}
	defer sc.Close()
	go func() {
		for r := range reqs {
			ft.mu.Lock()
			ft.gotReqs = append(ft.gotReqs, "global:"+r.Type)
			ft.mu.Unlock()
			r.Reply(false, nil)
		}
	}()
	for nc := range chans {
		if nc.ChannelType() != "session" {
			nc.Reject(gossh.Prohibited, "no")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			continue
		}
		go ft.session(ch, creqs)
	}
}

func (ft *fakeTarget) session(ch gossh.Channel, reqs <-chan *gossh.Request) {
	defer ch.Close()
	for r := range reqs {
		ft.mu.Lock()
		ft.gotReqs = append(ft.gotReqs, r.Type)
		ft.mu.Unlock()
		var argv []string
		switch r.Type {
		case "pty-req", "env", "window-change":
			r.Reply(true, nil)
			continue
		case "shell":
			argv = []string{"/bin/sh", "-i"}
		case "exec":
			var m struct{ Command string }
			gossh.Unmarshal(r.Payload, &m)
			argv = []string{"/bin/sh", "-c", m.Command}
		case "subsystem":
			var m struct{ Name string }
			gossh.Unmarshal(r.Payload, &m)
			if m.Name != "sftp" {
				r.Reply(false, nil)
				continue
			}
			argv = []string{sftpServer}
		default:
			r.Reply(false, nil)
			continue
		}
		ft.mu.Lock()
		ft.ran = append(ft.ran, strings.Join(argv, " "))
		ft.mu.Unlock()
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Stdout, cmd.Stderr = ch, ch.Stderr()
		if r.Type == "exec" && strings.Contains(argv[2], "#chunked") {
			cmd.Stdout = slowWriter{w: ch, n: 7, pause: time.Millisecond}
		}
		// Like sshd, do not wait for the client to close stdin.
		stdin, _ := cmd.StdinPipe()
		if err := cmd.Start(); err != nil {
			r.Reply(false, nil)
			continue
		}
		go func() { io.Copy(stdin, ch); stdin.Close() }()
		r.Reply(true, nil)
		go func() {
			err := cmd.Wait()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			}
			ch.CloseWrite()
			ch.SendRequest("exit-status", false, gossh.Marshal(struct{ S uint32 }{uint32(code)}))
			ch.Close()
		}()
	}
}

// slowWriter writes to w in pieces of n bytes, a pause apart, so that
// what reads them gets them in separate reads.
type slowWriter struct {
	w     io.Writer
	n     int
	pause time.Duration
}

func (s slowWriter) Write(p []byte) (int, error) {
	for i := 0; i < len(p); i += s.n {
		if _, err := s.w.Write(p[i:min(i+s.n, len(p))]); err != nil {
			return i, err
		}
		time.Sleep(s.pause)
	}
	return len(p), nil
}

// memJournal is a model.Recorder in memory.
type memJournal struct {
	mu   sync.Mutex
	recs []model.Record
	sync []bool
}

func (j *memJournal) Append(_ context.Context, r model.Record, d model.Durability) (uint64, error) {
	// The caller may reuse a []byte payload once this returns, as the
	// journal lets it (model.Recorder).
	if p, ok := r.Payload.([]byte); ok {
		r.Payload = bytes.Clone(p)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	j.recs = append(j.recs, r)
	j.sync = append(j.sync, d == model.Synced)
	return uint64(len(j.recs)), nil
}

func (j *memJournal) Post(r model.Record) { j.Append(context.Background(), r, model.Committed) }

// of returns the data of the records of a kind, as JSON-decoded values.
func of[T any](j *memJournal, kind string) []T {
	j.mu.Lock()
	defer j.mu.Unlock()
	var out []T
	for _, r := range j.recs {
		if r.Kind != kind {
			continue
		}
		b, _ := json.Marshal(r.Data)
		var v T
		json.Unmarshal(b, &v)
		out = append(out, v)
	}
	return out
}

func (j *memJournal) synced(kind string, pred func(model.Record) bool) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	for i, r := range j.recs {
		if r.Kind == kind && pred(r) {
			return j.sync[i]
		}
	}
	return false
}

// testPolicy denies exec commands containing "forbidden", sftp paths
// containing "secret", and forwarding unless allowForward.
type testPolicy struct{ allowForward, denyShell, denyConnect bool }

func (p testPolicy) DecideConnect(context.Context, model.Origin) model.Decision {
	if p.denyConnect {
		return model.Decision{Action: model.Deny, Rule: "test-connect", Reason: "no sessions today"}
	}
	return model.Decision{Action: model.Allow, Rule: "default"}
}

func (p testPolicy) DecideEffects(context.Context, model.Origin, model.Operation) model.Decision {
	return model.Decision{Action: model.Allow, Rule: "default"}
}

func (p testPolicy) EffectsRules(model.Origin) bool { return false }

func (p testPolicy) SessionMasks(model.Origin) *model.MaskSpec { return nil }

func (p testPolicy) Decide(_ context.Context, _ model.Origin, op model.Operation) model.Decision {
	if op.Kind == "exec" && (strings.Contains(op.Text, "mask-me") || strings.Contains(op.Text, "mask-all")) {
		live := strings.Contains(op.Text, "live")
		dets := []string{"email"}
		if strings.Contains(op.Text, "mask-all") {
			dets = []string{"email", "card", "national_id", "cloud_key", "token", "private_key"}
		}
		return model.Decision{Action: model.Mask, Rule: "m", Mask: &model.MaskSpec{Rules: []model.MaskRule{{Rule: "m", Detectors: dets, Live: live}}}}
	}
	switch {
	case op.Kind == "exec" && strings.Contains(op.Text, "forbidden"),
		op.Kind == "shell" && p.denyShell,
		op.Kind == "sftp" && strings.Contains(op.Path, "secret"),
		(op.Kind == "port_forwarding" || op.Kind == "x11" || op.Kind == "agent_forwarding") && !p.allowForward:
		return model.Decision{Action: model.Deny, Rule: "test", Reason: "denied by the test"}
	}
	return model.Decision{Action: model.Allow, Rule: "default"}
}

// rig is a handler in front of a fake target, listening on loopback.
type rig struct {
	// life serves the sessions as the engine does (close records,
	// panics).
	life      *inspect.Lifecycle
	t         testing.TB
	h         *Handler
	j         *memJournal
	target    *fakeTarget
	ln        net.Listener
	clientKey gossh.Signer
	credKey   gossh.Signer
	hostKeyCB gossh.HostKeyCallback
	dir       string
	cfg       *config.Config
	wg        sync.WaitGroup
}

type rigOpts struct {
	wrongHostKey bool
	useCA        bool
	policy       inspect.Policy
	handshake    time.Duration
	masker       inspect.Masker
	// maskRelease replaces releaseAfter.
	maskRelease time.Duration
	// idle is the sessions' inspect.Session.Idle.
	idle time.Duration
}

func newRig(t testing.TB, o rigOpts) *rig {
	t.Helper()
	dir := t.TempDir()
	credKey, credPEM := newSigner(t)
	keyPath := filepath.Join(dir, "cred")
	if err := os.WriteFile(keyPath, credPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	ft := startTarget(t, "alice", credKey.PublicKey())
	known := ft.hostKey.PublicKey()
	if o.wrongHostKey {
		other, _ := newSigner(t)
		known = other.PublicKey()
	}
	tc := config.TargetConfig{
		Name: "box", Protocol: model.ProtoSSH, Address: ft.addr().String(),
		Credentials: &config.Credentials{User: "alice", KeyFile: keyPath},
		HostKey:     string(gossh.MarshalAuthorizedKey(known)),
	}
	// The handler presents its own key for the target (or a CA cert).
	presented, presentedPEM := newSigner(t)
	if !o.useCA {
		tc.HostKeyFile = filepath.Join(dir, "presented")
		os.WriteFile(tc.HostKeyFile, presentedPEM, 0o600)
	}
	cfg := &config.Config{StateDir: filepath.Join(dir, "state"), Targets: []config.TargetConfig{tc}}
	pol := o.policy
	if pol == nil {
		pol = testPolicy{}
	}
	j := &memJournal{}
	h, err := New(Options{Deps: inspect.Deps{Config: cfg, Journal: j, Policy: pol, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Masker: o.masker}, HandshakeTimeout: o.handshake})
	if err != nil {
		t.Fatal(err)
	}
	h.maskRelease = o.maskRelease
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	clientKey, _ := newSigner(t)
	r := &rig{t: t, h: h, j: j, life: &inspect.Lifecycle{Journal: j, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, target: ft, ln: ln, clientKey: clientKey, credKey: credKey, dir: dir, cfg: cfg,
		hostKeyCB: gossh.FixedHostKey(presented.PublicKey())}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() {
		cancel()
		ln.Close()
		r.wg.Wait()
		if n := r.life.Panics(); n != 0 {
			t.Errorf("%d sessions panicked", n)
		}
	})
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r.wg.Add(1)
			go func() {
				defer r.wg.Done()
				s := &inspect.Session{ID: "s-" + c.RemoteAddr().String(), Origin: model.Origin{
					Target:  model.Target{Name: "box", Protocol: model.ProtoSSH, Address: tc.Address},
					OrigDst: ft.addr(), Client: c.RemoteAddr().(*net.TCPAddr).AddrPort(), Accepted: time.Now(),
				}, Idle: o.idle}
				r.life.Serve(ctx, h, c, s)
			}()
		}
	}()
	return r
}

func (r *rig) dial(user string, auth ...gossh.AuthMethod) (*gossh.Client, error) {
	if len(auth) == 0 {
		auth = []gossh.AuthMethod{gossh.PublicKeys(r.clientKey)}
	}
	return gossh.Dial("tcp", r.ln.Addr().String(), &gossh.ClientConfig{
		User: user, Auth: auth, HostKeyCallback: r.hostKeyCB, Timeout: 10 * time.Second,
	})
}

func (r *rig) mustDial() *gossh.Client {
	r.t.Helper()
	c, err := r.dial("alice")
	if err != nil {
		r.t.Fatalf("dial: %v", err)
	}
	r.t.Cleanup(func() { c.Close() })
	return c
}

// waitClosed waits for the session.close records of n sessions.
func (r *rig) waitClosed(n int) {
	r.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(of[model.SessionClose](r.j, model.KindSessionClose)) < n {
		if time.Now().After(deadline) {
			r.t.Fatalf("want %d closed sessions, have %d", n, len(of[model.SessionClose](r.j, model.KindSessionClose)))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// sftpPacket frames one sftp packet.
func sftpPacket(typ byte, id uint32, fields ...any) []byte {
	body := []byte{typ}
	if typ != fxpInit {
		body = binary.BigEndian.AppendUint32(body, id)
	}
	for _, f := range fields {
		switch v := f.(type) {
		case uint32:
			body = binary.BigEndian.AppendUint32(body, v)
		case uint64:
			body = binary.BigEndian.AppendUint64(body, v)
		case string:
			body = binary.BigEndian.AppendUint32(body, uint32(len(v)))
			body = append(body, v...)
		case []byte:
			body = binary.BigEndian.AppendUint32(body, uint32(len(v)))
			body = append(body, v...)
		}
	}
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
}

// readSFTP reads one packet: its type, id and the rest.
func readSFTP(t *testing.T, r io.Reader) (byte, uint32, []byte) {
	t.Helper()
	var l [4]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		t.Fatalf("read sftp: %v", err)
	}
	b := make([]byte, binary.BigEndian.Uint32(l[:]))
	if _, err := io.ReadFull(r, b); err != nil {
		t.Fatalf("read sftp: %v", err)
	}
	if b[0] == 2 {
		return b[0], 0, b[1:]
	}
	return b[0], binary.BigEndian.Uint32(b[1:5]), b[5:]
}
