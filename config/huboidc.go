package config

import (
	"fmt"
	"net"
	"net/url"
)

// HubOIDCConfig is hub.oidc: the company's identity provider, through
// which approvers (and the console's auditors and admins) sign in to the
// hub (docs/hub.md, "Approvals from anywhere"). Without an issuer the
// approver API refuses every call.
type HubOIDCConfig struct {
	// Issuer is the provider's issuer URL (https; http only on loopback,
	// for tests).
	Issuer string `yaml:"issuer,omitempty"`
	// ClientID is the hub's client at the provider: the audience its ID
	// tokens must name.
	ClientID string `yaml:"client_id,omitempty"`
	// UsernameClaim is the ID token claim the hub takes as the person's
	// username (compared with the rule's approver names and with the
	// requester's login user, sudo chain and CI actor);
	// preferred_username when unset.
	UsernameClaim string `yaml:"username_claim,omitempty"`
	// GroupsClaim is the claim listing the person's groups (compared with
	// the rule's @groups and the role mapping); groups when unset.
	GroupsClaim string `yaml:"groups_claim,omitempty"`
	// Roles names the IdP groups that hold each role. Nobody holds a role
	// no group is mapped to.
	Roles HubRoles `yaml:"roles"`
}

// HubRoles is hub.oidc.roles: for each role of the hub's, the IdP groups
// that hold it.
type HubRoles struct {
	// Approver decides held requests its rules name it for.
	Approver []string `yaml:"approver,omitempty"`
	// Auditor reads (the console's sessions, evidence and queue).
	Auditor []string `yaml:"auditor,omitempty"`
	// Admin holds every role.
	Admin []string `yaml:"admin,omitempty"`
}

// Map is the roles as hub/server's OIDCConfig takes them.
func (r HubRoles) Map() map[string][]string {
	m := map[string][]string{}
	for role, gs := range map[string][]string{"approver": r.Approver, "auditor": r.Auditor, "admin": r.Admin} {
		if len(gs) > 0 {
			m[role] = gs
		}
	}
	return m
}

// Enabled says whether approvers can sign in to the hub.
func (c HubOIDCConfig) Enabled() bool { return c.Issuer != "" }

func (c HubOIDCConfig) validate(l *errorList) {
	if !c.Enabled() {
		if c.ClientID != "" || len(c.Roles.Map()) > 0 {
			l.add("hub.oidc.issuer", "must be set when hub.oidc has other keys: the provider's issuer URL")
		}
		return
	}
	u, err := url.Parse(c.Issuer)
	switch {
	case err != nil || u.Host == "" || hasControl(c.Issuer):
		l.add("hub.oidc.issuer", quote(c.Issuer)+" is not a URL; write the provider's issuer, for example https://login.example.com")
	case u.Scheme == "http" && !loopbackHost(u.Hostname()):
		l.add("hub.oidc.issuer", "http is for a loopback issuer only (tests); write https://")
	case u.Scheme != "https" && u.Scheme != "http":
		l.add("hub.oidc.issuer", "want an https:// URL")
	}
	if c.ClientID == "" || hasControl(c.ClientID) {
		l.add("hub.oidc.client_id", "must be the hub's client id at the provider (the audience of its ID tokens)")
	}
	for _, k := range []struct{ key, v string }{{"hub.oidc.username_claim", c.UsernameClaim}, {"hub.oidc.groups_claim", c.GroupsClaim}} {
		if hasControl(k.v) {
			l.add(k.key, "holds control characters")
		}
	}
	for _, r := range []struct {
		role   string
		groups []string
	}{{"approver", c.Roles.Approver}, {"auditor", c.Roles.Auditor}, {"admin", c.Roles.Admin}} {
		for i, g := range r.groups {
			if g == "" || hasControl(g) {
				l.add(fmt.Sprintf("hub.oidc.roles.%s[%d]", r.role, i), "is not a group name")
			}
		}
	}
}

func loopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}
