// Package engine runs interception: it wires the redirector, the protocol
// handlers, policy and the journal together, accepts redirected
// connections, and keeps the live tallies that `interlock run` and the
// daemon's control socket report. Both the daemon and an `interlock run`
// without a daemon drive one Engine.
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/interlock/interlock/approvals"
	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/identity"
	"github.com/interlock/interlock/identity/oidcjob"
	"github.com/interlock/interlock/inspect"
	"github.com/interlock/interlock/internal/cgroupfs"
	"github.com/interlock/interlock/internal/rawconn"
	"github.com/interlock/interlock/journal"
	"github.com/interlock/interlock/metrics"
	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/policy"
	"github.com/interlock/interlock/redirector"
)

// Options are the parts of an engine that differ between a daemon and an
// embedded `interlock run`.
type Options struct {
	// MapPin and LinkPin: see redirector.Options.
	MapPin  string
	LinkPin string
	// Resolve re-resolves target host names this often; 30s when zero.
	Resolve time.Duration
	// Grace is how long Close lets open sessions finish; 5s when zero.
	Grace  time.Duration
	Logger *slog.Logger
}

// Engine is a running interception engine.
type Engine struct {
	cfg     *config.Config
	opts    Options
	log     *slog.Logger
	journal *journal.Journal
	red     *redirector.Redirector
	ids     *identity.Resolver
	// oidc verifies jobs' ID tokens for ids (workload.go); nil without
	// identity.oidc. Reload replaces it, under reloadMu.
	oidc    *oidcjob.Verifier
	policy  *policy.Policy
	broker  *approvals.Broker
	webhook atomic.Pointer[approvals.Webhook]
	metrics *metrics.Metrics
	handler map[model.Protocol]inspect.Handler
	// life writes every session's close record and counts panics: one
	// owner of the session lifecycle for all handlers.
	life *inspect.Lifecycle
	lim  *limiter

	ctx    context.Context
	cancel context.CancelCauseFunc
	wg     sync.WaitGroup
	// idle hands an accepted connection to a serving goroutine that
	// finished its session and waits for another (serveLoop); idlers
	// counts those that wait.
	idle   chan net.Conn
	idlers atomic.Int32

	// reloadMu serialises Reload: its steps are prepared against the
	// config in force and undone as a whole.
	reloadMu sync.Mutex

	mu                sync.Mutex
	anomalyWindow     time.Time
	anomalyCount      int
	anomalySuppressed int
	waiting           map[string]bool
	live              map[string]*LiveSession
	total             Tally
	watches           map[*Watch]struct{}
}

// LiveSession is an open session as the engine tracks it; control/server
// turns it into the wire type controlapi.LiveSession.
type LiveSession struct {
	ID       string         `json:"id"`
	Target   string         `json:"target"`
	OrigDst  netip.AddrPort `json:"orig_dst"`
	PID      uint32         `json:"pid"`
	UID      uint32         `json:"uid"`
	Exe      string         `json:"exe,omitempty"`
	Cgroup   string         `json:"cgroup,omitempty"`
	Started  time.Time      `json:"started"`
	cgroupID uint64
}

// Tally counts sessions and bytes (model.Tally, which the control API's
// wire types carry as they are).
type Tally = model.Tally

// addOutcome counts one finished session of target in t.
func addOutcome(t *Tally, target string, o inspect.Outcome) {
	t.Sessions++
	if o.Refused {
		t.Refused++
	}
	t.BytesUp += o.BytesUp
	t.BytesDown += o.BytesDown
	if t.ByTarget == nil {
		t.ByTarget = map[string]int{}
	}
	t.ByTarget[target]++
}

// New opens the journal, loads and configures the BPF programs, and
// attaches them to the configured cgroups. Call Run to start serving.
func New(ctx context.Context, cfg *config.Config, opts Options) (*Engine, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Resolve == 0 {
		opts.Resolve = 30 * time.Second
	}
	if opts.Grace == 0 {
		opts.Grace = 5 * time.Second
	}
	j, err := journal.Open(ctx, journal.Options{
		Path:            cfg.Journal.Path,
		StateDir:        cfg.StateDir,
		CheckpointSinks: cfg.Journal.CheckpointSinks.List(),
		Sync:            journal.SyncMode(cfg.Journal.Sync),
		SyncInterval:    time.Duration(cfg.Journal.SyncInterval),
		FlushInterval:   flushInterval(cfg.Journal.FlushInterval),
		HoldForHub:      cfg.Ship.Enabled(),
		Logger:          opts.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("open journal %s: %w", cfg.Journal.Path, err)
	}
	root, err := cgroupfs.Root()
	if err != nil {
		j.Close()
		return nil, err
	}
	ids := identity.NewResolver(identity.ResolverOptions{Cgroup2Root: root, Logger: opts.Logger})
	ids.SetAgents(agentSpecs(cfg.Identity.Agents))
	red, err := redirector.New(ctx, redirector.Options{
		MapPin:   opts.MapPin,
		LinkPin:  opts.LinkPin,
		FailOpen: cfg.Intercept.Fail == config.FailOpen,
		Gateway:  cfg.Intercept.ContainerRedirect == config.RedirectGateway,
		// Validated: an IPv4 address or "".
		ContainerGateway: parseAddrOrZero(cfg.Intercept.ContainerGateway),
		Cgroup2Root:      root,
		Identities:       ids,
		Logger:           opts.Logger,
	})
	if err != nil {
		j.Close()
		return nil, err
	}
	ectx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	e := &Engine{
		ctx:     ectx,
		idle:    make(chan net.Conn),
		cancel:  cancel,
		cfg:     cfg,
		opts:    opts,
		log:     opts.Logger,
		journal: j,
		red:     red,
		ids:     ids,
		live:    map[string]*LiveSession{},
		watches: map[*Watch]struct{}{},
	}
	if e.policy, err = policy.New(cfg); err != nil {
		e.closeNow()
		return nil, err
	}
	v, err := startOIDC(cfg.Identity.OIDC, opts.Logger)
	if err != nil {
		e.closeNow()
		return nil, fmt.Errorf("identity.oidc: %w", err)
	}
	e.setOIDC(v)
	e.broker = approvals.New(approvals.Options{
		Journal:  j,
		Identify: e.IdentityOf,
		Notify:   e.notify,
		Logger:   opts.Logger,
		Host:     hostName(),
		// A held client is told where approvers decide; a reload
		// changes it (prepareWebhook).
		ConsoleURL: cfg.Ship.ConsoleURL,
	})
	e.policy.SetReviewer(e.broker)
	if err := e.setWebhook(cfg); err != nil {
		e.closeNow()
		return nil, err
	}
	e.metrics = metrics.New(metrics.Gauges{
		JournalQueue:     func() float64 { return float64(j.Stats().Queued) },
		JournalLag:       func() float64 { return metrics.SinceSeconds(j.Stats().UnsyncedSince, time.Now()) },
		JournalLastSeq:   func() float64 { return float64(j.Stats().LastSeq) },
		BPF:              red.Gauges,
		LiveSessions:     func() float64 { return float64(len(e.Live())) },
		ApprovalsPending: func() float64 { return float64(e.broker.PendingCount()) },
	})
	if err := e.buildHandlers(cfg); err != nil {
		e.closeNow()
		return nil, err
	}
	e.initLimits()
	for _, t := range cfg.Targets {
		if _, ok := e.handler[t.Protocol]; !ok {
			e.closeNow()
			return nil, fmt.Errorf("target %s: this build has no %s handler", t.Name, t.Protocol)
		}
	}
	if err := red.SetTargets(ctx, targetsOf(cfg)); err != nil {
		e.closeNow()
		return nil, fmt.Errorf("intercept targets: %w", err)
	}
	for _, cg := range cfg.Intercept.Cgroups {
		if err := e.attachOrWait(cg); err != nil {
			e.closeNow()
			return nil, err
		}
	}
	return e, nil
}

func targetsOf(cfg *config.Config) []model.Target {
	out := make([]model.Target, 0, len(cfg.Targets))
	for _, t := range cfg.Targets {
		out = append(out, model.Target{Name: t.Name, Protocol: t.Protocol, Address: t.Address})
	}
	return out
}

// Journal is the engine's journal.
func (e *Engine) Journal() *journal.Journal { return e.journal }

// Redirector is the engine's redirector.
func (e *Engine) Redirector() *redirector.Redirector { return e.red }

// Start accepts intercepted connections in the background until Close.
func (e *Engine) Start() {
	for _, ln := range e.red.Listeners() {
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			e.acceptLoop(ln)
		}()
	}
	// Containers' namespaces: the server calls this from its own
	// goroutine until CloseListeners returns, so no Add follows Wait.
	if err := e.red.ServeNamespaces(func(ln net.Listener) {
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			e.acceptLoop(ln)
		}()
	}); err != nil {
		e.log.Warn("containers' network namespaces are not served: their connects to targets are refused", "err", err)
	}
	e.wg.Add(2)
	go func() {
		defer e.wg.Done()
		e.refreshTargets()
	}()
	go func() {
		defer e.wg.Done()
		e.watchCgroups()
	}()
}

func (e *Engine) acceptLoop(ln net.Listener) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || e.ctx.Err() != nil {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			// Out of descriptors: shed the waiting connection with a
			// spare one, so accept keeps moving (limits.go).
			if e.shed(ln, err) {
				continue
			}
			// EMFILE and friends: back off instead of spinning, keep
			// serving the sessions already open.
			e.log.Error("accept failed", "err", err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		select {
		case e.idle <- conn:
		default:
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				e.serveLoop(conn)
			}()
		}
	}
}

// At most serveIdleMax goroutines that served a session wait, each at most
// serveIdle, for the next connection; the others end.
const (
	serveIdle    = 10 * time.Second
	serveIdleMax = 64
)

// serveLoop serves conn, then the connections handed to it while it
// waits. A goroutine serving a session grows its stack (identity, the
// journal record, the relay) by copying it several times, and a new one
// must be started and scheduled: the next session on the same goroutine
// has neither to do (interlock's CPU per connection in tcpbench: 6% less).
func (e *Engine) serveLoop(conn net.Conn) {
	var t *time.Timer
	defer func() {
		if t != nil {
			t.Stop()
		}
	}()
	for {
		e.serve(conn)
		if e.idlers.Add(1) > serveIdleMax {
			e.idlers.Add(-1)
			return
		}
		if t == nil {
			t = time.NewTimer(serveIdle)
		} else {
			t.Reset(serveIdle)
		}
		select {
		case conn = <-e.idle:
			e.idlers.Add(-1)
		case <-t.C:
			e.idlers.Add(-1)
			return
		case <-e.ctx.Done():
			e.idlers.Add(-1)
			return
		}
	}
}

func (e *Engine) serve(conn net.Conn) {
	ctx := e.ctx
	e.metrics.Connections.Inc()
	origin, err := e.red.Origin(ctx, conn)
	if err != nil {
		if errors.Is(err, redirector.ErrNoOrigin) {
			e.metrics.OriginMisses.Inc()
		}
		e.anomaly(conn, err)
		conn.Close()
		return
	}
	// Handlers read and write the client's socket outside the runtime's
	// system-call accounting (internal/rawconn: about a third of a
	// relay's CPU on a VM).
	conn = rawconn.Wrap(conn)
	// The limits of the actor the kernel named (limits.go).
	sl, ok := e.admit(conn, origin)
	if !ok {
		conn.Close()
		return
	}
	h, ok := e.handler[origin.Target.Protocol]
	if !ok {
		sl.adm.release()
		e.anomaly(conn, fmt.Errorf("no handler for protocol %q of target %s", origin.Target.Protocol, origin.Target.Name))
		conn.Close()
		return
	}
	id, err := uuid.NewV7()
	if err != nil {
		sl.adm.release()
		e.anomaly(conn, fmt.Errorf("session id: %w", err))
		conn.Close()
		return
	}
	origin.Session = id.String()
	s := &inspect.Session{ID: id.String(), Origin: origin, Idle: sl.timeouts.Idle}
	ls := &LiveSession{
		ID: s.ID, Target: origin.Target.Name, OrigDst: origin.OrigDst,
		PID: origin.Identity.Kernel.TGID, UID: origin.Identity.Kernel.UID,
		Started: origin.Accepted, cgroupID: origin.Identity.Kernel.CgroupID,
	}
	if p := origin.Identity.Proc; p != nil {
		ls.Exe, ls.Cgroup = p.Exe, p.CgroupPath
	}
	e.mu.Lock()
	e.live[s.ID] = ls
	e.mu.Unlock()

	out := e.life.Serve(ctx, h, sl.conn(conn), s)
	e.ended(sl, s, out)
	e.broker.SessionEnded(s.ID)
	proto := string(origin.Target.Protocol)
	e.metrics.Sessions.WithLabelValues(proto).Inc()
	if out.Refused {
		e.metrics.SessionsRefused.WithLabelValues(proto).Inc()
	}
	e.metrics.BytesUp.WithLabelValues(proto).Add(float64(out.BytesUp))
	e.metrics.BytesDown.WithLabelValues(proto).Add(float64(out.BytesDown))

	e.mu.Lock()
	delete(e.live, s.ID)
	addOutcome(&e.total, ls.Target, out)
	for w := range e.watches {
		if w.covers(ls) {
			addOutcome(&w.tally, ls.Target, out)
		}
	}
	e.mu.Unlock()
}

// anomalyBudget is how many anomaly records a second may write one by
// one. Any local user can connect to the listener, so without a bound a
// connect loop could make interlock fsync (and fill the disk) at will;
// beyond the budget, anomalies are counted and summarised once a second.
const anomalyBudget = 20

// refreshTargets re-resolves target host names, so a DNS change moves the
// interception with it, and summarises suppressed anomalies.
func (e *Engine) refreshTargets() {
	t := time.NewTicker(e.opts.Resolve)
	defer t.Stop()
	flush := time.NewTicker(time.Second)
	defer flush.Stop()
	for {
		select {
		case <-e.ctx.Done():
			e.flushSuppressed()
			return
		case <-flush.C:
			e.flushSuppressed()
		case <-t.C:
			e.mu.Lock()
			cfg := e.cfg
			e.mu.Unlock()
			if err := e.red.SetTargets(e.ctx, targetsOf(cfg)); err != nil {
				e.log.Warn("re-resolving targets", "err", err)
			}
		}
	}
}

// Close stops accepting, lets open sessions run for the grace period,
// ends the rest, and closes the journal last so their close records land.
func (e *Engine) Close() error {
	if err := e.red.CloseListeners(); err != nil {
		e.log.Warn("closing the listeners", "err", err)
	}
	done := make(chan struct{})
	go func() {
		// Wait only for the sessions: the accept loops end with their
		// listeners, Run's goroutines with the context.
		for {
			e.mu.Lock()
			n := len(e.live)
			e.mu.Unlock()
			if n == 0 {
				close(done)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	select {
	case <-done:
	case <-time.After(e.opts.Grace):
		e.log.Warn("ending sessions still open after the grace period", "open", len(e.Live()))
	}
	e.cancel(errors.New("interlock is shutting down"))
	e.wg.Wait()
	return e.closeNow()
}

func (e *Engine) closeNow() error {
	e.cancel(errors.New("interlock is shutting down"))
	if e.broker != nil {
		e.broker.Close()
	}
	if e.lim != nil {
		e.lim.close()
	}
	closeOIDC(e.oidc)
	// The resolver keeps descriptors of the processes that connected
	// last (identity/identity_procfds.go).
	return errors.Join(e.red.Close(), e.ids.Close(), e.journal.Close())
}

// Metrics is the engine's instrumentation, served by the daemon.
func (e *Engine) Metrics() *metrics.Metrics { return e.metrics }

// JournalPath is the journal's database file.
func (e *Engine) JournalPath() string {
	// Reload swaps e.cfg under e.mu; the journal path itself never
	// changes without a restart.
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.cfg.Journal.Path
}

// IdentityOf resolves a process that did not come through a connect hook,
// such as a control socket peer (pid, uid and gid from SO_PEERCRED).
func (e *Engine) IdentityOf(ctx context.Context, pid int32, uid, gid uint32) model.Identity {
	k, err := identity.KernelFactsOf(e.red.Cgroup2Root(), pid, uid, gid)
	id := e.ids.Resolve(ctx, k)
	if err != nil && id.ProcError == "" {
		id.ProcError = err.Error()
	}
	return id
}

// Self is the identity of this interlock process: the invoker of an
// embedded `interlock run`.
func (e *Engine) Self(ctx context.Context) model.Identity {
	return e.IdentityOf(ctx, int32(os.Getpid()), uint32(os.Getuid()), uint32(os.Getgid()))
}

// Approvals is the engine's approvals broker.
func (e *Engine) Approvals() *approvals.Broker { return e.broker }

// notify tells the webhook, if any, of a new approval request.
func (e *Engine) notify(req model.ApprovalRequest) {
	if wh := e.webhook.Load(); wh != nil {
		wh.Notify(req)
	}
}

// hostName names this host to a held client, which is told where an
// approver runs `interlock approvals approve` ("" when unknown).
func hostName() string {
	h, _ := os.Hostname()
	return h
}

// parseAddrOrZero is the address s, or the zero Addr when s is not one.
func parseAddrOrZero(s string) netip.Addr {
	a, _ := netip.ParseAddr(s)
	return a
}

// flushInterval is journal.flush_interval as the journal takes it: 0 in
// the config keeps the journal out of log mode, which the journal says
// with a negative interval (its 0 is "the default").
func flushInterval(d config.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return time.Duration(d)
}
