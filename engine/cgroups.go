package engine

import (
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"time"

	"github.com/interlock/interlock/redirector"
)

// attachOrWait attaches to a cgroup, or, if it does not exist yet (a CI
// runner's service cgroup before the service first starts, after a boot),
// remembers it: watchCgroups attaches it as soon as it appears. Other
// errors are returned.
func (e *Engine) attachOrWait(cg string) error {
	// Expect attaches it the moment it appears, and has the guard refuse
	// it until then; the poll in watchCgroups is the fallback.
	if redirector.IsPattern(cg) {
		// Only the placer's watch finds a pattern's cgroups.
		if err := e.red.Expect(cg); err != nil {
			return fmt.Errorf("watch for cgroups matching %s: %w", cg, err)
		}
		return nil
	}
	if err := e.red.Expect(cg); err != nil {
		e.log.Warn("cannot watch for the cgroup to appear; polling for it instead", "cgroup", cg, "err", err)
	}
	err := e.red.Attach(cg)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	e.mu.Lock()
	first := e.waiting == nil || !e.waiting[cg]
	if e.waiting == nil {
		e.waiting = map[string]bool{}
	}
	e.waiting[cg] = true
	e.mu.Unlock()
	if first {
		e.log.Warn("cgroup does not exist yet; it is attached the moment it appears, and its connects to targets "+
			"are refused until then", "cgroup", cg)
	}
	return nil
}

// watchCgroups attaches waiting cgroups when they appear.
func (e *Engine) watchCgroups() {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-t.C:
		}
		// A configured cgroup removed (its service stopped) or made anew
		// lost its programs with the old directory: wait for it again.
		for _, cg := range e.red.Stale() {
			e.mu.Lock()
			configured := slices.Contains(e.cfg.Intercept.Cgroups, cg)
			e.mu.Unlock()
			if !configured {
				continue
			}
			if err := e.red.Detach(cg); err != nil {
				e.log.Debug("forget a removed cgroup's links", "cgroup", cg, "err", err)
			}
			if err := e.attachOrWait(cg); err != nil {
				e.log.Error("re-attach a cgroup that was made anew", "cgroup", cg, "err", err)
			} else {
				e.log.Info("cgroup was removed or made anew; re-attached or waiting for it", "cgroup", cg)
			}
		}
		e.mu.Lock()
		var cgs []string
		for cg := range e.waiting {
			cgs = append(cgs, cg)
		}
		e.mu.Unlock()
		for _, cg := range cgs {
			err := e.red.Attach(cg)
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			e.mu.Lock()
			delete(e.waiting, cg)
			e.mu.Unlock()
			if err != nil {
				e.log.Error("attach to a cgroup that appeared", "cgroup", cg, "err", err)
			} else {
				e.log.Info("cgroup appeared; intercepting it", "cgroup", cg)
			}
		}
	}
}
