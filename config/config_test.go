package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/interlock/interlock/model"
)

func TestDefault(t *testing.T) {
	d := Default()
	if err := d.Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
	want := &Config{
		StateDir: "/var/lib/interlock",
		Journal: JournalConfig{
			Path:          "/var/lib/interlock/journal.db",
			Sync:          SyncNormal,
			SyncInterval:  Duration(10 * time.Millisecond),
			FlushInterval: Duration(10 * time.Millisecond),
		},
		Intercept: InterceptConfig{Cgroups: []string{}, Fail: FailClosed, ContainerRedirect: RedirectNamespace},
		Control:   ControlConfig{Socket: "/run/interlock/interlock.sock"},
		BPF:       BPFConfig{PinPath: "/sys/fs/bpf/interlock"},
		Log:       LogConfig{Level: LevelInfo, Format: FormatAuto},
		Targets:   []TargetConfig{},
		Hub: HubConfig{
			Listen: ":8443", StateDir: "/var/lib/interlock-hub", TLS: HubTLS{Names: []string{}},
			TokenTTL: Duration(time.Hour), MaxBatchEntries: 4096, MaxBatchBytes: 64 << 20,
			FleetInterval: Duration(10 * time.Second),
		},
	}
	if !reflect.DeepEqual(d, want) {
		t.Errorf("Default() = %+v\nwant %+v", d, want)
	}
	// Each call returns a fresh value.
	d.Intercept.Cgroups = append(d.Intercept.Cgroups, "/x")
	d.Targets = append(d.Targets, TargetConfig{Name: "x"})
	if d2 := Default(); len(d2.Intercept.Cgroups) != 0 || len(d2.Targets) != 0 {
		t.Errorf("Default() shares state between calls")
	}
}

// parsed returns cfg with the parse-only fields cleared, for comparisons.
func parsed(cfg *Config) *Config {
	c := *cfg
	c.lines = nil
	return &c
}

func TestParseEmptyMappingIsDefault(t *testing.T) {
	for _, src := range []string{"{}", "---\n{}\n", "journal:\nintercept:\ncontrol:\nbpf:\nlog:\n", "# comment\njournal: {}\n"} {
		cfg, err := Parse("test.yaml", []byte(src))
		if err != nil {
			t.Fatalf("Parse(%q): %v", src, err)
		}
		want := Default()
		want.Source = "test.yaml"
		if got := parsed(cfg); !reflect.DeepEqual(got, want) {
			t.Errorf("Parse(%q) = %+v, want defaults", src, got)
		}
	}
}

const fullConfig = `# every key, none at its default
journal:
  path: /srv/interlock/journal.db
  sync: always
  sync_interval: 250ms
  flush_interval: 5ms
intercept:
  cgroups:
    - /system.slice/actions.runner.octo-org-octo-repo.runner-1.service
    - /ci.slice
    - /
  fail: open
control:
  socket: /run/il.sock
bpf:
  pin_path: /sys/fs/bpf/il
log:
  level: debug
  format: json
targets:
  - name: db
    protocol: tcp
    address: db.internal:5432
  - name: db-replica.2
    protocol: tcp
    address: "[2001:db8::5]:5432"
  - name: cache_1
    protocol: tcp
    address: 127.0.0.2:6379
  - name: "0"
    protocol: tcp
    address: localhost.:1
hub:
  listen: 10.0.0.5:9443
  database: /etc/interlock/hub-db.conn
  state_dir: /srv/hub
  tls:
    cert: /etc/interlock/hub.crt
    key: /etc/interlock/hub.key
    names: [hub.internal, 10.0.0.5]
  token_ttl: 2h
  max_batch_entries: 100
  max_batch_bytes: 33554432
  fleet_interval: 1m
`

var fullWant = &Config{
	Source:   "full.yaml",
	StateDir: "/var/lib/interlock",
	Journal: JournalConfig{
		Path:          "/srv/interlock/journal.db",
		Sync:          SyncAlways,
		SyncInterval:  Duration(250 * time.Millisecond),
		FlushInterval: Duration(5 * time.Millisecond),
	},
	Intercept: InterceptConfig{
		Cgroups:           []string{"/system.slice/actions.runner.octo-org-octo-repo.runner-1.service", "/ci.slice", "/"},
		Fail:              FailOpen,
		ContainerRedirect: RedirectNamespace,
	},
	Control: ControlConfig{Socket: "/run/il.sock"},
	BPF:     BPFConfig{PinPath: "/sys/fs/bpf/il"},
	Log:     LogConfig{Level: LevelDebug, Format: FormatJSON},
	Targets: []TargetConfig{
		{Name: "db", Protocol: model.ProtoTCP, Address: "db.internal:5432"},
		{Name: "db-replica.2", Protocol: model.ProtoTCP, Address: "[2001:db8::5]:5432"},
		{Name: "cache_1", Protocol: model.ProtoTCP, Address: "127.0.0.2:6379"},
		{Name: "0", Protocol: model.ProtoTCP, Address: "localhost.:1"},
	},
	Hub: HubConfig{
		Listen: "10.0.0.5:9443", Database: "/etc/interlock/hub-db.conn", StateDir: "/srv/hub",
		TLS:      HubTLS{Cert: "/etc/interlock/hub.crt", Key: "/etc/interlock/hub.key", Names: []string{"hub.internal", "10.0.0.5"}},
		TokenTTL: Duration(2 * time.Hour), MaxBatchEntries: 100, MaxBatchBytes: 32 << 20,
		FleetInterval: Duration(time.Minute),
	},
}

func TestParseFullRoundTrip(t *testing.T) {
	cfg, err := Parse("full.yaml", []byte(fullConfig))
	if err != nil {
		t.Fatal(err)
	}
	if got := parsed(cfg); !reflect.DeepEqual(got, fullWant) {
		t.Fatalf("Parse = %+v\nwant %+v", got, fullWant)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("Validate after Parse: %v", err)
	}

	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	again, err := Parse("full.yaml", out)
	if err != nil {
		t.Fatalf("Parse(Marshal(cfg)): %v\n%s", err, out)
	}
	if got := parsed(again); !reflect.DeepEqual(got, fullWant) {
		t.Errorf("round trip = %+v\nwant %+v\nyaml:\n%s", got, fullWant, out)
	}
	if !strings.Contains(string(out), "sync_interval: 250ms") {
		t.Errorf("Marshal wrote the duration as %s", out)
	}

	// The defaults round-trip too.
	out, err = yaml.Marshal(Default())
	if err != nil {
		t.Fatal(err)
	}
	def, err := Parse("d.yaml", out)
	if err != nil {
		t.Fatalf("Parse(Marshal(Default())): %v\n%s", err, out)
	}
	want := Default()
	want.Source = "d.yaml"
	if got := parsed(def); !reflect.DeepEqual(got, want) {
		t.Errorf("defaults round trip = %+v", got)
	}
}

func TestParseYAMLFeatures(t *testing.T) {
	src := `cg: &cg /ci.slice
intercept:
  cgroups: [*cg]
`
	// An anchor on an unknown key is still an unknown key.
	if _, err := Parse("t.yaml", []byte(src)); err == nil {
		t.Fatal("unknown key with anchor accepted")
	}
	src = `intercept:
  cgroups: &cg
    - /ci.slice
targets:
  - &db {name: db, protocol: tcp, address: "db:1"}
  - name: two
    protocol: tcp
    address: two:2
targets_note: ignored
`
	_, err := Parse("t.yaml", []byte(src))
	var e *Error
	if !errors.As(err, &e) || e.Key != "targets_note" || e.Line != 9 {
		t.Fatalf("got %v", err)
	}
	src = `journal:
  sync: !!str always
  sync_interval: !!str 20ms
intercept:
  cgroups: &cg [/ci.slice]
log: &log
  level: warn
targets:
  -
    name: 1e3
    protocol: tcp
    address: 10.0.0.5:1
  - {name: "x", protocol: "tcp", address: "[::1]:2"}
`
	cfg, err := Parse("t.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Journal.Sync != SyncAlways || cfg.Journal.SyncInterval != Duration(20*time.Millisecond) ||
		cfg.Log.Level != LevelWarn || cfg.Targets[0].Name != "1e3" || cfg.Targets[1].Address != "[::1]:2" {
		t.Errorf("got %+v", cfg)
	}
	// targets: with no value is an empty list; a section with no value
	// keeps its defaults.
	cfg, err = Parse("t.yaml", []byte("targets:\n  # - name: db\nintercept:\n  cgroups:\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Targets == nil || len(cfg.Targets) != 0 || cfg.Intercept.Cgroups == nil || cfg.Intercept.Fail != FailClosed {
		t.Errorf("got %+v", cfg)
	}
	// An alias used as a value.
	cfg, err = Parse("t.yaml", []byte("intercept:\n  cgroups: &c [/a, /b]\ntargets: []\n"))
	if err != nil || len(cfg.Intercept.Cgroups) != 2 {
		t.Errorf("got %+v, %v", cfg, err)
	}
	_, err = Parse("t.yaml", []byte("log: &l\n  level: info\ntargets:\n  - *l\n"))
	if !errors.As(err, &e) || e.Key != "targets[0].level" || e.Line != 2 {
		t.Errorf("alias error: %v", err)
	}
	// A self-referencing alias must not loop.
	_, err = Parse("t.yaml", []byte("targets: &t\n  - *t\n"))
	if !errors.As(err, &e) || e.Key != "targets[0]" || e.Line != 2 {
		t.Errorf("cyclic alias: %v", err)
	}
}

func TestParseSizeLimit(t *testing.T) {
	ok := append([]byte("{}\n"), make([]byte, 0, maxFileSize)...)
	for len(ok) < maxFileSize {
		ok = append(ok, "# padding\n"...)
	}
	ok = ok[:maxFileSize-1]
	ok = append(ok, '\n')
	if _, err := Parse("t.yaml", ok); err != nil {
		t.Errorf("a file of exactly 1 MiB: %v", err)
	}
	_, err := Parse("t.yaml", append(ok, '\n'))
	var e *Error
	if !errors.As(err, &e) || !strings.Contains(e.Msg, "larger than 1048576 bytes (1 MiB)") {
		t.Errorf("oversized: %v", err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte(fullConfig), 0o600); err != nil {
		t.Fatal(err)
	}

	t.Run("explicit path", func(t *testing.T) {
		cfg, err := Load(good)
		if err != nil {
			t.Fatal(err)
		}
		want := *fullWant
		want.Source = good
		if got := parsed(cfg); !reflect.DeepEqual(got, &want) {
			t.Errorf("Load = %+v", got)
		}
	})

	t.Run("missing explicit path", func(t *testing.T) {
		missing := filepath.Join(dir, "missing.yaml")
		cfg, err := Load(missing)
		if cfg != nil || err == nil {
			t.Fatalf("Load(missing) = %v, %v", cfg, err)
		}
		var e *Error
		if !errors.As(err, &e) || e.File != missing || e.Line != 0 ||
			!strings.Contains(e.Msg, "does not exist") || !strings.Contains(e.Msg, "create it") {
			t.Errorf("error = %v", err)
		}
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("error does not wrap fs.ErrNotExist")
		}
		if !strings.HasPrefix(err.Error(), missing+": ") {
			t.Errorf("error does not start with the path: %v", err)
		}
	})

	t.Run("default path absent", func(t *testing.T) {
		cfg, err := load("", filepath.Join(dir, "absent.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Source != "" || !reflect.DeepEqual(cfg, Default()) {
			t.Errorf("got %+v, want Default()", cfg)
		}
	})

	t.Run("default path present", func(t *testing.T) {
		cfg, err := load("", good)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Source != good || cfg.Journal.Sync != SyncAlways {
			t.Errorf("got %+v", cfg)
		}
	})

	t.Run("default path dangling symlink", func(t *testing.T) {
		link := filepath.Join(dir, "dangling.yaml")
		if err := os.Symlink(filepath.Join(dir, "nowhere"), link); err != nil {
			t.Fatal(err)
		}
		if _, err := load("", link); err == nil || !strings.Contains(err.Error(), "symbolic link") {
			t.Errorf("got %v", err)
		}
	})

	t.Run("oversized file", func(t *testing.T) {
		big := filepath.Join(dir, "big.yaml")
		data := []byte("log: {}\n" + strings.Repeat("#", maxFileSize))
		if err := os.WriteFile(big, data, 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Load(big)
		var e *Error
		if !errors.As(err, &e) || e.File != big || !strings.Contains(e.Msg, "1 MiB") {
			t.Errorf("got %v", err)
		}
	})

	t.Run("directory", func(t *testing.T) {
		_, err := Load(dir)
		if err == nil || !strings.Contains(err.Error(), "is a directory") {
			t.Errorf("got %v", err)
		}
	})

	t.Run("error names the file", func(t *testing.T) {
		bad := filepath.Join(dir, "bad.yaml")
		if err := os.WriteFile(bad, []byte("journal:\n  path: /x\n  sync: normal\n  pathh: /y\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Load(bad)
		if err == nil || err.Error() != bad+":4: journal.pathh: unknown key; did you mean path? (known keys here: checkpoint_sinks, flush_interval, path, sync, sync_interval)" {
			t.Errorf("got %v", err)
		}
	})
}

func TestPackagedConfig(t *testing.T) {
	const path = "../packaging/interlock.yaml"
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	// The packaged file writes out the defaults and nothing more.
	want := Default()
	want.Source = path
	if got := parsed(cfg); !reflect.DeepEqual(got, want) {
		t.Errorf("packaged config = %+v\nwant the defaults %+v", got, want)
	}
}

// TestPackagedConfigExamples: the commented examples of the packaged file
// (targets, policy) load as written once uncommented, with the files they
// name in place: an admin who copies them starts from a valid config.
func TestPackagedConfigExamples(t *testing.T) {
	b, err := os.ReadFile("../packaging/interlock.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var out []string
	var in string // the example being uncommented: targets or policy
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case line == "# targets:" || line == "# policy:":
			in = strings.TrimSuffix(strings.TrimPrefix(line, "# "), ":")
			out = append(out, in+":")
			continue
		case in != "" && strings.HasPrefix(line, "#   "):
			out = append(out, strings.TrimPrefix(line, "# "))
			continue
		case line == "targets: []":
			continue
		}
		in = ""
		out = append(out, line)
	}
	text := strings.Join(out, "\n")
	if !strings.Contains(text, "\ntargets:\n  - name: prod-db") || !strings.Contains(text, "\npolicy:\n  default: allow") {
		t.Fatalf("the examples were not found:\n%s", text)
	}
	// The files the examples name, under dir.
	for _, f := range []string{"prod-db.password", "db-ca.crt", "known_hosts", "web-1.key"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	text = strings.ReplaceAll(text, "/etc/interlock/", dir+"/")
	p := filepath.Join(dir, "interlock.yaml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(p)
	if err != nil {
		t.Fatalf("the packaged examples do not load: %v\n%s", err, text)
	}
	if len(cfg.Targets) != 3 || len(cfg.Policy.Rules) != 4 {
		t.Errorf("examples loaded as %d targets and policy %+v", len(cfg.Targets), cfg.Policy)
	}
}

// schemaKeys lists every key of the schema that holds a value (not the
// sections) as a dotted path, list items as "[]".
func schemaKeys(t reflect.Type, prefix string) []string {
	var keys []string
	fields := yamlFields(t)
	for _, name := range sortedKeys(fields) {
		key := prefix + name
		ft := t.Field(fields[name]).Type
		switch {
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			keys = append(keys, key)
			keys = append(keys, schemaKeys(ft.Elem(), key+"[].")...)
		case ft.Kind() == reflect.Struct && ft != durationType:
			keys = append(keys, schemaKeys(ft, key+".")...)
		default:
			keys = append(keys, key)
		}
	}
	return keys
}

func TestDocsCoverEveryKey(t *testing.T) {
	doc, err := os.ReadFile("../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range schemaKeys(reflect.TypeOf(Config{}), "") {
		if !strings.Contains(string(doc), "| `"+key+"` |") {
			t.Errorf("docs/config.md has no table row for %s", key)
		}
	}
}

func TestTarget(t *testing.T) {
	cfg := *fullWant
	got, ok := cfg.Target("cache_1")
	if !ok || got.Address != "127.0.0.2:6379" {
		t.Errorf("Target(cache_1) = %+v, %v", got, ok)
	}
	if _, ok := cfg.Target("nope"); ok {
		t.Errorf("Target(nope) found something")
	}
	if _, ok := Default().Target(""); ok {
		t.Errorf("Target on defaults found something")
	}
}

func TestHostPort(t *testing.T) {
	tests := []struct {
		addr string
		host string
		port uint16
		err  string
	}{
		{"db.internal:5432", "db.internal", 5432, ""},
		{"DB.Internal.:5432", "DB.Internal.", 5432, ""},
		{"10.0.0.5:1", "10.0.0.5", 1, ""},
		{"127.0.0.2:65535", "127.0.0.2", 65535, ""},
		{"[::1]:22", "::1", 22, ""},
		{"[2001:db8::5]:5432", "2001:db8::5", 5432, ""},
		{"[::ffff:10.0.0.5]:5432", "::ffff:10.0.0.5", 5432, ""},
		{"_srv.example:53", "_srv.example", 53, ""},
		{"localhost:05432", "localhost", 5432, ""},
		{"", "", 0, "empty"},
		{"db", "", 0, "has no port"},
		{"::1:22", "", 0, "write [::1]:22"},
		{"[::1]:0", "", 0, "out of range"},
		{"a:99999", "", 0, "out of range"},
		{"a:-1", "", 0, "must be a number"},
		{strings.Repeat("a", 301) + ":1", "", 0, "too long"},
		{"a b:1", "", 0, "spaces"},
		{"1.2.3:1", "", 0, "not a valid IPv4 address"},
	}
	for _, tt := range tests {
		host, port, err := TargetConfig{Address: tt.addr}.HostPort()
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("HostPort(%q) error = %v, want containing %q", tt.addr, err, tt.err)
			}
			continue
		}
		if err != nil || host != tt.host || port != tt.port {
			t.Errorf("HostPort(%q) = %q, %d, %v; want %q, %d", tt.addr, host, port, err, tt.host, tt.port)
		}
	}
}

func TestValidateWithoutFile(t *testing.T) {
	cfg := Default()
	cfg.Targets = []TargetConfig{{Name: "db", Protocol: model.ProtoSSH, Address: "db:22", HostKey: "k"}}
	cfg.Journal.Path = "rel"
	err := cfg.Validate()
	want := "journal.path: \"rel\" is not an absolute path; it must start with /\n" +
		"targets[0].credentials: is required for a ssh target: interlock logs in with credentials it holds, never the client's"
	if err == nil || err.Error() != want {
		t.Errorf("Validate() =\n%v\nwant\n%s", err, want)
	}
	var e *Error
	if !errors.As(err, &e) || e.Line != 0 || e.File != "" || e.Key != "journal.path" {
		t.Errorf("first error = %+v", e)
	}
}

func TestDuration(t *testing.T) {
	var v struct {
		D Duration `yaml:"d"`
	}
	if err := yaml.Unmarshal([]byte("d: 1m30s\n"), &v); err != nil || v.D != Duration(90*time.Second) {
		t.Errorf("Unmarshal = %v, %v", v.D, err)
	}
	if err := yaml.Unmarshal([]byte("d: 10\n"), &v); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("Unmarshal(10) error = %v", err)
	}
	if err := yaml.Unmarshal([]byte("d: [1s]\n"), &v); err == nil {
		t.Errorf("Unmarshal([1s]) succeeded")
	}
	b, err := Duration(10 * time.Millisecond).MarshalText()
	if err != nil || string(b) != "10ms" {
		t.Errorf("MarshalText = %s, %v", b, err)
	}
	var d Duration
	if err := d.UnmarshalText([]byte("2s")); err != nil || d != Duration(2*time.Second) {
		t.Errorf("UnmarshalText = %v, %v", d, err)
	}
	if err := d.UnmarshalText([]byte("x")); err == nil {
		t.Errorf("UnmarshalText(x) succeeded")
	}
	if s := Duration(1500 * time.Microsecond).String(); s != "1.5ms" {
		t.Errorf("String = %s", s)
	}
}

// TestCheckpointSinksParse: the sinks come through as written, and List
// gives them in the form the journal takes.
func TestCheckpointSinksParse(t *testing.T) {
	src := "journal:\n  checkpoint_sinks:\n    file: /mnt/evidence/interlock.checkpoint\n    syslog: true\n    url: https://audit.example/checkpoints\n"
	cfg, err := Parse("sinks.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	want := CheckpointSinks{File: "/mnt/evidence/interlock.checkpoint", Syslog: true, URL: "https://audit.example/checkpoints"}
	if cfg.Journal.CheckpointSinks != want {
		t.Errorf("checkpoint_sinks = %+v, want %+v", cfg.Journal.CheckpointSinks, want)
	}
	if got := cfg.Journal.CheckpointSinks.List(); !reflect.DeepEqual(got, []string{want.File, "syslog", want.URL}) {
		t.Errorf("List() = %q", got)
	}
	if got := Default().Journal.CheckpointSinks.List(); got != nil {
		t.Errorf("default sinks %q, want none", got)
	}
}
