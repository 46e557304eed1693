package engine

import (
	"log/slog"
	"testing"

	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/identity"
	"github.com/interlock/interlock/internal/testkit/oidctest"
)

// TestReloadOIDC: a reload that changes identity.oidc puts a new
// verifier in force and its undo puts the old one back; one that leaves
// it alone keeps the verifier (and its fetched keys).
func TestReloadOIDC(t *testing.T) {
	is := oidctest.New(t)
	e := &Engine{ids: identity.NewResolver(identity.ResolverOptions{ProcRoot: t.TempDir()}), log: slog.New(slog.DiscardHandler)}
	t.Cleanup(func() { closeOIDC(e.oidc) })
	old := config.Default()
	cfg := config.Default()
	cfg.Identity.OIDC = config.OIDCConfig{Issuers: []config.OIDCIssuer{{Issuer: is.URL, Audience: "interlock", Platform: "github"}}}

	step, done, err := e.prepareOIDC(old, cfg)
	if err != nil || step == nil {
		t.Fatalf("prepareOIDC = %v, %v; want a step", step, err)
	}
	if is.KeysFetched() == 0 {
		t.Errorf("the new verifier did not fetch the issuer's keys before it was put in force")
	}
	undo := step.apply()
	if e.oidc == nil {
		t.Fatal("no verifier in force after apply")
	}
	undo()
	if e.oidc != nil {
		t.Errorf("undo left %p in force, want none", e.oidc)
	}
	done(false)

	step, done, err = e.prepareOIDC(old, cfg)
	if err != nil {
		t.Fatal(err)
	}
	step.apply()
	done(true)
	inForce := e.oidc
	same := *cfg
	if step, _, err := e.prepareOIDC(cfg, &same); err != nil || step != nil {
		t.Errorf("prepareOIDC with the same identity.oidc = %v, %v; want no step", step, err)
	}
	if e.oidc != inForce {
		t.Errorf("the verifier changed")
	}
}
