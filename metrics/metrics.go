// Package metrics is interlock's Prometheus instrumentation: the counters
// and gauges the daemon serves on /metrics, and decorators that count
// journal records and policy decisions without the handlers knowing.
package metrics

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/interlock/interlock/model"
)

// Metrics holds every series interlock exports.
type Metrics struct {
	reg *prometheus.Registry

	Connections     prometheus.Counter
	OriginMisses    prometheus.Counter
	Sessions        *prometheus.CounterVec // protocol
	SessionsRefused *prometheus.CounterVec // protocol
	Statements      *prometheus.CounterVec // target
	Records         *prometheus.CounterVec // kind
	RecordErrors    prometheus.Counter
	// PostBlocked is the time the data path spent handing records to the
	// journal's batched path. It grows when the journal is behind and
	// slows the sessions that post (backpressure instead of loss).
	PostBlocked prometheus.Counter
	Decisions   *prometheus.CounterVec // protocol, action
	BytesUp     *prometheus.CounterVec // protocol
	BytesDown   *prometheus.CounterVec // protocol
	// LoginFailures counts interlock's own logins to a target that the
	// target refused (reason credentials: the held credential is wrong or
	// was changed; other: unreachable, TLS).
	LoginFailures *prometheus.CounterVec // target, reason
	// LimitHits counts what the limits section stopped: sessions refused
	// or ended, connections shed, executables left unhashed, by limit.
	LimitHits *prometheus.CounterVec // limit
	// SessionPanics counts sessions a bug ended: a panic the session's
	// handler hit, recovered so the daemon kept serving the others.
	SessionPanics *prometheus.CounterVec // protocol
}

// Gauges are read at scrape time from the parts that own the numbers.
type Gauges struct {
	// JournalQueue is the number of records waiting for the writer.
	JournalQueue func() float64
	// JournalLag is how long, in seconds, the oldest committed but not yet
	// synced record has waited.
	JournalLag func() float64
	// JournalLastSeq is the newest sequence number written.
	JournalLastSeq func() float64
	// BPF reads the hooks' counters and map fill, keyed by name.
	BPF func() map[string]float64
	// LiveSessions is the number of open sessions.
	LiveSessions func() float64
	// ApprovalsPending is the number of operations held for approval.
	ApprovalsPending func() float64
}

// SinceSeconds is the age of since at now in seconds, for gauges of
// lag: 0 when since is zero (nothing waits) or in the future.
func SinceSeconds(since, now time.Time) float64 {
	if since.IsZero() || since.After(now) {
		return 0
	}
	return now.Sub(since).Seconds()
}

// New creates the series and registers them with the gauges.
func New(g Gauges) *Metrics {
	reg := prometheus.NewRegistry()
	f := func(name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Namespace: "interlock", Name: name, Help: help})
		reg.MustRegister(c)
		return c
	}
	fv := func(name, help string, labels ...string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "interlock", Name: name, Help: help}, labels)
		reg.MustRegister(c)
		return c
	}
	m := &Metrics{
		reg:             reg,
		Connections:     f("connections_total", "Connections accepted on the listeners."),
		OriginMisses:    f("origin_lookup_misses_total", "Accepted connections with no connect record (closed, journaled as anomalies)."),
		Sessions:        fv("sessions_total", "Sessions served, by protocol.", "protocol"),
		SessionsRefused: fv("sessions_refused_total", "Sessions refused (policy, journal or target down), by protocol.", "protocol"),
		Statements:      fv("statements_total", "PostgreSQL statements journaled, by target.", "target"),
		Records:         fv("journal_records_total", "Journal records written, by kind.", "kind"),
		RecordErrors:    f("journal_record_errors_total", "Journal appends that failed (the operation was refused)."),
		PostBlocked: f("journal_post_blocked_seconds_total", "Time sessions spent handing records to the journal's batched path; "+
			"it grows when the journal is behind and slows the sessions that produce records (backpressure, not loss)."),
		Decisions:     fv("decisions_total", "Policy decisions, by protocol and action.", "protocol", "action"),
		BytesUp:       fv("bytes_up_total", "Bytes relayed from clients to targets, by protocol.", "protocol"),
		BytesDown:     fv("bytes_down_total", "Bytes relayed from targets to clients, by protocol.", "protocol"),
		LoginFailures: fv("upstream_login_failures_total", "Interlock's own logins refused by a target, by target and reason (credentials: the held credential is wrong).", "target", "reason"),
		LimitHits: fv("limit_hits_total", "Sessions refused or ended, connections shed and executables left unhashed by the limits section, by limit "+
			"(per_uid.sessions, per_cgroup.sessions, per_uid.opens, per_cgroup.opens, fd_reserve, fd_exhausted, first_byte, idle, hash_budget, hash_max_size).", "limit"),
		SessionPanics: fv("session_panics_total", "Sessions ended by a bug in interlock (a recovered panic; the daemon kept serving), by protocol. Report any.", "protocol"),
	}
	gauge := func(name, help string, fn func() float64) {
		if fn != nil {
			reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "interlock", Name: name, Help: help}, fn))
		}
	}
	gauge("journal_queue_depth", "Records waiting for the journal writer.", g.JournalQueue)
	gauge("journal_sync_lag_seconds", "Age of the oldest committed record not yet fsynced.", g.JournalLag)
	gauge("journal_last_seq", "Newest journal sequence number.", g.JournalLastSeq)
	gauge("sessions_live", "Open sessions.", g.LiveSessions)
	gauge("approvals_pending", "Operations held for approval.", g.ApprovalsPending)
	if g.BPF != nil {
		reg.MustRegister(&bpfCollector{read: g.BPF})
	}
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// AddGauge registers a gauge read at scrape time from fn, for parts made
// after New.
func (m *Metrics) AddGauge(name, help string, fn func() float64) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "interlock", Name: name, Help: help}, fn))
}

// AddCounter registers a counter read at scrape time from fn (which must
// never go down), for parts that keep their own count.
func (m *Metrics) AddCounter(name, help string, fn func() float64) {
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "interlock", Name: name, Help: help}, fn))
}

// AddCounterVec registers a labelled counter, for parts made after New
// that count by a label of their own (the shipper's errors by code).
func (m *Metrics) AddCounterVec(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "interlock", Name: name, Help: help}, labels)
	m.reg.MustRegister(c)
	return c
}

// UpstreamLoginFailed implements inspect.Events.
func (m *Metrics) UpstreamLoginFailed(target, reason string) {
	m.LoginFailures.WithLabelValues(target, reason).Inc()
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

var bpfDesc = prometheus.NewDesc("interlock_bpf", "BPF hook counters and map fill, by name.", []string{"name"}, nil)

type bpfCollector struct{ read func() map[string]float64 }

func (c *bpfCollector) Describe(ch chan<- *prometheus.Desc) { ch <- bpfDesc }

func (c *bpfCollector) Collect(ch chan<- prometheus.Metric) {
	for name, v := range c.read() {
		ch <- prometheus.MustNewConstMetric(bpfDesc, prometheus.GaugeValue, v, name)
	}
}

// Recorder counts what flows through a model.Recorder.
type Recorder struct {
	Inner model.Recorder
	M     *Metrics
}

// Append implements model.Recorder.
func (r Recorder) Append(ctx context.Context, rec model.Record, d model.Durability) (uint64, error) {
	seq, err := r.Inner.Append(ctx, rec, d)
	r.count(rec, err)
	return seq, err
}

// Start implements model.Starter (appending at once when Inner cannot
// start a record without waiting).
func (r Recorder) Start(ctx context.Context, rec model.Record, d model.Durability) func() (uint64, error) {
	wait := model.Start(ctx, r.Inner, rec, d)
	return sync.OnceValues(func() (uint64, error) {
		seq, err := wait()
		r.count(rec, err)
		return seq, err
	})
}

// CommitStarted implements model.Committer.
func (r Recorder) CommitStarted() { model.CommitStarted(r.Inner) }

// Post implements model.Recorder. The journal's Post waits when the
// session is over its share of the queue: the time it took is counted.
func (r Recorder) Post(rec model.Record) {
	start := time.Now()
	r.Inner.Post(rec)
	r.M.PostBlocked.Add(time.Since(start).Seconds())
	r.count(rec, nil)
}

func (r Recorder) count(rec model.Record, err error) {
	if err != nil {
		r.M.RecordErrors.Inc()
		return
	}
	r.M.Records.WithLabelValues(rec.Kind).Inc()
}

// Policy is the part of the decision function that Decide counts.
type Policy interface {
	DecideConnect(ctx context.Context, o model.Origin) model.Decision
	Decide(ctx context.Context, o model.Origin, op model.Operation) model.Decision
	DecideEffects(ctx context.Context, o model.Origin, op model.Operation) model.Decision
	EffectsRules(o model.Origin) bool
	SessionMasks(o model.Origin) *model.MaskSpec
}

// CountingPolicy counts the decisions of Inner.
type CountingPolicy struct {
	Inner Policy
	M     *Metrics
}

// DecideConnect implements inspect.ConnectPolicy.
func (p CountingPolicy) DecideConnect(ctx context.Context, o model.Origin) model.Decision {
	d := p.Inner.DecideConnect(ctx, o)
	p.M.Decisions.WithLabelValues(string(o.Target.Protocol), string(d.Action)).Inc()
	return d
}

// DecideEffects implements inspect.Policy.
func (p CountingPolicy) DecideEffects(ctx context.Context, o model.Origin, op model.Operation) model.Decision {
	d := p.Inner.DecideEffects(ctx, o, op)
	p.M.Decisions.WithLabelValues(string(op.Protocol), string(d.Action)).Inc()
	return d
}

// SessionMasks implements inspect.Policy.
func (p CountingPolicy) SessionMasks(o model.Origin) *model.MaskSpec { return p.Inner.SessionMasks(o) }

// EffectsRules implements inspect.Policy.
func (p CountingPolicy) EffectsRules(o model.Origin) bool { return p.Inner.EffectsRules(o) }

// Decide implements inspect.Policy.
func (p CountingPolicy) Decide(ctx context.Context, o model.Origin, op model.Operation) model.Decision {
	d := p.Inner.Decide(ctx, o, op)
	p.count(o, op, d)
	return d
}

func (p CountingPolicy) count(o model.Origin, op model.Operation, d model.Decision) {
	p.M.Decisions.WithLabelValues(string(op.Protocol), string(d.Action)).Inc()
	if op.Protocol == model.ProtoPostgres {
		p.M.Statements.WithLabelValues(o.Target.Name).Inc()
	}
}

// SessionDecider implements inspect.SessionPolicy: Inner's session
// decisions (kept from one operation to the next when Inner keeps them),
// each counted.
func (p CountingPolicy) SessionDecider(o model.Origin) model.Decider {
	var inner model.Decider = innerEach{p.Inner, o}
	if sp, ok := p.Inner.(interface {
		SessionDecider(model.Origin) model.Decider
	}); ok {
		inner = sp.SessionDecider(o)
	}
	return &countingDecider{p: p, o: o, inner: inner}
}

type innerEach struct {
	p Policy
	o model.Origin
}

func (d innerEach) Decide(ctx context.Context, op model.Operation) model.Decision {
	return d.p.Decide(ctx, d.o, op)
}

// countingDecider counts a session's decisions with the counters it
// looked up once: a label lookup per statement cost more than the kept
// decision it counts.
type countingDecider struct {
	p     CountingPolicy
	o     model.Origin
	inner model.Decider

	mu        sync.Mutex
	decisions map[[2]string]prometheus.Counter
	stmts     prometheus.Counter
}

func (d *countingDecider) Decide(ctx context.Context, op model.Operation) model.Decision {
	dec := d.inner.Decide(ctx, op)
	key := [2]string{string(op.Protocol), string(dec.Action)}
	d.mu.Lock()
	c := d.decisions[key]
	if c == nil {
		if d.decisions == nil {
			d.decisions = map[[2]string]prometheus.Counter{}
		}
		c = d.p.M.Decisions.WithLabelValues(key[0], key[1])
		d.decisions[key] = c
	}
	if op.Protocol == model.ProtoPostgres && d.stmts == nil {
		d.stmts = d.p.M.Statements.WithLabelValues(d.o.Target.Name)
	}
	stmts := d.stmts
	d.mu.Unlock()
	c.Inc()
	if op.Protocol == model.ProtoPostgres {
		stmts.Inc()
	}
	return dec
}
