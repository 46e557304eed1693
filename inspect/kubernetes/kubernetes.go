// Package kubernetes is the handler of `protocol: kubernetes` targets: it
// terminates the client's TLS with a certificate of interlock's CA, calls
// the real API server with the credential the target config holds,
// impersonating the identity it established for the client, journals
// every request, masks Secret values, and terminates exec and attach
// streams on both legs to record them as terminal sessions.
package kubernetes

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/http2"

	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/inspect"
	"github.com/interlock/interlock/inspect/tlsca"
	"github.com/interlock/interlock/model"
)

// Options configure a Handler.
type Options struct {
	inspect.Deps
}

// Handler serves kubernetes targets.
type Handler struct {
	deps inspect.Deps

	mu      sync.Mutex
	targets map[string]*target

	retries retries
}

// target is what the handler keeps of one kubernetes target.
type target struct {
	cfg config.TargetConfig
	// server is the client leg's TLS; clientCAs verifies client
	// certificates (nil: a client certificate is refused).
	server    *tls.Config
	clientCAs *x509.CertPool
	// upstream calls the API server as interlock; base is its URL.
	upstream *upstream
	// reviews caches whose a client's bearer token is (pass_bearer).
	reviews reviews
}

// New checks every kubernetes target of the config (its files, the
// certificate interlock presents) so that a bad one stops the start.
func New(o Options) (*Handler, error) {
	h := &Handler{deps: o.Deps, targets: map[string]*target{}}
	if o.Config == nil {
		return h, nil
	}
	for _, tc := range o.Config.Targets {
		if tc.Protocol != model.ProtoKubernetes {
			continue
		}
		t, err := newTarget(o.StateDir(), tc)
		if err != nil {
			return nil, fmt.Errorf("target %s: %w", tc.Name, err)
		}
		h.targets[tc.Name] = t
	}
	return h, nil
}

// servingCert is the certificate presented to clients: issued from the
// cluster CA when the site gives interlock its key (kubeconfigs then need
// no change), else from interlock's own CA.
func servingCert(stateDir, name string, k *config.KubernetesConfig, hosts []string) (tls.Certificate, error) {
	if k.ServingCAFile == "" {
		cert, err := tlsca.ServerCert(stateDir, "kubernetes-"+name, "interlock kubernetes proxy", hosts)
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("kubernetes: server certificate: %w", err)
		}
		return cert, nil
	}
	caPEM, err := os.ReadFile(k.ServingCAFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("kubernetes: serving_ca_file: %w", err)
	}
	keyPEM, err := readRootOnly(k.ServingCAKeyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("kubernetes: serving_ca_key_file: %w", err)
	}
	defer clear(keyPEM)
	cert, err := tlsca.IssueFrom(caPEM, keyPEM, "interlock kubernetes proxy", hosts)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("kubernetes: serving certificate from %s: %w", k.ServingCAFile, err)
	}
	return cert, nil
}

// readRootOnly reads a file that must be regular, owned by root and
// readable by nobody else: whoever holds the cluster CA's key can mint any
// identity of the cluster. The checks are on the descriptor it reads.
func readRootOnly(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); !fi.Mode().IsRegular() || fi.Mode().Perm()&0o077 != 0 || !ok || st.Uid != 0 {
		return nil, fmt.Errorf("%s must be a regular file owned by root with mode 0600 or stricter (it is %s): the cluster CA's key mints any identity of the cluster", path, fi.Mode())
	}
	return io.ReadAll(io.LimitReader(f, 1<<20))
}

func newTarget(stateDir string, tc config.TargetConfig) (*target, error) {
	k := tc.Kubernetes
	if k == nil {
		return nil, errors.New("kubernetes: no kubernetes section")
	}
	host, _, err := net.SplitHostPort(tc.Address)
	if err != nil {
		return nil, fmt.Errorf("kubernetes: address %q: %w", tc.Address, err)
	}
	hosts := append([]string{host}, k.ServerNames...)
	cert, err := servingCert(stateDir, tc.Name, k, hosts)
	if err != nil {
		return nil, err
	}
	t := &target{cfg: tc}
	t.server = &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"h2", "http/1.1"},
		// A certificate is checked below against the client CA, if the
		// target has one; without one, presenting any is refused.
		ClientAuth: tls.RequestClientCert,
	}
	if k.ClientCAFile != "" {
		pem, err := os.ReadFile(k.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("kubernetes: client_ca_file: %w", err)
		}
		t.clientCAs = x509.NewCertPool()
		if !t.clientCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("kubernetes: client_ca_file %s holds no PEM certificate", k.ClientCAFile)
		}
	}
	if t.upstream, err = newUpstream(tc); err != nil {
		return nil, err
	}
	return t, nil
}

func (h *Handler) target(name string) *target {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.targets[name]
}

// Serve implements inspect.Handler: one client connection, over which the
// client may send many requests (HTTP/2) or one stream (an exec).
func (h *Handler) Serve(ctx context.Context, client net.Conn, s *inspect.Session) inspect.Outcome {
	defer client.Close()
	// Stream records' offsets count from here, as an ssh session's do.
	opened := time.Now()
	log := h.deps.Log().With("session", s.ID, "target", s.Origin.Target.Name)
	t := h.target(s.Origin.Target.Name)
	if t == nil {
		return inspect.Outcome{Refused: true, Err: errors.New("kubernetes: target not configured")}
	}
	decision := model.Decision{Action: model.Allow, Reason: "default"}
	if h.deps.Policy != nil {
		decision = h.deps.Policy.DecideConnect(ctx, s.Origin)
	}
	if decision.Action != model.Allow {
		s.Open(ctx, decision, model.SessionOpen{})
		return inspect.Outcome{Refused: true, Err: fmt.Errorf("denied by policy rule %q", decision.Rule)}
	}
	counted := &countConn{Conn: client}
	tc := tls.Server(counted, t.server)
	hsCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err := tc.HandshakeContext(hsCtx)
	cancel()
	if err != nil {
		return inspect.Outcome{Refused: true, Err: fmt.Errorf("kubernetes: client TLS handshake: %w", err)}
	}
	st := tc.ConnectionState()
	who, err := h.identify(t, st, s.Origin)
	if err != nil {
		// The refusal is journaled: someone presented a certificate
		// interlock would not take.
		if s.Open(ctx, model.Decision{Action: model.Deny, Reason: err.Error()}, model.SessionOpen{
			Kubernetes: &model.K8sStartup{ServerName: st.ServerName, ALPN: st.NegotiatedProtocol}}) == nil {
			// The client is told why, in the HTTP it negotiated, on
			// every request it sends.
			body := statusJSON(http.StatusUnauthorized, err.Error())
			serveConn(ctx, tc, st, s.Idle, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusUnauthorized)
				io.WriteString(w, body)
			}), nil)
		}
		return inspect.Outcome{Refused: true, Err: err}
	}
	start := &model.K8sStartup{User: who.user, Groups: who.groups, Source: who.source, ServerName: st.ServerName, ALPN: st.NegotiatedProtocol,
		PassBearer: t.cfg.Kubernetes.PassBearer}
	if err := s.Open(ctx, decision, model.SessionOpen{Kubernetes: start}); err != nil {
		log.Error("refusing session: the journal cannot record it", "err", err)
		return inspect.Outcome{Refused: true, Err: fmt.Errorf("journal session open: %w", err)}
	}
	sess := &session{h: h, t: t, s: s, who: who, log: log, opened: opened, ctx: ctx}
	serveConn(ctx, tc, st, s.Idle, http.HandlerFunc(sess.serveHTTP), func(done func()) { sess.hijacked = done })
	return inspect.Outcome{BytesUp: counted.in.Load(), BytesDown: counted.out.Load()}
}

// serveConn serves HTTP on the one client connection until it closes:
// HTTP/2 when the client negotiated it, else HTTP/1.1. onHijack, when set,
// is given the function a handler that took the connection over calls
// when it is done with it.
func serveConn(ctx context.Context, tc *tls.Conn, st tls.ConnectionState, idle time.Duration, handler http.Handler, onHijack func(done func())) {
	if st.NegotiatedProtocol == "h2" {
		srv := &http2.Server{IdleTimeout: idle}
		srv.ServeConn(tc, &http2.ServeConnOpts{Context: ctx, Handler: handler, BaseConfig: &http.Server{}})
	} else {
		ln := &oneConn{conn: tc, done: make(chan struct{})}
		if onHijack != nil {
			onHijack(ln.closeOnce)
		}
		srv := &http.Server{Handler: handler, ReadHeaderTimeout: 30 * time.Second, IdleTimeout: idle,
			// A hijacked connection (an exec's stream) ends when its
			// handler does (session.hijacked), a served one when closed.
			ConnState: func(_ net.Conn, cs http.ConnState) {
				if cs == http.StateClosed {
					ln.closeOnce()
				}
			},
			BaseContext: func(net.Listener) context.Context { return ctx }}
		// Shutdown of interlock ends the session.
		stop := context.AfterFunc(ctx, func() { srv.Close(); ln.closeOnce() })
		srv.Serve(ln)
		ln.wait()
		stop()
	}
}

// identity is who interlock calls the API server as: a session's
// identity, impersonated, or the owner of a client's bearer token.
type identity struct {
	user   string
	groups []string
	source string
	// uid and tokenID are a bearer token's (SelfSubjectReview's uid; 8
	// bytes of the token's SHA-256), and token the token itself, sent
	// upstream instead of interlock's credential. The token is never
	// journaled nor logged.
	uid     string
	tokenID string
	token   string
}

// identify establishes the identity interlock impersonates. A client
// certificate must chain to the target's client CA; it names the user
// (CN) and groups (O), as the API server would read it. Without one the
// process's identity is used: a verified CI workload, else the kernel's
// uid. Nothing the process claims is taken.
func (h *Handler) identify(t *target, st tls.ConnectionState, o model.Origin) (identity, error) {
	if len(st.PeerCertificates) > 0 {
		if t.clientCAs == nil {
			return identity{}, errors.New("kubernetes: the client presented a certificate but the target has no client_ca_file to verify it")
		}
		leaf := st.PeerCertificates[0]
		inter := x509.NewCertPool()
		for _, c := range st.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: t.clientCAs, Intermediates: inter,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			return identity{}, fmt.Errorf("kubernetes: client certificate not issued by the cluster's client CA: %w", err)
		}
		if leaf.Subject.CommonName == "" {
			return identity{}, errors.New("kubernetes: client certificate has no common name")
		}
		return identity{user: leaf.Subject.CommonName, groups: leaf.Subject.Organization, source: "client-certificate"}, nil
	}
	return processIdentity(o.Identity), nil
}

// ProcessGroup is the group every identity interlock derives from a
// process (not from a client certificate) is in.
const ProcessGroup = "interlock:processes"

// processIdentity maps a process without a client certificate to a
// Kubernetes user: a CI job whose token interlock verified is
// interlock:workload:<issuer>:<subject>; anything else is
// interlock:uid:<uid> by the kernel's record of the connecting task.
func processIdentity(id model.Identity) identity {
	groups := []string{ProcessGroup}
	if w := id.Workload; w != nil && w.Provenance == model.ProvVerified && w.Subject != "" {
		issuer := w.Platform
		if issuer == "" {
			issuer = w.Issuer
		}
		return identity{user: "interlock:workload:" + issuer + ":" + w.Subject,
			groups: append(groups, "interlock:workloads"), source: "workload"}
	}
	return identity{user: "interlock:uid:" + strconv.FormatUint(uint64(id.Kernel.UID), 10), groups: groups, source: "process"}
}

// oneConn is a listener that yields one connection, for http.Server.
type oneConn struct {
	mu   sync.Mutex
	conn net.Conn
	done chan struct{}
	once sync.Once
}

func (l *oneConn) Accept() (net.Conn, error) {
	l.mu.Lock()
	c := l.conn
	l.conn = nil
	l.mu.Unlock()
	if c != nil {
		return c, nil
	}
	<-l.done
	return nil, net.ErrClosed
}

func (l *oneConn) closeOnce()     { l.once.Do(func() { close(l.done) }) }
func (l *oneConn) Close() error   { l.closeOnce(); return nil }
func (l *oneConn) Addr() net.Addr { return &net.TCPAddr{} }
func (l *oneConn) wait()          { <-l.done }

// countConn counts the bytes of the client connection.
type countConn struct {
	net.Conn
	in, out atomic.Int64
}

func (c *countConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.in.Add(int64(n))
	return n, err
}

func (c *countConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.out.Add(int64(n))
	return n, err
}

// statusJSON is a Kubernetes Status object with code and message.
func statusJSON(code int, msg string) string {
	reason := "Forbidden"
	switch code {
	case http.StatusUnauthorized:
		reason = "Unauthorized"
	case http.StatusBadRequest:
		reason = "BadRequest"
	case http.StatusConflict:
		reason = "Conflict"
	case http.StatusBadGateway, http.StatusInternalServerError:
		reason = "InternalError"
	case http.StatusServiceUnavailable:
		reason = "ServiceUnavailable"
	}
	m, _ := json.Marshal(msg)
	return fmt.Sprintf(`{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":%s,"reason":%q,"code":%d}`,
		m, reason, code)
}

// PrepareReload implements inspect.Reloader: every kubernetes target of
// cfg is checked and built before any is swapped in.
func (h *Handler) PrepareReload(cfg *config.Config) (func() (undo func()), error) {
	next := map[string]*target{}
	for _, tc := range cfg.Targets {
		if tc.Protocol != model.ProtoKubernetes {
			continue
		}
		t, err := newTarget(cfg.StateDir, tc)
		if err != nil {
			return nil, fmt.Errorf("target %s: %w", tc.Name, err)
		}
		next[tc.Name] = t
	}
	return func() func() {
		h.mu.Lock()
		old := h.targets
		h.targets = next
		h.mu.Unlock()
		return func() {
			h.mu.Lock()
			h.targets = old
			h.mu.Unlock()
		}
	}, nil
}
