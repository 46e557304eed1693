// Package idptest is a company identity provider for tests: a real OIDC
// issuer (github.com/oauth2-proxy/mockoidc) on loopback, and the
// authorization code flow a person's browser would go through, done
// over HTTP, to get their ID token.
package idptest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/oauth2-proxy/mockoidc"
)

// IdP is a running issuer.
type IdP struct {
	*mockoidc.MockOIDC
}

// Start starts an issuer on 127.0.0.1; the test's cleanup stops it.
func Start(t testing.TB) *IdP {
	t.Helper()
	m, err := mockoidc.Run()
	if err != nil {
		t.Fatalf("idptest: start the issuer: %v", err)
	}
	t.Cleanup(func() { m.Shutdown() })
	return &IdP{m}
}

// User is a person at the IdP.
type User struct {
	Subject, Username, Email string
	Groups                   []string
}

// IDToken signs user in (authorization request, code, token request)
// and returns their ID token, whose audience is the issuer's client id.
func (p *IdP) IDToken(t testing.TB, u User) string {
	t.Helper()
	p.QueueUser(&mockoidc.MockUser{Subject: u.Subject, PreferredUsername: u.Username, Email: u.Email, EmailVerified: true, Groups: u.Groups})
	const redirect = "http://127.0.0.1/callback"
	q := url.Values{"client_id": {p.ClientID}, "redirect_uri": {redirect}, "response_type": {"code"},
		"scope": {"openid profile email groups"}, "state": {"s"}, "nonce": {"n"}}
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := hc.Get(p.AuthorizationEndpoint() + "?" + q.Encode())
	if err != nil {
		t.Fatalf("idptest: authorize: %v", err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || loc.Query().Get("code") == "" {
		t.Fatalf("idptest: authorize answered %d, Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	form := url.Values{"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")}, "redirect_uri": {redirect},
		"client_id": {p.ClientID}, "client_secret": {p.ClientSecret}}
	resp, err = http.Post(p.TokenEndpoint(), "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatalf("idptest: token: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var tr struct {
		IDToken string `json:"id_token"`
	}
	if err := json.Unmarshal(b, &tr); err != nil || tr.IDToken == "" {
		t.Fatalf("idptest: token answered %d: %s (%v)", resp.StatusCode, b, err)
	}
	return tr.IDToken
}

// String names the issuer in failures.
func (p *IdP) String() string { return fmt.Sprintf("test IdP %s (client %s)", p.Issuer(), p.ClientID) }
