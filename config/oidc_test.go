package config

import (
	"strings"
	"testing"
	"time"
)

// TestOIDCParse: every key is read, the defaults fill what is left out,
// and a rule's identity.verified is a map of claim names to globs.
func TestOIDCParse(t *testing.T) {
	src := `identity:
  oidc:
    issuers:
      - issuer: https://token.actions.githubusercontent.com
        audience: interlock
        platform: github
      - issuer: http://127.0.0.1:8080/gitlab
        audience: interlock-ci
        platform: gitlab
        jwks_url: http://127.0.0.1:8080/gitlab/jwks
    token_env: [INTERLOCK_ID_TOKEN, GITLAB_ID_TOKEN]
    github_request: true
    refresh: 10m
policy:
  rules:
    - name: billing-ci
      action: allow
      match:
        identity:
          verified: {repository: acme/billing, ref: "refs/heads/*"}
`
	cfg, err := Parse("o.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	o := cfg.Identity.OIDC
	if len(o.Issuers) != 2 || o.Issuers[1] != (OIDCIssuer{Issuer: "http://127.0.0.1:8080/gitlab", Audience: "interlock-ci",
		Platform: "gitlab", JWKSURL: "http://127.0.0.1:8080/gitlab/jwks"}) {
		t.Errorf("issuers = %+v", o.Issuers)
	}
	if got := o.TokenVars(); strings.Join(got, ",") != "INTERLOCK_ID_TOKEN,GITLAB_ID_TOKEN" {
		t.Errorf("TokenVars() = %v", got)
	}
	if !o.GitHubRequest || o.RefreshInterval() != 10*time.Minute {
		t.Errorf("github_request, refresh = %v, %v", o.GitHubRequest, o.RefreshInterval())
	}
	if gh, ok := o.GitHubIssuer(); !ok || gh.Audience != "interlock" {
		t.Errorf("GitHubIssuer() = %+v, %v", gh, ok)
	}
	v := cfg.Policy.Rules[0].Match.Identity.Verified
	if len(v) != 2 || v["repository"] != "acme/billing" || v["ref"] != "refs/heads/*" {
		t.Errorf("verified = %v", v)
	}

	def, err := Parse("d.yaml", []byte("{}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if d := def.Identity.OIDC; d.Enabled() || strings.Join(d.TokenVars(), ",") != DefaultTokenEnv || d.RefreshInterval() != time.Hour {
		t.Errorf("defaults: enabled %v, token vars %v, refresh %v", d.Enabled(), d.TokenVars(), d.RefreshInterval())
	}
	if !o.Equal(cfg.Identity.OIDC) || o.Equal(def.Identity.OIDC) {
		t.Errorf("Equal does not tell the two configs apart")
	}
}

// TestOIDCValidate: each mistake is reported on its key, saying what to
// write.
func TestOIDCValidate(t *testing.T) {
	const gh = "      - {issuer: https://token.actions.githubusercontent.com, audience: interlock, platform: github}\n"
	tests := []struct {
		name, src, key, want string
	}{
		{"no audience", "identity:\n  oidc:\n    issuers:\n      - {issuer: https://gitlab.com, platform: gitlab}\n",
			"identity.oidc.issuers[0].audience", "is required"},
		{"no issuer", "identity:\n  oidc:\n    issuers:\n      - {audience: interlock, platform: gitlab}\n",
			"identity.oidc.issuers[0].issuer", "is required"},
		{"http issuer", "identity:\n  oidc:\n    issuers:\n      - {issuer: http://gitlab.example, audience: a, platform: gitlab}\n",
			"identity.oidc.issuers[0].issuer", "write https://"},
		{"issuer with query", "identity:\n  oidc:\n    issuers:\n      - {issuer: \"https://gitlab.example/?x=1\", audience: a, platform: gitlab}\n",
			"identity.oidc.issuers[0].issuer", "no user, query or fragment"},
		{"bad platform", "identity:\n  oidc:\n    issuers:\n      - {issuer: https://ci.example, audience: a, platform: jenkins}\n",
			"identity.oidc.issuers[0].platform", "is not one of: github, gitlab, buildkite, generic"},
		{"no platform", "identity:\n  oidc:\n    issuers:\n      - {issuer: https://ci.example, audience: a}\n",
			"identity.oidc.issuers[0].platform", "must not be empty"},
		{"duplicate issuer", "identity:\n  oidc:\n    issuers:\n" + gh + gh,
			"identity.oidc.issuers[1].issuer", "already issuers[0]"},
		{"audience with space", "identity:\n  oidc:\n    issuers:\n      - {issuer: https://ci.example, audience: a b, platform: generic}\n",
			"identity.oidc.issuers[0].audience", "one word"},
		{"bad jwks url", "identity:\n  oidc:\n    issuers:\n      - {issuer: https://ci.example, audience: a, platform: generic, jwks_url: keys.json}\n",
			"identity.oidc.issuers[0].jwks_url", "not an absolute URL"},
		{"bad env name", "identity:\n  oidc:\n    issuers:\n" + gh + "    token_env: [MY-TOKEN]\n",
			"identity.oidc.token_env[0]", "not an environment variable name"},
		{"env twice", "identity:\n  oidc:\n    issuers:\n" + gh + "    token_env: [A, A]\n",
			"identity.oidc.token_env[1]", "listed twice"},
		{"github request without github", "identity:\n  oidc:\n    issuers:\n      - {issuer: https://gitlab.com, audience: a, platform: gitlab}\n    github_request: true\n",
			"identity.oidc.github_request", "platform: github"},
		{"request hosts: a lone star", "identity:\n  oidc:\n    issuers:\n" + gh + "    github_request: true\n    github_request_hosts: ['*']\n",
			"identity.oidc.github_request_hosts[0]", "lone *"},
		{"request hosts: a URL", "identity:\n  oidc:\n    issuers:\n" + gh + "    github_request: true\n    github_request_hosts: ['https://x.example/']\n",
			"identity.oidc.github_request_hosts[0]", "not a host name glob"},
		{"request hosts without the request", "identity:\n  oidc:\n    issuers:\n" + gh + "    github_request_hosts: [x.example]\n",
			"identity.oidc.github_request_hosts", "no effect"},
		{"refresh too short", "identity:\n  oidc:\n    issuers:\n" + gh + "    refresh: 1s\n",
			"identity.oidc.refresh", "out of range"},
		{"token env without issuers", "identity:\n  oidc:\n    token_env: [A]\n",
			"identity.oidc.issuers", "no token would ever be verified"},
		{"unknown claim", "identity:\n  oidc:\n    issuers:\n" + gh +
			"policy:\n  rules:\n    - {name: r, action: allow, match: {identity: {verified: {repostory: acme/*}}}}\n",
			`policy.rules[0].match.identity.verified.repostory`, "did you mean repository?"},
		{"empty verified", "identity:\n  oidc:\n    issuers:\n" + gh +
			"policy:\n  rules:\n    - {name: r, action: allow, match: {identity: {verified: {}}}}\n",
			"policy.rules[0].match.identity.verified", "names no claim"},
		{"bad glob", "identity:\n  oidc:\n    issuers:\n" + gh +
			"policy:\n  rules:\n    - {name: r, action: allow, match: {identity: {verified: {ref: \"[\"}}}}\n",
			"policy.rules[0].match.identity.verified.ref", "not a valid glob"},
		{"verified without issuers",
			"policy:\n  rules:\n    - {name: r, action: allow, match: {identity: {verified: {repository: a/b}}}}\n",
			"policy.rules[0].match.identity.verified", "can never match"},
		{"verified not a map", "identity:\n  oidc:\n    issuers:\n" + gh +
			"policy:\n  rules:\n    - {name: r, action: allow, match: {identity: {verified: [repository]}}}\n",
			"policy.rules[0].match.identity.verified", "must be a mapping of names to values"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("o.yaml", []byte(tt.src))
			if err == nil {
				t.Fatalf("no error for\n%s", tt.src)
			}
			want := tt.key + ": "
			if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v\nwant one on %s containing %q", err, tt.key, tt.want)
			}
		})
	}
}

// TestOIDCGenericClaims: with a generic issuer, a rule may name a claim
// as the token names it; without one, only interlock's names pass.
func TestOIDCGenericClaims(t *testing.T) {
	rule := "policy:\n  rules:\n    - {name: r, action: allow, match: {identity: {verified: {namespace_path: acme}}}}\n"
	generic := "identity:\n  oidc:\n    issuers:\n      - {issuer: https://ci.example, audience: a, platform: generic}\n"
	if _, err := Parse("g.yaml", []byte(generic+rule)); err != nil {
		t.Errorf("generic issuer: %v", err)
	}
	gitlab := "identity:\n  oidc:\n    issuers:\n      - {issuer: https://gitlab.com, audience: a, platform: gitlab}\n"
	if _, err := Parse("g.yaml", []byte(gitlab+rule)); err == nil || !strings.Contains(err.Error(), "not a workload claim") {
		t.Errorf("gitlab issuer: error = %v, want not a workload claim", err)
	}
}
