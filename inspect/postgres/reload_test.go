package postgres

import (
	"io"
	"log/slog"
	"testing"

	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/inspect"
	"github.com/interlock/interlock/model"
)

// TestPrepareReloadChangesNothingUntilApplied: the engine prepares every
// handler before it applies any, so preparing must leave the targets in
// force, apply must install the new ones, and undo must put the old back.
func TestPrepareReloadChangesNothingUntilApplied(t *testing.T) {
	t.Setenv("INTERLOCK_TEST_RELOAD_PW", "pw")
	target := func(name, user string) config.TargetConfig {
		return config.TargetConfig{Name: name, Protocol: model.ProtoPostgres, Address: "127.0.0.2:5432",
			Credentials: &config.Credentials{User: user, PasswordEnv: "INTERLOCK_TEST_RELOAD_PW"}}
	}
	cfg := config.Default()
	cfg.StateDir = t.TempDir()
	cfg.Targets = []config.TargetConfig{target("db", "old_user")}
	h, err := New(Options{Deps: inspect.Deps{Config: cfg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}})
	if err != nil {
		t.Fatal(err)
	}
	next := config.Default()
	next.StateDir = cfg.StateDir
	next.Targets = []config.TargetConfig{target("db", "new_user"), target("db2", "new_user")}
	apply, err := h.PrepareReload(next)
	if err != nil {
		t.Fatal(err)
	}
	if got := h.target("db").user; got != "old_user" || h.target("db2") != nil {
		t.Fatalf("after prepare: db logs in as %q, db2 known: %v; want the old targets in force", got, h.target("db2") != nil)
	}
	undo := apply()
	if got := h.target("db").user; got != "new_user" || h.target("db2") == nil {
		t.Fatalf("after apply: db logs in as %q, db2 known: %v; want the new targets", got, h.target("db2") != nil)
	}
	undo()
	if got := h.target("db").user; got != "old_user" || h.target("db2") != nil {
		t.Fatalf("after undo: db logs in as %q, db2 known: %v; want the old targets back", got, h.target("db2") != nil)
	}

	bad := config.Default()
	bad.StateDir = cfg.StateDir
	bad.Targets = []config.TargetConfig{target("db", "new_user")}
	bad.Targets[0].Credentials.PasswordEnv = "INTERLOCK_TEST_RELOAD_UNSET_4711"
	if _, err := h.PrepareReload(bad); err == nil {
		t.Fatal("a target whose password is not set prepared without an error")
	}
	if got := h.target("db").user; got != "old_user" {
		t.Errorf("a failed prepare changed db's user to %q", got)
	}
}
