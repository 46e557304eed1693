package oidcjob

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/interlock/interlock/internal/glob"
)

// The GitHub Actions variables a job requests its token with, and the
// TokenSource of a token so requested.
const (
	GitHubRequestURLVar      = "ACTIONS_ID_TOKEN_REQUEST_URL"
	GitHubRequestTokenVar    = "ACTIONS_ID_TOKEN_REQUEST_TOKEN"
	TokenSourceGitHubRequest = "github-request"
)

const (
	// githubTimeout bounds a request: it runs while a connection waits.
	githubTimeout = 3 * time.Second
	// githubMaxBody bounds the answer.
	githubMaxBody = 64 << 10
	// githubMaxInFlight bounds the requests running at once, whatever
	// number of jobs connect.
	githubMaxInFlight = 8
	// githubFailTTL is how long a failed request is remembered for its
	// job, so that each of its connections does not wait again.
	githubFailTTL = 30 * time.Second
	// githubMaxTTL caps how long a token is reused.
	githubMaxTTL = 10 * time.Minute
	jobCacheSize = 1024
)

// githubRequester asks GitHub for a job's ID token as the job itself may
// (https://docs.github.com/actions/security-for-github-actions/security-hardening-your-deployments/about-security-hardening-with-openid-connect):
// a GET of ACTIONS_ID_TOKEN_REQUEST_URL with &audience= and the
// ACTIONS_ID_TOKEN_REQUEST_TOKEN as bearer token. Tokens are kept per job
// (per URL and request token) for their lifetime.
type githubRequester struct {
	audience string
	// hosts are the globs the request URL's host must match.
	hosts  []string
	now    func() time.Time
	client *http.Client
	slots  chan struct{}
	jobs   *boundedCache[[sha256.Size]byte, jobToken]
}

// jobToken is a job's requested token (raw, kept in memory only) or why
// the request failed.
type jobToken struct {
	raw     string
	err     error
	expires time.Time
}

func newGitHubRequester(audience string, hosts []string, now func() time.Time) *githubRequester {
	return &githubRequester{
		audience: audience,
		hosts:    hosts,
		now:      now,
		client: &http.Client{
			Timeout: githubTimeout,
			// The request goes where the job said, or nowhere: its
			// bearer token is not for another host.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		slots: make(chan struct{}, githubMaxInFlight),
		jobs:  newBoundedCache[[sha256.Size]byte, jobToken](jobCacheSize),
	}
}

// token returns the job's token, from the cache or asked for now. Its
// errors name neither the request token nor the token.
func (g *githubRequester) token(ctx context.Context, reqURL, reqToken string) (string, error) {
	key := sha256.Sum256([]byte(reqURL + "\x00" + reqToken))
	now := g.now()
	if t, ok := g.jobs.get(key); ok && now.Before(t.expires) {
		return t.raw, t.err
	}
	raw, err := g.request(ctx, reqURL, reqToken)
	t := jobToken{raw: raw, err: err, expires: now.Add(githubFailTTL)}
	if err == nil {
		t.expires = now.Add(githubMaxTTL)
		// The token's own exp (checked by verification, not here)
		// caps how long it is reused.
		if jws, perr := jose.ParseSignedCompact(raw, parseAlgs); perr == nil {
			var c jwt.Claims
			if json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &c) == nil && c.Expiry != nil && c.Expiry.Time().Before(t.expires) {
				t.expires = c.Expiry.Time()
			}
		}
	}
	g.jobs.add(key, t)
	return raw, err
}

func (g *githubRequester) request(ctx context.Context, reqURL, reqToken string) (string, error) {
	u, err := url.Parse(reqURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return "", errors.New(GitHubRequestURLVar + " is not an http(s) URL")
	}
	if !g.allowedHost(u.Hostname()) {
		return "", fmt.Errorf("%s names host %q, which identity.oidc.github_request_hosts does not list; nothing was sent", GitHubRequestURLVar, u.Hostname())
	}
	q := u.Query()
	q.Set("audience", g.audience)
	u.RawQuery = q.Encode()
	select {
	case g.slots <- struct{}{}:
		defer func() { <-g.slots }()
	default:
		return "", fmt.Errorf("%d token requests already running", githubMaxInFlight)
	}
	ctx, cancel := context.WithTimeout(ctx, githubTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", fmt.Errorf("request to %s: %w", u.Host, err)
	}
	req.Header.Set("Authorization", "bearer "+reqToken)
	req.Header.Set("Accept", "application/json")
	resp, err := g.client.Do(req)
	if err != nil {
		// url.Error quotes the URL, which holds nothing secret but is
		// the job's to choose: name the host only.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return "", fmt.Errorf("request to %s: %w", u.Host, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, githubMaxBody+1))
	switch {
	case err != nil:
		return "", fmt.Errorf("request to %s: reading the answer: %w", u.Host, err)
	case resp.StatusCode != http.StatusOK:
		return "", fmt.Errorf("request to %s: %s", u.Host, resp.Status)
	case len(body) > githubMaxBody:
		return "", fmt.Errorf("request to %s: answer larger than %d bytes", u.Host, githubMaxBody)
	}
	var answer struct {
		Value string `json:"value"`
	}
	if err := json.Unmarshal(body, &answer); err != nil || answer.Value == "" {
		return "", fmt.Errorf("request to %s: the answer holds no token (want {\"value\": TOKEN})", u.Host)
	}
	return answer.Value, nil
}

// allowedHost says whether the request may go to host: the job chose the
// URL, the config bounds where it may point.
func (g *githubRequester) allowedHost(host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	for _, h := range g.hosts {
		if glob.Match(strings.ToLower(h), host) {
			return true
		}
	}
	return false
}
