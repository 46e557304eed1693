package sessionview

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/interlock/interlock/model"
)

func u32(v uint32) *uint32 { return &v }

func TestPrincipalsText(t *testing.T) {
	alice := &model.Human{LoginUID: u32(1000), LoginUser: "alice", SessionID: u32(7), Provenance: model.ProvProc,
		Chain: []model.UserHop{
			{PID: 10, Via: "sudo", FromUID: 1000, FromUser: "alice", ToUID: 0, ToUser: "root"},
			{PID: 11, Via: "su", FromUID: 0, FromUser: "root", ToUID: 70, ToUser: "postgres"},
			{PID: 12, Via: "setpriv", FromUID: 5, ToUID: 6},
		}}
	verified := &model.Workload{Provenance: model.ProvVerified, Platform: "github",
		Claims: map[string]string{"repository": "acme/billing", "ref": "refs/heads/main"}}
	claimed := &model.Workload{Provenance: model.ProvClaimed, Platform: "github", Error: "token expired",
		Claims: map[string]string{"repository": "acme/x (verified)\x1b[2K", "ref": "main"}}
	for _, c := range []struct{ got, want string }{
		{LoginText(nil), ""},
		{LoginText(&model.Human{NoLogin: true}), "no login"},
		{LoginText(&model.Human{LoginUID: u32(1001)}), "uid 1001"},
		{LoginText(alice), "alice"},
		{ChainText(alice), "alice → root via sudo → postgres via su, uid 5 → uid 6 via setpriv"},
		{HumanText(alice), "alice (login uid 1000, session 7), alice → root via sudo → postgres via su, uid 5 → uid 6 via setpriv"},
		{WorkloadText(verified, 0), "acme/billing@refs/heads/main (verified)"},
		// The claimed name cannot pass for interlock's words: it is
		// quoted, its escape shown, and the provenance comes after it.
		{WorkloadText(claimed, 0), `"acme/x (verified)\x1b[2K@main" (claimed), token refused: "token expired"`},
		{WorkloadText(verified, 8), `"acme/bil…" (verified)`},
		{WorkloadText(&model.Workload{Issuer: "https://token.example"}, 0), "https://token.example (unknown)"},
		{AgentText(&model.Agent{Name: "claude", MatchedBy: "exe", Provenance: model.ProvProc}), "claude"},
		{AgentText(&model.Agent{Name: "codex", MatchedBy: "cmdline", Provenance: model.ProvClaimed}), "codex (claimed)"},
		{AgentDetail(&model.Agent{Name: "claude", PID: 42, Exe: "/usr/bin/claude", MatchedBy: "exe"}), "matched by exe, pid 42 /usr/bin/claude"},
	} {
		if c.got != c.want {
			t.Errorf("got  %q\nwant %q", c.got, c.want)
		}
	}
}

// sessions show names the principals on the session's open line.
func TestDescribeOpenNamesPrincipals(t *testing.T) {
	var ev Event
	ev.Kind = model.KindSessionOpen
	ev.Data = mustJSON(t, model.SessionOpen{Target: model.Target{Name: "db", Protocol: model.ProtoPostgres},
		Identity: model.Identity{
			Human:    &model.Human{LoginUID: u32(1000), LoginUser: "alice"},
			Workload: &model.Workload{Provenance: model.ProvClaimed, Claims: map[string]string{"repository": "acme/x"}},
			Agent:    &model.Agent{Name: "claude", PID: 3, MatchedBy: "exe"},
		}})
	got := describe(ev)
	for _, want := range []string{", human alice (login uid 1000)", ", workload acme/x (claimed)", ", agent claude (matched by exe, pid 3)"} {
		if !strings.Contains(got, want) {
			t.Errorf("%q lacks %q", got, want)
		}
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
