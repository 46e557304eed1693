package config

import (
	"net/netip"
	"strings"
)

// ConsoleConfig is console: the web console a host's daemon serves from
// its own journal, for a one-host setup (docs/console.md, "One host").
// Off unless listen is set. It is read-only unless decide is true: it
// shows the held requests, and approvers decide them with
// `interlock approvals` on the host.
type ConsoleConfig struct {
	// Listen is the address:port the daemon serves the console on.
	Listen string `yaml:"listen,omitempty"`
	// BaseURL, ClientSecretFile, SessionTTL and Scopes are as for
	// hub.console.
	BaseURL          string    `yaml:"base_url,omitempty"`
	ClientSecretFile string    `yaml:"client_secret_file,omitempty"`
	SessionTTL       *Duration `yaml:"session_ttl,omitempty"`
	Scopes           []string  `yaml:"scopes,omitempty"`
	// TLS is the console's certificate: browsers reach it over https
	// only (its session cookie is Secure).
	TLS ConsoleTLS `yaml:"tls"`
	// OIDC is the identity provider people sign in through, as hub.oidc.
	OIDC HubOIDCConfig `yaml:"oidc"`
	// Decide lets approvers decide held requests in the console, with
	// the hub's rules (named by IdP username or @group, never the
	// requester); their IdP identity is journaled with the decision.
	Decide bool `yaml:"decide,omitempty"`
}

// ConsoleTLS is console.tls: PEM files of a certificate browsers trust
// and its key.
type ConsoleTLS struct {
	Cert string `yaml:"cert,omitempty"`
	Key  string `yaml:"key,omitempty"`
}

// Web is the section's sign-in settings as hub.console has them.
func (c ConsoleConfig) Web() HubConsoleConfig {
	return HubConsoleConfig{BaseURL: c.BaseURL, ClientSecretFile: c.ClientSecretFile, SessionTTL: c.SessionTTL, Scopes: c.Scopes}
}

// Enabled says whether the daemon serves the console.
func (c ConsoleConfig) Enabled() bool { return c.Listen != "" }

func (c *Config) validateConsole(l *errorList) {
	cc := c.Console
	if !cc.Enabled() {
		if cc.BaseURL != "" || cc.TLS.Cert != "" || cc.OIDC.Enabled() || cc.Decide {
			l.add("console.listen", "must be set with the other console keys: the address:port the daemon serves the console on")
		}
		return
	}
	if ap, err := netip.ParseAddrPort(cc.Listen); err != nil || ap.Port() == 0 {
		l.add("console.listen", quote(cc.Listen)+" is not an address:port with a port; write for example 127.0.0.1:8444")
	}
	if cc.BaseURL == "" {
		l.add("console.base_url", "must be set: the console's https address as browsers reach it, e.g. https://db1.example.com:8444/console")
	}
	// hub.console's and hub.oidc's checks, under this section's keys.
	sub := &errorList{file: l.file}
	cc.Web().validate(sub, cc.OIDC)
	cc.OIDC.validate(sub)
	rename := strings.NewReplacer("hub.console.", "console.", "hub.oidc.", "console.oidc.")
	for _, e := range sub.errs {
		l.add(rename.Replace(e.Key), rename.Replace(e.Msg))
	}
	// https always, on loopback too: the session cookie is Secure and
	// __Host-, which a browser keeps only from https.
	if cc.TLS.Cert == "" || cc.TLS.Key == "" {
		l.add("console.tls", "cert and key must be set: the console is served over https only")
	} else {
		absPath(l, "console.tls.cert", cc.TLS.Cert, true)
		absPath(l, "console.tls.key", cc.TLS.Key, true)
	}
}
