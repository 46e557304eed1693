package config

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/interlock/interlock/model"
)

// OIDCConfig configures verification of CI jobs' OIDC ID tokens: which
// issuers are trusted, for which audience, and where a job's token is
// found. With no issuers, no token is ever verified (workloads stay
// claimed).
type OIDCConfig struct {
	// Issuers are the only issuers whose tokens are promoted to verified.
	Issuers []OIDCIssuer `yaml:"issuers,omitempty"`
	// TokenEnv names the job's environment variables that may hold a
	// token, tried in order (GitLab gives id_tokens to the job as
	// variables); empty means INTERLOCK_ID_TOKEN.
	TokenEnv []string `yaml:"token_env,omitempty"`
	// GitHubRequest asks GitHub for the job's token the way a job does
	// (ACTIONS_ID_TOKEN_REQUEST_URL and _TOKEN from its environment, with
	// the github issuer's audience).
	GitHubRequest bool `yaml:"github_request,omitempty"`
	// GitHubRequestHosts are globs over the host names the request may go
	// to. The URL comes from the job's environment: without this bound a
	// job could make the daemon send requests, with a bearer token of the
	// job's choosing, to any host it can reach (a metadata service, an
	// internal API). Empty means DefaultGitHubRequestHosts.
	GitHubRequestHosts []string `yaml:"github_request_hosts,omitempty"`
	// Refresh is how often the issuers' keys are fetched again; 1h when
	// unset.
	Refresh *Duration `yaml:"refresh,omitempty"`
}

// OIDCIssuer is one trusted issuer of ID tokens.
type OIDCIssuer struct {
	// Issuer is the iss a token must carry, exactly.
	Issuer string `yaml:"issuer"`
	// Audience is the aud a token must carry: tokens minted for another
	// service are refused.
	Audience string `yaml:"audience"`
	// Platform says how the issuer names its claims: github, gitlab,
	// buildkite or generic.
	Platform string `yaml:"platform"`
	// JWKSURL is where the issuer's keys are; empty means OIDC discovery
	// (ISSUER/.well-known/openid-configuration).
	JWKSURL string `yaml:"jwks_url,omitempty"`
}

// DefaultGitHubRequestHosts are where GitHub-hosted and most self-hosted
// runners get their ID tokens from.
var DefaultGitHubRequestHosts = []string{"*.actions.githubusercontent.com"}

// RequestHosts returns the host globs the GitHub token request may go to.
func (c OIDCConfig) RequestHosts() []string {
	if len(c.GitHubRequestHosts) == 0 {
		return slices.Clone(DefaultGitHubRequestHosts)
	}
	return slices.Clone(c.GitHubRequestHosts)
}

// DefaultTokenEnv is the variable read when token_env is not set.
const DefaultTokenEnv = "INTERLOCK_ID_TOKEN"

const (
	defaultOIDCRefresh = time.Hour
	minOIDCRefresh     = time.Minute
	maxOIDCRefresh     = 24 * time.Hour
	// maxTokenEnv bounds the variables looked up in every job's
	// environment.
	maxTokenEnv = 16
)

// OIDCPlatforms are the values of identity.oidc.issuers[].platform.
var OIDCPlatforms = []string{model.PlatformGitHub, model.PlatformGitLab, model.PlatformBuildkite, model.PlatformGeneric}

// Enabled says whether any issuer is configured.
func (c OIDCConfig) Enabled() bool { return len(c.Issuers) > 0 }

// TokenVars returns the variables that may hold a token, in order.
func (c OIDCConfig) TokenVars() []string {
	if len(c.TokenEnv) == 0 {
		return []string{DefaultTokenEnv}
	}
	return slices.Clone(c.TokenEnv)
}

// RefreshInterval is how often the issuers' keys are fetched again.
func (c OIDCConfig) RefreshInterval() time.Duration { return orDuration(c.Refresh, defaultOIDCRefresh) }

// Equal says whether c and o configure the same verification (a reload
// that leaves it alone keeps the fetched keys and verified tokens).
func (c OIDCConfig) Equal(o OIDCConfig) bool {
	return slices.Equal(c.Issuers, o.Issuers) && slices.Equal(c.TokenVars(), o.TokenVars()) &&
		c.GitHubRequest == o.GitHubRequest && slices.Equal(c.RequestHosts(), o.RequestHosts()) &&
		c.RefreshInterval() == o.RefreshInterval()
}

// GitHubIssuer returns the first issuer of platform github, which the
// github_request flow asks tokens for.
func (c OIDCConfig) GitHubIssuer() (OIDCIssuer, bool) {
	for _, is := range c.Issuers {
		if is.Platform == model.PlatformGitHub {
			return is, true
		}
	}
	return OIDCIssuer{}, false
}

func (c *OIDCConfig) validate(l *errorList) {
	const key = "identity.oidc"
	seen := map[string]int{}
	for i, is := range c.Issuers {
		k := key + ".issuers[" + strconv.Itoa(i) + "]"
		switch msg := oidcURLProblem(is.Issuer); {
		case is.Issuer == "":
			l.add(k+".issuer", "is required: the iss its tokens carry, such as https://token.actions.githubusercontent.com")
		case msg != "":
			l.add(k+".issuer", quote(is.Issuer)+" "+msg)
		}
		if j, dup := seen[is.Issuer]; dup && is.Issuer != "" {
			l.add(k+".issuer", quote(is.Issuer)+" is already issuers["+strconv.Itoa(j)+"]; list an issuer once")
		} else {
			seen[is.Issuer] = i
		}
		switch {
		case is.Audience == "":
			l.add(k+".audience", "is required: the aud that tokens for interlock carry (write interlock, and request tokens for that audience); "+
				"without it a token minted for any other service would be accepted")
		case strings.ContainsFunc(is.Audience, func(r rune) bool { return r <= ' ' || r == 0x7f }) || len(is.Audience) > 256:
			l.add(k+".audience", quote(is.Audience)+" must be one word without spaces or control characters, at most 256 bytes")
		}
		oneOf(l, k+".platform", is.Platform, OIDCPlatforms...)
		if is.JWKSURL != "" {
			if msg := oidcURLProblem(is.JWKSURL); msg != "" {
				l.add(k+".jwks_url", quote(is.JWKSURL)+" "+msg)
			}
		}
	}
	if len(c.TokenEnv) > maxTokenEnv {
		l.add(key+".token_env", fmt.Sprintf("lists %d variables; at most %d are looked up", len(c.TokenEnv), maxTokenEnv))
	}
	for j, name := range c.TokenEnv {
		k := key + ".token_env[" + strconv.Itoa(j) + "]"
		switch {
		case !envName(name):
			l.add(k, quote(name)+" is not an environment variable name; write letters, digits and _, such as INTERLOCK_ID_TOKEN")
		case slices.Index(c.TokenEnv, name) < j:
			l.add(k, quote(name)+" is listed twice")
		}
	}
	if c.GitHubRequest {
		if _, ok := c.GitHubIssuer(); !ok {
			l.add(key+".github_request", "needs an issuer with platform: github, whose audience the token is requested for "+
				"(issuer: https://token.actions.githubusercontent.com)")
		}
	}
	for j, h := range c.GitHubRequestHosts {
		k := key + ".github_request_hosts[" + strconv.Itoa(j) + "]"
		if h == "" || h == "*" || strings.ContainsAny(h, "/:@ ") || hasControl(h) {
			l.add(k, quote(h)+" is not a host name glob; write one such as *.actions.githubusercontent.com (a lone * would let a job send the daemon anywhere)")
		} else {
			globOK(l, k, h)
		}
	}
	if len(c.GitHubRequestHosts) > 0 && !c.GitHubRequest {
		l.add(key+".github_request_hosts", "has no effect without github_request: true")
	}
	if c.Refresh != nil {
		if d := time.Duration(*c.Refresh); d < minOIDCRefresh || d > maxOIDCRefresh {
			l.add(key+".refresh", fmt.Sprintf("%s is out of range; write a duration from %s to %s", d, minOIDCRefresh, maxOIDCRefresh))
		}
	}
	if !c.Enabled() && (len(c.TokenEnv) > 0 || c.GitHubRequest) {
		l.add(key+".issuers", "is empty, so no token would ever be verified; list the issuers whose tokens you trust")
	}
}

// oidcURLProblem says what is wrong with an issuer or key URL, or "".
// Keys fetched over plain http could be swapped by anyone on the path, so
// http is accepted only for a loopback address (a local issuer, a test).
func oidcURLProblem(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.Opaque != "" {
		return "is not an absolute URL; write https://HOST/PATH"
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "must have no user, query or fragment"
	}
	switch u.Scheme {
	case "https":
		return ""
	case "http":
		if ip := net.ParseIP(u.Hostname()); ip != nil && ip.IsLoopback() {
			return ""
		}
		return "uses http: keys fetched over http could be replaced on the way; write https:// (http is accepted for a loopback address only)"
	}
	return "is not an https URL"
}

// envName says whether s is a portable environment variable name.
func envName(s string) bool {
	if s == "" || len(s) > 128 || (s[0] >= '0' && s[0] <= '9') {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// validateVerified checks a rule's identity.verified: claim names
// interlock maps (any claim name when a generic issuer's claims are
// copied as they are) and globs.
func (c *OIDCConfig) validateVerified(l *errorList, key string, verified map[string]string) {
	if len(verified) == 0 {
		l.add(key, "names no claim; write claim: glob pairs, such as repository: acme/billing")
		return
	}
	if !c.Enabled() {
		l.add(key, "can never match: identity.oidc.issuers is empty, so no workload is verified; list the issuers whose tokens you trust")
	}
	known := model.WorkloadClaimNames()
	generic := slices.ContainsFunc(c.Issuers, func(is OIDCIssuer) bool { return is.Platform == model.PlatformGeneric })
	names := make([]string, 0, len(verified))
	for name := range verified {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		k := joinKey(key, name)
		switch {
		case slices.Contains(known, name):
		case generic && claimName(name):
		default:
			msg := quote(name) + " is not a workload claim"
			if g := closest(name, known); g != "" {
				msg += "; did you mean " + g + "?"
			}
			msg += " (known: " + strings.Join(known, ", ")
			if !generic {
				msg += "; a generic issuer's claims may be named as the token names them"
			}
			l.add(k, msg+")")
			continue
		}
		globOK(l, k, verified[name])
	}
}

// claimName says whether s can name a generic issuer's claim.
func claimName(s string) bool {
	return s != "" && len(s) <= 64 && !strings.ContainsFunc(s, func(r rune) bool {
		return !(r == '_' || r == '-' || r == ':' || r == '.' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
	})
}

// closest returns the name in names nearest to s, if one is near.
func closest(s string, names []string) string {
	best, bestDist := "", 3
	for _, n := range names {
		if d := editDistance(strings.ToLower(s), n); d < bestDist {
			best, bestDist = n, d
		}
	}
	return best
}
