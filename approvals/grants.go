package approvals

import (
	"context"
	"time"

	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/policy"
)

// A grant lets later operations of the same rule through without a new
// request: for the rest of a session (scope session) or for the same
// identity and target until a time (scope ttl). Every grant's end is
// journaled as grant.expired, so the evidence shows when access stopped.

// newGrant creates the grant an approved request gives, or nil for scope
// once. b.mu is held.
func (b *Broker) newGrant(p *pending) *grant {
	rr := p.review
	switch p.req.Scope {
	case "session":
		return &grant{id: p.req.ID, rule: rr.Rule, scope: "session", session: rr.Origin.Session, target: rr.Origin.Target.Name}
	case "ttl":
		ttl := time.Duration(rr.Review.TTL)
		return &grant{id: p.req.ID, rule: rr.Rule, scope: "ttl", who: identityKey(rr.Origin.Identity),
			target: rr.Origin.Target.Name, expires: b.opts.Now().Add(ttl)}
	}
	return nil
}

// armGrant makes a grant usable (after its decision is journaled) and
// schedules the expiry of a ttl grant.
func (b *Broker) armGrant(g *grant) {
	if g == nil {
		return
	}
	b.mu.Lock()
	b.grants[g.id] = g
	if !g.expires.IsZero() {
		g.timer = time.AfterFunc(time.Until(g.expires), func() { b.expire(g.id, "the grant's time is up") })
	}
	b.mu.Unlock()
}

// findGrant returns a live grant covering the request.
func (b *Broker) findGrant(rr policy.ReviewRequest) *grant {
	now := b.opts.Now()
	key := ""
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, g := range b.grants {
		if g.rule != rr.Rule || g.target != rr.Origin.Target.Name {
			continue
		}
		switch g.scope {
		case "session":
			if g.session != "" && g.session == rr.Origin.Session {
				return g
			}
		case "ttl":
			if key == "" {
				key = identityKey(rr.Origin.Identity)
			}
			if g.who == key && now.Before(g.expires) {
				return g
			}
		}
	}
	return nil
}

// expire ends a grant and journals it.
func (b *Broker) expire(id, reason string) {
	b.mu.Lock()
	g, ok := b.grants[id]
	if ok {
		delete(b.grants, id)
		if g.timer != nil {
			g.timer.Stop()
		}
	}
	b.mu.Unlock()
	if !ok {
		return
	}
	session := g.session
	rec := model.Record{Kind: model.KindGrantExpired, Session: session, Data: model.GrantExpired{ID: id, Scope: g.scope}}
	if _, err := b.opts.Journal.Append(context.Background(), rec, model.Synced); err != nil {
		b.log.Error("journal grant expiry", "request", id, "err", err)
	}
	b.log.Info("grant expired", "request", id, "scope", g.scope, "reason", reason)
}

// SessionEnded expires the session grants of a session that closed.
func (b *Broker) SessionEnded(session string) {
	var ids []string
	b.mu.Lock()
	for id, g := range b.grants {
		if g.scope == "session" && g.session == session {
			ids = append(ids, id)
		}
	}
	b.mu.Unlock()
	for _, id := range ids {
		b.expire(id, "the session ended")
	}
}

// Close expires every grant (interlock is stopping: grants do not survive
// it) and denies what is still pending.
func (b *Broker) Close() {
	b.mu.Lock()
	ids := make([]string, 0, len(b.grants))
	for id := range b.grants {
		ids = append(ids, id)
	}
	pend := make([]*pending, 0, len(b.pending))
	for _, p := range b.pending {
		pend = append(pend, p)
	}
	b.mu.Unlock()
	for _, p := range pend {
		d := b.close(p, model.VerdictDeny, "interlock is stopping")
		p.result <- d
	}
	for _, id := range ids {
		b.expire(id, "interlock is stopping")
	}
}
