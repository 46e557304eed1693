package config

import (
	"strings"
	"testing"
	"time"
)

func TestShipParse(t *testing.T) {
	if Default().Ship.Enabled() {
		t.Fatal("shipping is on by default; it must need a hub URL")
	}
	def := Default().Ship.Resolve()
	if def.StateDir != DefaultShipStateDir || def.BatchEntries != 1000 || def.BatchBytes != 4<<20 ||
		def.Interval != time.Second || def.RetryMin != time.Second || def.RetryMax != time.Minute {
		t.Errorf("defaults = %+v", def)
	}
	src := "ship:\n  hub_url: https://hub.example:8443\n  console_url: https://console.example/c\n  state_dir: /srv/hub\n  batch_entries: 50\n  batch_bytes: 65536\n" +
		"  interval: 100ms\n  retry_min: 50ms\n  retry_max: 2s\n"
	cfg, err := Parse("ship.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	got := cfg.Ship.Resolve()
	want := Ship{HubURL: "https://hub.example:8443", ConsoleURL: "https://console.example/c", StateDir: "/srv/hub", BatchEntries: 50, BatchBytes: 65536,
		Interval: 100 * time.Millisecond, RetryMin: 50 * time.Millisecond, RetryMax: 2 * time.Second}
	if !cfg.Ship.Enabled() || got != want {
		t.Errorf("Resolve = %+v, want %+v", got, want)
	}
}

func TestShipValidate(t *testing.T) {
	for _, c := range []struct{ src, want string }{
		{"ship:\n  hub_url: http://hub:80\n", "ship.hub_url: \"http://hub:80\" is not https"},
		{"ship:\n  hub_url: hub.example\n", "ship.hub_url: \"hub.example\" is not a URL"},
		{"ship:\n  hub_url: https://u:p@hub\n", "has credentials"},
		{"ship:\n  state_dir: relative/dir\n", "ship.state_dir"},
		{"ship:\n  batch_entries: 0\n", "ship.batch_entries: 0 is out of range"},
		{"ship:\n  batch_bytes: 100\n", "ship.batch_bytes: 100 is out of range"},
		{"ship:\n  retry_min: 2m\n  retry_max: 1m\n", "ship.retry_min: 2m0s is more than ship.retry_max"},
		{"ship:\n  interval: 1h\n", "ship.interval: 1h0m0s is out of range"},
		{"ship:\n  hub_ulr: https://hub\n", "hub_url"},
		{"ship:\n  console_url: console.example\n", `ship.console_url: "console.example" is not`},
		{"ship:\n  console_url: ftp://console.example\n", `ship.console_url: "ftp://console.example" is not`},
		{"ship:\n  console_url: https://console.example/?next=x\n", `ship.console_url: "https://console.example/?next=x"`},
	} {
		_, err := Parse("ship.yaml", []byte(c.src))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%q) = %v, want an error with %q", c.src, err, c.want)
		}
	}
}
