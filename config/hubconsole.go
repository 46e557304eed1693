package config

import (
	"fmt"
	"net/url"
	"strings"
	"time"
)

// HubConsoleConfig is hub.console: the web console the hub serves
// (docs/console.md), its sign-in through the company's OIDC identity
// provider and the roles it gives people from their IdP groups. With no
// issuer, the hub serves no console.
type HubConsoleConfig struct {
	// BaseURL is the console's address as browsers reach it, e.g.
	// https://hub.example.com:8443/console: the IdP sends people back to
	// BaseURL/callback, and links (the webhook's, the requester's notice)
	// point under it.
	BaseURL string `yaml:"base_url,omitempty"`
	// Issuer is the IdP's issuer URL (OIDC discovery at
	// Issuer/.well-known/openid-configuration).
	Issuer string `yaml:"issuer,omitempty"`
	// ClientID and ClientSecretFile are the console's client at the IdP;
	// the secret is read from the file, never from the config itself.
	ClientID         string `yaml:"client_id,omitempty"`
	ClientSecretFile string `yaml:"client_secret_file,omitempty"`
	// UsernameClaim is the ID token claim the hub takes as the person's
	// user name (compared with requesters' login users); GroupsClaim the
	// claim listing their groups.
	UsernameClaim string `yaml:"username_claim,omitempty"`
	GroupsClaim   string `yaml:"groups_claim,omitempty"`
	// Roles maps each role (approver, auditor, admin) to the IdP groups
	// that hold it. Someone in none of them signs in and sees nothing.
	Roles HubConsoleRoles `yaml:"roles,omitempty"`
	// SessionTTL is how long a sign-in lasts; 8h when unset.
	SessionTTL *Duration `yaml:"session_ttl,omitempty"`
}

// HubConsoleRoles lists, for each role, the IdP groups that hold it.
type HubConsoleRoles struct {
	// Approver decides held operations; Auditor reads sessions and
	// evidence (read-only); Admin holds both.
	Approver []string `yaml:"approver,omitempty"`
	Auditor  []string `yaml:"auditor,omitempty"`
	Admin    []string `yaml:"admin,omitempty"`
}

// Map is the roles by their names (hubapi's role names).
func (r HubConsoleRoles) Map() map[string][]string {
	return map[string][]string{"approver": r.Approver, "auditor": r.Auditor, "admin": r.Admin}
}

func (r HubConsoleRoles) empty() bool {
	return len(r.Approver)+len(r.Auditor)+len(r.Admin) == 0
}

// Defaults of hub.console.
const (
	DefaultConsoleUsernameClaim = "preferred_username"
	DefaultConsoleGroupsClaim   = "groups"
	defaultConsoleSessionTTL    = 8 * time.Hour
	maxConsoleSessionTTL        = 7 * 24 * time.Hour
	minConsoleSessionTTL        = time.Minute
)

// Enabled says whether the hub serves the console.
func (c HubConsoleConfig) Enabled() bool { return c.Issuer != "" }

// Username is the username claim, defaulted.
func (c HubConsoleConfig) Username() string {
	if c.UsernameClaim == "" {
		return DefaultConsoleUsernameClaim
	}
	return c.UsernameClaim
}

// Groups is the groups claim, defaulted.
func (c HubConsoleConfig) Groups() string {
	if c.GroupsClaim == "" {
		return DefaultConsoleGroupsClaim
	}
	return c.GroupsClaim
}

// SessionLifetime is how long a sign-in lasts.
func (c HubConsoleConfig) SessionLifetime() time.Duration {
	return orDuration(c.SessionTTL, defaultConsoleSessionTTL)
}

func (c HubConsoleConfig) validate(l *errorList) {
	if !c.Enabled() {
		if c.BaseURL != "" || c.ClientID != "" || c.ClientSecretFile != "" || !c.Roles.empty() {
			l.add("hub.console.issuer", "must be set with the other hub.console keys: the console signs people in through this OIDC issuer")
		}
		return
	}
	if u, err := url.Parse(c.Issuer); err != nil || u.Scheme != "https" && !loopbackHTTP(u) || u.Host == "" || hasControl(c.Issuer) {
		l.add("hub.console.issuer", quote(c.Issuer)+" is not an https URL (http only on loopback)")
	}
	if u, err := url.Parse(c.BaseURL); err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || hasControl(c.BaseURL) {
		// The session cookie is Secure: over http a browser would never
		// send it back.
		l.add("hub.console.base_url", quote(c.BaseURL)+" is not an https URL without query, e.g. https://hub.example.com:8443/console")
	}
	if c.ClientID == "" || hasControl(c.ClientID) {
		l.add("hub.console.client_id", "must be the console's client id at the IdP")
	}
	if c.ClientSecretFile != "" {
		absPath(l, "hub.console.client_secret_file", c.ClientSecretFile, true)
	}
	for _, k := range []struct{ key, v string }{{"hub.console.username_claim", c.UsernameClaim}, {"hub.console.groups_claim", c.GroupsClaim}} {
		if hasControl(k.v) || strings.ContainsAny(k.v, " ") {
			l.add(k.key, quote(k.v)+" is not a claim name")
		}
	}
	for role, groups := range c.Roles.Map() {
		for i, g := range groups {
			if g == "" || hasControl(g) {
				l.add(fmt.Sprintf("hub.console.roles.%s[%d]", role, i), "is not a group name")
			}
		}
	}
	if c.SessionTTL != nil {
		if d := time.Duration(*c.SessionTTL); d < minConsoleSessionTTL || d > maxConsoleSessionTTL {
			l.add("hub.console.session_ttl", fmt.Sprintf("%s is out of range; write a duration from %s to %s", d, minConsoleSessionTTL, maxConsoleSessionTTL))
		}
	}
}

// loopbackHTTP: an http issuer is taken only on loopback (a test IdP);
// anywhere else its keys and tokens could be changed on the way.
func loopbackHTTP(u *url.URL) bool {
	if u.Scheme != "http" {
		return false
	}
	h := u.Hostname()
	return h == "localhost" || strings.HasPrefix(h, "127.") || h == "::1"
}
