package console

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/interlock/interlock/hub/hubapi"
	"github.com/interlock/interlock/hub/idclaims"
	"github.com/interlock/interlock/hub/store"
)

// noFollow is a browser that stops at each redirect, to read the flow's
// steps.
func noFollow(c *http.Client) *http.Client {
	n := *c
	n.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &n
}

// TestSignIn: the authorization code flow with PKCE (S256), state and
// nonce; the session cookie is __Host-, Secure, HttpOnly, SameSite=Lax;
// the person lands on the page they asked for, named with their roles.
func TestSignIn(t *testing.T) {
	e := newEnv(t)
	b := noFollow(e.browser(t))
	e.idp.QueueUser(person("alice", "dba-approvers", "auditors"))

	resp, _ := get(t, b, e.base+"/login?next="+url.QueryEscape("/console/sessions?host=x"))
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login: %d", resp.StatusCode)
	}
	authz, _ := url.Parse(resp.Header.Get("Location"))
	q := authz.Query()
	for _, k := range []string{"state", "nonce", "code_challenge"} {
		if len(q.Get(k)) < 32 {
			t.Errorf("the authorization request's %s is %q: want a random value", k, q.Get(k))
		}
	}
	if q.Get("code_challenge_method") != "S256" || q.Get("response_type") != "code" || q.Get("redirect_uri") != e.base+"/callback" {
		t.Errorf("authorization request %s", authz)
	}
	if !strings.Contains(q.Get("scope"), "openid") || !strings.Contains(q.Get("scope"), "groups") {
		t.Errorf("scope %q", q.Get("scope"))
	}
	login := cookieNamed(resp, loginCookie)
	if login == nil || !login.Secure || !login.HttpOnly || login.SameSite != http.SameSiteLaxMode || login.Path != "/" {
		t.Fatalf("login cookie %+v", login)
	}
	// The IdP answers at once (mockoidc has no form) with a redirect to
	// the callback.
	resp, _ = get(t, b, authz.String())
	cb := resp.Header.Get("Location")
	if !strings.HasPrefix(cb, e.base+"/callback?") {
		t.Fatalf("the IdP sent the browser to %q", cb)
	}
	resp, _ = get(t, b, cb)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/console/sessions?host=x" {
		t.Fatalf("callback: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	sc := cookieNamed(resp, sessionCookie)
	if sc == nil || !sc.Secure || !sc.HttpOnly || sc.SameSite != http.SameSiteLaxMode || sc.Path != "/" || sc.Domain != "" || len(sc.Value) < 40 {
		t.Fatalf("session cookie %+v", sc)
	}
	if c := cookieNamed(resp, loginCookie); c == nil || c.MaxAge >= 0 {
		t.Errorf("the login cookie is not cleared after use: %+v", c)
	}
	resp, body := get(t, b, e.base+"/approvals")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "alice") || !strings.Contains(body, ">approver<") || !strings.Contains(body, ">auditor<") {
		t.Fatalf("queue after sign-in: %d\n%s", resp.StatusCode, body)
	}

	// The callback replayed: its login cookie is spent, and so is the
	// code at the IdP.
	resp, body = get(t, b, cb)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "did not start a sign-in") {
		t.Errorf("callback replayed: %d\n%s", resp.StatusCode, body)
	}
	resp, _ = get(t, b, e.base+"/approvals")
	if resp.StatusCode != http.StatusOK {
		t.Errorf("the replay cost the session: %d", resp.StatusCode)
	}
}

func cookieNamed(resp *http.Response, name string) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// startLogin begins a sign-in in browser b and returns the IdP's
// callback URL and the login cookie, without following it.
func (e *testEnv) startLogin(t *testing.T, b *http.Client, user string) (string, *http.Cookie) {
	t.Helper()
	e.idp.QueueUser(person(user, "dba-approvers"))
	resp, _ := get(t, b, e.base+"/login")
	ck := cookieNamed(resp, loginCookie)
	resp, _ = get(t, b, resp.Header.Get("Location"))
	return resp.Header.Get("Location"), ck
}

// TestSignInRefused: a callback that is not this browser's sign-in (no
// login cookie, another state, a forged or expired cookie, the IdP's
// error), an ID token without the username claim, and a next page on
// another site.
func TestSignInRefused(t *testing.T) {
	e := newEnv(t)
	refused := func(name string, b *http.Client, u string, want string) {
		t.Helper()
		resp, body := get(t, b, u)
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, want) {
			t.Errorf("%s: %d, want 403 saying %q\n%s", name, resp.StatusCode, want, body)
		}
		if c := cookieNamed(resp, sessionCookie); c != nil && c.Value != "" {
			t.Errorf("%s: a session cookie was set", name)
		}
	}

	// Another browser completes the victim's sign-in (login CSRF): it
	// has no login cookie.
	cb, _ := e.startLogin(t, noFollow(e.browser(t)), "mallory")
	refused("no login cookie", noFollow(e.browser(t)), cb, "did not start a sign-in")

	// A browser's own cookie with another sign-in's state.
	b := noFollow(e.browser(t))
	cbA, _ := e.startLogin(t, b, "alice")
	other, _ := e.startLogin(t, noFollow(e.browser(t)), "mallory")
	u, _ := url.Parse(other)
	ua, _ := url.Parse(cbA)
	qa := ua.Query()
	qa.Set("code", u.Query().Get("code"))
	qa.Set("state", u.Query().Get("state"))
	ua.RawQuery = qa.Encode()
	refused("another sign-in's state", b, ua.String(), "state mismatch")

	// A forged login cookie (the MAC is the hub's).
	b = noFollow(e.browser(t))
	cb, ck := e.startLogin(t, b, "alice")
	parts := strings.SplitN(ck.Value, ".", 2)
	forged := &http.Cookie{Name: loginCookie, Value: parts[0] + ".AAAA" + parts[1][4:], Path: "/", Secure: true}
	bu, _ := url.Parse(e.base)
	b.Jar.SetCookies(bu, []*http.Cookie{forged})
	refused("forged login cookie", b, cb, "sign-in cookie is not the hub")

	// A sign-in that took too long.
	b = noFollow(e.browser(t))
	cb, _ = e.startLogin(t, b, "alice")
	e.clock.advance(11 * time.Minute)
	refused("expired sign-in", b, cb, "longer than 10 minutes")
	e.clock.advance(-11 * time.Minute)

	// The IdP's own refusal, with this browser's state.
	b = noFollow(e.browser(t))
	cb, _ = e.startLogin(t, b, "alice")
	u, _ = url.Parse(cb)
	q := url.Values{"state": {u.Query().Get("state")}, "error": {"access_denied"}, "error_description": {"<script>x</script>"}}
	resp, body := get(t, b, e.base+"/callback?"+q.Encode())
	if resp.StatusCode != http.StatusForbidden || strings.Contains(body, "<script>x") || !strings.Contains(body, "access_denied") {
		t.Errorf("IdP error: %d\n%s", resp.StatusCode, body)
	}

	// No username claim: the hub could not tell an approver from a
	// requester.
	noName := person("", "dba-approvers")
	e.idp.QueueUser(noName)
	resp, body = get(t, e.browser(t), e.base+"/login")
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "no preferred_username claim") {
		t.Errorf("no username: %d\n%s", resp.StatusCode, body)
	}

	// next on another site lands on the console.
	for _, next := range []string{"https://evil.example/", "//evil.example/console/", "/\\evil.example", "/elsewhere", "javascript:alert(1)"} {
		b := e.browser(t)
		e.idp.QueueUser(person("alice", "dba-approvers"))
		resp, _ := get(t, b, e.base+"/login?next="+url.QueryEscape(next))
		if resp.Request.URL.Host != strings.TrimPrefix(e.url, "https://") || resp.Request.URL.Path != "/console/approvals" {
			t.Errorf("next=%q landed on %s", next, resp.Request.URL)
		}
	}
}

// TestRoles: roles come from the IdP's groups; someone with none sees
// nothing but what to ask for; auditors read and cannot decide;
// approvers decide and do not read the fleet's sessions; the server
// refuses what the page does not offer; sessions expire and sign out.
func TestRoles(t *testing.T) {
	e := newEnv(t)
	e.appr.hold(heldRequest("r1", "bob", "DELETE FROM accounts"))

	_, resp, body := e.signIn(t, person("nobody", "engineering"))
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "with no role") ||
		!strings.Contains(body, "dba-approvers") || !strings.Contains(body, "auditors") || strings.Contains(body, "DELETE FROM") {
		t.Errorf("no role: %d\n%s", resp.StatusCode, body)
	}

	aud, resp, body := e.signIn(t, person("carol", "auditors"))
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "DELETE FROM accounts") || strings.Contains(body, `value="approve"`) {
		t.Errorf("auditor's queue: %d\n%s", resp.StatusCode, body)
	}
	resp, body = postForm(t, aud, e.base+"/approvals/r1/decision", url.Values{"csrf": {csrfOf(t, body)}, "verdict": {"approve"},
		"expect_sha256": {heldRequest("r1", "bob", "DELETE FROM accounts").Held.Request.TextSHA256}}, nil)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "approver role") {
		t.Errorf("an auditor's forged decision: %d\n%s", resp.StatusCode, body)
	}
	if resp, _ := get(t, aud, e.base+"/sessions"); resp.StatusCode != http.StatusOK {
		t.Errorf("auditor's sessions: %d", resp.StatusCode)
	}

	appr, _, _ := e.signIn(t, person("alice", "dba-approvers"))
	resp, body = get(t, appr, e.base+"/sessions")
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "auditors") {
		t.Errorf("approver's sessions: %d\n%s", resp.StatusCode, body)
	}
	if len(e.appr.decisions()) != 0 {
		t.Fatalf("decided: %+v", e.appr.decisions())
	}

	// Expiry: the session ends after its TTL; a page asks for sign-in.
	e.clock.advance(61 * time.Minute)
	resp, _ = get(t, noFollow(appr), e.base+"/approvals")
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/console/login?next=") {
		t.Errorf("expired session: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	e.clock.advance(-61 * time.Minute)

	// Sign-out needs the CSRF token, and ends the session.
	b, _, body := e.signIn(t, person("alice", "dba-approvers"))
	if resp, _ := postForm(t, b, e.base+"/logout", nil, nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("sign-out without CSRF: %d", resp.StatusCode)
	}
	if resp, _ := get(t, noFollow(b), e.base+"/approvals"); resp.StatusCode != http.StatusOK {
		t.Errorf("signed out without the token: %d", resp.StatusCode)
	}
	resp, body = postForm(t, b, e.base+"/logout", url.Values{"csrf": {csrfOf(t, body)}}, nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Signed out") {
		t.Errorf("sign-out: %d\n%s", resp.StatusCode, body)
	}
	if resp, _ := get(t, noFollow(b), e.base+"/approvals"); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("after sign-out: %d", resp.StatusCode)
	}
}

// TestAuthenticate: the cookie sign-in the hub's approver API takes:
// reads with the cookie, decisions only with the session's CSRF token
// in the header (another site cannot make a signed-in browser decide).
func TestAuthenticate(t *testing.T) {
	e := newEnv(t)
	b, _, page := e.signIn(t, person("alice", "dba-approvers"))
	bu, _ := url.Parse(e.base)
	req := func(method string, hdr map[string]string) *http.Request {
		r, _ := http.NewRequest(method, e.url+hubapi.PathApprovals, nil)
		for _, c := range b.Jar.Cookies(bu) {
			r.AddCookie(c)
		}
		for k, v := range hdr {
			r.Header.Set(k, v)
		}
		return r
	}
	who, err := e.con.Authenticate(req(http.MethodGet, nil))
	if err != nil || who.Username != "alice" || who.Issuer != e.idp.Issuer() || who.Subject != "sub-alice" || !who.Has(hubapi.RoleApprover) || who.Has(hubapi.RoleAuditor) {
		t.Fatalf("GET: %+v %v", who, err)
	}
	for name, hdr := range map[string]map[string]string{
		"no token":      nil,
		"wrong token":   {CSRFHeader: "x" + csrfOf(t, page)},
		"other origin":  {CSRFHeader: csrfOf(t, page), "Origin": "https://evil.example"},
		"token in form": {"Content-Type": "application/x-www-form-urlencoded"},
	} {
		if _, err := e.con.Authenticate(req(http.MethodPost, hdr)); !errors.Is(err, ErrNotSignedIn) {
			t.Errorf("POST %s: %v", name, err)
		}
	}
	if who, err := e.con.Authenticate(req(http.MethodPost, map[string]string{CSRFHeader: csrfOf(t, page)})); err != nil || who.Username != "alice" {
		t.Errorf("POST with the token: %+v %v", who, err)
	}
	r, _ := http.NewRequest(http.MethodGet, e.url+hubapi.PathApprovals, nil)
	if _, err := e.con.Authenticate(r); !errors.Is(err, ErrNoSession) {
		t.Errorf("no cookie: %v (want ErrNoSession, so that a bearer token is tried)", err)
	}
	r.AddCookie(&http.Cookie{Name: sessionCookie, Value: "forged"})
	if _, err := e.con.Authenticate(r); !errors.Is(err, ErrNotSignedIn) {
		t.Errorf("forged cookie: %v", err)
	}
}

func TestRolesFor(t *testing.T) {
	m := idclaims.Mapping{Roles: testRoles}
	got := m.RolesFor([]string{"auditors", "security", "x"})
	if strings.Join(got, ",") != "auditor,admin" {
		t.Errorf("roles %v", got)
	}
	if got := m.RolesFor(nil); len(got) != 0 {
		t.Errorf("no groups: %v", got)
	}
	// Role names are not groups.
	if got := m.RolesFor([]string{"approver", "admin"}); len(got) != 0 {
		t.Errorf("role names as groups: %v", got)
	}
}

// TestBaseURLAtRoot: a console at the root of its host serves there.
func TestBaseURLAtRoot(t *testing.T) {
	for _, base := range []string{"https://hub.example.com", "https://hub.example.com/", "https://hub.example.com/ops/console/"} {
		c, err := New(Options{Store: &store.Store{}, BaseURL: base, OIDC: OIDC{Issuer: "https://idp.example.com", ClientID: "x"}})
		if err != nil {
			t.Fatalf("%s: %v", base, err)
		}
		h := c.Handler()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, strings.TrimSuffix(base, "/")+"/approvals", nil))
		if rec.Code != http.StatusSeeOther || !strings.Contains(rec.Header().Get("Location"), "/login?next=") {
			t.Errorf("%s: %d %s", base, rec.Code, rec.Header().Get("Location"))
		}
	}
	if _, err := New(Options{Store: &store.Store{}, BaseURL: "http://hub.example.com/console", OIDC: OIDC{Issuer: "https://idp.example.com", ClientID: "x"}}); err == nil {
		t.Errorf("an http base URL was taken")
	}
}
