package policy

import (
	"testing"

	"github.com/interlock/interlock/model"
)

// TestVerifiedWorkload: identity.verified matches only a workload whose
// token was verified, with every named claim matching. Without a verified
// token (claims from the environment, a token that failed, none, a
// process that could not be read) the job is unknown: the allow rule does
// not apply, and the deny rule does, so a fork's job cannot slip past it
// by showing no token. A verified token of another repository is known
// not to be a fork's.
func TestVerifiedWorkload(t *testing.T) {
	p := MustNew(parse(t, `
identity:
  oidc:
    issuers:
      - {issuer: https://token.actions.githubusercontent.com, audience: interlock, platform: github}
targets:
  - {name: db, protocol: postgres, address: "127.0.0.2:5432", credentials: {user: app}}
policy:
  default: deny
  unknown_identity: allow
  rules:
    - name: billing-deploys
      match: {identity: {verified: {repository: acme/billing, ref: "refs/heads/*"}}, operation: {kinds: [insert]}}
      action: allow
    - name: no-drop-from-forks
      match: {identity: {verified: {repository: "fork/*"}}, operation: {kinds: [drop_table]}}
      action: deny
    - {name: drop-ok, match: {operation: {kinds: [drop_table]}}, action: allow}
`))
	workload := func(prov model.Provenance, repo string) *model.Workload {
		return &model.Workload{Provenance: prov, Platform: "github",
			Claims: map[string]string{"repository": repo, "ref": "refs/heads/main"}}
	}
	with := func(w *model.Workload, proc bool) model.Origin {
		var pf *model.ProcFacts
		if proc {
			pf = &model.ProcFacts{Exe: "/usr/bin/psql"}
		}
		o := origin("db", 1000, pf, map[string]string{"GITHUB_REPOSITORY": "acme/billing"})
		o.Identity.Workload = w
		if !proc {
			o.Identity.ProcError = "process exited before it could be inspected"
		}
		return o
	}
	failed := workload(model.ProvClaimed, "acme/billing")
	failed.Error = "INTERLOCK_ID_TOKEN: expired at 2026-01-01T00:00:00Z"
	noRef := workload(model.ProvVerified, "acme/billing")
	delete(noRef.Claims, "ref")
	tests := []struct {
		name string
		o    model.Origin
		kind string
		want model.Action
		rule string
	}{
		{"verified billing", with(workload(model.ProvVerified, "acme/billing"), true), "insert", model.Allow, "billing-deploys"},
		{"verified other repo", with(workload(model.ProvVerified, "acme/web"), true), "insert", model.Deny, "policy.default"},
		{"verified without ref", with(noRef, true), "insert", model.Deny, "policy.default"},
		{"claimed billing", with(workload(model.ProvClaimed, "acme/billing"), true), "insert", model.Deny, "policy.default"},
		{"token failed", with(failed, true), "insert", model.Deny, "policy.default"},
		{"no workload", with(nil, true), "insert", model.Deny, "policy.default"},
		{"process unreadable", with(nil, false), "insert", model.Deny, "policy.default"},
		{"verified fork drops", with(workload(model.ProvVerified, "fork/billing"), true), "drop_table", model.Deny, "no-drop-from-forks"},
		{"claimed fork drops", with(workload(model.ProvClaimed, "fork/billing"), true), "drop_table", model.Deny, "no-drop-from-forks"},
		{"a fork hiding its token drops", with(nil, true), "drop_table", model.Deny, "no-drop-from-forks"},
		{"a failed token drops", with(failed, true), "drop_table", model.Deny, "no-drop-from-forks"},
		{"verified billing drops", with(workload(model.ProvVerified, "acme/billing"), true), "drop_table", model.Allow, "drop-ok"},
		{"unreadable drops", with(nil, false), "drop_table", model.Deny, "no-drop-from-forks"},
	}
	for _, tt := range tests {
		d := p.Evaluate(tt.o, pg(tt.kind, nil, false, false))
		if d.Action != tt.want || d.Rule != tt.rule {
			t.Errorf("%s: %s = %s by %q (%s), want %s by %q", tt.name, tt.kind, d.Action, d.Rule, d.Reason, tt.want, tt.rule)
		}
	}
}
