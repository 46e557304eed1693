package config

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
)

// HubConsoleConfig is hub.console: the web console the hub serves
// (docs/console.md). People sign in through hub.oidc's identity provider
// and hold the roles hub.oidc.roles gives their groups. With no base URL,
// the hub serves no console.
type HubConsoleConfig struct {
	// BaseURL is the console's address as browsers reach it, e.g.
	// https://hub.example.com:8443/console: the IdP sends people back to
	// BaseURL/callback, and links (the webhook's, the requester's notice)
	// point under it.
	BaseURL string `yaml:"base_url,omitempty"`
	// ClientSecretFile holds the secret of hub.oidc.client_id, when the
	// IdP gave it one; it is read from the file, never from the config.
	ClientSecretFile string `yaml:"client_secret_file,omitempty"`
	// SessionTTL is how long a sign-in lasts; 8h when unset.
	SessionTTL *Duration `yaml:"session_ttl,omitempty"`
	// Scopes are asked for at sign-in; openid, profile, email and groups
	// when unset (an IdP that refuses an unknown scope, or names the
	// groups scope otherwise, is given its own list).
	Scopes []string `yaml:"scopes,omitempty"`
}

// DefaultConsoleScopes are the scopes asked for unless hub.console.scopes
// says otherwise.
var DefaultConsoleScopes = []string{"openid", "profile", "email", "groups"}

// SignInScopes are the scopes asked for at sign-in.
func (c HubConsoleConfig) SignInScopes() []string {
	if len(c.Scopes) == 0 {
		return DefaultConsoleScopes
	}
	return c.Scopes
}

const (
	defaultConsoleSessionTTL = 8 * time.Hour
	maxConsoleSessionTTL     = 7 * 24 * time.Hour
	minConsoleSessionTTL     = time.Minute
)

// Enabled says whether the hub serves the console.
func (c HubConsoleConfig) Enabled() bool { return c.BaseURL != "" }

// SessionLifetime is how long a sign-in lasts.
func (c HubConsoleConfig) SessionLifetime() time.Duration {
	return orDuration(c.SessionTTL, defaultConsoleSessionTTL)
}

func (c HubConsoleConfig) validate(l *errorList, oidc HubOIDCConfig) {
	if !c.Enabled() {
		if c.ClientSecretFile != "" || c.SessionTTL != nil || len(c.Scopes) > 0 {
			l.add("hub.console.base_url", "must be set with the other hub.console keys: the console's address as browsers reach it")
		}
		return
	}
	if u, err := url.Parse(c.BaseURL); err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || hasControl(c.BaseURL) {
		// The session cookie is Secure: over http a browser would never
		// send it back.
		l.add("hub.console.base_url", quote(c.BaseURL)+" is not an https URL without query, e.g. https://hub.example.com:8443/console")
	}
	if !oidc.Enabled() {
		l.add("hub.oidc.issuer", "must be set to serve the console: people sign in to it through this identity provider")
	}
	if c.ClientSecretFile != "" {
		absPath(l, "hub.console.client_secret_file", c.ClientSecretFile, true)
	}
	if len(c.Scopes) > 0 && !slices.Contains(c.Scopes, "openid") {
		l.add("hub.console.scopes", "must include openid: without it the IdP sends no ID token")
	}
	for i, sc := range c.Scopes {
		if sc == "" || hasControl(sc) || strings.ContainsAny(sc, " \"") {
			l.add(fmt.Sprintf("hub.console.scopes[%d]", i), quote(sc)+" is not a scope")
		}
	}
	if c.SessionTTL != nil {
		if d := time.Duration(*c.SessionTTL); d < minConsoleSessionTTL || d > maxConsoleSessionTTL {
			l.add("hub.console.session_ttl", fmt.Sprintf("%s is out of range; write a duration from %s to %s", d, minConsoleSessionTTL, maxConsoleSessionTTL))
		}
	}
}
