package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/interlock/interlock/approvals"
	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/inspect"
	"github.com/interlock/interlock/model"
)

// reloadStep is one part of a reload, prepared (checked and built) before
// any part is applied. apply cannot fail; its undo puts back what it
// replaced.
type reloadStep struct {
	name  string
	apply func() (undo func())
}

// Reload applies a new config's targets, handler settings, rules,
// webhook, identity.oidc and cgroups, all or nothing: every part is
// prepared first, and when one fails, or the kernel side refuses the new
// targets or cgroups, the old config stays in force everywhere (the
// README promises it). Journal and bpf settings need a restart; Reload
// says so instead of ignoring them.
func (e *Engine) Reload(ctx context.Context, cfg *config.Config) error {
	e.reloadMu.Lock()
	defer e.reloadMu.Unlock()
	e.mu.Lock()
	old := e.cfg
	e.mu.Unlock()
	if cfg.Journal != old.Journal || cfg.BPF != old.BPF || cfg.Intercept.Fail != old.Intercept.Fail ||
		cfg.Intercept.ContainerRedirect != old.Intercept.ContainerRedirect || cfg.Intercept.ContainerGateway != old.Intercept.ContainerGateway {
		return errors.New("journal, bpf, intercept.fail and intercept.container_* settings change only on restart; restart interlock to apply them")
	}
	steps, err := prepareHandlers(e.handler, cfg)
	if err != nil {
		return err
	}
	applyRules, err := e.policy.PrepareConfig(cfg)
	if err != nil {
		return err
	}
	applyWebhook, err := e.prepareWebhook(cfg)
	if err != nil {
		return err
	}
	steps = append(steps, reloadStep{"policy", applyRules}, reloadStep{"webhook", applyWebhook})
	oidcStep, oidcDone, err := e.prepareOIDC(old, cfg)
	if err != nil {
		return fmt.Errorf("identity.oidc: %w; the old config stays in force", err)
	}
	if oidcStep != nil {
		steps = append(steps, *oidcStep)
	}
	// The new agents before the rules that name them: a connection
	// resolved in between must not miss a deny rule's agent.
	e.ids.SetAgents(agentSpecs(cfg.Identity.Agents))
	if err := commitReload(steps, func() error { return e.intercept(ctx, old, cfg) }); err != nil {
		e.ids.SetAgents(agentSpecs(old.Identity.Agents))
		oidcDone(false)
		return err
	}
	oidcDone(true)
	e.mu.Lock()
	e.cfg = cfg
	e.mu.Unlock()
	return nil
}

// prepareHandlers prepares every handler's reload, in protocol order so
// that the error a bad config gets is the same each time. Nothing is
// applied: on an error the handlers keep the old config.
func prepareHandlers(handlers map[model.Protocol]inspect.Handler, cfg *config.Config) ([]reloadStep, error) {
	protocols := make([]model.Protocol, 0, len(handlers))
	for p := range handlers {
		protocols = append(protocols, p)
	}
	slices.Sort(protocols)
	var steps []reloadStep
	for _, p := range protocols {
		r, ok := handlers[p].(inspect.Reloader)
		if !ok {
			continue
		}
		apply, err := r.PrepareReload(cfg)
		if err != nil {
			return nil, fmt.Errorf("%s targets: %w; the old config stays in force", p, err)
		}
		steps = append(steps, reloadStep{string(p), apply})
	}
	return steps, nil
}

// commitReload applies the prepared steps (handlers first, so they know
// a target before the kernel sends them its connections), then intercept.
// When intercept fails it undoes the steps in reverse order.
func commitReload(steps []reloadStep, intercept func() error) error {
	undos := make([]func(), 0, len(steps))
	for _, s := range steps {
		undos = append(undos, s.apply())
	}
	if err := intercept(); err != nil {
		for i := len(undos) - 1; i >= 0; i-- {
			undos[i]()
		}
		return err
	}
	return nil
}

// intercept moves the kernel side from old's targets and cgroups to
// cfg's. When it cannot (a target does not resolve, a cgroup cannot be
// attached) it puts old's back as far as it can and returns the error.
func (e *Engine) intercept(ctx context.Context, old, cfg *config.Config) error {
	restoreTargets := func() {
		if err := e.red.SetTargets(ctx, targetsOf(old)); err != nil {
			e.log.Error("reload failed and the old targets could not be restored", "err", err)
		}
	}
	if err := e.red.SetTargets(ctx, targetsOf(cfg)); err != nil {
		restoreTargets()
		return fmt.Errorf("targets: %w; the old config stays in force", err)
	}
	want := map[string]bool{}
	var attached []string
	for _, cg := range cfg.Intercept.Cgroups {
		want[cg] = true
		// Attach is idempotent; it also re-attaches a cgroup made anew.
		if err := e.attachOrWait(cg); err != nil {
			if !slices.Contains(old.Intercept.Cgroups, cg) {
				attached = append(attached, cg)
			}
			for _, a := range attached {
				if derr := e.red.Detach(a); derr != nil {
					e.log.Warn("detach cgroup after a failed reload", "cgroup", a, "err", derr)
				}
			}
			e.mu.Lock()
			for _, a := range attached {
				delete(e.waiting, a)
			}
			e.mu.Unlock()
			restoreTargets()
			return fmt.Errorf("cgroup %s: %w; the old config stays in force", cg, err)
		}
		if !slices.Contains(old.Intercept.Cgroups, cg) {
			attached = append(attached, cg)
		}
	}
	e.mu.Lock()
	for cg := range e.waiting {
		if !want[cg] {
			delete(e.waiting, cg)
		}
	}
	e.mu.Unlock()
	for _, cg := range old.Intercept.Cgroups {
		if !want[cg] {
			if err := e.red.Detach(cg); err != nil {
				e.log.Warn("detach cgroup", "cgroup", cg, "err", err)
			}
		}
	}
	return nil
}

// prepareWebhook builds the approval webhook cfg asks for (none when it
// asks for none); apply installs it, and the console URL held clients
// are told.
func (e *Engine) prepareWebhook(cfg *config.Config) (apply func() (undo func()), err error) {
	var wh *approvals.Webhook
	if w := cfg.Policy.Webhook; w != nil {
		if wh, err = approvals.NewWebhook(w.URL, time.Duration(w.Timeout), w.SecretFile, e.log); err != nil {
			return nil, fmt.Errorf("policy.webhook: %w", err)
		}
		wh.ConsoleURL = cfg.Ship.Resolve().ConsoleURL
	}
	return func() (undo func()) {
		old := e.webhook.Swap(wh)
		oldConsole := e.broker.ConsoleURL()
		e.broker.SetConsoleURL(cfg.Ship.ConsoleURL)
		return func() {
			e.webhook.Store(old)
			e.broker.SetConsoleURL(oldConsole)
		}
	}, nil
}

// setWebhook (re)configures the approval webhook from cfg.
func (e *Engine) setWebhook(cfg *config.Config) error {
	apply, err := e.prepareWebhook(cfg)
	if err != nil {
		return err
	}
	apply()
	return nil
}
