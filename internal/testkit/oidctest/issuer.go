// Package oidctest is an OIDC issuer for tests: keys generated in the
// test, discovery and the key set served on loopback, tokens signed on
// demand (and the forgeries a verifier must refuse), and GitHub's token
// request endpoint.
package oidctest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Issuer is a test issuer. Its URL is the iss of the tokens it signs.
type Issuer struct {
	URL string
	srv *httptest.Server
	key *rsa.PrivateKey
	// other is a key the issuer does not publish, for forgeries.
	other *ecdsa.PrivateKey
	kid   string

	mu       sync.Mutex
	requests []Request
	// keysFetched counts GETs of the key set.
	keysFetched int
}

// Request is one request GitHub's token endpoint received.
type Request struct {
	Authorization, Audience string
}

// New starts an issuer on 127.0.0.1; it stops with the test.
func New(t testing.TB) *Issuer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	is := &Issuer{key: key, other: other, kid: "test-key-1"}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]any{
			"issuer": is.URL, "jwks_uri": is.URL + "/jwks",
			"id_token_signing_alg_values_supported": []string{"RS256"},
			"response_types_supported":              []string{"id_token"},
			"subject_types_supported":               []string{"public"},
		})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		is.mu.Lock()
		is.keysFetched++
		is.mu.Unlock()
		writeJSON(w, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: is.kid, Algorithm: "RS256", Use: "sig"}}})
	})
	is.srv = httptest.NewServer(mux)
	is.URL = is.srv.URL
	t.Cleanup(is.srv.Close)
	return is
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// KeysFetched is how many times the key set was fetched.
func (is *Issuer) KeysFetched() int {
	is.mu.Lock()
	defer is.mu.Unlock()
	return is.keysFetched
}

// Sign signs claims with the issuer's published key (RS256).
func (is *Issuer) Sign(t testing.TB, claims map[string]any) string {
	t.Helper()
	return sign(t, jose.SigningKey{Algorithm: jose.RS256, Key: is.key}, is.kid, claims)
}

// SignUnpublished signs claims with a key the issuer does not publish,
// under the published key's kid (a forgery).
func (is *Issuer) SignUnpublished(t testing.TB, claims map[string]any) string {
	t.Helper()
	return sign(t, jose.SigningKey{Algorithm: jose.ES256, Key: is.other}, is.kid, claims)
}

// Unsigned returns claims as a token with alg none and no signature.
func Unsigned(t testing.TB, claims map[string]any) string {
	t.Helper()
	header, _ := json.Marshal(map[string]string{"alg": "none", "typ": "JWT"})
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding
	return enc.EncodeToString(header) + "." + enc.EncodeToString(payload) + "."
}

func sign(t testing.TB, key jose.SigningKey, kid string, claims map[string]any) string {
	t.Helper()
	signer, err := jose.NewSigner(key, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// GitHubClaims are the claims of a GitHub Actions job's token for
// repository, issued by iss for aud, valid until exp.
func GitHubClaims(iss, aud, repository string, exp time.Time) map[string]any {
	now := time.Now()
	return map[string]any{
		"iss": iss, "aud": aud, "sub": "repo:" + repository + ":ref:refs/heads/main",
		"exp": exp.Unix(), "nbf": now.Add(-time.Minute).Unix(), "iat": now.Add(-time.Minute).Unix(),
		"repository": repository, "repository_owner": "acme", "workflow": "deploy", "ref": "refs/heads/main",
		"sha": "0123456789abcdef0123456789abcdef01234567", "run_id": "4242", "run_attempt": "1",
		"actor": "octocat", "environment": "production", "event_name": "push",
		"job_workflow_ref": repository + "/.github/workflows/deploy.yml@refs/heads/main",
	}
}

// GitLabClaims are the claims of a GitLab CI job's id_token for project.
func GitLabClaims(iss, aud, project string, exp time.Time) map[string]any {
	now := time.Now()
	return map[string]any{
		"iss": iss, "aud": aud, "sub": "project_path:" + project + ":ref_type:branch:ref:main",
		"exp": exp.Unix(), "nbf": now.Add(-time.Minute).Unix(), "iat": now.Add(-time.Minute).Unix(),
		"project_path": project, "namespace_path": "acme", "ref": "main", "ref_type": "branch",
		"ref_protected": "true", "pipeline_id": "777", "job_id": "9001", "user_login": "alice",
		"environment": "staging", "sha": "89abcdef0123456789abcdef0123456789abcdef",
	}
}

// ServeGitHubRequest serves GitHub's token request endpoint: a GET with
// "Authorization: bearer REQUEST_TOKEN" gets {"value": token(audience)};
// any other bearer gets 401. It returns the URL a job finds in
// ACTIONS_ID_TOKEN_REQUEST_URL (it already has a query, as GitHub's has).
func (is *Issuer) ServeGitHubRequest(t testing.TB, requestToken string, token func(audience string) string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		aud := r.URL.Query().Get("audience")
		is.mu.Lock()
		is.requests = append(is.requests, Request{Authorization: r.Header.Get("Authorization"), Audience: aud})
		is.mu.Unlock()
		if r.Header.Get("Authorization") != "bearer "+requestToken || r.URL.Query().Get("api-version") != "2.0" {
			http.Error(w, "bad credentials", http.StatusUnauthorized)
			return
		}
		writeJSON(w, map[string]string{"value": token(aud)})
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/_apis/distributedtask/hubs/build/plans/1/jobs/2/idtoken?api-version=2.0"
}

// Requests returns the requests the token endpoint received.
func (is *Issuer) Requests() []Request {
	is.mu.Lock()
	defer is.mu.Unlock()
	return append([]Request(nil), is.requests...)
}
