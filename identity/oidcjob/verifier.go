// Package oidcjob verifies the OIDC ID token of the CI job behind a
// process: it keeps the trusted issuers' signing keys (fetched at start
// and refreshed in the background, so a decision needs no network), checks
// a token's signature, issuer, audience and lifetime against them, and
// turns its claims into a model.Workload under interlock's claim names. A
// token that fails gives a claimed workload that says why; the token
// itself is never recorded, logged or put in an error.
package oidcjob

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/model"
)

const (
	// leeway is how far the clocks of the issuer and this host may
	// disagree when checking exp and nbf.
	leeway = 30 * time.Second
	// maxTokenBytes bounds a token read from a job's environment (real
	// ones are one or two KiB).
	maxTokenBytes = 16 << 10
	// resultCacheSize bounds the verification results kept (one per
	// distinct token); failTTL is how long a refusal is kept.
	resultCacheSize = 4096
	failTTL         = time.Minute
)

// acceptedAlgs are the signature algorithms a token may use: asymmetric
// ones only. "none" (no signature) and the HMAC ones (whose key would be
// the issuer's public key, known to all) are never accepted.
var acceptedAlgs = []string{
	string(jose.RS256), string(jose.RS384), string(jose.RS512),
	string(jose.PS256), string(jose.PS384), string(jose.PS512),
	string(jose.ES256), string(jose.ES384), string(jose.ES512), string(jose.EdDSA),
}

// parseAlgs are the algorithms a token is parsed with, so that a refused
// one is named in the refusal rather than reported as malformed.
var parseAlgs = func() []jose.SignatureAlgorithm {
	out := []jose.SignatureAlgorithm{"none", jose.HS256, jose.HS384, jose.HS512}
	for _, a := range acceptedAlgs {
		out = append(out, jose.SignatureAlgorithm(a))
	}
	return out
}()

// Options configure a Verifier.
type Options struct {
	Config config.OIDCConfig
	// Logger receives key fetch failures; nil discards them.
	Logger *slog.Logger
	// Client fetches discovery documents and keys; nil means a client
	// with a 10s timeout.
	Client *http.Client
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
}

// Verifier verifies jobs' ID tokens against the configured issuers. It
// is safe for concurrent use. Start fetches the keys; Close stops the
// refreshes.
type Verifier struct {
	issuers   map[string]*issuer
	order     []*issuer
	tokenVars []string
	github    *githubRequester
	refresh   time.Duration
	log       *slog.Logger
	client    *http.Client
	now       func() time.Time
	results   *boundedCache[[sha256.Size]byte, result]

	startOnce sync.Once
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
}

// result is a cached verification: the workload (verified, without the
// token's source) or why it was refused, valid until expires and while
// the issuer's keys are still generation gen.
type result struct {
	w       *model.Workload
	why     string
	iss     *issuer
	gen     uint64
	expires time.Time
}

// New returns a Verifier for cfg; it fetches nothing until Start.
func New(opts Options) (*Verifier, error) {
	cfg := opts.Config
	if !cfg.Enabled() {
		return nil, errors.New("oidcjob: no issuers configured")
	}
	v := &Verifier{
		issuers:   map[string]*issuer{},
		tokenVars: cfg.TokenVars(),
		refresh:   cfg.RefreshInterval(),
		log:       opts.Logger,
		client:    opts.Client,
		now:       opts.Now,
		results:   newBoundedCache[[sha256.Size]byte, result](resultCacheSize),
	}
	if v.log == nil {
		v.log = slog.New(slog.DiscardHandler)
	}
	if v.client == nil {
		v.client = &http.Client{Timeout: 10 * time.Second}
	}
	if v.now == nil {
		v.now = time.Now
	}
	for _, c := range cfg.Issuers {
		if _, dup := v.issuers[c.Issuer]; dup {
			return nil, fmt.Errorf("oidcjob: issuer %s listed twice", c.Issuer)
		}
		is := newIssuer(c, v.now)
		v.issuers[c.Issuer] = is
		v.order = append(v.order, is)
	}
	if cfg.GitHubRequest {
		gh, ok := cfg.GitHubIssuer()
		if !ok {
			return nil, errors.New("oidcjob: github_request needs an issuer with platform github")
		}
		v.github = newGitHubRequester(gh.Audience, cfg.RequestHosts(), v.now)
	}
	v.ctx, v.cancel = context.WithCancel(context.Background())
	return v, nil
}

// TokenEnv names the environment variables a job's token is read from
// (and those the GitHub request flow needs), for the resolver to pick
// out of a process's environment.
func (v *Verifier) TokenEnv() []string {
	out := slices.Clone(v.tokenVars)
	if v.github != nil {
		out = append(out, GitHubRequestURLVar, GitHubRequestTokenVar)
	}
	return out
}

// Verify returns the workload proven by a token in env (the variables
// TokenEnv named that the process has): verified, from the first token
// that verifies, in the order of token_env and then the GitHub request;
// claimed with Error saying why when tokens were found and none verified;
// nil when env held no token. Claims of a claimed workload are left to
// the caller (they come from the CI variables).
func (v *Verifier) Verify(ctx context.Context, env map[string]string) *model.Workload {
	var whys []string
	for _, name := range v.tokenVars {
		raw := env[name]
		if raw == "" {
			continue
		}
		w, why := v.VerifyToken(ctx, raw)
		if w != nil {
			w.TokenSource = name
			return w
		}
		whys = append(whys, name+": "+why)
	}
	if v.github != nil && env[GitHubRequestURLVar] != "" && env[GitHubRequestTokenVar] != "" {
		raw, err := v.github.token(ctx, env[GitHubRequestURLVar], env[GitHubRequestTokenVar])
		if err == nil {
			w, why := v.VerifyToken(ctx, raw)
			if w != nil {
				w.TokenSource = TokenSourceGitHubRequest
				return w
			}
			whys = append(whys, TokenSourceGitHubRequest+": "+why)
		} else {
			whys = append(whys, TokenSourceGitHubRequest+": "+err.Error())
		}
	}
	if len(whys) == 0 {
		return nil
	}
	return &model.Workload{Provenance: model.ProvClaimed, Error: strings.Join(whys, "; ")}
}

// VerifyToken checks one token and returns the workload it proves, or nil
// and why it proves nothing. Results are cached per token until it
// expires (refusals for failTTL, and none past a change of the issuer's
// keys).
func (v *Verifier) VerifyToken(ctx context.Context, raw string) (*model.Workload, string) {
	now := v.now()
	key := sha256.Sum256([]byte(raw))
	if r, ok := v.results.get(key); ok && now.Before(r.expires) && (r.iss == nil || r.iss.generation() == r.gen) {
		return cloneWorkload(r.w), r.why
	}
	r := v.verify(ctx, raw, now)
	if r.expires.IsZero() || r.w == nil {
		r.expires = now.Add(failTTL)
	}
	v.results.add(key, r)
	return cloneWorkload(r.w), r.why
}

// verify does VerifyToken's checks; the reasons it gives never quote the
// token.
func (v *Verifier) verify(ctx context.Context, raw string, now time.Time) result {
	if len(raw) > maxTokenBytes {
		return result{why: "malformed token: larger than " + strconv.Itoa(maxTokenBytes) + " bytes"}
	}
	raw = strings.TrimSpace(raw)
	jws, err := jose.ParseSignedCompact(raw, parseAlgs)
	if err != nil || len(jws.Signatures) != 1 {
		return result{why: "malformed token: not a signed JWT"}
	}
	switch alg := jws.Signatures[0].Header.Algorithm; {
	case alg == "none":
		return result{why: "alg none: the token is not signed"}
	case !slices.Contains(acceptedAlgs, alg):
		return result{why: "alg " + alg + " refused: only asymmetric signatures (RS, PS, ES, EdDSA) are accepted"}
	}
	// Which issuer to check against is read before the signature is
	// checked: it only picks the keys, and the check then proves it.
	var claimed jwt.Claims
	if err := json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &claimed); err != nil {
		return result{why: "malformed token: its claims are not a JSON object"}
	}
	is := v.issuers[claimed.Issuer]
	if is == nil {
		return result{why: "untrusted issuer " + shortQuote(claimed.Issuer)}
	}
	ks, gen := is.keySet()
	r := result{iss: is, gen: gen}
	if ks == nil {
		r.why = "the keys of issuer " + is.cfg.Issuer + " are not fetched yet"
		if err := is.lastError(); err != nil {
			r.why += " (" + err.Error() + ")"
		}
		return r
	}
	tok, err := is.verifier(ks).Verify(ctx, raw)
	if err != nil {
		// go-oidc's errors are text only; tell the usual causes apart
		// in the order it checks them.
		if _, serr := ks.verify(jws); serr != nil {
			r.why = serr.Error()
		} else if !claimed.Audience.Contains(is.cfg.Audience) {
			r.why = "wrong audience " + shortQuote(strings.Join(claimed.Audience, ",")) + ", want " + strconv.Quote(is.cfg.Audience)
		} else {
			r.why = "refused: " + scrub(err.Error(), raw)
		}
		return r
	}
	switch {
	case tok.Expiry.IsZero():
		r.why = "the token has no expiry (exp)"
		return r
	case now.After(tok.Expiry.Add(leeway)):
		r.why = "expired at " + tok.Expiry.UTC().Format(time.RFC3339)
		return r
	case claimed.NotBefore != nil && now.Add(leeway).Before(claimed.NotBefore.Time()):
		r.why = "not valid before " + claimed.NotBefore.Time().UTC().Format(time.RFC3339)
		return r
	}
	var all map[string]json.RawMessage
	if err := tok.Claims(&all); err != nil {
		r.why = "malformed token: its claims are not a JSON object"
		return r
	}
	r.w = &model.Workload{
		Provenance: model.ProvVerified,
		Platform:   is.cfg.Platform,
		Issuer:     tok.Issuer,
		Subject:    limit(tok.Subject),
		Claims:     mapClaims(is.cfg.Platform, all),
		ExpiresNS:  tok.Expiry.UnixNano(),
	}
	r.expires = tok.Expiry.Add(leeway)
	return r
}

func cloneWorkload(w *model.Workload) *model.Workload {
	if w == nil {
		return nil
	}
	c := *w
	if w.Claims != nil {
		c.Claims = make(map[string]string, len(w.Claims))
		for k, v := range w.Claims {
			c.Claims[k] = v
		}
	}
	return &c
}

// scrub removes from a library's message anything of the token: the
// reasons end up in the journal.
func scrub(msg, raw string) string {
	for _, part := range strings.Split(raw, ".") {
		if len(part) >= 8 {
			msg = strings.ReplaceAll(msg, part, "…")
		}
	}
	return msg
}

// shortQuote quotes a value taken from a token for a message.
func shortQuote(s string) string {
	if len(s) > 100 {
		s = s[:100] + "…"
	}
	return strconv.Quote(s)
}

// verifierConfig is go-oidc's configuration for an issuer. Expiry and
// not-before are checked here instead, with the same small leeway on
// both (go-oidc allows none on exp and five minutes on nbf).
func verifierConfig(c config.OIDCIssuer, now func() time.Time) *oidc.Config {
	return &oidc.Config{
		ClientID:             c.Audience,
		SupportedSigningAlgs: acceptedAlgs,
		SkipExpiryCheck:      true,
		Now:                  now,
	}
}
