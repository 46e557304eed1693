package oidcjob

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"

	"github.com/interlock/interlock/config"
)

const (
	// maxKeysBody bounds a discovery document or key set.
	maxKeysBody = 1 << 20
	// retryAfter is how soon a failed fetch is tried again (or the
	// refresh interval, if shorter).
	retryAfter = time.Minute
)

// issuer is one trusted issuer and the keys last fetched for it.
type issuer struct {
	cfg config.OIDCIssuer
	now func() time.Time
	// keys is nil until the first fetch succeeds; a failed refresh
	// keeps the keys there were.
	keys    atomic.Pointer[keySet]
	mu      sync.Mutex
	lastErr error
	// tried is closed after the first fetch, whatever its outcome.
	tried     chan struct{}
	triedOnce sync.Once
}

func newIssuer(c config.OIDCIssuer, now func() time.Time) *issuer {
	return &issuer{cfg: c, now: now, tried: make(chan struct{})}
}

// keySet is one fetch's keys. It is an oidc.KeySet that holds nothing
// but what the issuer published: a key the set does not have is never
// fetched at decision time, the token is refused.
type keySet struct {
	set jose.JSONWebKeySet
	gen uint64
}

func (is *issuer) keySet() (*keySet, uint64) {
	ks := is.keys.Load()
	if ks == nil {
		return nil, 0
	}
	return ks, ks.gen
}

// generation is the current keys' generation (0: none yet).
func (is *issuer) generation() uint64 {
	_, gen := is.keySet()
	return gen
}

func (is *issuer) lastError() error {
	is.mu.Lock()
	defer is.mu.Unlock()
	return is.lastErr
}

// verifier is go-oidc's verifier of is's tokens against ks.
func (is *issuer) verifier(ks *keySet) *oidc.IDTokenVerifier {
	return oidc.NewVerifier(is.cfg.Issuer, ks, verifierConfig(is.cfg, is.now))
}

// VerifySignature implements oidc.KeySet.
func (ks *keySet) VerifySignature(_ context.Context, raw string) ([]byte, error) {
	jws, err := jose.ParseSignedCompact(raw, parseAlgs)
	if err != nil {
		return nil, errors.New("malformed token: not a signed JWT")
	}
	return ks.verify(jws)
}

// verify checks jws's one signature with the key its kid names (any of
// the set's keys when it names none).
func (ks *keySet) verify(jws *jose.JSONWebSignature) ([]byte, error) {
	if len(jws.Signatures) != 1 {
		return nil, errors.New("malformed token: not exactly one signature")
	}
	h := jws.Signatures[0].Header
	keys := ks.set.Keys
	if h.KeyID != "" {
		keys = ks.set.Key(h.KeyID)
		if len(keys) == 0 {
			return nil, fmt.Errorf("bad signature: signed by key %s, which the issuer does not publish", shortQuote(h.KeyID))
		}
	}
	for _, k := range keys {
		if k.Algorithm != "" && k.Algorithm != h.Algorithm {
			continue
		}
		if payload, err := jws.Verify(k.Key); err == nil {
			return payload, nil
		}
	}
	return nil, errors.New("bad signature: no key of the issuer verifies it")
}

// Start fetches every issuer's keys now and then every refresh interval
// in the background, until Close. A fetch that fails is retried within a
// minute; the keys there were stay in use meanwhile.
func (v *Verifier) Start() {
	v.startOnce.Do(func() {
		for _, is := range v.order {
			v.wg.Add(1)
			go v.keepFresh(is)
		}
	})
}

// WaitReady waits until every issuer's first fetch ended (succeeded or
// failed) or ctx is done; it reports the issuers without keys.
func (v *Verifier) WaitReady(ctx context.Context) error {
	var errs []error
	for _, is := range v.order {
		select {
		case <-is.tried:
		case <-ctx.Done():
		}
		if is.keys.Load() == nil {
			err := is.lastError()
			if err == nil {
				err = errors.New("not fetched yet")
			}
			errs = append(errs, fmt.Errorf("issuer %s: %w", is.cfg.Issuer, err))
		}
	}
	return errors.Join(errs...)
}

// Close stops the refreshes.
func (v *Verifier) Close() {
	v.cancel()
	v.wg.Wait()
}

func (v *Verifier) keepFresh(is *issuer) {
	defer v.wg.Done()
	for {
		wait := v.refresh
		if err := v.fetch(is); err != nil {
			v.log.Warn("identity.oidc: fetching an issuer's keys failed; tokens it signed with keys not yet fetched stay claimed",
				"issuer", is.cfg.Issuer, "err", err)
			wait = min(wait, retryAfter)
		}
		is.triedOnce.Do(func() { close(is.tried) })
		select {
		case <-v.ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// fetch fetches is's keys (through discovery unless jwks_url is given)
// and puts them in use.
func (v *Verifier) fetch(is *issuer) error {
	ctx, cancel := context.WithTimeout(v.ctx, 30*time.Second)
	defer cancel()
	set, err := v.fetchKeys(ctx, is.cfg)
	is.mu.Lock()
	defer is.mu.Unlock()
	is.lastErr = err
	if err != nil {
		return err
	}
	old := is.keys.Load()
	gen := uint64(1)
	if old != nil {
		gen = old.gen
		if !sameKeys(old.set, set) {
			gen++
		}
	}
	is.keys.Store(&keySet{set: set, gen: gen})
	return nil
}

func (v *Verifier) fetchKeys(ctx context.Context, c config.OIDCIssuer) (jose.JSONWebKeySet, error) {
	jwksURL := c.JWKSURL
	if jwksURL == "" {
		p, err := oidc.NewProvider(oidc.ClientContext(ctx, v.client), c.Issuer)
		if err != nil {
			return jose.JSONWebKeySet{}, fmt.Errorf("discovery: %w", err)
		}
		var doc struct {
			JWKSURL string `json:"jwks_uri"`
		}
		if err := p.Claims(&doc); err != nil || doc.JWKSURL == "" {
			return jose.JSONWebKeySet{}, errors.New("discovery: the document names no jwks_uri")
		}
		jwksURL = doc.JWKSURL
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, jwksURL, nil)
	if err != nil {
		return jose.JSONWebKeySet{}, fmt.Errorf("keys at %s: %w", jwksURL, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := v.client.Do(req)
	if err != nil {
		return jose.JSONWebKeySet{}, fmt.Errorf("keys: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxKeysBody+1))
	switch {
	case err != nil:
		return jose.JSONWebKeySet{}, fmt.Errorf("keys at %s: reading: %w", jwksURL, err)
	case resp.StatusCode != http.StatusOK:
		return jose.JSONWebKeySet{}, fmt.Errorf("keys at %s: %s", jwksURL, resp.Status)
	case len(body) > maxKeysBody:
		return jose.JSONWebKeySet{}, fmt.Errorf("keys at %s: larger than %d bytes", jwksURL, maxKeysBody)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return jose.JSONWebKeySet{}, fmt.Errorf("keys at %s: not a JWK set: %w", jwksURL, err)
	}
	set.Keys = slices.DeleteFunc(set.Keys, func(k jose.JSONWebKey) bool { return !signingKey(k) })
	if len(set.Keys) == 0 {
		return jose.JSONWebKeySet{}, fmt.Errorf("keys at %s: no public signing key", jwksURL)
	}
	return set, nil
}

// signingKey says whether k may verify tokens: a public asymmetric key
// meant for signatures. A symmetric key in a public set would let anyone
// sign.
func signingKey(k jose.JSONWebKey) bool {
	if !k.Valid() || !k.IsPublic() || (k.Use != "" && k.Use != "sig") {
		return false
	}
	switch k.Key.(type) {
	case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
		return true
	}
	return false
}

func sameKeys(a, b jose.JSONWebKeySet) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}
