package kubernetes

import (
	"fmt"
	"net/http"
	"net/url"

	"k8s.io/client-go/rest"

	"github.com/interlock/interlock/config"
)

// upstream is the API server as interlock calls it: verified against the
// cluster CA, with the credential the target holds.
type upstream struct {
	base *url.URL
	// cfg is the client configuration without impersonation; a stream
	// copies it and sets the session's identity.
	cfg       *rest.Config
	transport http.RoundTripper
	// upgrade is transport over HTTP/1.1, which alone can switch
	// protocols (a port-forward's SPDY or websocket).
	upgrade http.RoundTripper
	// bare, bareUpgrade and bareCfg hold no credential, only the cluster
	// CA: a pass_bearer target calls with the client's token through
	// them (a client certificate of interlock's would win over the token
	// at the API server). nil when the target does not pass tokens.
	bare, bareUpgrade http.RoundTripper
	bareCfg           *rest.Config
}

func newUpstream(tc config.TargetConfig) (*upstream, error) {
	k := tc.Kubernetes
	base := &url.URL{Scheme: "https", Host: tc.Address}
	cfg := &rest.Config{
		Host: base.String(),
		TLSClientConfig: rest.TLSClientConfig{
			CAFile:   k.CAFile,
			CertFile: k.ClientCertificateFile,
			KeyFile:  k.ClientKeyFile,
		},
		BearerTokenFile: k.TokenFile,
		UserAgent:       "interlock",
		// Interlock answers the client at the client's own pace: the
		// API server's flow control applies to the impersonated user.
		QPS: -1,
	}
	tr, err := rest.TransportFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes: upstream transport: %w", err)
	}
	h1 := rest.CopyConfig(cfg)
	h1.TLSClientConfig.NextProtos = []string{"http/1.1"}
	up, err := rest.TransportFor(h1)
	if err != nil {
		return nil, fmt.Errorf("kubernetes: upstream transport: %w", err)
	}
	u := &upstream{base: base, cfg: cfg, transport: tr, upgrade: up}
	if k.PassBearer {
		u.bareCfg = &rest.Config{Host: base.String(), TLSClientConfig: rest.TLSClientConfig{CAFile: k.CAFile},
			UserAgent: "interlock", QPS: -1}
		if u.bare, err = rest.TransportFor(u.bareCfg); err != nil {
			return nil, fmt.Errorf("kubernetes: upstream transport: %w", err)
		}
		h1 := rest.CopyConfig(u.bareCfg)
		h1.TLSClientConfig.NextProtos = []string{"http/1.1"}
		if u.bareUpgrade, err = rest.TransportFor(h1); err != nil {
			return nil, fmt.Errorf("kubernetes: upstream transport: %w", err)
		}
	}
	return u, nil
}

// transports are the round trippers that call as who: interlock's own,
// or, for a client's token, the bare ones.
func (u *upstream) transports(who identity) (plain, upgrade http.RoundTripper) {
	if who.token != "" {
		return u.bare, u.bareUpgrade
	}
	return u.transport, u.upgrade
}

// restConfig is the client configuration that calls as who.
func (u *upstream) restConfig(who identity) *rest.Config {
	if who.token != "" {
		c := rest.CopyConfig(u.bareCfg)
		c.BearerToken = who.token
		return c
	}
	return u.impersonating(who)
}

// impersonating is the client configuration that calls as who.
func (u *upstream) impersonating(who identity) *rest.Config {
	c := rest.CopyConfig(u.cfg)
	c.Impersonate = rest.ImpersonationConfig{UserName: who.user, Groups: who.groups}
	return c
}
