package engine

import (
	"context"
	"log/slog"
	"time"

	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/identity/oidcjob"
)

// oidcFirstFetch bounds how long start and reload wait for the issuers'
// keys. Past it they go on: tokens stay claimed until the keys come, and
// claimed never opens a rule that asks for verified.
const oidcFirstFetch = 5 * time.Second

// startOIDC returns the verifier for c, started, with its first fetch of
// keys waited for (at most oidcFirstFetch); nil when no issuer is
// configured.
func startOIDC(c config.OIDCConfig, log *slog.Logger) (*oidcjob.Verifier, error) {
	if !c.Enabled() {
		return nil, nil
	}
	v, err := oidcjob.New(oidcjob.Options{Config: c, Logger: log})
	if err != nil {
		return nil, err
	}
	v.Start()
	ctx, cancel := context.WithTimeout(context.Background(), oidcFirstFetch)
	defer cancel()
	if err := v.WaitReady(ctx); err != nil {
		log.Warn("identity.oidc: starting without the keys of some issuers; their tokens stay claimed until a fetch succeeds", "err", err)
	}
	return v, nil
}

// setOIDC puts v in force in the resolver; it returns the verifier it
// replaced.
func (e *Engine) setOIDC(v *oidcjob.Verifier) (old *oidcjob.Verifier) {
	old = e.oidc
	e.oidc = v
	if v == nil {
		// a nil *Verifier in the interface would not be nil
		e.ids.SetWorkloadVerifier(nil)
	} else {
		e.ids.SetWorkloadVerifier(v)
	}
	return old
}

// prepareOIDC starts the verifier of cfg's identity.oidc when it differs
// from old's. The step swaps it in; done closes the verifier that is no
// longer in force once the reload succeeded or failed.
func (e *Engine) prepareOIDC(old, cfg *config.Config) (step *reloadStep, done func(ok bool), err error) {
	if cfg.Identity.OIDC.Equal(old.Identity.OIDC) {
		return nil, func(bool) {}, nil
	}
	v, err := startOIDC(cfg.Identity.OIDC, e.log)
	if err != nil {
		return nil, nil, err
	}
	var prev *oidcjob.Verifier
	step = &reloadStep{"identity.oidc", func() func() {
		prev = e.setOIDC(v)
		return func() { e.setOIDC(prev) }
	}}
	done = func(ok bool) {
		if ok {
			closeOIDC(prev)
		} else {
			closeOIDC(v)
		}
	}
	return step, done, nil
}

func closeOIDC(v *oidcjob.Verifier) {
	if v != nil {
		v.Close()
	}
}
