package main

import (
	"context"
	"log/slog"
	"sync"

	"github.com/interlock/interlock/approvals"
	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/engine"
	"github.com/interlock/interlock/hub/decision"
	"github.com/interlock/interlock/ship"
)

// startHubApprovals links the approvals broker to the hub the host ships
// to (docs/hub.md, "Approvals from anywhere"): held requests go to the
// hub, its signed decisions come back. Without an enrolment the broker
// stays local, as without a hub.
func startHubApprovals(ctx context.Context, sc config.Ship, eng *engine.Engine, wg *sync.WaitGroup, log *slog.Logger) {
	b := eng.Approvals()
	if b == nil {
		return
	}
	st, err := ship.LoadState(sc.StateDir)
	if err != nil {
		log.Error("approvals stay on this host: no enrolment", "err", err)
		return
	}
	v, err := decision.NewVerifier(st.HubKey)
	if err != nil {
		log.Error("approvals stay on this host: the hub key from enrolment", "err", err)
		return
	}
	client, err := ship.NewClient(sc.HubURL, st)
	if err != nil {
		log.Error("approvals stay on this host", "err", err)
		return
	}
	a := ship.NewApprovals(ctx, client, b, sc.RetryMin, sc.RetryMax, log)
	b.AttachHub(&approvals.HubLink{HostID: st.HostID, Verifier: v, Held: a.Held, Withdrawn: a.Withdrawn})
	wg.Add(1)
	go func() {
		defer wg.Done()
		a.Run(ctx)
	}()
	log.Info("approvals through the hub", "hub", sc.HubURL, "host", st.HostID)
}
