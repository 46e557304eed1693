package config

import (
	"net/netip"
)

// MetricsConfig is the metrics section.
type MetricsConfig struct {
	// Listen is the loopback address:port the daemon serves Prometheus
	// metrics on (/metrics); empty turns them off.
	Listen string `yaml:"listen"`
}

func (c *Config) validateMetrics(l *errorList) {
	if c.Metrics.Listen == "" {
		return
	}
	ap, err := netip.ParseAddrPort(c.Metrics.Listen)
	switch {
	case err != nil:
		l.add("metrics.listen", quote(c.Metrics.Listen)+" is not an address:port; write for example 127.0.0.1:9464")
	case !ap.Addr().IsLoopback():
		l.add("metrics.listen", quote(c.Metrics.Listen)+" is not a loopback address: metrics name targets and cgroups, so they stay on this host; "+
			"write 127.0.0.1:PORT or [::1]:PORT and scrape through a local agent")
	case ap.Port() == 0:
		l.add("metrics.listen", "needs a port other than 0")
	}
}
