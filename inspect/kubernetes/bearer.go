package kubernetes

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	authnv1 "k8s.io/api/authentication/v1"

	"github.com/interlock/interlock/model"
)

// A pass_bearer target lets a client's own bearer token through: the
// request goes upstream with the token instead of interlock's credential
// and Impersonate-* headers. Whose the token is, interlock learns before
// the request is judged, from a SelfSubjectReview made upstream with the
// token: policy judges, and the journal names, that identity. A token the
// review does not vouch for is refused; interlock never guesses.

const (
	// reviewTTL bounds how long a review answers for its token: a token
	// revoked meanwhile is still refused by the API server on the request
	// itself, only the identity journaled and judged is that old.
	reviewTTL = time.Minute
	// maxReviews bounds the cache; a process sending many tokens only
	// costs reviews, not memory.
	maxReviews = 4096
	// maxToken bounds a token's size (a JWT with many claims is a few
	// KiB; the API server's header limit is larger, but no real token is).
	maxToken = 16 << 10
	// SourceBearer is identity.source for a reviewed bearer token.
	SourceBearer = "bearer-token"
	// wsTokenProtocol is how a browser's websocket carries a bearer token
	// (the API server reads it from Sec-WebSocket-Protocol).
	wsTokenProtocol = "base64url.bearer.authorization.k8s.io."
)

// errUnauthorized marks a token the API server rejected: the client is
// answered 401, as the API server would.
var errUnauthorized = errors.New("the API server does not accept the bearer token")

// bearerToken reads the client's bearer token. ok is false when the
// client sent none. Anything but exactly one `Bearer TOKEN` header is an
// error: Basic credentials, two headers (a proxy and the API server
// could each read another), a token of characters no token has.
func bearerToken(h http.Header) (token string, ok bool, err error) {
	vals := h.Values("Authorization")
	switch len(vals) {
	case 0:
		return "", false, nil
	case 1:
	default:
		return "", true, errors.New("the client sent more than one Authorization header")
	}
	scheme, tok, _ := strings.Cut(vals[0], " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", true, fmt.Errorf("only a bearer token is let through, not %q credentials", firstWord(scheme))
	}
	if tok == "" || len(tok) > maxToken || !tokenChars(tok) {
		return "", true, errors.New("the bearer token is malformed")
	}
	return tok, true, nil
}

func firstWord(s string) string {
	if len(s) > 16 || !tokenChars(s) {
		return "?"
	}
	return s
}

// tokenChars says whether s is made of RFC 6750 b64token characters.
func tokenChars(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("-._~+/=", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// wsToken says whether the client hides a token in a websocket
// subprotocol, which the API server would authenticate as well.
func wsToken(h http.Header) bool {
	for _, v := range h.Values("Sec-Websocket-Protocol") {
		for _, p := range strings.Split(v, ",") {
			if strings.HasPrefix(strings.ToLower(strings.TrimSpace(p)), wsTokenProtocol) {
				return true
			}
		}
	}
	return false
}

// tokenID names a token in the journal: 8 bytes of its SHA-256, enough
// to tell a session's tokens apart, too few to test guesses against.
func tokenID(sum [32]byte) string { return hex.EncodeToString(sum[:8]) }

// reviews caches what SelfSubjectReviews said, by the token's SHA-256:
// kubectl sends the same token with every request.
type reviews struct {
	mu sync.Mutex
	m  map[[32]byte]reviewed
}

type reviewed struct {
	id      identity
	expires time.Time
}

func (c *reviews) get(sum [32]byte, now time.Time) (identity, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.m[sum]
	if !ok || !now.Before(r.expires) {
		return identity{}, false
	}
	return r.id, true
}

func (c *reviews) put(sum [32]byte, id identity, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[[32]byte]reviewed{}
	}
	if len(c.m) >= maxReviews {
		for k, r := range c.m {
			if !now.Before(r.expires) {
				delete(c.m, k)
			}
		}
	}
	for k := range c.m {
		if len(c.m) < maxReviews {
			break
		}
		delete(c.m, k)
	}
	c.m[sum] = reviewed{id: id, expires: now.Add(reviewTTL)}
}

// bearerIdentity is who the token is: from the cache, else from a
// SelfSubjectReview made with it. The identity returned carries the token,
// to be sent upstream.
func (t *target) bearerIdentity(ctx context.Context, token string) (identity, error) {
	sum := sha256.Sum256([]byte(token))
	now := time.Now()
	id, ok := t.reviews.get(sum, now)
	if !ok {
		var err error
		if id, err = t.review(ctx, token); err != nil {
			return identity{}, err
		}
		id.tokenID = tokenID(sum)
		t.reviews.put(sum, id, now)
	}
	id.token = token
	return id, nil
}

// review asks the API server, with the token, whose it is. Anything but a
// well-formed answer naming an authenticated user is an error.
func (t *target) review(ctx context.Context, token string) (identity, error) {
	u := t.upstream
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	body := `{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}`
	p := u.base.JoinPath("apis", "authentication.k8s.io", "v1", "selfsubjectreviews")
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.String(), strings.NewReader(body))
	if err != nil {
		return identity{}, fmt.Errorf("kubernetes: self subject review: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := u.bare.RoundTrip(req)
	if err != nil {
		return identity{}, fmt.Errorf("kubernetes: self subject review: %w", err)
	}
	defer res.Body.Close()
	switch res.StatusCode {
	case http.StatusCreated, http.StatusOK:
	case http.StatusUnauthorized:
		return identity{}, errUnauthorized
	default:
		return identity{}, fmt.Errorf("kubernetes: self subject review: the API server answered %s", res.Status)
	}
	if mt, _, _ := mime.ParseMediaType(res.Header.Get("Content-Type")); mt != "application/json" {
		return identity{}, fmt.Errorf("kubernetes: self subject review: an answer of type %q", res.Header.Get("Content-Type"))
	}
	raw, err := io.ReadAll(io.LimitReader(res.Body, 1<<20+1))
	if err != nil || len(raw) > 1<<20 {
		return identity{}, fmt.Errorf("kubernetes: self subject review: reading the answer: %v", err)
	}
	var ssr authnv1.SelfSubjectReview
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&ssr); err != nil || dec.More() {
		return identity{}, errors.New("kubernetes: self subject review: the answer is not one JSON object")
	}
	if ssr.Kind != "SelfSubjectReview" || ssr.APIVersion != "authentication.k8s.io/v1" {
		return identity{}, fmt.Errorf("kubernetes: self subject review: the answer is a %s %s", ssr.APIVersion, ssr.Kind)
	}
	ui := ssr.Status.UserInfo
	// An API server that lets anonymous requests in would review a token
	// it ignored as the anonymous user: no identity at all.
	if ui.Username == "" || ui.Username == "system:anonymous" || slices.Contains(ui.Groups, "system:unauthenticated") {
		return identity{}, fmt.Errorf("kubernetes: self subject review: the token names no authenticated user (%q)", ui.Username)
	}
	return identity{user: ui.Username, uid: ui.UID, groups: ui.Groups, source: SourceBearer}, nil
}

// caller is who a request is made as: the session's identity, or, on a
// pass_bearer target, the owner of the client's bearer token. A client
// certificate and a token together must name the same user: the
// certificate then wins, as it would at the API server (whose x509
// authenticator comes before its token authenticators), and the token is
// not sent on. code is the HTTP status a refusal is answered with.
func (x *session) caller(r *http.Request) (who identity, code int, err error) {
	tok, ok, err := bearerToken(r.Header)
	if err != nil {
		return identity{}, http.StatusUnauthorized, err
	}
	if !ok {
		return x.who, 0, nil
	}
	id, err := x.t.bearerIdentity(r.Context(), tok)
	if errors.Is(err, errUnauthorized) {
		return identity{}, http.StatusUnauthorized, err
	}
	if err != nil {
		// Unknown: the token is refused rather than sent unjudged.
		return identity{}, http.StatusForbidden, fmt.Errorf("the bearer token's identity could not be established: %w", err)
	}
	if err := x.noteIdentity(r.Context(), id); err != nil {
		return identity{}, http.StatusServiceUnavailable, err
	}
	if x.who.source == "client-certificate" {
		if id.user != x.who.user {
			return identity{}, http.StatusForbidden, fmt.Errorf("the client certificate (%s) and the bearer token (%s) name different users", x.who.user, id.user)
		}
		return x.who, 0, nil
	}
	return id, 0, nil
}

// noteIdentity journals a session's first request with a token as a
// k8s.identity entry: the session's identities, without reading every
// request.
func (x *session) noteIdentity(ctx context.Context, id identity) error {
	x.bearersMu.Lock()
	seen := x.bearers[id.tokenID]
	x.bearersMu.Unlock()
	if seen {
		return nil
	}
	rec := model.Record{Kind: model.KindK8sIdentity, Session: x.s.ID,
		Data: model.K8sIdentity{User: id.user, UID: id.uid, Groups: id.groups, TokenID: id.tokenID}}
	if _, err := x.h.deps.Journal.Append(ctx, rec, model.Committed); err != nil {
		x.log.Error("journal k8s identity", "err", err)
		return errors.New("interlock: the journal cannot record the token's identity")
	}
	x.bearersMu.Lock()
	if x.bearers == nil {
		x.bearers = map[string]bool{}
	}
	x.bearers[id.tokenID] = true
	x.bearersMu.Unlock()
	return nil
}

type callerKey struct{}

func withCaller(ctx context.Context, who identity) context.Context {
	return context.WithValue(ctx, callerKey{}, who)
}

// callerOf is the identity a request's context was given by serveHTTP,
// else the session's.
func (x *session) callerOf(ctx context.Context) identity {
	if who, ok := ctx.Value(callerKey{}).(identity); ok {
		return who
	}
	return x.who
}

// authorize sets what calls the API server as who on an outgoing request:
// the client's token, or impersonation of the session's identity (the
// transport adds interlock's credential).
func authorize(h http.Header, who identity) {
	h.Del("Authorization")
	for k := range h {
		// X-Remote-* are what an authenticating front proxy asserts;
		// only interlock speaks for the client.
		if c := http.CanonicalHeaderKey(k); strings.HasPrefix(c, "Impersonate-") || strings.HasPrefix(c, "X-Remote-") {
			h.Del(k)
		}
	}
	if who.token != "" {
		h.Set("Authorization", "Bearer "+who.token)
		return
	}
	h.Set("Impersonate-User", who.user)
	for _, g := range who.groups {
		h.Add("Impersonate-Group", g)
	}
}
