package engine

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/inspect"
	"github.com/interlock/interlock/model"
)

// fakeReloader is a handler whose settings are a string: what config it
// serves, so a test sees which config each handler is left with.
type fakeReloader struct {
	serving string
	fail    error
}

func (f *fakeReloader) Serve(context.Context, net.Conn, *inspect.Session) inspect.Outcome {
	return inspect.Outcome{}
}

func (f *fakeReloader) PrepareReload(cfg *config.Config) (func() func(), error) {
	if f.fail != nil {
		return nil, f.fail
	}
	next := cfg.StateDir // stands for "the settings of cfg"
	return func() func() {
		old := f.serving
		f.serving = next
		return func() { f.serving = old }
	}, nil
}

func fakeHandlers(failing model.Protocol) map[model.Protocol]inspect.Handler {
	hs := map[model.Protocol]inspect.Handler{}
	for _, p := range []model.Protocol{model.ProtoPostgres, model.ProtoSSH, model.ProtoTCP} {
		f := &fakeReloader{serving: "old"}
		if p == failing {
			f.fail = errors.New("credential file missing")
		}
		hs[p] = f
	}
	return hs
}

func serving(hs map[model.Protocol]inspect.Handler) map[model.Protocol]string {
	out := map[model.Protocol]string{}
	for p, h := range hs {
		out[p] = h.(*fakeReloader).serving
	}
	return out
}

// TestReloadIsAllOrNothing: one handler's bad settings, or the kernel side
// refusing the new targets, leave every handler on the old config; only a
// reload whose every part succeeds moves them all.
func TestReloadIsAllOrNothing(t *testing.T) {
	cfg := &config.Config{StateDir: "new"}
	intercepted := func() error { return nil }

	for _, failing := range []model.Protocol{model.ProtoPostgres, model.ProtoSSH, model.ProtoTCP} {
		// Map order varies between runs: run each case several times so a
		// reload that applied handlers as it went would be caught.
		for range 20 {
			hs := fakeHandlers(failing)
			steps, err := prepareHandlers(hs, cfg)
			if err == nil {
				err = commitReload(steps, intercepted)
			}
			if err == nil || !strings.Contains(err.Error(), string(failing)) || !strings.Contains(err.Error(), "old config stays") {
				t.Fatalf("%s failing: err = %v, want one naming %s and saying the old config stays", failing, err, failing)
			}
			for p, s := range serving(hs) {
				if s != "old" {
					t.Fatalf("%s failing: %s serves %q after a failed reload, want old", failing, p, s)
				}
			}
		}
	}

	hs := fakeHandlers("")
	steps, err := prepareHandlers(hs, cfg)
	if err != nil {
		t.Fatal(err)
	}
	kernelErr := errors.New("target db does not resolve")
	var seen map[model.Protocol]string
	err = commitReload(steps, func() error {
		seen = serving(hs) // handlers know the new targets before the kernel sends them any
		return kernelErr
	})
	if !errors.Is(err, kernelErr) {
		t.Fatalf("kernel refusal: err = %v, want %v", err, kernelErr)
	}
	for p, s := range seen {
		if s != "new" {
			t.Errorf("%s served %q while the kernel side moved, want new", p, s)
		}
	}
	for p, s := range serving(hs) {
		if s != "old" {
			t.Errorf("%s serves %q after the kernel side failed, want old", p, s)
		}
	}

	if err := commitReload(steps, intercepted); err != nil {
		t.Fatal(err)
	}
	for p, s := range serving(hs) {
		if s != "new" {
			t.Errorf("%s serves %q after a good reload, want new", p, s)
		}
	}
}
