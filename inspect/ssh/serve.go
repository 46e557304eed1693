package ssh

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/interlock/interlock/inspect"
	"github.com/interlock/interlock/model"
)

// serverVersion is what interlock announces to clients and to targets.
const serverVersion = "SSH-2.0-interlock"

// conn is one client connection being served.
type conn struct {
	h      *Handler
	t      *target
	s      *inspect.Session
	log    *slog.Logger
	start  time.Time
	ctx    context.Context
	cancel context.CancelFunc

	// Filled in by the authentication callbacks (one goroutine).
	user, method, fingerprint string
	refusal                   *refusal
	bannerSent                bool

	upOnce sync.Once
	up     *upstream

	client   gossh.Conn
	channels atomic.Uint32
	// bytesUp and bytesDown count channel data each way.
	bytesUp, bytesDown atomic.Int64
	noMoreSessions     atomic.Bool

	// The idle timer (idle.go): lastIO is when bytes last crossed the
	// client's connection, deciding counts decisions being waited for,
	// idled says the timer ended the session.
	lastIO   atomic.Int64
	deciding atomic.Int32
	idled    atomic.Bool
}

// refusal is why a session was refused before it reached the target.
type refusal struct {
	rule, reason string
	// message is shown to the client.
	message string
	// decision is policy's, when policy refused the connection.
	decision *model.Decision
}

func (r *refusal) Error() string { return r.reason }

// Serve implements inspect.Handler.
func (h *Handler) Serve(ctx context.Context, client net.Conn, s *inspect.Session) (out inspect.Outcome) {
	c := &conn{h: h, s: s, start: time.Now(), log: h.log.With("session", s.ID, "target", s.Origin.Target.Name)}
	defer client.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c.ctx, c.cancel = ctx, cancel
	c.t = h.target(s.Origin.Target.Name)
	if c.t == nil {
		r := &refusal{rule: "config", reason: "target " + s.Origin.Target.Name + " is not configured as an ssh target"}
		c.openRecord(denied(r), nil)
		return inspect.Outcome{Refused: true, Err: r}
	}
	return c.run(ctx, client)
}

func denied(r *refusal) model.Decision {
	if r.decision != nil {
		return *r.decision
	}
	return model.Decision{Action: model.Deny, Rule: r.rule, Reason: r.reason}
}

func (c *conn) run(ctx context.Context, client net.Conn) inspect.Outcome {
	// Until the handshake and authentication are over, the connection
	// holds one of its uid's pre-authentication slots.
	uid := c.s.Origin.Identity.Kernel.UID
	preauthDone, max, ok := c.h.preauth.enter(uid)
	if !ok {
		return c.refusePreauth(client, uid, max)
	}
	defer preauthDone()

	// The deadline bounds the key exchange and authentication: a client
	// that stalls half-way is dropped.
	client.SetDeadline(time.Now().Add(c.h.handshakeTimeout))
	stop := context.AfterFunc(ctx, func() { client.Close() })
	defer stop()

	// Policy may refuse the connection outright: the client is told why
	// when it tries to authenticate, and interlock never logs in.
	decision := allowed
	if p := c.h.policy; p != nil {
		decision = p.DecideConnect(ctx, c.s.Origin)
	}
	if !permits(decision) {
		c.refusal = &refusal{rule: decision.Rule, reason: "denied by policy: " + decision.Reason, decision: &decision,
			message: fmt.Sprintf("interlock: session to %s refused by policy (%s): %s\r\n", c.t.name, decision.Rule, decision.Reason)}
	}

	// Nothing goes to the target yet: the upstream connection is made
	// when the client has authenticated (admit).
	version, pc, err := peekVersion(client)
	if pc != nil {
		c.lastIO.Store(time.Now().UnixNano())
		pc.io = &c.lastIO
	}
	var (
		sconn *gossh.ServerConn
		chans <-chan gossh.NewChannel
		reqs  <-chan *gossh.Request
	)
	if err == nil {
		sconn, chans, reqs, err = gossh.NewServerConn(pc, c.serverConfig(ciphersFor(version)))
	}
	// Authenticated or failed: either way no longer pre-authentication.
	preauthDone()
	if err != nil {
		c.closeUpstream()
		// A refusal (wrong user, policy, the target's host key) is what
		// ended the handshake; otherwise the client's SSH failed.
		r := c.refusal
		if r == nil {
			r = &refusal{rule: "ssh-handshake", reason: "client handshake failed: " + err.Error()}
		}
		c.log.Info("ssh session refused", "reason", r.reason)
		c.openRecord(denied(r), c.startup(nil))
		return inspect.Outcome{Refused: true, Err: r}
	}
	client.SetDeadline(time.Time{})
	c.client = sconn
	defer sconn.Close()

	// Authentication succeeded only if the upstream connection did.
	up := c.up
	defer up.conn.Close()
	// The open record grants access: it is synced before anything of the
	// client's reaches the target.
	if err := c.openRecord(decision, c.startup(up)); err != nil {
		c.log.Error("refusing session: the journal cannot record it", "err", err)
		return inspect.Outcome{Refused: true, Err: fmt.Errorf("journal session open: %w", err)}
	}

	var wg sync.WaitGroup
	goSafe := func(f func()) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.recoverGoroutine()
			f()
		}()
	}
	if c.s.Idle > 0 {
		goSafe(func() { c.watchIdle(ctx, sconn, up.conn) })
	}
	goSafe(func() { c.clientGlobalRequests(reqs) })
	goSafe(func() { c.upstreamGlobalRequests(up.reqs) })
	goSafe(func() {
		for nc := range chans {
			goSafe(func() { c.clientChannel(nc) })
		}
	})
	goSafe(func() {
		for nc := range up.chans {
			goSafe(func() { c.upstreamChannel(nc) })
		}
	})

	// Either side ending ends the session.
	ended := make(chan error, 2)
	go func() { ended <- sconn.Wait() }()
	go func() { ended <- up.conn.Wait() }()
	var endErr error
	select {
	case endErr = <-ended:
	case <-ctx.Done():
		endErr = fmt.Errorf("session ended by interlock: %w", context.Cause(ctx))
	}
	sconn.Close()
	up.conn.Close()
	// Wake whatever waits on the session, a policy decision included.
	c.cancel()
	wg.Wait()
	if endErr != nil && (errors.Is(endErr, net.ErrClosed) || isEOF(endErr)) {
		endErr = nil
	}
	if c.idled.Load() {
		endErr = c.idleErr()
	}
	return inspect.Outcome{BytesUp: c.bytesUp.Load(), BytesDown: c.bytesDown.Load(), Err: endErr}
}

// recoverGoroutine, deferred by each of the session's goroutines, ends
// the session after a panic there (a bug) instead of the daemon.
func (c *conn) recoverGoroutine() {
	p := recover()
	if p == nil {
		return
	}
	c.s.Recovered(p)
	if c.client != nil {
		c.client.Close()
	}
	if c.up != nil && c.up.conn != nil {
		c.up.conn.Close()
	}
}

// serverConfig is the client leg's configuration for this connection: the
// target's host keys, and callbacks that accept any authentication attempt
// of the right user once the upstream connection is up.
func (c *conn) serverConfig(ciphers []string) *gossh.ServerConfig {
	cfg := &gossh.ServerConfig{
		Config:        gossh.Config{Ciphers: ciphers},
		ServerVersion: serverVersion,
		BannerCallback: func(m gossh.ConnMetadata) string {
			// Called once, at the first authentication attempt: a client
			// asking for the wrong user is told so before it tries a key.
			c.user = m.User()
			if c.refusal != nil {
				c.bannerSent = true
				return c.refusal.message
			}
			if c.user != c.t.user {
				c.refusal = &refusal{rule: "credentials.user",
					reason:  fmt.Sprintf("interlock holds no credential for user %q on target %s", c.user, c.t.name),
					message: fmt.Sprintf("interlock: no credential for user %q on target %s; interlock logs in as %q. Connect as %s@...\r\n", c.user, c.t.name, c.t.user, c.t.user)}
				c.bannerSent = true
				return c.refusal.message
			}
			// The first attempt is always "none", before the client says
			// whether it has a key; a client with none and no prompt
			// (BatchMode) then gives up with a bare "Permission denied".
			// This line, shown once, is the only way to tell it why.
			return keylessHint(c.t)
		},
		PublicKeyCallback: func(m gossh.ConnMetadata, key gossh.PublicKey) (*gossh.Permissions, error) {
			// A query or a signed attempt: the signature is checked next,
			// then VerifiedPublicKeyCallback admits the session.
			if c.refusal != nil {
				return nil, c.refusal
			}
			return &gossh.Permissions{}, nil
		},
		VerifiedPublicKeyCallback: func(m gossh.ConnMetadata, key gossh.PublicKey, p *gossh.Permissions, _ string) (*gossh.Permissions, error) {
			c.fingerprint = gossh.FingerprintSHA256(key)
			if cert, ok := key.(*gossh.Certificate); ok {
				c.fingerprint = gossh.FingerprintSHA256(cert.Key) + " (certificate " + cert.KeyId + ")"
			}
			return c.admit(m, "publickey")
		},
		PasswordCallback: func(m gossh.ConnMetadata, _ []byte) (*gossh.Permissions, error) {
			c.fingerprint = ""
			return c.admit(m, "password")
		},
		KeyboardInteractiveCallback: func(m gossh.ConnMetadata, _ gossh.KeyboardInteractiveChallenge) (*gossh.Permissions, error) {
			c.fingerprint = ""
			return c.admit(m, "keyboard-interactive")
		},
	}
	for _, s := range c.t.hostSigners {
		cfg.AddHostKey(s)
	}
	return cfg
}

// admit decides an authentication attempt: the kernel identity is the
// authentication, so any attempt by the right user (its signature or
// password exchange complete) is accepted once interlock is logged in to
// the target. That login starts here, at the first such attempt, and the
// client's is answered when it is done: a target that refuses interlock
// (its host key, interlock's credential) is reported to the client as a
// failed authentication with the reason in a banner.
func (c *conn) admit(m gossh.ConnMetadata, method string) (*gossh.Permissions, error) {
	c.method = method
	if c.refusal == nil && m.User() != c.t.user {
		// A client may change the user between attempts.
		c.user = m.User()
		c.refusal = &refusal{rule: "credentials.user",
			reason:  fmt.Sprintf("interlock holds no credential for user %q on target %s", c.user, c.t.name),
			message: fmt.Sprintf("interlock: no credential for user %q on target %s; interlock logs in as %q\r\n", c.user, c.t.name, c.t.user)}
	}
	if c.refusal == nil {
		c.startUpstream()
		select {
		case <-c.up.done:
		case <-c.ctx.Done():
			return nil, c.ctx.Err()
		}
		if c.up.err == nil {
			return &gossh.Permissions{}, nil
		}
		c.refusal = c.up.refusal
	}
	if c.bannerSent {
		return nil, c.refusal
	}
	c.bannerSent = true
	return nil, &gossh.BannerError{Err: c.refusal, Message: c.refusal.message}
}

// startup is what the open record says about the client's SSH connection.
func (c *conn) startup(up *upstream) *model.SSHStartup {
	st := &model.SSHStartup{User: c.user, AuthMethod: c.method, KeyFingerprint: c.fingerprint}
	if c.client != nil {
		st.ClientVersion = string(c.client.ClientVersion())
	}
	if up == nil {
		up = c.up
		if up != nil {
			<-up.done
		}
	}
	if up != nil && up.hostKey != nil {
		st.UpstreamHostKey = gossh.FingerprintSHA256(up.hostKey)
	}
	if up != nil && up.cert != nil {
		st.UpstreamCert = up.cert.record()
	}
	return st
}

func (c *conn) openRecord(d model.Decision, st *model.SSHStartup) error {
	return c.s.Open(c.ctxOrBackground(), d, model.SessionOpen{SSH: st})
}

// ctxOrBackground keeps records written during shutdown: a cancelled
// context must not stop the evidence of what happened.
func (c *conn) ctxOrBackground() context.Context {
	if c.ctx == nil {
		return context.Background()
	}
	return context.WithoutCancel(c.ctx)
}

// offset is the time since the session started, from the monotonic clock.
func (c *conn) offset() int64 { return time.Since(c.start).Nanoseconds() }

// isEOF says whether a connection ended normally: EOF, or the peer's
// "disconnected by application" (what OpenSSH sends when it is done).
func isEOF(err error) bool {
	// The library's disconnect error type is unexported; 11 is
	// SSH_DISCONNECT_BY_APPLICATION.
	return errors.Is(err, io.EOF) || strings.HasPrefix(err.Error(), "ssh: disconnect, reason 11:")
}

// keylessHint is the banner every client of the right user gets at its
// first authentication attempt: interlock logs in to the target with the
// credential it holds, and the kernel's identity of the process is the
// authentication, so any key or password of the client's own will do. It
// is one line (OpenSSH prints it at the default LogLevel; LogLevel=ERROR
// hides it).
func keylessHint(t *target) string {
	return fmt.Sprintf("interlock: holds the credential for %s@%s; any key or password of yours is accepted (no key? run ssh-keygen -t ed25519)\r\n", t.user, t.name)
}
