package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/interlock/interlock/hub/hubapi"
	"github.com/interlock/interlock/hub/idclaims"
)

// Authenticator says who a person calling the approver API is. The
// console's session cookie is one; an OIDC ID token as a bearer token
// (OIDCBearer) another. Options.Authenticators are tried in order.
type Authenticator interface {
	Authenticate(r *http.Request) (hubapi.Principal, error)
}

// ErrNoCredentials is what an Authenticator answers for a request that
// carries none of its credentials: the next one is tried. Any other error
// refuses the request (a credential that is there but does not verify is
// never passed over to a weaker one).
var ErrNoCredentials = errors.New("hub: no credentials")

// Defaults of OIDCConfig.
const (
	DefaultUsernameClaim = idclaims.DefaultUsernameClaim
	DefaultGroupsClaim   = idclaims.DefaultGroupsClaim
)

// OIDCConfig is the company's identity provider, as the hub trusts it
// for approvers (hub.oidc).
type OIDCConfig struct {
	Issuer   string
	ClientID string
	// UsernameClaim is the claim compared with the requester's login
	// user, sudo chain and CI actor, and with the rule's approver names;
	// GroupsClaim the one compared with its @groups and the role mapping.
	UsernameClaim string
	GroupsClaim   string
	// Roles maps a role (hubapi.RoleApprover, RoleAuditor, RoleAdmin) to
	// the IdP groups that hold it.
	Roles map[string][]string
	// HTTPClient fetches the discovery document and keys (tests: one that
	// trusts the test issuer's CA); http.DefaultClient when nil.
	HTTPClient *http.Client
}

func (c OIDCConfig) withDefaults() OIDCConfig {
	if c.UsernameClaim == "" {
		c.UsernameClaim = DefaultUsernameClaim
	}
	if c.GroupsClaim == "" {
		c.GroupsClaim = DefaultGroupsClaim
	}
	return c
}

// Principal is the person an ID token's verified claims describe, with
// the roles their groups map to (hub/idclaims, which the console's
// sign-in reads them with too).
func (c OIDCConfig) Principal(tok *oidc.IDToken) (hubapi.Principal, error) {
	p, err := idclaims.Mapping{UsernameClaim: c.UsernameClaim, GroupsClaim: c.GroupsClaim, Roles: c.Roles}.Principal(tok)
	if err != nil {
		return hubapi.Principal{}, fmt.Errorf("hub: %w", err)
	}
	return p, nil
}

// OIDCBearer authenticates a call by an ID token from the identity
// provider in its Authorization header (Bearer), verified with the
// provider's published keys for the hub's client id.
type OIDCBearer struct {
	cfg OIDCConfig
	ctx context.Context

	// The provider is discovered at the first call that needs it, and
	// again after a failure (at most every retryDiscovery): a hub whose
	// IdP is down at start still ships, and approvers are refused until
	// the IdP answers.
	mu       sync.Mutex
	verifier *oidc.IDTokenVerifier
	tried    time.Time
	err      error
}

const retryDiscovery = 10 * time.Second

// NewOIDCBearer is a bearer authenticator for cfg; ctx bounds the
// discovery and key fetches (the hub's lifetime).
func NewOIDCBearer(ctx context.Context, cfg OIDCConfig) (*OIDCBearer, error) {
	cfg = cfg.withDefaults()
	if cfg.Issuer == "" || cfg.ClientID == "" {
		return nil, errors.New("hub: OIDC needs an issuer and a client id")
	}
	if cfg.HTTPClient != nil {
		ctx = oidc.ClientContext(ctx, cfg.HTTPClient)
	}
	return &OIDCBearer{cfg: cfg, ctx: ctx}, nil
}

func (b *OIDCBearer) idTokenVerifier() (*oidc.IDTokenVerifier, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.verifier != nil {
		return b.verifier, nil
	}
	if b.err != nil && time.Since(b.tried) < retryDiscovery {
		return nil, b.err
	}
	b.tried = time.Now()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	p, err := oidc.NewProvider(ctx, b.cfg.Issuer)
	if err != nil {
		b.err = fmt.Errorf("hub: OIDC discovery of %s: %w", b.cfg.Issuer, err)
		return nil, b.err
	}
	b.verifier, b.err = p.Verifier(&oidc.Config{ClientID: b.cfg.ClientID}), nil
	return b.verifier, nil
}

// Authenticate implements Authenticator.
func (b *OIDCBearer) Authenticate(r *http.Request) (hubapi.Principal, error) {
	h := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || tok == "" {
		return hubapi.Principal{}, ErrNoCredentials
	}
	v, err := b.idTokenVerifier()
	if err != nil {
		return hubapi.Principal{}, err
	}
	// The key set is fetched with the provider's context (its client),
	// not the request's, which ends with the call.
	idt, err := v.Verify(b.ctx, strings.TrimSpace(tok))
	if err != nil {
		return hubapi.Principal{}, fmt.Errorf("hub: the bearer token is not a valid ID token of %s: %w", b.cfg.Issuer, err)
	}
	return b.cfg.Principal(idt)
}

// authenticate runs the authenticators in order.
func (s *Server) authenticate(r *http.Request) (hubapi.Principal, error) {
	for _, a := range s.opts.Authenticators {
		p, err := a.Authenticate(r)
		if errors.Is(err, ErrNoCredentials) {
			continue
		}
		return p, err
	}
	return hubapi.Principal{}, ErrNoCredentials
}

// person wraps a handler of the approver API: the caller must be signed
// in through the identity provider.
func (s *Server) person(fn func(http.ResponseWriter, *http.Request, hubapi.Principal)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, err := s.authenticate(r)
		if errors.Is(err, ErrNoCredentials) {
			s.refuse(w, http.StatusUnauthorized, hubapi.CodeUnauthorized, "sign in: this call needs an ID token of the hub's identity provider (Authorization: Bearer) or the console's session", nil)
			return
		}
		if err != nil {
			s.log.Warn("hub: approver authentication refused", "err", err)
			s.refuse(w, http.StatusUnauthorized, hubapi.CodeUnauthorized, err.Error(), nil)
			return
		}
		fn(w, r, p)
	}
}
