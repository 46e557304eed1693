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
	return &upstream{base: base, cfg: cfg, transport: tr, upgrade: up}, nil
}

// impersonating is the client configuration that calls as who.
func (u *upstream) impersonating(who identity) *rest.Config {
	c := rest.CopyConfig(u.cfg)
	c.Impersonate = rest.ImpersonationConfig{UserName: who.user, Groups: who.groups}
	return c
}
