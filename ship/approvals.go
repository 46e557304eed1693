package ship

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/interlock/interlock/hub/hubapi"
)

// PostHeld sends a held request to the hub.
func (c *Client) PostHeld(ctx context.Context, h hubapi.HeldRequest) error {
	var out struct{}
	return c.call(ctx, http.MethodPost, hubapi.PathHostApprovals, h, &out)
}

// Withdraw tells the hub the host decided request id itself, or took the
// hub's decision on it.
func (c *Client) Withdraw(ctx context.Context, id string) error {
	var out map[string]string
	return c.call(ctx, http.MethodDelete, hubapi.PathHostApprovals+"/"+url.PathEscape(id), nil, &out)
}

// Decisions long-polls the hub for the decisions on this host's requests:
// the answer comes as soon as there is one, or empty after wait.
func (c *Client) Decisions(ctx context.Context, wait time.Duration) ([]hubapi.SignedDecision, error) {
	var out []hubapi.SignedDecision
	err := c.call(ctx, http.MethodGet, hubapi.PathHostDecisions+"?wait="+wait.String(), nil, &out)
	return out, err
}

// Decider applies a decision from the hub (approvals.Broker): it verifies
// it, journals it, and releases or refuses the held operation, or
// journals why not.
type Decider interface {
	ApplyHubDecision(ctx context.Context, d hubapi.SignedDecision) error
}

// Approvals carries the broker's held requests to the hub and the hub's
// signed decisions back (docs/hub.md, "Approvals from anywhere"). A held
// request is posted at once and again, with backoff, until the hub has it
// or the host decided it itself; then it is withdrawn. Nothing here
// decides anything: an unreachable hub only means no decision comes, and
// the broker's local timeout denies.
type Approvals struct {
	client             *Client
	dec                Decider
	log                *slog.Logger
	retryMin, retryMax time.Duration
	// wait is how long one poll waits at the hub.
	wait time.Duration

	ctx     context.Context
	mu      sync.Mutex
	posting map[string]*posting
}

type posting struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// NewApprovals is the link over client; its calls end with ctx.
func NewApprovals(ctx context.Context, client *Client, dec Decider, retryMin, retryMax time.Duration, log *slog.Logger) *Approvals {
	return &Approvals{client: client, dec: dec, log: log, retryMin: retryMin, retryMax: retryMax, wait: 30 * time.Second,
		ctx: ctx, posting: map[string]*posting{}}
}

// Held posts h to the hub in the background (approvals.HubLink.Held).
func (a *Approvals) Held(h hubapi.HeldRequest) {
	ctx, cancel := context.WithDeadline(a.ctx, h.Deadline)
	p := &posting{cancel: cancel, done: make(chan struct{})}
	a.mu.Lock()
	a.posting[h.Request.ID] = p
	a.mu.Unlock()
	go func() {
		defer close(p.done)
		defer cancel()
		for delay := a.retryMin; ; delay = min(delay*2, a.retryMax) {
			err := a.client.PostHeld(ctx, h)
			if err == nil {
				a.log.Info("held request sent to the hub", "request", h.Request.ID)
				return
			}
			var re *RefusalError
			if errors.As(err, &re) && re.Status/100 == 4 {
				// The hub will not take it: retrying sends the same.
				a.log.Error("the hub refused the held request; it can be decided on this host only", "request", h.Request.ID, "err", err)
				return
			}
			if ctx.Err() != nil {
				return
			}
			a.log.Warn("held request not sent to the hub; retrying", "request", h.Request.ID, "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(jitter(delay)):
			}
		}
	}()
}

func jitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d/2+1)
}

// Withdrawn stops posting request id and withdraws it at the hub, in the
// background (approvals.HubLink.Withdrawn).
func (a *Approvals) Withdrawn(id string) {
	a.mu.Lock()
	p := a.posting[id]
	delete(a.posting, id)
	a.mu.Unlock()
	go func() {
		if p != nil {
			// A post still under way could land after the withdrawal.
			p.cancel()
			<-p.done
		}
		a.withdraw(id)
	}()
}

// withdraw retries for a minute: a request left pending at the hub is
// past its deadline soon, and a decision on it is refused here anyway.
func (a *Approvals) withdraw(id string) {
	ctx, cancel := context.WithTimeout(a.ctx, time.Minute)
	defer cancel()
	for delay := a.retryMin; ; delay = min(delay*2, a.retryMax) {
		err := a.client.Withdraw(ctx, id)
		var re *RefusalError
		if err == nil || errors.As(err, &re) && re.Status == http.StatusNotFound {
			return
		}
		select {
		case <-ctx.Done():
			a.log.Warn("held request not withdrawn at the hub", "request", id, "err", err)
			return
		case <-time.After(jitter(delay)):
		}
	}
}

// Run long-polls the hub for decisions and hands each to the broker
// until ctx ends. A decision taken, accepted or refused, is withdrawn at
// the hub so it is not served again.
func (a *Approvals) Run(ctx context.Context) {
	delay := a.retryMin
	for ctx.Err() == nil {
		ds, err := a.client.Decisions(ctx, a.wait)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			a.log.Warn("polling the hub for approval decisions", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(jitter(delay)):
			}
			delay = min(delay*2, a.retryMax)
			continue
		}
		delay = a.retryMin
		for _, d := range ds {
			a.take(ctx, d)
		}
	}
}

// take hands d to the broker, then withdraws its request at the hub,
// before the next poll: a decision the hub serves again after that is a
// replay, and the broker refuses (and journals) it as one.
func (a *Approvals) take(ctx context.Context, d hubapi.SignedDecision) {
	if err := a.dec.ApplyHubDecision(ctx, d); err != nil {
		a.log.Warn("hub decision not applied", "request", d.RequestID, "err", err)
	}
	a.mu.Lock()
	p := a.posting[d.RequestID]
	delete(a.posting, d.RequestID)
	a.mu.Unlock()
	if p != nil {
		p.cancel()
	}
	a.withdraw(d.RequestID)
}
