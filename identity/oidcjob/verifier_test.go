package oidcjob

import (
	"context"
	"crypto/sha256"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/internal/testkit/oidctest"
	"github.com/interlock/interlock/model"
)

const aud = "interlock"

// started returns a Verifier for cfg whose keys are fetched.
func started(t *testing.T, cfg config.OIDCConfig) *Verifier {
	t.Helper()
	v, err := New(Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	v.Start()
	t.Cleanup(v.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := v.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return v
}

func githubIssuer(is *oidctest.Issuer) config.OIDCIssuer {
	return config.OIDCIssuer{Issuer: is.URL, Audience: aud, Platform: model.PlatformGitHub}
}

// TestVerifyGitHub: a GitHub-shaped token signed by the issuer's key is
// verified, its claims under interlock's names.
func TestVerifyGitHub(t *testing.T) {
	is := oidctest.New(t)
	v := started(t, config.OIDCConfig{Issuers: []config.OIDCIssuer{githubIssuer(is)}})
	exp := time.Now().Add(5 * time.Minute).Truncate(time.Second)
	raw := is.Sign(t, oidctest.GitHubClaims(is.URL, aud, "acme/billing", exp))

	w := v.Verify(context.Background(), map[string]string{config.DefaultTokenEnv: raw})
	if w == nil || w.Provenance != model.ProvVerified {
		t.Fatalf("Verify = %+v, want verified", w)
	}
	want := map[string]string{
		"repository": "acme/billing", "workflow": "deploy", "ref": "refs/heads/main", "run_id": "4242",
		"run_attempt": "1", "actor": "octocat", "environment": "production", "event_name": "push",
		"job_workflow_ref": "acme/billing/.github/workflows/deploy.yml@refs/heads/main",
		"sha":              "0123456789abcdef0123456789abcdef01234567",
	}
	if !equalMaps(w.Claims, want) {
		t.Errorf("claims = %v\nwant %v", w.Claims, want)
	}
	if w.Platform != "github" || w.Issuer != is.URL || w.Subject != "repo:acme/billing:ref:refs/heads/main" ||
		w.TokenSource != config.DefaultTokenEnv || w.ExpiresNS != exp.UnixNano() || w.Error != "" {
		t.Errorf("workload = %+v", w)
	}
}

// TestVerifyGitLab: a GitLab id_token given to the job as a variable
// named in token_env.
func TestVerifyGitLab(t *testing.T) {
	is := oidctest.New(t)
	v := started(t, config.OIDCConfig{
		Issuers:  []config.OIDCIssuer{{Issuer: is.URL, Audience: aud, Platform: model.PlatformGitLab, JWKSURL: is.URL + "/jwks"}},
		TokenEnv: []string{"INTERLOCK_ID_TOKEN", "GITLAB_ID_TOKEN"},
	})
	raw := is.Sign(t, oidctest.GitLabClaims(is.URL, aud, "acme/billing", time.Now().Add(time.Minute)))
	w := v.Verify(context.Background(), map[string]string{"GITLAB_ID_TOKEN": raw})
	if w == nil || w.Provenance != model.ProvVerified || w.TokenSource != "GITLAB_ID_TOKEN" {
		t.Fatalf("Verify = %+v, want verified from GITLAB_ID_TOKEN", w)
	}
	want := map[string]string{
		"repository": "acme/billing", "ref": "main", "run_id": "777", "job_id": "9001", "actor": "alice",
		"environment": "staging", "ref_protected": "true", "sha": "89abcdef0123456789abcdef0123456789abcdef",
	}
	if !equalMaps(w.Claims, want) {
		t.Errorf("claims = %v\nwant %v", w.Claims, want)
	}
}

// TestRefused: every way a token fails is refused with its reason, and
// the reason never holds the token.
func TestRefused(t *testing.T) {
	is := oidctest.New(t)
	stranger := oidctest.New(t)
	v := started(t, config.OIDCConfig{Issuers: []config.OIDCIssuer{githubIssuer(is)}})
	soon := time.Now().Add(5 * time.Minute)
	claims := func(edit func(map[string]any)) map[string]any {
		c := oidctest.GitHubClaims(is.URL, aud, "acme/billing", soon)
		if edit != nil {
			edit(c)
		}
		return c
	}
	tests := []struct {
		name, raw, why string
	}{
		{"expired", is.Sign(t, claims(func(c map[string]any) { c["exp"] = time.Now().Add(-2 * time.Minute).Unix() })), "expired at"},
		{"wrong audience", is.Sign(t, claims(func(c map[string]any) { c["aud"] = "sts.amazonaws.com" })), `wrong audience "sts.amazonaws.com"`},
		{"untrusted issuer", stranger.Sign(t, oidctest.GitHubClaims(stranger.URL, aud, "acme/billing", soon)), "untrusted issuer " + strconv.Quote(stranger.URL)},
		{"issuer claimed, other key", is.SignUnpublished(t, claims(nil)), "bad signature"},
		{"alg none", oidctest.Unsigned(t, claims(nil)), "alg none"},
		{"not yet valid", is.Sign(t, claims(func(c map[string]any) { c["nbf"] = time.Now().Add(time.Hour).Unix() })), "not valid before"},
		{"no expiry", is.Sign(t, claims(func(c map[string]any) { delete(c, "exp") })), "no expiry"},
		{"malformed", "not.a.token", "malformed token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, why := v.VerifyToken(context.Background(), tt.raw)
			if w != nil || !strings.Contains(why, tt.why) {
				t.Errorf("VerifyToken = %+v, %q; want refused with %q", w, why, tt.why)
			}
			got := v.Verify(context.Background(), map[string]string{config.DefaultTokenEnv: tt.raw})
			if got == nil || got.Provenance != model.ProvClaimed || !strings.HasPrefix(got.Error, config.DefaultTokenEnv+": ") ||
				!strings.Contains(got.Error, tt.why) || len(got.Claims) != 0 {
				t.Errorf("Verify = %+v, want claimed, with the variable and %q", got, tt.why)
			}
			for _, part := range strings.Split(tt.raw, ".") {
				if len(part) >= 8 && strings.Contains(got.Error, part) {
					t.Errorf("the reason %q holds part of the token", got.Error)
				}
			}
		})
	}
	// A claimed issuer is only a hint: a stranger's token that names the
	// trusted issuer is signed by a key it does not publish.
	forged := stranger.Sign(t, claims(nil))
	if w, why := v.VerifyToken(context.Background(), forged); w != nil || !strings.Contains(why, "bad signature") {
		t.Errorf("token signed by another issuer's key, naming this one: %+v, %q", w, why)
	}
}

// TestVerifyOrder: the first token that verifies wins; without any token
// there is no workload.
func TestVerifyOrder(t *testing.T) {
	is := oidctest.New(t)
	v := started(t, config.OIDCConfig{Issuers: []config.OIDCIssuer{githubIssuer(is)}, TokenEnv: []string{"A", "B"}})
	good := is.Sign(t, oidctest.GitHubClaims(is.URL, aud, "acme/billing", time.Now().Add(time.Minute)))
	w := v.Verify(context.Background(), map[string]string{"A": "garbage", "B": good})
	if w == nil || w.Provenance != model.ProvVerified || w.TokenSource != "B" {
		t.Errorf("Verify(A bad, B good) = %+v, want verified from B", w)
	}
	if w := v.Verify(context.Background(), map[string]string{"GITHUB_REPOSITORY": "acme/billing"}); w != nil {
		t.Errorf("Verify without a token = %+v, want nil", w)
	}
	if got := strings.Join(v.TokenEnv(), ","); got != "A,B" {
		t.Errorf("TokenEnv() = %s", got)
	}
}

// TestNoNetworkAtDecision: a decision uses the fetched keys only: with
// the issuer gone, tokens still verify, and a token naming a key the set
// lacks is refused without a fetch.
func TestNoNetworkAtDecision(t *testing.T) {
	is := oidctest.New(t)
	v := started(t, config.OIDCConfig{Issuers: []config.OIDCIssuer{githubIssuer(is)}})
	fetched := is.KeysFetched()
	forged := is.SignUnpublished(t, oidctest.GitHubClaims(is.URL, aud, "acme/billing", time.Now().Add(time.Minute)))
	if w, _ := v.VerifyToken(context.Background(), forged); w != nil {
		t.Fatalf("forged token verified")
	}
	good := is.Sign(t, oidctest.GitHubClaims(is.URL, aud, "acme/billing", time.Now().Add(time.Minute)))
	if w, why := v.VerifyToken(context.Background(), good); w == nil {
		t.Fatalf("good token refused: %s", why)
	}
	if n := is.KeysFetched(); n != fetched {
		t.Errorf("keys fetched %d times during decisions", n-fetched)
	}
}

// TestKeysNotFetched: an issuer whose keys could not be fetched verifies
// nothing, and says so.
func TestKeysNotFetched(t *testing.T) {
	is := oidctest.New(t)
	raw := is.Sign(t, oidctest.GitHubClaims(is.URL, aud, "acme/billing", time.Now().Add(time.Minute)))
	cfg := githubIssuer(is)
	cfg.JWKSURL = is.URL + "/no-such-keys"
	v, err := New(Options{Config: config.OIDCConfig{Issuers: []config.OIDCIssuer{cfg}}})
	if err != nil {
		t.Fatal(err)
	}
	v.Start()
	t.Cleanup(v.Close)
	if err := v.WaitReady(context.Background()); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("WaitReady = %v, want the 404", err)
	}
	if w, why := v.VerifyToken(context.Background(), raw); w != nil || !strings.Contains(why, "not fetched yet") {
		t.Errorf("VerifyToken = %+v, %q", w, why)
	}
}

// TestGitHubRequest: with github_request, the job's request URL and
// token get its ID token for the issuer's audience, once per job.
func TestGitHubRequest(t *testing.T) {
	is := oidctest.New(t)
	v := started(t, config.OIDCConfig{Issuers: []config.OIDCIssuer{githubIssuer(is)}, GitHubRequest: true, GitHubRequestHosts: []string{"127.0.0.1"}})
	reqURL := is.ServeGitHubRequest(t, "job-request-token", func(audience string) string {
		return is.Sign(t, oidctest.GitHubClaims(is.URL, audience, "acme/billing", time.Now().Add(5*time.Minute)))
	})
	env := map[string]string{GitHubRequestURLVar: reqURL, GitHubRequestTokenVar: "job-request-token"}
	for range 2 {
		w := v.Verify(context.Background(), env)
		if w == nil || w.Provenance != model.ProvVerified || w.TokenSource != TokenSourceGitHubRequest || w.Claims["repository"] != "acme/billing" {
			t.Fatalf("Verify = %+v, want verified from the request", w)
		}
	}
	reqs := is.Requests()
	if len(reqs) != 1 || reqs[0].Authorization != "bearer job-request-token" || reqs[0].Audience != aud {
		t.Errorf("requests = %+v, want one with the job's bearer token and audience %s", reqs, aud)
	}

	env[GitHubRequestTokenVar] = "stolen-guess"
	w := v.Verify(context.Background(), env)
	if w == nil || w.Provenance != model.ProvClaimed || !strings.Contains(w.Error, "github-request: ") || !strings.Contains(w.Error, "401") {
		t.Errorf("Verify with a wrong request token = %+v, want claimed with the 401", w)
	}
	if strings.Contains(w.Error, "stolen-guess") {
		t.Errorf("the reason %q holds the request token", w.Error)
	}
	// The job chooses the URL; the config bounds where it may point. A
	// host the config does not list gets nothing, not even a request.
	before := len(is.Requests())
	env[GitHubRequestTokenVar] = "job-request-token"
	for _, u := range []string{
		strings.Replace(reqURL, "127.0.0.1", "localhost", 1),
		"http://169.254.169.254/latest/meta-data/",
		"https://127.0.0.1.evil.example/token",
	} {
		env[GitHubRequestURLVar] = u
		w := v.Verify(context.Background(), env)
		if w == nil || w.Provenance != model.ProvClaimed || !strings.Contains(w.Error, "github_request_hosts does not list") {
			t.Errorf("Verify with request URL %s = %+v, want claimed, refused by github_request_hosts", u, w)
		}
	}
	if n := len(is.Requests()); n != before {
		t.Errorf("%d requests were sent to hosts the config does not list", n-before)
	}
	if got := strings.Join(v.TokenEnv(), ","); got != "INTERLOCK_ID_TOKEN,"+GitHubRequestURLVar+","+GitHubRequestTokenVar {
		t.Errorf("TokenEnv() = %s", got)
	}
}

// TestResultCacheBounded: distinct tokens do not grow the cache past its
// bound.
func TestResultCacheBounded(t *testing.T) {
	c := newBoundedCache[[sha256.Size]byte, result](8)
	for i := range 100 {
		c.add(sha256.Sum256([]byte(strconv.Itoa(i))), result{why: "x"})
	}
	if n := c.len(); n != 8 {
		t.Errorf("len = %d, want 8", n)
	}
}

// TestGenericClaims: a generic issuer's string claims are copied as they
// are, without the JWT's own.
func TestGenericClaims(t *testing.T) {
	is := oidctest.New(t)
	v := started(t, config.OIDCConfig{Issuers: []config.OIDCIssuer{{Issuer: is.URL, Audience: aud, Platform: model.PlatformGeneric}}})
	raw := is.Sign(t, map[string]any{"iss": is.URL, "aud": aud, "sub": "x", "exp": time.Now().Add(time.Minute).Unix(),
		"namespace": "acme", "count": 3, "nested": map[string]any{"a": "b"}})
	w, why := v.VerifyToken(context.Background(), raw)
	if w == nil {
		t.Fatal(why)
	}
	if !equalMaps(w.Claims, map[string]string{"namespace": "acme"}) || w.Platform != "generic" {
		t.Errorf("workload = %+v", w)
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if bv, ok := b[k]; !ok || bv != v {
			return false
		}
	}
	return true
}
