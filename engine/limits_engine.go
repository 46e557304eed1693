package engine

// The engine's side of the limits: admitting a session, shedding accepts
// under fd pressure, and journaling the limits hit.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/identity"
	"github.com/interlock/interlock/inspect"
	"github.com/interlock/interlock/inspect/tcp"
	"github.com/interlock/interlock/model"
)

// limits returns the limits in effect.
func (e *Engine) limits() config.Limits {
	e.mu.Lock()
	cfg := e.cfg
	e.mu.Unlock()
	return cfg.Limits.Resolve()
}

// initLimits sets up what the limits need once the engine's parts exist.
func (e *Engine) initLimits() {
	e.lim = newLimiter()
	e.applyHashLimits(e.limits())
	if th, ok := e.handler[model.ProtoTCP].(*tcp.Handler); ok {
		e.metrics.AddGauge("tcp_pipes_open", "Pipes the tcp handler's sessions splice through, in use or idle.",
			func() float64 { return float64(th.PipesOpen()) })
	}
	e.metrics.AddCounter("exe_hashed_bytes_total", "Bytes of executables fed to SHA-256 for identities (zero runs hashed from memory not counted).",
		func() float64 { _, b := e.ids.HashStats(); return float64(b) })
}

// applyHashLimits gives the resolver the hash limits of lim, if they
// changed (a reload).
func (e *Engine) applyHashLimits(lim config.Limits) {
	e.lim.mu.Lock()
	same := e.lim.hash.HashMaxBytes == lim.HashMaxBytes && e.lim.hash.HashBudgetBytes == lim.HashBudgetBytes &&
		e.lim.hash.HashInterval == lim.HashInterval && e.lim.hash.HashMaxBytes != 0
	e.lim.hash = lim
	e.lim.mu.Unlock()
	if same {
		return
	}
	e.ids.SetHashLimits(identity.HashLimits{
		MaxBytes: lim.HashMaxBytes, BudgetBytes: lim.HashBudgetBytes, Interval: lim.HashInterval,
		Refused: func(uid uint32, size int64, limit string) {
			reason := fmt.Sprintf("executable of %d bytes run by uid %d left unhashed: ", size, uid)
			value := any(lim.HashBudgetBytes >> 20)
			if limit == "hash_max_size" {
				reason += "larger than limits.hash.max_mib"
				value = lim.HashMaxBytes >> 20
			} else {
				reason += "the uid's limits.hash.budget_mib is spent for now"
			}
			e.hitLimit(limitHit{limit: limit, reason: reason, value: value, uid: uid, hasActor: true})
		},
	})
}

// sessionLimits is what admit hands a session: its guard and timeouts.
type sessionLimits struct {
	adm      *admission
	timeouts config.SessionTimeouts
	guard    *firstByteConn
}

// admit applies the admission limits to a connection whose origin is
// known. When it refuses, the connection is the caller's to close.
func (e *Engine) admit(conn net.Conn, o model.Origin) (*sessionLimits, bool) {
	lim := e.limits()
	e.applyHashLimits(lim)
	k := o.Identity.Kernel
	adm, ref := e.lim.admit(k.UID, k.CgroupID, lim)
	if ref != nil {
		h := limitHit{limit: ref.limit, reason: "refused: " + ref.reason, value: ref.value,
			uid: k.UID, cgroup: k.CgroupID, target: o.Target.Name, hasActor: true, peer: o.Client}
		if p := o.Identity.Proc; p != nil {
			h.cgPath = p.CgroupPath
		}
		if ta, ok := conn.LocalAddr().(*net.TCPAddr); ok {
			h.local = ta.AddrPort()
		}
		e.mu.Lock()
		e.total.Anomalies++
		for w := range e.watches {
			w.tally.Anomalies++
		}
		e.mu.Unlock()
		e.hitLimit(h)
		return nil, false
	}
	sl := &sessionLimits{adm: adm, timeouts: lim.Timeouts(o.Target.Protocol)}
	if d := sl.timeouts.FirstByte; d > 0 {
		sl.guard = guardFirstByte(conn, d, o.Accepted, string(o.Target.Protocol))
	}
	return sl, true
}

// conn is the connection the handler gets.
func (sl *sessionLimits) conn(c net.Conn) net.Conn {
	if sl.guard != nil {
		return sl.guard
	}
	return c
}

// ended journals the limits that ended a session.
func (e *Engine) ended(sl *sessionLimits, s *inspect.Session, out inspect.Outcome) {
	sl.adm.release()
	o := s.Origin
	h := limitHit{uid: o.Identity.Kernel.UID, cgroup: o.Identity.Kernel.CgroupID, target: o.Target.Name,
		session: s.ID, hasActor: true, peer: o.Client}
	if p := o.Identity.Proc; p != nil {
		h.cgPath = p.CgroupPath
	}
	switch {
	case sl.guard != nil && sl.guard.expired.Load():
		h.limit, h.value = limitFirstByte, sl.timeouts.FirstByte.String()
		h.reason = fmt.Sprintf("closed: the client sent nothing within limits.timeouts.%s.first_byte (%s)", o.Target.Protocol, sl.timeouts.FirstByte)
	case errors.Is(out.Err, inspect.ErrIdle):
		h.limit, h.value = limitIdle, sl.timeouts.Idle.String()
		h.reason = fmt.Sprintf("ended: idle for limits.timeouts.%s.idle (%s)", o.Target.Protocol, sl.timeouts.Idle)
	default:
		return
	}
	e.hitLimit(h)
}

// shed handles an accept error caused by running out of descriptors.
func (e *Engine) shed(ln net.Listener, err error) bool {
	shed, ok := e.lim.shed(ln, err)
	if !ok {
		return false
	}
	if shed {
		h := limitHit{limit: limitFDExhausted, reason: "refused: interlock is out of file descriptors (RLIMIT_NOFILE); " +
			"the connection was accepted and closed at once. Raise LimitNOFILE, or lower the limits.per_uid and per_cgroup sessions"}
		if ta, ok := ln.Addr().(*net.TCPAddr); ok {
			h.local = ta.AddrPort()
		}
		e.hitLimit(h)
	} else {
		// Nothing was waiting, or even the spare did not free a
		// descriptor: pause rather than spin on EMFILE.
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// hitLimit counts a hit and journals it within the budget.
func (e *Engine) hitLimit(h limitHit) {
	e.metrics.LimitHits.WithLabelValues(h.limit).Inc()
	if !e.lim.note(h, e.limits().ReportInterval) {
		return
	}
	e.log.Warn("limit hit", "limit", h.limit, "actor", h.actor(), "reason", h.reason)
	e.appendLimit(h, h.reason, 1)
}

// flushLimits journals the summaries of hits left out of the journal,
// and forgets idle actors; on shutdown, every summary.
func (e *Engine) flushLimits() {
	lim := e.limits()
	e.lim.forgetIdle(lim)
	force := e.ctx.Err() != nil
	for _, s := range e.lim.due(lim.ReportInterval, force) {
		reason := fmt.Sprintf("%d more like this since %s (limits.report_interval: %s), summarised: %s",
			s.count, s.since.UTC().Format(time.RFC3339), lim.ReportInterval, s.hit.reason)
		e.log.Warn("limit hits summarised", "limit", s.hit.limit, "actor", s.hit.actor(), "count", s.count)
		e.appendLimit(s.hit, reason, s.count)
	}
}

// appendLimit journals a limit hit (synced, like an anomaly: evidence of
// an attempt that was stopped).
func (e *Engine) appendLimit(h limitHit, reason string, count int) {
	rec := model.Record{Kind: model.KindAnomaly, Session: h.session, Data: model.Anomaly{
		Reason: reason, Peer: h.peer, Local: h.local, Detail: h.detail(count)}}
	if _, err := e.journal.Append(context.WithoutCancel(e.ctx), rec, model.Synced); err != nil {
		e.log.Error("journal a limit hit", "limit", h.limit, "err", err)
	}
}
