// Package console is the fleet hub's web console (docs/console.md):
// server-rendered pages, signed in through the company's OIDC identity
// provider, where approvers decide held operations and auditors read the
// fleet's sessions, their statements and commands, terminal replays and
// each host's evidence. Every text a watched process controls is shown
// escaped (internal/textview) and whole; the console never shows a
// masked original (the hub holds only what hosts shipped: keyed hashes).
//
// The console reads the hub's store and asks the hub's approvals through
// the Approvals interface (hub/server implements it); it gives the hub's
// approver API its cookie sign-in (Console.Authenticate).
package console

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/interlock/interlock/hub/hubapi"
)

// Approvals is what the console needs of the hub's approvals. The hub
// enforces who may decide what; the console only shows the buttons.
type Approvals interface {
	PendingApprovals(ctx context.Context, who hubapi.Principal) ([]hubapi.PendingApproval, error)
	DecideApproval(ctx context.Context, who hubapi.Principal, id string, d hubapi.DecideRequest) (hubapi.SignedDecision, error)
}

// OIDC is the sign-in's identity provider and how its claims map to
// people and roles.
type OIDC struct {
	Issuer       string
	ClientID     string
	ClientSecret string
	// UsernameClaim and GroupsClaim name the ID token's claims
	// (preferred_username and groups when empty).
	UsernameClaim string
	GroupsClaim   string
	// Roles maps a role (hubapi.RoleApprover, ...) to the groups that
	// hold it.
	Roles map[string][]string
	// Scopes are asked for at sign-in: openid, profile, email and groups
	// when nil.
	Scopes []string
	// HTTPClient talks to the IdP; http.DefaultClient when nil.
	HTTPClient *http.Client
}

// Options configure a Console.
type Options struct {
	// Store is what the console reads: the hub's store, or a host's
	// journal (console/local).
	Store Source
	// ReadOnly refuses every decision, whatever the person's roles, and
	// shows the queue without buttons: a host's console unless its
	// config says decide.
	ReadOnly bool
	// Place names where the data comes from in the pages' errors ("the
	// hub's store" when empty).
	Place string
	// Approvals is the hub's approvals; nil shows an empty queue that
	// says approvals are not served.
	Approvals Approvals
	// Export writes the fleet bundle (what `interlock hub export`
	// writes) for the export link, calling flush after each page of
	// entries; nil hides it.
	Export func(ctx context.Context, w io.Writer, flush func() error) error
	// HubKey is the hub's cosignature verifier key: the evidence view
	// checks each stored cosignature with it.
	HubKey string
	// BaseURL is the console's address as browsers reach it
	// (https://hub.example.com:8443/console): its path prefixes every
	// page, and the IdP sends people back to BaseURL/callback.
	BaseURL string
	OIDC    OIDC
	// SessionTTL is how long a sign-in lasts (8h when zero).
	SessionTTL time.Duration
	Logger     *slog.Logger
	Now        func() time.Time
}

// Console serves the pages.
type Console struct {
	opts   Options
	log    *slog.Logger
	base   *url.URL
	prefix string // the base URL's path, without a trailing slash
	origin string // scheme://host of the base URL
	pages  map[string]*template.Template
	auth   *auth
}

//go:embed templates/*.html
var templateFS embed.FS

//go:embed assets
var assetFS embed.FS

// New makes a Console.
func New(opts Options) (*Console, error) {
	if opts.Store == nil {
		return nil, errors.New("console: a store is needed")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.SessionTTL <= 0 {
		opts.SessionTTL = 8 * time.Hour
	}
	base, err := url.Parse(opts.BaseURL)
	if err != nil || base.Scheme != "https" || base.Host == "" {
		return nil, errors.New("console: the base URL must be an https URL (the session cookie is Secure)")
	}
	if opts.OIDC.Issuer == "" || opts.OIDC.ClientID == "" {
		return nil, errors.New("console: an OIDC issuer and client id are needed")
	}
	c := &Console{opts: opts, log: opts.Logger, base: base,
		prefix: strings.TrimSuffix(base.Path, "/"), origin: base.Scheme + "://" + base.Host}
	if c.pages, err = parsePages(); err != nil {
		return nil, err
	}
	if c.auth, err = newAuth(c); err != nil {
		return nil, err
	}
	return c, nil
}

// UseApprovals gives the console the hub's approvals (the hub is made
// after its console, whose handler it serves); call it before serving.
func (c *Console) UseApprovals(a Approvals) { c.opts.Approvals = a }

// Handler serves the console's pages under the base URL's path, and
// sends a request for / to the console.
func (c *Console) Handler() http.Handler {
	mux := http.NewServeMux()
	p := c.prefix
	if p != "" {
		mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, p+"/", http.StatusSeeOther)
		})
	}
	mux.HandleFunc("GET "+p+"/{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, p+"/approvals", http.StatusSeeOther)
	})
	mux.HandleFunc("GET "+p+"/login", c.auth.login)
	mux.HandleFunc("GET "+p+"/callback", c.auth.callback)
	mux.HandleFunc("POST "+p+"/logout", c.auth.logout)
	mux.HandleFunc("GET "+p+"/signed-out", c.signedOut)
	mux.Handle("GET "+p+"/assets/", http.StripPrefix(p+"/", assetServer()))

	mux.HandleFunc("GET "+p+"/approvals", c.signedIn(anyRole, c.queue))
	mux.HandleFunc("GET "+p+"/approvals/{id}", c.signedIn(anyRole, c.queue))
	mux.HandleFunc("POST "+p+"/approvals/{id}/decision", c.signedIn(hubapi.RoleApprover, c.decide))
	mux.HandleFunc("GET "+p+"/sessions", c.signedIn(hubapi.RoleAuditor, c.sessions))
	mux.HandleFunc("GET "+p+"/hosts/{host}/sessions/{session}", c.signedIn(hubapi.RoleAuditor, c.session))
	mux.HandleFunc("GET "+p+"/hosts/{host}/sessions/{session}/replay", c.signedIn(hubapi.RoleAuditor, c.replay))
	mux.HandleFunc("GET "+p+"/hosts/{host}/sessions/{session}/cast", c.signedIn(hubapi.RoleAuditor, c.cast))
	mux.HandleFunc("GET "+p+"/evidence", c.signedIn(hubapi.RoleAuditor, c.evidence))
	mux.HandleFunc("GET "+p+"/hosts/{host}/evidence", c.signedIn(hubapi.RoleAuditor, c.hostEvidence))
	mux.HandleFunc("GET "+p+"/export", c.signedIn(hubapi.RoleAuditor, c.export))
	return headers(mux)
}

// anyRole lets in anyone who holds a role.
const anyRole = ""

// headers sets the security headers of every answer: no script but the
// console's own files (the player needs WebAssembly, nothing inline), no
// framing, no referrer to other sites (a page's URL names a request or a session; same-origin keeps the Origin header on POSTs, which no-referrer would make "null"), and
// no caching of pages that hold the fleet's data.
func headers(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; "+
			"img-src 'self' data:; font-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		if !strings.Contains(r.URL.Path, "/assets/") {
			h.Set("Cache-Control", "no-store")
		}
		next.ServeHTTP(w, r)
	})
}

func assetServer() http.Handler {
	sub, err := fs.Sub(assetFS, ".")
	if err != nil {
		panic(err)
	}
	fsrv := http.FileServerFS(sub)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r) // no directory listings
			return
		}
		w.Header().Set("Cache-Control", "public, max-age=3600")
		fsrv.ServeHTTP(w, r)
	})
}

// page is what every template gets.
type page struct {
	Title  string
	Prefix string
	Who    *hubapi.Principal
	CSRF   string
	// Nav says which links the person's roles open.
	Approver, Auditor bool
	CanExport         bool
	Data              any
}

var bufPool = sync.Pool{New: func() any { return new(strings.Builder) }}

// render writes a page whole or, on a template failure, an error: a
// half-written page could show a truncated operation as the whole.
func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, name, title string, s *session, data any) {
	p := page{Title: title, Prefix: c.prefix, Data: data, CanExport: c.opts.Export != nil}
	if s != nil {
		p.Who, p.CSRF = &s.who, s.csrf
		p.Approver, p.Auditor = s.who.Has(hubapi.RoleApprover), s.who.Has(hubapi.RoleAuditor)
	}
	b := bufPool.Get().(*strings.Builder)
	defer func() { b.Reset(); bufPool.Put(b) }()
	t := c.pages[name]
	if t == nil {
		c.log.Error("console: no template", "name", name)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	if err := t.ExecuteTemplate(b, "layout", p); err != nil {
		c.log.Error("console: render", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	io.WriteString(w, b.String())
}

// problem is an error page: what went wrong, and what to do.
type problem struct {
	Heading string
	Detail  string
	Hint    string
}

func (c *Console) fail(w http.ResponseWriter, r *http.Request, s *session, status int, heading, detail, hint string) {
	c.render(w, r, status, "problem", heading, s, problem{Heading: heading, Detail: detail, Hint: hint})
}

func (c *Console) signedOut(w http.ResponseWriter, r *http.Request) {
	c.render(w, r, http.StatusOK, "signedout", "Signed out", nil, nil)
}

// pageNames are the templates beside layout.html, one a page.
var pageNames = []string{"problem", "signedout", "norole", "queue", "decided", "sessions", "session", "replay", "evidence", "host"}

// parsePages parses each page with the layout. html/template escapes
// every value for its context; the values a client controls are escaped
// for reading (textview) before that.
func parsePages() (map[string]*template.Template, error) {
	funcs := template.FuncMap{"list": func(v ...string) []string { return v }}
	out := map[string]*template.Template{}
	for _, name := range pageNames {
		t, err := template.New(name).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("console: template %s: %w", name, err)
		}
		out[name] = t
	}
	return out, nil
}
