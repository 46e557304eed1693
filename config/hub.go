package config

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// Defaults of the hub section (docs/hub.md).
const (
	DefaultHubListen          = ":8443"
	DefaultHubStateDir        = "/var/lib/interlock-hub"
	DefaultHubTokenTTL        = Duration(time.Hour)
	DefaultHubMaxBatchEntries = 4096
	// DefaultHubMaxBatchBytes bounds a batch's request body: two
	// payloads at the journal's largest (16 MiB each, base64 in JSON)
	// fit, so a host can always ship its biggest entry alone.
	DefaultHubMaxBatchBytes = 64 << 20
	DefaultHubFleetInterval = Duration(10 * time.Second)
)

// Bounds of the hub section.
const (
	minHubTokenTTL      = time.Minute
	maxHubTokenTTL      = 30 * 24 * time.Hour
	minHubFleetInterval = time.Second
	maxHubFleetInterval = time.Hour
	maxHubBatchEntries  = 1 << 20
	// minHubBatchBytes leaves room for one entry with the journal's
	// largest payload: a smaller bound would stall a host for good.
	minHubBatchBytes = 24 << 20
	maxHubBatchBytes = 1 << 30
)

// HubConfig is the hub section: what `interlock hub serve` needs. The
// daemon on a host ignores it.
type HubConfig struct {
	// Listen is the address:port the hub serves HTTPS (mutual TLS) on.
	Listen string `yaml:"listen"`
	// Database is a PostgreSQL connection string (postgres://... or
	// key=value), or the absolute path of a file holding one, so that
	// the password need not sit in the config file.
	Database string `yaml:"database"`
	// StateDir holds the hub's keys: its CA, the cosigner and fleet keys,
	// the hub id.
	StateDir string `yaml:"state_dir"`
	TLS      HubTLS `yaml:"tls"`
	// TokenTTL is how long a join token lives unless `hub token create
	// --ttl` says otherwise.
	TokenTTL Duration `yaml:"token_ttl"`
	// MaxBatchEntries and MaxBatchBytes bound one batch: larger ones are
	// refused (too_large) before anything is parsed.
	MaxBatchEntries int64 `yaml:"max_batch_entries"`
	MaxBatchBytes   int64 `yaml:"max_batch_bytes"`
	// FleetInterval is the longest the fleet log grows before the hub
	// signs a fleet checkpoint of it (and the shortest between two).
	FleetInterval Duration `yaml:"fleet_interval"`
	// Publish is where fleet checkpoints are published (hubpublish.go).
	Publish HubPublishConfig `yaml:"publish"`
	// OIDC is the identity provider approvers sign in with (huboidc.go).
	OIDC HubOIDCConfig `yaml:"oidc"`
	// Console is the web console and its sign-in (hubconsole.go).
	Console HubConsoleConfig `yaml:"console"`
}

// HubTLS is hub.tls: the hub's server certificate. Without Cert and Key
// the hub issues its own from the CA it keeps in its state directory,
// for Names.
type HubTLS struct {
	// Cert and Key are PEM files of a certificate (and its chain) that
	// hosts verify with the CA they were given at enrolment.
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	// Names are the DNS names and IP addresses the self-issued
	// certificate is valid for: those hosts dial. Default: the machine's
	// host name and localhost.
	Names []string `yaml:"names"`
}

func defaultHub() HubConfig {
	return HubConfig{
		Listen:          DefaultHubListen,
		StateDir:        DefaultHubStateDir,
		TokenTTL:        DefaultHubTokenTTL,
		MaxBatchEntries: DefaultHubMaxBatchEntries,
		MaxBatchBytes:   DefaultHubMaxBatchBytes,
		FleetInterval:   DefaultHubFleetInterval,
		TLS:             HubTLS{Names: []string{}},
	}
}

func (c *Config) validateHub(l *errorList) {
	h := &c.Hub
	if host, port, err := net.SplitHostPort(h.Listen); err != nil {
		l.add("hub.listen", quote(h.Listen)+" is not an address:port; write for example :8443 or 10.0.0.5:8443")
	} else if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		l.add("hub.listen", "port "+quote(port)+" is out of range; write 1 to 65535")
	} else if hasControl(host) || strings.ContainsAny(host, " /") {
		l.add("hub.listen", quote(host)+" is not a host name or IP address")
	}
	if h.Database != "" && hasControl(h.Database) {
		l.add("hub.database", "holds control characters")
	}
	absPath(l, "hub.state_dir", h.StateDir, false)
	switch {
	case (h.TLS.Cert == "") != (h.TLS.Key == ""):
		key := "hub.tls.cert"
		if h.TLS.Key == "" {
			key = "hub.tls.key"
		}
		l.add(key, "hub.tls.cert and hub.tls.key go together: give both, or neither for a certificate from the hub's own CA")
	case h.TLS.Cert != "":
		absPath(l, "hub.tls.cert", h.TLS.Cert, true)
		absPath(l, "hub.tls.key", h.TLS.Key, true)
	}
	for i, n := range h.TLS.Names {
		if n == "" || hasControl(n) || strings.ContainsAny(n, " /:") && net.ParseIP(n) == nil {
			l.add(fmt.Sprintf("hub.tls.names[%d]", i), quote(n)+" is not a DNS name or IP address")
		}
	}
	if d := time.Duration(h.TokenTTL); d < minHubTokenTTL || d > maxHubTokenTTL {
		l.add("hub.token_ttl", fmt.Sprintf("%s is out of range; write a duration from %s to %s", d, minHubTokenTTL, maxHubTokenTTL))
	}
	if h.MaxBatchEntries < 1 || h.MaxBatchEntries > maxHubBatchEntries {
		l.add("hub.max_batch_entries", fmt.Sprintf("%d is out of range; write 1 to %d", h.MaxBatchEntries, maxHubBatchEntries))
	}
	if h.MaxBatchBytes < minHubBatchBytes || h.MaxBatchBytes > maxHubBatchBytes {
		l.add("hub.max_batch_bytes", fmt.Sprintf("%d is out of range; write %d (24 MiB: one entry with the largest payload) to %d", h.MaxBatchBytes, minHubBatchBytes, maxHubBatchBytes))
	}
	if d := time.Duration(h.FleetInterval); d < minHubFleetInterval || d > maxHubFleetInterval {
		l.add("hub.fleet_interval", fmt.Sprintf("%s is out of range; write a duration from %s to %s", d, minHubFleetInterval, maxHubFleetInterval))
	}
	h.Publish.validate(l)
	h.OIDC.validate(l)
	h.Console.validate(l, h.OIDC)
}

// ValidateHubServe checks what serving a hub needs beyond Validate: a
// database to keep the fleet's evidence in.
func (c *Config) ValidateHubServe() error {
	if c.Hub.Database == "" {
		return c.Errorf("hub.database", "must be set to serve a hub: a PostgreSQL connection string, or the absolute path of a file holding one")
	}
	return nil
}
