package config

import (
	"fmt"
	"net/url"
	"strings"
	"time"
)

// ShipConfig is the ship section: shipping the journal to a fleet hub
// (docs/hub.md). Without a hub URL nothing is shipped. Every other key is
// optional; the resolved values come from Resolve.
type ShipConfig struct {
	// HubURL is the hub's https:// base URL, as given to
	// `interlock hub join`.
	HubURL string `yaml:"hub_url,omitempty"`
	// StateDir holds the enrolment `interlock hub join` wrote: the host
	// id, the TLS client key and certificate, the hub's CA, and the hub's
	// cosignature and fleet keys.
	StateDir string `yaml:"state_dir,omitempty"`
	// BatchEntries and BatchBytes bound one batch (bodies, payloads and
	// salts counted); an entry larger than BatchBytes goes alone.
	BatchEntries *int64 `yaml:"batch_entries,omitempty"`
	BatchBytes   *int64 `yaml:"batch_bytes,omitempty"`
	// Interval is how often the shipper looks for new entries once it has
	// caught up.
	Interval *Duration `yaml:"interval,omitempty"`
	// RetryMin and RetryMax bound the backoff (doubled at each failure,
	// with jitter) while the hub is unreachable or refuses a batch.
	RetryMin *Duration `yaml:"retry_min,omitempty"`
	RetryMax *Duration `yaml:"retry_max,omitempty"`
	// ConsoleURL is the hub console's base URL: the approval webhook
	// links each held request to ConsoleURL/approvals/ID.
	ConsoleURL string `yaml:"console_url,omitempty"`
}

// Defaults of the ship section.
const (
	DefaultShipStateDir = "/var/lib/interlock/hub"
	defaultBatchEntries = 1000
	defaultBatchBytes   = 4 << 20
	maxBatchBytes       = 64 << 20
	defaultShipInterval = time.Second
	defaultRetryMin     = time.Second
	defaultRetryMax     = time.Minute
)

// Ship is the ship section resolved: every default filled in.
type Ship struct {
	HubURL             string
	StateDir           string
	BatchEntries       int
	BatchBytes         int64
	Interval           time.Duration
	RetryMin, RetryMax time.Duration
	ConsoleURL         string
}

// Enabled says whether the journal is shipped to a hub.
func (c ShipConfig) Enabled() bool { return c.HubURL != "" }

// Resolve fills in the defaults.
func (c ShipConfig) Resolve() Ship {
	s := Ship{
		HubURL:       c.HubURL,
		StateDir:     c.StateDir,
		BatchEntries: int(orInt(c.BatchEntries, defaultBatchEntries)),
		BatchBytes:   orInt(c.BatchBytes, defaultBatchBytes),
		Interval:     orDuration(c.Interval, defaultShipInterval),
		RetryMin:     orDuration(c.RetryMin, defaultRetryMin),
		RetryMax:     orDuration(c.RetryMax, defaultRetryMax),
		ConsoleURL:   strings.TrimSuffix(c.ConsoleURL, "/"),
	}
	if s.StateDir == "" {
		s.StateDir = DefaultShipStateDir
	}
	return s
}

func (c *Config) validateShip(l *errorList) {
	s := c.Ship
	if s.HubURL != "" {
		u, err := url.Parse(s.HubURL)
		switch {
		case err != nil || u.Host == "":
			l.add("ship.hub_url", quote(s.HubURL)+" is not a URL; write https://HUB:PORT")
		case u.Scheme != "https":
			l.add("ship.hub_url", quote(s.HubURL)+" is not https: the hub is reached over mutual TLS only")
		case u.User != nil || u.RawQuery != "" || u.Fragment != "":
			l.add("ship.hub_url", quote(s.HubURL)+" has credentials, a query or a fragment; write only https://HUB:PORT[/PATH]")
		}
	}
	if s.ConsoleURL != "" {
		u, err := url.Parse(s.ConsoleURL)
		if err != nil || u.Host == "" || u.Scheme != "https" && !(u.Scheme == "http" && loopbackHost(u.Hostname())) ||
			u.User != nil || u.RawQuery != "" || u.Fragment != "" || hasControl(s.ConsoleURL) {
			l.add("ship.console_url", quote(s.ConsoleURL)+" is not the console's https:// base URL (no credentials, query or fragment)")
		}
	}
	if s.StateDir != "" {
		absPath(l, "ship.state_dir", s.StateDir, false)
	}
	if s.BatchEntries != nil && (*s.BatchEntries < 1 || *s.BatchEntries > 100000) {
		l.add("ship.batch_entries", fmt.Sprintf("%d is out of range; write 1 to 100000", *s.BatchEntries))
	}
	if s.BatchBytes != nil && (*s.BatchBytes < 4096 || *s.BatchBytes > maxBatchBytes) {
		l.add("ship.batch_bytes", fmt.Sprintf("%d is out of range; write 4096 to %d", *s.BatchBytes, maxBatchBytes))
	}
	for _, d := range []struct {
		key      string
		v        *Duration
		min, max time.Duration
	}{
		{"ship.interval", s.Interval, 10 * time.Millisecond, time.Minute},
		{"ship.retry_min", s.RetryMin, 10 * time.Millisecond, time.Hour},
		{"ship.retry_max", s.RetryMax, 10 * time.Millisecond, time.Hour},
	} {
		if d.v != nil && (time.Duration(*d.v) < d.min || time.Duration(*d.v) > d.max) {
			l.add(d.key, fmt.Sprintf("%s is out of range; write a duration from %s to %s", time.Duration(*d.v), d.min, d.max))
		}
	}
	if r := s.Resolve(); r.RetryMin > r.RetryMax {
		l.add("ship.retry_min", fmt.Sprintf("%s is more than ship.retry_max (%s)", r.RetryMin, r.RetryMax))
	}
}
