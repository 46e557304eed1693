package postgres

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/inspect/postgres/sqlclass"
	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/policy"
)

// TestCachedClassJudgedPerSession: the classifier is shared by every
// session of the handler, so what depends on a session (its server's
// version, its standard_conforming_strings) must be judged on the cached
// class each time, not cached with it.
func TestCachedClassJudgedPerSession(t *testing.T) {
	var h Handler
	old := &session{h: &h, serverMajor: 15}
	cur := &session{h: &h, serverMajor: 17}
	for _, text := range []string{"SELECT 0x1F", "SELECT 1_000", "SELECT JSON_SCALAR(1)"} {
		for i := 0; i < 2; i++ {
			// Twice: the second class comes from the cache.
			c := sqlclass.Merged(h.cls.Parse(text))
			if got := old.resolve(c); got.Kind != model.SQLKindUnknown {
				t.Errorf("%q on a PostgreSQL 15 server (pass %d): kind %s, want unknown", text, i, got.Kind)
			}
			if got := cur.resolve(c); got.Kind != "select" {
				t.Errorf("%q on a PostgreSQL 17 server (pass %d): kind %s, want select", text, i, got.Kind)
			}
		}
	}

	// A backslash in a string: the parser reads a SELECT and a DELETE
	// (standard_conforming_strings on); with it off, the server reads one
	// SELECT of a string. Whatever the cache holds, such a session must
	// refuse the text.
	text := `SELECT 'a\'; DELETE FROM t; --'`
	on, off := &session{h: &h, seg: 1}, &session{h: &h, seg: 1}
	off.scsOff.Store(true)
	for i := 0; i < 2; i++ {
		c := sqlclass.Merged(h.cls.Parse(text))
		if !c.Has("select") || !c.Has("delete") {
			t.Fatalf("the parser reads %q as %v (standard_conforming_strings on)", text, c.Kinds)
		}
		if r := off.guard(text); r == "" {
			t.Errorf("pass %d: %q passed the guard of a session with standard_conforming_strings off", i, text)
		}
		if r := on.guard(text); r != "" {
			t.Errorf("pass %d: %q refused with standard_conforming_strings on: %s", i, text, r)
		}
	}
}

// TestReloadDecidesAtOnce: a session keeps its decisions, but a reload
// changes the next statement's, in the same session, whatever protocol
// and shape it comes in.
func TestReloadDecidesAtOnce(t *testing.T) {
	head := "targets:\n  - {name: db, protocol: postgres, address: \"127.0.0.2:5432\", credentials: {user: app}}\npolicy:\n  default: allow\n  unknown_identity: allow\n"
	cfg := func(rules string) *config.Config {
		c, err := config.Parse("test.yaml", []byte(head+rules))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	pol := policy.MustNew(cfg(""))
	p := startProxy(t, proxyOpts{policy: pol})
	c := connect(t, p.dsn(""))
	ctx := context.Background()
	run := func(mode pgx.QueryExecMode, aid int) error {
		var n int
		return c.QueryRow(ctx, "SELECT count(*) FROM pg_class WHERE oid > $1", mode, aid).Scan(&n)
	}
	simple := func(aid int) error {
		_, err := c.Exec(ctx, fmt.Sprintf("SELECT count(*) FROM pg_class WHERE oid > %d", aid), pgx.QueryExecModeSimpleProtocol)
		return err
	}
	for i := 0; i < 3; i++ {
		for _, err := range []error{run(pgx.QueryExecModeCacheStatement, i), run(pgx.QueryExecModeExec, i), simple(i)} {
			if err != nil {
				t.Fatalf("before the reload: %v", err)
			}
		}
	}
	if err := pol.SetConfig(cfg("  rules:\n    - {name: no-pg-class, match: {operation: {tables: [pg_class]}}, action: deny}\n")); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		for name, err := range map[string]error{"prepared": run(pgx.QueryExecModeCacheStatement, i), "extended": run(pgx.QueryExecModeExec, i), "simple": simple(i + 10)} {
			if err == nil || !strings.Contains(err.Error(), "no-pg-class") {
				t.Errorf("%s after the reload: %v, want a denial by no-pg-class", name, err)
			}
		}
	}
}
