package console

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/interlock/interlock/hub/hubapi"
	"github.com/interlock/interlock/hub/idclaims"
)

// Cookies: the __Host- prefix makes the browser refuse them unless they
// are Secure, for the whole origin and set by it (no Domain): a sibling
// host cannot plant one.
const (
	sessionCookie = "__Host-interlock-session"
	loginCookie   = "__Host-interlock-login"
	// CSRFHeader carries the session's CSRF token on the approver API's
	// unsafe calls made with the cookie.
	CSRFHeader = "X-Interlock-CSRF"
	// loginTTL bounds a sign-in at the IdP.
	loginTTL = 10 * time.Minute
	// maxFormBytes bounds a POST's body.
	maxFormBytes = 64 << 10
	// maxSessions bounds the sessions kept: only a sign-in the IdP
	// vouched for makes one, and the oldest go first.
	maxSessions = 10000
)

// Errors of Authenticate. ErrNoSession: the request carries no console
// cookie at all (another way in may be tried); ErrNotSignedIn: its
// cookie names no live session, or an unsafe method lacks the session's
// CSRF token (refused).
var (
	ErrNoSession   = errors.New("console: no session cookie")
	ErrNotSignedIn = errors.New("console: not signed in")
)

// session is a signed-in person. Sessions live in the hub's memory: a
// restart signs everyone out.
type session struct {
	who     hubapi.Principal
	csrf    string
	expires time.Time
}

type auth struct {
	c      *Console
	secret []byte // MACs the login cookie; new at each start

	mu       sync.Mutex
	provider *oidc.Provider
	sessions map[[32]byte]*session
}

func newAuth(c *Console) (*auth, error) {
	a := &auth{c: c, secret: make([]byte, 32), sessions: map[[32]byte]*session{}}
	if _, err := rand.Read(a.secret); err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	return a, nil
}

func (a *auth) ctx(ctx context.Context) context.Context {
	if hc := a.c.opts.OIDC.HTTPClient; hc != nil {
		return oidc.ClientContext(ctx, hc)
	}
	return ctx
}

// oidcProvider discovers the IdP on first use and keeps it: an IdP down
// at the hub's start does not keep the hub from serving its hosts.
func (a *auth) oidcProvider(ctx context.Context) (*oidc.Provider, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.provider != nil {
		return a.provider, nil
	}
	// The provider keeps the context's HTTP client for its key set, not
	// the request's deadline.
	p, err := oidc.NewProvider(a.ctx(context.WithoutCancel(ctx)), a.c.opts.OIDC.Issuer)
	if err != nil {
		return nil, fmt.Errorf("console: OIDC discovery at %s: %w", a.c.opts.OIDC.Issuer, err)
	}
	a.provider = p
	return p, nil
}

func (a *auth) oauth2Config(p *oidc.Provider) *oauth2.Config {
	o := a.c.opts.OIDC
	scopes := o.Scopes
	if len(scopes) == 0 {
		scopes = []string{oidc.ScopeOpenID, "profile", "email", "groups"}
	}
	return &oauth2.Config{ClientID: o.ClientID, ClientSecret: o.ClientSecret, Endpoint: p.Endpoint(),
		RedirectURL: a.c.base.String() + "/callback", Scopes: scopes}
}

// pendingLogin is a sign-in under way, kept in the browser's login
// cookie under the hub's MAC (so that no one can fill the hub's memory
// by starting sign-ins): the state the IdP must send back, the nonce its
// ID token must carry, the PKCE verifier and the page to return to.
type pendingLogin struct {
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
	Next     string `json:"p"`
	Expires  int64  `json:"e"`
}

func randomToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (a *auth) mac(b []byte) []byte {
	m := hmac.New(sha256.New, a.secret)
	m.Write([]byte("interlock console login v1\n"))
	m.Write(b)
	return m.Sum(nil)
}

func (a *auth) sealLogin(p pendingLogin) string {
	b, _ := json.Marshal(p)
	return base64.RawURLEncoding.EncodeToString(b) + "." + base64.RawURLEncoding.EncodeToString(a.mac(b))
}

func (a *auth) openLogin(v string) (pendingLogin, error) {
	var p pendingLogin
	body, tag, ok := strings.Cut(v, ".")
	b, err1 := base64.RawURLEncoding.DecodeString(body)
	t, err2 := base64.RawURLEncoding.DecodeString(tag)
	if !ok || err1 != nil || err2 != nil || !hmac.Equal(t, a.mac(b)) {
		return p, errors.New("the sign-in cookie is not the hub's")
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return p, errors.New("the sign-in cookie is not the hub's")
	}
	if a.c.opts.Now().Unix() > p.Expires {
		return p, errors.New("the sign-in took longer than 10 minutes")
	}
	return p, nil
}

// nextPath is where to go after sign-in: a console page, never another
// site ("//evil", "/\evil" and absolute URLs are refused).
func (a *auth) nextPath(v string) string {
	home := a.c.prefix + "/approvals"
	u, err := url.Parse(v)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil ||
		!strings.HasPrefix(u.Path, a.c.prefix+"/") || strings.HasPrefix(v, "//") || strings.ContainsAny(v, "\\\r\n\t") {
		return home
	}
	out := u.Path
	if u.RawQuery != "" {
		out += "?" + u.RawQuery
	}
	return out
}

func (a *auth) setCookie(w http.ResponseWriter, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: "/", MaxAge: maxAge,
		Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
}

// login starts the authorization code flow with PKCE, state and nonce.
func (a *auth) login(w http.ResponseWriter, r *http.Request) {
	p, err := a.oidcProvider(r.Context())
	if err != nil {
		a.c.log.Error("console: sign-in", "err", err)
		a.c.fail(w, r, nil, http.StatusServiceUnavailable, "The identity provider cannot be reached",
			"The hub could not read the identity provider's configuration.", "Try again in a minute; if it persists, tell the hub's operators (its log says why).")
		return
	}
	pl := pendingLogin{State: randomToken(), Nonce: randomToken(), Verifier: oauth2.GenerateVerifier(),
		Next: a.nextPath(r.URL.Query().Get("next")), Expires: a.c.opts.Now().Add(loginTTL).Unix()}
	a.setCookie(w, loginCookie, a.sealLogin(pl), int(loginTTL/time.Second))
	http.Redirect(w, r, a.oauth2Config(p).AuthCodeURL(pl.State, oidc.Nonce(pl.Nonce), oauth2.S256ChallengeOption(pl.Verifier)), http.StatusSeeOther)
}

// callback ends the flow: the state must be the one this browser's
// sign-in sent, the code is exchanged with the PKCE verifier, and the ID
// token must verify and carry the nonce.
func (a *auth) callback(w http.ResponseWriter, r *http.Request) {
	refuse := func(detail string) {
		a.c.log.Warn("console: sign-in refused", "reason", detail)
		a.c.fail(w, r, nil, http.StatusForbidden, "Sign-in failed", detail, "Sign in again from the start.")
	}
	ck, err := r.Cookie(loginCookie)
	if err != nil {
		refuse("This browser did not start a sign-in (no sign-in cookie).")
		return
	}
	a.setCookie(w, loginCookie, "", -1) // one use
	pl, err := a.openLogin(ck.Value)
	if err != nil {
		refuse(err.Error() + ".")
		return
	}
	q := r.URL.Query()
	if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(pl.State)) != 1 {
		refuse("The identity provider's answer is not for this browser's sign-in (state mismatch).")
		return
	}
	if e := q.Get("error"); e != "" {
		refuse("The identity provider refused: " + e + " " + q.Get("error_description"))
		return
	}
	p, err := a.oidcProvider(r.Context())
	if err != nil {
		refuse("The identity provider cannot be reached.")
		return
	}
	ctx := a.ctx(r.Context())
	tok, err := a.oauth2Config(p).Exchange(ctx, q.Get("code"), oauth2.VerifierOption(pl.Verifier))
	if err != nil {
		a.c.log.Warn("console: code exchange", "err", err)
		refuse("The identity provider did not exchange the code.")
		return
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		refuse("The identity provider sent no ID token.")
		return
	}
	idt, err := p.Verifier(&oidc.Config{ClientID: a.c.opts.OIDC.ClientID, Now: a.c.opts.Now}).Verify(ctx, raw)
	if err != nil {
		a.c.log.Warn("console: ID token", "err", err)
		refuse("The ID token does not verify.")
		return
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(pl.Nonce)) != 1 {
		refuse("The ID token is not for this sign-in (nonce mismatch).")
		return
	}
	who, err := a.principal(idt)
	if err != nil {
		refuse(err.Error())
		return
	}
	id := a.newSession(who)
	a.setCookie(w, sessionCookie, id, int(a.c.opts.SessionTTL/time.Second))
	a.c.log.Info("console: signed in", "issuer", who.Issuer, "subject", who.Subject, "username", who.Username, "roles", who.Roles)
	http.Redirect(w, r, pl.Next, http.StatusSeeOther)
}

// principal reads who the ID token names and the roles their groups
// give them, as the hub's approver API does (hub/idclaims).
func (a *auth) principal(idt *oidc.IDToken) (hubapi.Principal, error) {
	o := a.c.opts.OIDC
	return idclaims.Mapping{UsernameClaim: o.UsernameClaim, GroupsClaim: o.GroupsClaim, Roles: o.Roles}.Principal(idt)
}

func sessionKey(id string) [32]byte { return sha256.Sum256([]byte(id)) }

func (a *auth) newSession(who hubapi.Principal) string {
	id := randomToken()
	now := a.c.opts.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	for k, s := range a.sessions {
		if now.After(s.expires) {
			delete(a.sessions, k)
		}
	}
	for len(a.sessions) >= maxSessions {
		var oldest [32]byte
		var at time.Time
		for k, s := range a.sessions {
			if at.IsZero() || s.expires.Before(at) {
				oldest, at = k, s.expires
			}
		}
		delete(a.sessions, oldest)
	}
	a.sessions[sessionKey(id)] = &session{who: who, csrf: randomToken(), expires: now.Add(a.c.opts.SessionTTL)}
	return id
}

// lookup returns the live session the request's cookie names.
func (a *auth) lookup(r *http.Request) *session {
	ck, err := r.Cookie(sessionCookie)
	if err != nil || ck.Value == "" {
		return nil
	}
	k := sessionKey(ck.Value)
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.sessions[k]
	if s == nil {
		return nil
	}
	if a.c.opts.Now().After(s.expires) {
		delete(a.sessions, k)
		return nil
	}
	return s
}

// sameOrigin refuses a POST a browser says came from another origin; a
// POST with no Origin header still needs the CSRF token.
func (c *Console) sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	return o == "" || o == c.origin
}

// csrfOK checks an unsafe request's CSRF token: the form's field or the
// header, against the session's.
func csrfOK(r *http.Request, s *session) bool {
	t := r.Header.Get(CSRFHeader)
	if t == "" {
		t = r.PostFormValue("csrf")
	}
	return t != "" && subtle.ConstantTimeCompare([]byte(t), []byte(s.csrf)) == 1
}

func (a *auth) logout(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	s := a.lookup(r)
	if s == nil || !a.c.sameOrigin(r) || !csrfOK(r, s) {
		a.c.fail(w, r, nil, http.StatusForbidden, "Not signed out", "The request did not come from a console page of this session.", "")
		return
	}
	ck, _ := r.Cookie(sessionCookie)
	a.mu.Lock()
	delete(a.sessions, sessionKey(ck.Value))
	a.mu.Unlock()
	a.setCookie(w, sessionCookie, "", -1)
	http.Redirect(w, r, a.c.prefix+"/signed-out", http.StatusSeeOther)
}

// Authenticate is the console's sign-in for the hub's approver API (the
// hub/server Authenticator): the session cookie, and for any method but
// GET and HEAD the session's CSRF token in the X-Interlock-CSRF header,
// so that another site cannot make a signed-in browser decide.
func (c *Console) Authenticate(r *http.Request) (hubapi.Principal, error) {
	if ck, err := r.Cookie(sessionCookie); err != nil || ck.Value == "" {
		return hubapi.Principal{}, ErrNoSession
	}
	s := c.auth.lookup(r)
	if s == nil {
		return hubapi.Principal{}, ErrNotSignedIn
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		t := r.Header.Get(CSRFHeader)
		if !c.sameOrigin(r) || t == "" || subtle.ConstantTimeCompare([]byte(t), []byte(s.csrf)) != 1 {
			return hubapi.Principal{}, ErrNotSignedIn
		}
	}
	return s.who, nil
}

// signedIn wraps a page for people signed in with role (anyRole: any
// role at all). A GET without a session goes to sign-in and back; a POST
// must come from a console page (same origin, the session's CSRF token).
func (c *Console) signedIn(role string, fn func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s := c.auth.lookup(r)
		unsafe := r.Method != http.MethodGet && r.Method != http.MethodHead
		if s == nil {
			if unsafe {
				c.fail(w, r, nil, http.StatusForbidden, "Not signed in", "Your session ended before this was sent; nothing was done.", "Sign in and try again.")
				return
			}
			http.Redirect(w, r, c.prefix+"/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		if unsafe {
			// A form here is a verdict and a reason: no more is read.
			r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		}
		if unsafe && (!c.sameOrigin(r) || !csrfOK(r, s)) {
			c.log.Warn("console: a POST without this session's CSRF token refused", "username", s.who.Username, "path", r.URL.Path)
			c.fail(w, r, s, http.StatusForbidden, "Refused", "The request did not come from a console page of your session (CSRF token missing or wrong); nothing was done.", "")
			return
		}
		if len(s.who.Roles) == 0 {
			c.render(w, r, http.StatusForbidden, "norole", "No role", s, c.roleHelp())
			return
		}
		if role != anyRole && !s.who.Has(role) {
			c.fail(w, r, s, http.StatusForbidden, "Not allowed", "This needs the "+role+" role, which your groups do not give you.",
				c.groupsFor(role))
			return
		}
		fn(w, r, s)
	}
}

// roleHelp says which groups give which role, for the person to ask
// for.
func (c *Console) roleHelp() []roleGroups {
	var out []roleGroups
	for _, role := range []string{hubapi.RoleApprover, hubapi.RoleAuditor, hubapi.RoleAdmin} {
		out = append(out, roleGroups{Role: role, Groups: c.opts.OIDC.Roles[role]})
	}
	return out
}

type roleGroups struct {
	Role   string
	Groups []string
}

func (c *Console) groupsFor(role string) string {
	g := append(slices.Clone(c.opts.OIDC.Roles[role]), c.opts.OIDC.Roles[hubapi.RoleAdmin]...)
	if len(g) == 0 {
		return "No group holds it in the hub's configuration (hub.console.roles)."
	}
	return "Ask your identity provider's administrators to add you to one of these groups: " + strings.Join(g, ", ") + "."
}
