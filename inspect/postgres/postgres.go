// Package postgres is the PostgreSQL handler: it speaks the wire protocol
// on both legs, logs in to the server with the credentials interlock
// holds, asks policy before each statement, and journals each statement
// before it reaches the server.
//
// The client leg: interlock answers SSLRequest with its own certificate
// (or direct TLS), GSSENCRequest with N, negotiates protocol 3.0 or 3.2,
// and accepts the client without a password (the kernel identity of the
// intercepted process is the authentication). The server leg is opened by
// pgconn with the target's credentials and TLS mode, then hijacked; the
// client gets the server's ParameterStatus and a BackendKeyData minted by
// interlock, which a CancelRequest (on its own intercepted connection)
// maps back to the server's key.
//
// Each statement gets a pg.statement entry, committed (or synced, when it
// may write) before it is forwarded, and a pg.result entry when the
// server has answered. docs/postgres.md has the details.
package postgres

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/inspect"
	"github.com/interlock/interlock/inspect/postgres/sqlclass"
	"github.com/interlock/interlock/inspect/tlsca"
	"github.com/interlock/interlock/model"
)

// Options are what the engine gives the handler. Without a Masker, a
// statement whose result must be masked is refused.
type Options struct {
	inspect.Deps
}

// Handler serves postgres targets.
type Handler struct {
	journal model.Recorder
	policy  inspect.Policy
	log     *slog.Logger
	state   string
	events  inspect.Events

	// targets holds the per-target settings (*targets), swapped on reload.
	targets atomic.Pointer[targets]
	// tls is the client leg's server config; nil when no postgres target
	// is configured.
	tls atomic.Pointer[tls.Config]

	cls     sqlclass.Classifier
	cancels registry
	masker  inspect.Masker
	cat     catalog
	// trust is each target's catalog trust, by target name.
	trustMu sync.Mutex
	trust   map[string]*trustState
	// backends are the server backends of live sessions, by target and
	// backend pid: who may signal them.
	backendsMu sync.Mutex
	backends   map[backendKey]backendOwner
	// rels caches the relations the flow analysis reads, by target and
	// database (guarded by trustMu).
	rels map[relKey]*relCache
}

type targets map[string]*target

// New checks the postgres targets of opts.Config (credentials readable,
// TLS files valid) and prepares the handler; with postgres targets it
// creates interlock's CA and server certificate in <state_dir>/tls.
func New(opts Options) (*Handler, error) {
	h := &Handler{journal: opts.Journal, policy: opts.Policy, masker: opts.Masker, log: opts.Log(), state: opts.StateDir(), events: opts.Events}
	h.cancels.m = map[string]*cancelEntry{}
	if err := h.Reload(opts.Config); err != nil {
		return nil, err
	}
	return h, nil
}

// Reload prepares cfg's postgres targets and applies them at once.
func (h *Handler) Reload(cfg *config.Config) error {
	apply, err := h.PrepareReload(cfg)
	if err != nil {
		return err
	}
	apply()
	return nil
}

// PrepareReload implements inspect.Reloader: sessions already open keep
// the settings they started with.
func (h *Handler) PrepareReload(cfg *config.Config) (apply func() (undo func()), err error) {
	ts := targets{}
	var hosts []string
	for _, tc := range cfg.Targets {
		if tc.Protocol != model.ProtoPostgres {
			continue
		}
		t, err := newTarget(tc)
		if err != nil {
			return nil, fmt.Errorf("target %s: %w", tc.Name, err)
		}
		t.log = h.log
		if h.events != nil {
			name := t.name
			t.onLoginFail = func(reason string) { h.events.UpstreamLoginFailed(name, reason) }
		}
		ts[tc.Name] = t
		hosts = append(hosts, t.host)
	}
	var clientTLS *tls.Config
	if len(ts) > 0 {
		if h.state == "" {
			return nil, errors.New("no state directory for interlock's TLS certificate")
		}
		if clientTLS, err = serverTLS(h.state, hosts); err != nil {
			return nil, fmt.Errorf("client-side TLS: %w", err)
		}
	}
	return func() (undo func()) {
		oldTLS, oldTargets := h.tls.Load(), h.targets.Load()
		if clientTLS != nil {
			h.tls.Store(clientTLS)
		}
		h.targets.Store(&ts)
		return func() {
			h.tls.Store(oldTLS)
			h.targets.Store(oldTargets)
		}
	}, nil
}

func (h *Handler) target(name string) *target {
	if ts := h.targets.Load(); ts != nil {
		return (*ts)[name]
	}
	return nil
}

// startupTimeout bounds the time from accept to the first ReadyForQuery.
const startupTimeout = 30 * time.Second

// Serve implements inspect.Handler.
func (h *Handler) Serve(ctx context.Context, client net.Conn, s *inspect.Session) (out inspect.Outcome) {
	log := h.log.With("session", s.ID, "target", s.Origin.Target.Name)
	defer client.Close()
	t := h.target(s.Origin.Target.Name)
	if t == nil {
		return inspect.Outcome{Refused: true, Err: fmt.Errorf("target %s is not a configured postgres target", s.Origin.Target.Name)}
	}

	client.SetDeadline(time.Now().Add(startupTimeout))
	conn, st, err := h.readStartup(client)
	if err != nil {
		log.Info("client startup failed", "err", err)
		sendFatal(conn, err)
		return inspect.Outcome{Refused: true, Err: err}
	}
	if st.cancel != nil {
		return h.serveCancel(ctx, conn, s, st)
	}
	sess := &session{sess: s, h: h, t: t, id: s.ID, origin: s.Origin, log: log, client: conn, trust: h.trustOf(t.name)}
	if h.policy != nil {
		sess.decider = inspect.SessionDecider(h.policy, s.Origin)
	}
	sess.idle.limit = s.Idle
	return sess.run(ctx, st)
}

// trustOf returns a target's catalog trust, shared by its sessions.
func (h *Handler) trustOf(target string) *trustState {
	h.trustMu.Lock()
	defer h.trustMu.Unlock()
	if h.trust == nil {
		h.trust = map[string]*trustState{}
	}
	ts := h.trust[target]
	if ts == nil {
		ts = newTrustState()
		h.trust[target] = ts
	}
	return ts
}

type backendKey struct {
	target string
	pid    uint32
}

// backendOwner is the process a backend serves: a session may signal the
// backends of its own process's sessions (a client cancelling or ending
// its own connections), and no other.
type backendOwner struct {
	tgid, uid uint32
}

func (h *Handler) addBackend(target string, pid uint32, o backendOwner) {
	h.backendsMu.Lock()
	defer h.backendsMu.Unlock()
	if h.backends == nil {
		h.backends = map[backendKey]backendOwner{}
	}
	h.backends[backendKey{target, pid}] = o
}

func (h *Handler) dropBackend(target string, pid uint32) {
	h.backendsMu.Lock()
	defer h.backendsMu.Unlock()
	delete(h.backends, backendKey{target, pid})
}

// sameProcess says whether backend pid of target serves a session of the
// process o.
func (h *Handler) sameProcess(target string, pid uint32, o backendOwner) bool {
	h.backendsMu.Lock()
	defer h.backendsMu.Unlock()
	b, ok := h.backends[backendKey{target, pid}]
	return ok && b == o
}

// registry maps the keys interlock minted for its clients to the servers'.
type registry struct {
	mu sync.Mutex
	m  map[string]*cancelEntry
}

// serverTLS is the client leg's TLS: interlock answers SSLRequest (and
// direct TLS) with a server certificate its local CA signed, valid for
// every name and address in hosts (ALPN "postgresql", TLS 1.2 or later).
// A client with sslmode=verify-full puts the CA in its sslrootcert.
func serverTLS(stateDir string, hosts []string) (*tls.Config, error) {
	cert, err := tlsca.ServerCert(stateDir, "server", "interlock postgres proxy", hosts)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"postgresql"},
	}, nil
}
