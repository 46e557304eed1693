package config

import (
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/interlock/interlock/model"
)

// TestLimitsDefaults: a file without a limits section gets the built-in
// limits, and the defaults pass validation.
func TestLimitsDefaults(t *testing.T) {
	cfg, err := Parse("l.yaml", []byte("{}\n"))
	if err != nil {
		t.Fatal(err)
	}
	got := cfg.Limits.Resolve()
	want := Limits{
		PerUID:          Actor{Sessions: 64, OpensPerSecond: 20, OpensBurst: 40},
		SSHPreauth:      10,
		PerCgroup:       Actor{Sessions: 128, OpensPerSecond: 40, OpensBurst: 80},
		Postgres:        SessionTimeouts{FirstByte: 10 * time.Second, Idle: time.Hour},
		SSH:             SessionTimeouts{FirstByte: 10 * time.Second, Idle: time.Hour},
		TCP:             SessionTimeouts{FirstByte: 10 * time.Second, Idle: time.Hour},
		FDReserve:       256,
		HashMaxBytes:    1 << 30,
		HashBudgetBytes: 2 << 30,
		HashInterval:    time.Minute,
		ReportInterval:  time.Minute,
	}
	if got != want {
		t.Errorf("Resolve() = %+v\nwant %+v", got, want)
	}
	if got.Timeouts(model.ProtoSSH) != want.SSH || got.Timeouts(model.ProtoTCP) != want.TCP {
		t.Errorf("Timeouts by protocol mixed up")
	}
}

// TestLimitsParse: every key is read; 0 turns a limit off rather than
// meaning "default"; the section round-trips through YAML.
func TestLimitsParse(t *testing.T) {
	src := `limits:
  per_uid: {sessions: 8, opens_per_second: 0, opens_burst: 3, ssh_preauth: 2}
  per_cgroup:
    sessions: 0
  include_root: true
  timeouts:
    postgres: {first_byte: 2s, idle: 0}
    ssh: {idle: 90m}
    tcp: {first_byte: 0s}
  fd_reserve: 64
  hash: {max_mib: 512, budget_mib: 512, interval: 10s}
  report_interval: 5s
`
	cfg, err := Parse("l.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	got := cfg.Limits.Resolve()
	want := Limits{
		PerUID:          Actor{Sessions: 8, OpensPerSecond: 0, OpensBurst: 3},
		SSHPreauth:      2,
		PerCgroup:       Actor{Sessions: 0, OpensPerSecond: 40, OpensBurst: 80},
		IncludeRoot:     true,
		Postgres:        SessionTimeouts{FirstByte: 2 * time.Second, Idle: 0},
		SSH:             SessionTimeouts{FirstByte: 10 * time.Second, Idle: 90 * time.Minute},
		TCP:             SessionTimeouts{FirstByte: 0, Idle: time.Hour},
		FDReserve:       64,
		HashMaxBytes:    512 << 20,
		HashBudgetBytes: 512 << 20,
		HashInterval:    10 * time.Second,
		ReportInterval:  5 * time.Second,
	}
	if got != want {
		t.Errorf("Resolve() = %+v\nwant %+v", got, want)
	}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	again, err := Parse("again.yaml", out)
	if err != nil {
		t.Fatalf("Parse(Marshal(cfg)): %v\n%s", err, out)
	}
	if again.Limits.Resolve() != want {
		t.Errorf("round trip = %+v\nyaml:\n%s", again.Limits.Resolve(), out)
	}
}

// TestLimitsErrors: each bad value is reported on its line with what to
// write instead.
func TestLimitsErrors(t *testing.T) {
	for _, tc := range []struct {
		name, src, key, msg string
		line                int
	}{
		{"negative sessions", "limits:\n  per_uid:\n    sessions: -1\n", "limits.per_uid.sessions", "write 0 to turn this limit off", 3},
		{"huge rate", "limits:\n  per_cgroup: {opens_per_second: 2000000}\n", "limits.per_cgroup.opens_per_second", "too large", 2},
		{"rate without burst", "limits:\n  per_uid:\n    opens_per_second: 5\n    opens_burst: 0\n", "limits.per_uid.opens_burst", "no session could ever open", 4},
		{"sessions not a number", "limits:\n  per_uid: {sessions: many}\n", "limits.per_uid.sessions", "not a whole number", 2},
		{"first byte too short", "limits:\n  timeouts:\n    ssh: {first_byte: 10ms}\n", "limits.timeouts.ssh.first_byte", "too short", 3},
		{"first byte too long", "limits:\n  timeouts:\n    tcp:\n      first_byte: 2h\n", "limits.timeouts.tcp.first_byte", "too long", 4},
		{"idle without unit", "limits:\n  timeouts:\n    postgres: {idle: 30}\n", "limits.timeouts.postgres.idle", "has no unit", 3},
		{"idle negative", "limits:\n  timeouts:\n    postgres: {idle: -1s}\n", "limits.timeouts.postgres.idle", "negative", 3},
		{"fd reserve negative", "limits:\n  fd_reserve: -5\n", "limits.fd_reserve", "negative", 2},
		{"hash max zero", "limits:\n  hash: {max_mib: 0}\n", "limits.hash.max_mib", "out of range", 2},
		{"budget below max", "limits:\n  hash:\n    max_mib: 100\n    budget_mib: 50\n", "limits.hash.budget_mib", "at least max_mib", 4},
		{"default budget below max", "limits:\n  hash:\n    max_mib: 4096\n", "limits.hash.max_mib", "below max_mib", 3},
		{"hash interval", "limits:\n  hash: {interval: 10ms}\n", "limits.hash.interval", "out of range", 2},
		{"report interval", "limits:\n  report_interval: 2h\n", "limits.report_interval", "out of range", 2},
		{"preauth negative", "limits:\n  per_uid: {ssh_preauth: -1}\n", "limits.per_uid.ssh_preauth", "negative", 2},
		{"preauth per cgroup", "limits:\n  per_cgroup: {ssh_preauth: 5}\n", "limits.per_cgroup.ssh_preauth", "known keys here", 2},
		{"unknown key", "limits:\n  per_uids: {sessions: 1}\n", "limits.per_uids", "did you mean per_uid?", 2},
		{"unknown protocol", "limits:\n  timeouts:\n    mysql: {idle: 1s}\n", "limits.timeouts.mysql", "known keys here: postgres, ssh, tcp", 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := firstError(t, tc.src)
			if e.Key != tc.key || e.Line != tc.line || !strings.Contains(e.Msg, tc.msg) {
				t.Errorf("got %v\nwant line %d key %s msg containing %q", err, tc.line, tc.key, tc.msg)
			}
		})
	}
}

// TestLimitsOff: every limit can be turned off with 0, and a budget of 0
// lifts the max_mib check against it.
func TestLimitsOff(t *testing.T) {
	src := `limits:
  per_uid: {sessions: 0, opens_per_second: 0, opens_burst: 0, ssh_preauth: 0}
  per_cgroup: {sessions: 0, opens_per_second: 0, opens_burst: 0}
  timeouts:
    postgres: {first_byte: 0s, idle: 0s}
    ssh: {first_byte: 0s, idle: 0s}
    tcp: {first_byte: 0s, idle: 0s}
  fd_reserve: 0
  hash: {max_mib: 8192, budget_mib: 0}
`
	cfg, err := Parse("off.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	r := cfg.Limits.Resolve()
	if r.PerUID != (Actor{}) || r.PerCgroup != (Actor{}) || r.Postgres != (SessionTimeouts{}) || r.SSH != (SessionTimeouts{}) ||
		r.TCP != (SessionTimeouts{}) || r.FDReserve != 0 || r.SSHPreauth != 0 || r.HashBudgetBytes != 0 || r.HashMaxBytes != 8192<<20 {
		t.Errorf("Resolve() = %+v, want everything off", r)
	}
}
