package e2e

// Issue 16, the workload: a CI job's OIDC ID token in the environment of a
// process in an intercepted cgroup, verified by the daemon against an
// issuer served by the test on loopback, journaled in session.open and
// matched by a rule's identity.verified.

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/interlock/interlock/internal/testkit/oidctest"
	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/test/e2e/pgtest"
)

const oidcPolicy = `identity:
  oidc:
    issuers:
      - {issuer: %s, audience: interlock, platform: github}
    github_request: true
    github_request_hosts: [127.0.0.1]
    refresh: 1m
policy:
  default: deny
  rules:
    - name: billing-ci
      match: {identity: {verified: {repository: acme/billing, ref: "refs/heads/*"}}}
      action: allow
`

// TestIdentityOIDC: a valid GitHub-shaped token makes the session's
// workload verified and the verified rule allows it while the default
// denies; every bad token falls back to claimed (the CI variables'
// claims, the reason recorded) and the rule does not match; the GitHub
// request flow asks the job's endpoint with its bearer token for
// interlock's audience. The tokens are nowhere in the journal.
func TestIdentityOIDC(t *testing.T) {
	srv := requirePG(t)
	is := oidctest.New(t)
	stranger := oidctest.New(t)
	cgPath, cgDir := makeCgroup(t, "oidc")
	e := newEnv(t, []target{pgTarget(t, "db", srv.Addr(), pgtest.AppPassword, "")},
		fmt.Sprintf("intercept:\n  cgroups: [%s]\n%s", cgPath, noRateLimits)+fmt.Sprintf(oidcPolicy, is.URL))
	d := e.startDaemon()

	// psql runs in the intercepted cgroup with the job's environment:
	// the CI variables always claim acme/billing, whatever the token.
	psql := func(t *testing.T, tag string, env ...string) (out, stderr string, so model.SessionOpen) {
		t.Helper()
		before := len(entriesOf[model.SessionOpen](e, model.KindSessionOpen))
		cmd := inCgroup(t, cgDir, filepath.Join(srv.BinDir, "psql"), "-X", "-A", "-t", conninfo(srv, "sslmode=disable"),
			"-c", "SELECT '"+tag+"'")
		cmd.Env = append([]string{"PATH=/usr/bin:/bin", "GITHUB_ACTIONS=true", "GITHUB_REPOSITORY=acme/billing", "GITHUB_REF=refs/heads/main"}, env...)
		out, stderr, _ = runCmd(t, cmd)
		var opens []model.SessionOpen
		waitFor(t, func() bool {
			opens = entriesOf[model.SessionOpen](e, model.KindSessionOpen)
			return len(opens) > before
		})
		return out, stderr, opens[len(opens)-1]
	}
	soon := time.Now().Add(10 * time.Minute)
	good := is.Sign(t, oidctest.GitHubClaims(is.URL, "interlock", "acme/billing", soon))
	tokens := []string{good}

	t.Run("verified token allows", func(t *testing.T) {
		out, stderr, so := psql(t, "verified-ok", "INTERLOCK_ID_TOKEN="+good)
		if !strings.Contains(out, "verified-ok") {
			t.Errorf("psql with a valid token: %q %q", out, stderr)
		}
		w := so.Identity.Workload
		if w == nil || w.Provenance != model.ProvVerified || w.Claims["repository"] != "acme/billing" || w.Issuer != is.URL ||
			w.TokenSource != "INTERLOCK_ID_TOKEN" || w.Platform != "github" || w.ExpiresNS != soon.Truncate(time.Second).UnixNano() {
			t.Errorf("session.open workload = %+v, want verified acme/billing from INTERLOCK_ID_TOKEN", w)
		}
		if _, ok := so.Identity.Claimed["INTERLOCK_ID_TOKEN"]; ok {
			t.Errorf("the token is among the claimed variables")
		}
	})

	// Each bad token is refused with its reason; the workload is the
	// environment's claim, and the rule asking for verified claims does
	// not match it: the default denies.
	claims := func(edit func(map[string]any)) map[string]any {
		c := oidctest.GitHubClaims(is.URL, "interlock", "acme/billing", soon)
		edit(c)
		return c
	}
	bad := []struct{ name, token, why string }{
		{"expired", is.Sign(t, claims(func(c map[string]any) { c["exp"] = time.Now().Add(-5 * time.Minute).Unix() })), "expired at"},
		{"wrong-audience", is.Sign(t, claims(func(c map[string]any) { c["aud"] = "sts.amazonaws.com" })), "wrong audience"},
		{"untrusted-issuer", stranger.Sign(t, oidctest.GitHubClaims(stranger.URL, "interlock", "acme/billing", soon)), "untrusted issuer"},
		{"other-key", is.SignUnpublished(t, claims(func(map[string]any) {})), "bad signature"},
		{"alg-none", oidctest.Unsigned(t, claims(func(map[string]any) {})), "alg none"},
	}
	for _, b := range bad {
		tokens = append(tokens, b.token)
		t.Run(b.name, func(t *testing.T) {
			out, stderr, so := psql(t, "bad-"+b.name, "INTERLOCK_ID_TOKEN="+b.token)
			if strings.Contains(out, "bad-"+b.name) || !strings.Contains(stderr, "denied by interlock rule \"policy.default\"") {
				t.Errorf("psql with a bad token was not denied: %q %q", out, stderr)
			}
			w := so.Identity.Workload
			if w == nil || w.Provenance != model.ProvClaimed || w.Claims["repository"] != "acme/billing" ||
				!strings.HasPrefix(w.Error, "INTERLOCK_ID_TOKEN: ") || !strings.Contains(w.Error, b.why) {
				t.Errorf("session.open workload = %+v, want claimed acme/billing, the error naming %q", w, b.why)
			}
			if so.Decision.Action == model.Allow || so.Decision.Rule == "billing-ci" {
				t.Errorf("session decision %+v: the verified rule matched a claimed workload", so.Decision)
			}
		})
	}

	t.Run("github request", func(t *testing.T) {
		reqURL := is.ServeGitHubRequest(t, "job-request-token", func(audience string) string {
			tok := is.Sign(t, oidctest.GitHubClaims(is.URL, audience, "acme/billing", soon))
			tokens = append(tokens, tok)
			return tok
		})
		out, stderr, so := psql(t, "requested-ok", "ACTIONS_ID_TOKEN_REQUEST_URL="+reqURL, "ACTIONS_ID_TOKEN_REQUEST_TOKEN=job-request-token")
		if !strings.Contains(out, "requested-ok") {
			t.Errorf("psql with a requested token: %q %q", out, stderr)
		}
		if w := so.Identity.Workload; w == nil || w.Provenance != model.ProvVerified || w.TokenSource != "github-request" {
			t.Errorf("session.open workload = %+v, want verified from github-request", w)
		}
		reqs := is.Requests()
		if len(reqs) != 1 || reqs[0].Authorization != "bearer job-request-token" || reqs[0].Audience != "interlock" {
			t.Errorf("the token endpoint got %+v, want one request with the job's bearer token for audience interlock", reqs)
		}
		// The wrong request token gets no token: claimed, with the why.
		_, _, so = psql(t, "requested-bad", "ACTIONS_ID_TOKEN_REQUEST_URL="+reqURL, "ACTIONS_ID_TOKEN_REQUEST_TOKEN=guess")
		if w := so.Identity.Workload; w == nil || w.Provenance != model.ProvClaimed || !strings.Contains(w.Error, "401") {
			t.Errorf("session.open workload = %+v, want claimed with the endpoint's 401", w)
		}
	})

	t.Run("tokens never journaled or logged", func(t *testing.T) {
		logs := d.stderr.String()
		for _, tok := range append(tokens, "job-request-token") {
			sig := tok[strings.LastIndexByte(tok, '.')+1:]
			if len(sig) < 16 {
				sig = tok
			}
			for _, en := range e.entries() {
				if strings.Contains(string(en.Data), sig) {
					t.Errorf("journal entry %d (%s) holds a token", en.Seq, en.Kind)
				}
			}
			if strings.Contains(logs, sig) {
				t.Errorf("the daemon's log holds a token")
			}
		}
	})

	t.Run("policy test", func(t *testing.T) {
		for _, c := range []struct {
			args []string
			want model.Action
		}{
			{[]string{"--verified", "repository=acme/billing", "--verified", "ref=refs/heads/main"}, model.Allow},
			{[]string{"--verified", "repository=acme/web", "--verified", "ref=refs/heads/main"}, model.Deny},
			{[]string{"--verified", "repository=acme/billing", "--verified", "ref=refs/heads/main", "--claimed-workload"}, model.Deny},
			{[]string{"--claim", "GITHUB_REPOSITORY=acme/billing"}, model.Deny},
		} {
			args := append([]string{"policy", "test", "-c", e.cfgPath, "--target", "db", "--uid", "0", "--sql", "SELECT 1", "--json"}, c.args...)
			out, stderr, code := e.interlock(args...)
			if code != 0 && code != 1 {
				t.Fatalf("policy test %v: exit %d %s", c.args, code, stderr)
			}
			var res []struct {
				Decision model.Decision `json:"decision"`
			}
			if err := json.Unmarshal([]byte(out), &res); err != nil || len(res) != 1 {
				t.Fatalf("policy test %v: %v in %s", c.args, err, out)
			}
			if res[0].Decision.Action != c.want {
				t.Errorf("policy test %v = %+v, want %s", c.args, res[0].Decision, c.want)
			}
		}
	})
}
