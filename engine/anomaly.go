package engine

// Anomalies: connections that reached a listener but cannot be served,
// journaled with what is known of them; those over the budget are counted
// in one record.

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/interlock/interlock/model"
)

// anomaly journals a connection that reached the listener but cannot be
// served. The record is synced: it is evidence of an attempt that was
// refused.
func (e *Engine) anomaly(conn net.Conn, cause error) {
	a := model.Anomaly{Reason: cause.Error()}
	if ta, ok := conn.RemoteAddr().(*net.TCPAddr); ok {
		a.Peer = ta.AddrPort()
	}
	if ta, ok := conn.LocalAddr().(*net.TCPAddr); ok {
		a.Local = ta.AddrPort()
	}
	e.mu.Lock()
	e.total.Anomalies++
	for w := range e.watches {
		w.tally.Anomalies++
	}
	now := time.Now().Truncate(time.Second)
	if !now.Equal(e.anomalyWindow) {
		e.anomalyWindow, e.anomalyCount = now, 0
	}
	e.anomalyCount++
	over := e.anomalyCount > anomalyBudget
	if over {
		e.anomalySuppressed++
	}
	e.mu.Unlock()
	if over {
		return
	}
	e.log.Warn("refused connection", "peer", a.Peer, "reason", a.Reason)
	e.appendAnomaly(a)
}

func (e *Engine) appendAnomaly(a model.Anomaly) {
	if _, err := e.journal.Append(context.WithoutCancel(e.ctx), model.Record{Kind: model.KindAnomaly, Data: a}, model.Synced); err != nil {
		e.log.Error("journal anomaly", "err", err)
	}
}

// flushSuppressed writes one record for the anomalies over the budget,
// and the summaries of limit hits (limits.go).
func (e *Engine) flushSuppressed() {
	e.flushLimits()
	e.mu.Lock()
	n := e.anomalySuppressed
	e.anomalySuppressed = 0
	e.mu.Unlock()
	if n == 0 {
		return
	}
	e.log.Warn("refused connections over the per-second budget", "count", n)
	e.appendAnomaly(model.Anomaly{
		Reason: fmt.Sprintf("%d more refused connections without a connect record (over %d/s, summarised)", n, anomalyBudget),
		Detail: map[string]any{"suppressed": n},
	})
}
