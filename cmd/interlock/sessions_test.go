package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/interlock/interlock/journal"
	"github.com/interlock/interlock/model"
)

func u32(v uint32) *uint32 { return &v }

// The table names each session's principals with their provenance; a
// claimed workload's name is the client's and cannot pass for a verified
// one, however long it is.
func TestSessionsListShowsPrincipals(t *testing.T) {
	now := time.Now()
	list := []journal.SessionSummary{
		{ID: "s1", Target: "db", Open: now, Exe: "/usr/bin/psql",
			Human:    &model.Human{LoginUID: u32(1000), LoginUser: "alice", Chain: []model.UserHop{{Via: "sudo", FromUID: 1000, FromUser: "alice", ToUser: "root"}}},
			Workload: &model.Workload{Provenance: model.ProvVerified, Claims: map[string]string{"repository": "acme/billing", "ref": "refs/heads/main"}},
			Agent:    &model.Agent{Name: "claude", MatchedBy: "exe", Provenance: model.ProvProc}},
		{ID: "s2", Target: "db", Open: now, Exe: "/usr/bin/psql",
			Human:    &model.Human{NoLogin: true},
			Workload: &model.Workload{Provenance: model.ProvClaimed, Error: "signature invalid", Claims: map[string]string{"repository": "acme/" + strings.Repeat("x", 60) + " (verified)\x1b[2K"}},
			Agent:    &model.Agent{Name: "codex", MatchedBy: "cmdline", Provenance: model.ProvClaimed}},
		{ID: "s3", Target: "db", Open: now},
	}
	var b bytes.Buffer
	if err := printSessions(&b, list); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	noRawControl(t, out)
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 5 || !strings.Contains(lines[0], "HUMAN") || !strings.Contains(lines[0], "WORKLOAD") || !strings.Contains(lines[0], "AGENT") {
		t.Fatalf("want a header, three rows and a note:\n%s", out)
	}
	for i, want := range [][]string{
		{" alice ", " acme/billing@refs/heads/main (verified) ", " claude "},
		{" no login ", `"acme/` + strings.Repeat("x", 35) + `…" (claimed, token refused) `, ` codex (claimed) `},
		{" -  ", " -  "},
	} {
		for _, w := range want {
			if !strings.Contains(lines[1+i], w) {
				t.Errorf("row %d lacks %q:\n%s", i+1, w, out)
			}
		}
	}
	if strings.Count(out, "(verified)") != 1 || !strings.Contains(lines[4], "--json") {
		t.Errorf("the claimed name reads as verified, or its cut is not said:\n%s", out)
	}
}
