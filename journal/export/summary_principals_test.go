package export

import (
	"bytes"
	"strings"
	"testing"

	"github.com/interlock/interlock/journal/evidence"
	"github.com/interlock/interlock/model"
)

func u32(v uint32) *uint32 { return &v }

// Only a workload recorded as verified gets the verified badge; a claimed
// one, one with a provenance this build does not know, and an older
// journal's environment claims are labelled claimed, their text escaped.
func TestSummaryPrincipals(t *testing.T) {
	rows := []*sessionRow{
		{ID: "human", principals: principals{
			Human: &model.Human{LoginUID: u32(1000), LoginUser: "alice", SessionID: u32(4), KeyFingerprint: "SHA256:abc",
				Chain: []model.UserHop{{PID: 9, Via: "sudo", FromUID: 1000, FromUser: "alice", ToUID: 0, ToUser: "root"}}},
			Agent: &model.Agent{Name: "claude", PID: 77, Exe: "/usr/bin/claude", MatchedBy: "exe", Provenance: model.ProvProc}}},
		{ID: "verified", principals: principals{Workload: &model.Workload{Provenance: model.ProvVerified, Issuer: "https://token.actions.githubusercontent.com",
			Claims: map[string]string{"repository": "acme/billing", "ref": "refs/heads/main"}}}},
		{ID: "claimed", principals: principals{Workload: &model.Workload{Provenance: model.ProvClaimed, Error: "signature <b>invalid</b>\x1b[2K",
			Claims: map[string]string{"repository": "evil/x\u202e (verified)"}}}},
		{ID: "odd", principals: principals{Workload: &model.Workload{Provenance: "verified<b>"}}},
		{ID: "legacy", principals: principals{EnvClaims: []string{"GITHUB_REPOSITORY=acme/old\x1b[1A"}}},
	}
	var b bytes.Buffer
	err := summaryTemplate.Execute(&b, map[string]any{
		"M": &evidence.Manifest{}, "Sessions": rows, "SessionCount": len(rows), "MaxRows": maxRows,
		"Counts": struct{ Denials, Approvals, Masks int }{},
	})
	if err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, bad := range []string{"\x1b", "\u202e", "<b>invalid", "verified<b>"} {
		if strings.Contains(out, bad) {
			t.Errorf("summary.html holds a raw %q", bad)
		}
	}
	if n := strings.Count(out, `data-provenance="verified"`); n != 1 {
		t.Errorf("%d verified badges, want 1 (the verified workload's)", n)
	}
	if n := strings.Count(out, `data-provenance="claimed"`); n != 3 {
		t.Errorf("%d claimed badges, want 3", n)
	}
	row := func(id string) string {
		i := strings.Index(out, `<tr data-session="`+id+`">`)
		if i < 0 {
			t.Fatalf("no row %s", id)
		}
		r, _, _ := strings.Cut(out[i:], "</tr>")
		return r
	}
	for id, wants := range map[string][]string{
		"human":    {"<b>alice</b>", "login uid 1000 · session 4", "alice → root via sudo", "key SHA256:abc", "<b>claude</b>", "matched by exe, pid 77 /usr/bin/claude"},
		"verified": {"acme/billing@refs/heads/main", "issuer https://token.actions.githubusercontent.com", "ref=refs/heads/main"},
		"claimed":  {`&#34;evil/x\u202e (verified)&#34;`, "claimed by the process:", `token refused: signature &lt;b&gt;invalid&lt;/b&gt;\x1b[2K`},
		"odd":      {`&#34;verified&lt;b&gt;&#34;`},
		"legacy":   {"CI environment, claimed by the process:", `GITHUB_REPOSITORY=acme/old\x1b[1A`},
	} {
		r := row(id)
		for _, w := range wants {
			if !strings.Contains(r, w) {
				t.Errorf("row %s lacks %q:\n%s", id, w, r)
			}
		}
	}
}
