package postgres

import (
	"testing"

	"github.com/interlock/interlock/inspect/postgres/sqlclass"
	"github.com/interlock/interlock/model"
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
