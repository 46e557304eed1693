package ssh

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/interlock/interlock/internal/rawconn"
)

// upstream is interlock's own SSH connection to the target. It is made
// only once the client has authenticated with interlock (as the right
// user, with its method's proof checked): a connection that has sent no
// SSH, or has not finished its key exchange and authentication, costs the
// target nothing. Dialling at accept let one user's idle connects fill the
// target's unauthenticated-connection slots (sshd's MaxStartups) and lock
// every other user out.
type upstream struct {
	// done is closed when the connection is up or has failed.
	done   chan struct{}
	cancel context.CancelFunc

	conn  gossh.Conn
	chans <-chan gossh.NewChannel
	reqs  <-chan *gossh.Request
	// hostKey is the key the target presented (verified or not).
	hostKey gossh.PublicKey
	// cert is the login certificate offered, for a certificate target.
	cert    *loginCert
	err     error
	refusal *refusal
}

// startUpstream connects to the target in the background, once.
func (c *conn) startUpstream() {
	c.upOnce.Do(func() {
		ctx, cancel := context.WithCancel(c.ctx)
		up := &upstream{done: make(chan struct{}), cancel: cancel}
		c.up = up
		go func() {
			defer close(up.done)
			defer func() {
				if r := recover(); r != nil {
					up.err = c.s.Recovered(r)
					up.refusal = &refusal{rule: "internal", reason: up.err.Error(), message: "interlock: internal error\r\n"}
				}
			}()
			up.connect(ctx, c)
		}()
	})
}

// closeUpstream abandons the upstream connection, finished or not.
func (c *conn) closeUpstream() {
	if c.up == nil {
		return
	}
	c.up.cancel()
	<-c.up.done
	if c.up.conn != nil {
		c.up.conn.Close()
	}
}

func (up *upstream) connect(ctx context.Context, c *conn) {
	t := c.t
	addr := c.s.Origin.OrigDst.String()
	fail := func(rule, reason, message string, err error) {
		up.err = err
		up.refusal = &refusal{rule: rule, reason: reason, message: message}
	}
	d := net.Dialer{Timeout: c.h.dialTimeout}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		fail("upstream-unreachable", fmt.Sprintf("cannot reach target %s at %s: %v", t.name, addr, err),
			fmt.Sprintf("interlock: target %s is unreachable\r\n", t.name), err)
		return
	}
	// Relayed outside the runtime's system-call accounting
	// (internal/rawconn), as the client's leg is.
	nc = rawconn.Wrap(nc)
	// The deadline counts from the accept: the client's handshake and
	// this one together stay within the handshake timeout.
	nc.SetDeadline(c.start.Add(c.h.handshakeTimeout))
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()

	// A certificate target's login certificate is signed now, after the
	// connect: its short validity starts when it is about to be used.
	var extra []gossh.Signer
	if t.userCA != nil {
		lc, err := signLoginCert(t.userCA, t.user, sessionKeyID(c.s.ID, t.name, c.s.Origin.Identity), t.certExt, time.Now())
		if err != nil {
			nc.Close()
			fail("internal", fmt.Sprintf("cannot sign a login certificate for target %s: %v", t.name, err),
				"interlock: internal error\r\n", err)
			return
		}
		up.cert = lc
		extra = append(extra, lc.signer)
	}

	var keyErr error
	cfg := &gossh.ClientConfig{
		Config:        gossh.Config{Ciphers: ciphers},
		User:          t.user,
		Auth:          authMethods(t, extra...),
		ClientVersion: serverVersion,
		HostKeyCallback: func(hostname string, remote net.Addr, key gossh.PublicKey) error {
			up.hostKey = key
			// Verify under the configured address: known_hosts names the
			// target as the operator wrote it.
			keyErr = t.hostKeyCallback(t.address, remote, key)
			return keyErr
		},
		HostKeyAlgorithms: t.hostKeyAlgos,
		Timeout:           c.h.dialTimeout,
	}
	sc, chans, reqs, err := gossh.NewClientConn(nc, t.address, cfg)
	if err != nil {
		nc.Close()
		switch {
		case keyErr != nil:
			fp := "?"
			if up.hostKey != nil {
				fp = gossh.FingerprintSHA256(up.hostKey)
			}
			fail("upstream-host-key", fmt.Sprintf("the host key of target %s (%s %s) does not verify: %v", t.name, keyType(up.hostKey), fp, keyErr),
				fmt.Sprintf("interlock: the host key of target %s does not match the one interlock knows; session refused\r\n", t.name), err)
		case strings.Contains(err.Error(), "unable to authenticate"):
			reason := fmt.Sprintf("target %s refused interlock's credential for user %q: %v", t.name, t.user, err)
			if up.cert != nil {
				reason += fmt.Sprintf(" (certificate serial %d; the target's sshd must trust interlock's user CA: TrustedUserCAKeys with `interlock ssh-ca user`, see `interlock doctor`)", up.cert.cert.Serial)
			}
			fail("upstream-auth", reason,
				fmt.Sprintf("interlock: target %s refused interlock's credential\r\n", t.name), err)
		case ctx.Err() != nil:
			fail("cancelled", "the client went away during the upstream handshake", "", ctx.Err())
		default:
			fail("upstream-handshake", fmt.Sprintf("SSH handshake with target %s at %s failed: %v", t.name, addr, err),
				fmt.Sprintf("interlock: SSH handshake with target %s failed\r\n", t.name), err)
		}
		return
	}
	nc.SetDeadline(time.Time{})
	up.conn, up.chans, up.reqs = sc, chans, reqs
}

// authMethods offer the held credential: the target's key, or the login
// certificate given as signers.
func authMethods(t *target, signers ...gossh.Signer) []gossh.AuthMethod {
	var m []gossh.AuthMethod
	if t.signer != nil {
		signers = append(signers, t.signer)
	}
	if len(signers) > 0 {
		m = append(m, gossh.PublicKeys(signers...))
	}
	if t.password != "" {
		m = append(m, gossh.Password(t.password), gossh.KeyboardInteractive(func(_, _ string, questions []string, _ []bool) ([]string, error) {
			answers := make([]string, len(questions))
			for i := range answers {
				answers[i] = t.password
			}
			return answers, nil
		}))
	}
	return m
}

func keyType(k gossh.PublicKey) string {
	if k == nil {
		return "no key"
	}
	return k.Type()
}
