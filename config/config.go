// Package config reads interlock's configuration file: it defines the YAML
// schema, fills in the built-in defaults, and rejects anything it does not
// understand with an error that names the file, the line and the key.
package config

import (
	"github.com/interlock/interlock/model"
)

// DefaultPath is where the daemon looks for its configuration when no path
// is given.
const DefaultPath = "/etc/interlock/interlock.yaml"

// Config is the whole configuration file.
type Config struct {
	// Source is the file the configuration was read from; it is empty for
	// the built-in defaults.
	Source string `yaml:"-"`

	// StateDir holds what interlock creates and keeps: keys, certificates.
	StateDir  string          `yaml:"state_dir"`
	Journal   JournalConfig   `yaml:"journal"`
	Intercept InterceptConfig `yaml:"intercept"`
	Control   ControlConfig   `yaml:"control"`
	BPF       BPFConfig       `yaml:"bpf"`
	Log       LogConfig       `yaml:"log"`
	Metrics   MetricsConfig   `yaml:"metrics"`
	Policy    PolicyConfig    `yaml:"policy"`
	Limits    LimitsConfig    `yaml:"limits"`
	Identity  IdentityConfig  `yaml:"identity"`
	Ship      ShipConfig      `yaml:"ship"`
	Targets   []TargetConfig  `yaml:"targets"`
	Hub       HubConfig       `yaml:"hub"`
	Console   ConsoleConfig   `yaml:"console"`

	// lines maps a key path ("targets[1].address") to the line it was read
	// from, so that Validate can name it. Nil for configs not parsed.
	lines map[string]int
}

// SyncMode is journal.sync: how far a record must reach the disk before
// the operation it describes goes ahead.
type SyncMode string

const (
	// SyncNormal commits every record to the WAL before it is forwarded
	// and fsyncs, before they take effect, the records of anything that
	// changes state or grants access; plain reads and output are fsynced
	// within journal.sync_interval.
	SyncNormal SyncMode = "normal"
	// SyncAlways makes every record wait for its fsync.
	SyncAlways SyncMode = "always"
)

// FailMode is intercept.fail: what an intercepted connect to a target does
// when interlock's listener is gone.
type FailMode string

const (
	// FailClosed refuses the connect (EPERM, "Operation not permitted").
	FailClosed FailMode = "closed"
	// FailOpen lets the connection through to the target, unrecorded.
	FailOpen FailMode = "open"
)

// LogLevel is log.level.
type LogLevel string

const (
	LevelDebug LogLevel = "debug"
	LevelInfo  LogLevel = "info"
	LevelWarn  LogLevel = "warn"
	LevelError LogLevel = "error"
)

// LogFormat is log.format.
type LogFormat string

const (
	// FormatAuto writes JSON when stderr is not a terminal (journald, a
	// file, a pipe) and text on a terminal. It is the default.
	FormatAuto LogFormat = "auto"
	FormatText LogFormat = "text"
	FormatJSON LogFormat = "json"
)

// JournalConfig is the journal section.
type JournalConfig struct {
	// Path is the SQLite database file (absolute).
	Path string `yaml:"path"`
	// Sync is the durability level.
	Sync SyncMode `yaml:"sync"`
	// SyncInterval bounds how long a committed but not yet fsynced record
	// waits for the group fsync: the loss window for plain reads and output
	// on power failure. 1ms to 1s.
	SyncInterval Duration `yaml:"sync_interval"`
	// FlushInterval is how long entries committed to the commit log wait
	// for the database to take them, while interlock writes the journal
	// alone (docs/journal.md, "The commit log"): what a reader in another
	// process may lag. 0 commits every batch to the database instead.
	FlushInterval Duration `yaml:"flush_interval"`
	// CheckpointSinks are where signed checkpoints go besides the file
	// next to the database.
	CheckpointSinks CheckpointSinks `yaml:"checkpoint_sinks"`
}

// CheckpointSinks is journal.checkpoint_sinks. Each sink receives every new
// signed checkpoint. It is a struct of optional fields, not a list, so
// that JournalConfig stays comparable (Reload compares it).
type CheckpointSinks struct {
	// File is an absolute path replaced with the newest checkpoint. Open
	// also checks it: a journal behind it is refused.
	File string `yaml:"file"`
	// Syslog sends each checkpoint to the local syslog daemon.
	Syslog bool `yaml:"syslog"`
	// URL receives each checkpoint as an HTTP POST (http:// or https://).
	URL string `yaml:"url"`
}

// List gives the sinks in the form journal.Options.CheckpointSinks takes.
func (s CheckpointSinks) List() []string {
	var out []string
	if s.File != "" {
		out = append(out, s.File)
	}
	if s.Syslog {
		out = append(out, "syslog")
	}
	if s.URL != "" {
		out = append(out, s.URL)
	}
	return out
}

// InterceptConfig is the intercept section.
type InterceptConfig struct {
	// Cgroups are cgroup v2 paths relative to the cgroup2 mount, such as
	// "/system.slice/actions-runner.service". Connections to targets from
	// processes in these cgroups (and their descendants) are intercepted.
	// The last element may be a glob ("/system.slice/docker-*.scope"):
	// every child of that parent whose name matches, as it appears.
	Cgroups []string `yaml:"cgroups"`
	// Fail says what an intercepted connect does when the listener is gone.
	Fail FailMode `yaml:"fail"`
	// ContainerRedirect is where a container's connects go: to interlock's
	// listener inside the container's namespace (namespace), or to one on
	// the container network's gateway address in the host's (gateway).
	ContainerRedirect ContainerRedirect `yaml:"container_redirect"`
	// ContainerGateway is the gateway address in gateway mode; "" takes
	// each namespace's default route's gateway.
	ContainerGateway string `yaml:"container_gateway,omitempty"`
}

// ContainerRedirect is intercept.container_redirect.
type ContainerRedirect string

const (
	// RedirectNamespace listens inside each container's namespace.
	RedirectNamespace ContainerRedirect = "namespace"
	// RedirectGateway listens on the container network's gateway address.
	RedirectGateway ContainerRedirect = "gateway"
)

// ControlConfig is the control section.
type ControlConfig struct {
	// Socket is the absolute path of the daemon's control socket.
	Socket string `yaml:"socket"`
}

// BPFConfig is the bpf section.
type BPFConfig struct {
	// PinPath is the absolute directory, on a bpf filesystem, where
	// programs, links and maps are pinned.
	PinPath string `yaml:"pin_path"`
}

// LogConfig is the log section.
type LogConfig struct {
	Level  LogLevel  `yaml:"level"`
	Format LogFormat `yaml:"format"`
}

// TargetConfig is one entry of targets: a destination whose connections are
// intercepted.
type TargetConfig struct {
	// Name is unique among targets and names the target in policy and in
	// the journal.
	Name string `yaml:"name"`
	// Protocol says how the traffic is inspected.
	Protocol model.Protocol `yaml:"protocol"`
	// Address is host:port or [ipv6]:port, as written in the file; the host
	// is an IP literal or a DNS name.
	Address string `yaml:"address"`

	// Credentials are what interlock logs in to the target with (postgres
	// and ssh targets). Clients never see them.
	Credentials *Credentials `yaml:"credentials,omitempty"`

	// PostgreSQL targets.

	// TLS is the upstream leg's TLS mode: disable, prefer, require or
	// verify-full (default prefer).
	TLS string `yaml:"tls,omitempty"`
	// CAFile verifies the server's certificate under verify-full.
	CAFile string `yaml:"ca_file,omitempty"`
	// RecordResults is none, summary (default) or rows.
	RecordResults string `yaml:"record_results,omitempty"`
	// RecordRowsMax caps the rows recorded per statement under rows
	// (default 100).
	RecordRowsMax int `yaml:"record_rows_max,omitempty"`
	// DenyStatements lists statement kinds refused before they reach the
	// server, such as drop_database.
	DenyStatements []string `yaml:"deny_statements,omitempty"`
	// CheckEffects runs each transaction that is not provably read-only
	// inside a transaction interlock holds, reads what it did from the
	// server before its COMMIT goes through, and applies effects rules
	// (default true).
	CheckEffects *bool `yaml:"check_effects,omitempty"`

	// SSH targets.

	// KnownHosts is a known_hosts file that verifies the target's host key.
	KnownHosts string `yaml:"known_hosts,omitempty"`
	// HostKey is the target's public host key in authorized_keys format,
	// an alternative to KnownHosts.
	HostKey string `yaml:"host_key,omitempty"`
	// HostKeyFile is the private key interlock presents to clients for this
	// target (typically the target's own host key). Without it interlock
	// presents a host certificate signed by its own CA.
	HostKeyFile string `yaml:"host_key_file,omitempty"`
	// DenyExec lists command-line globs refused before they run.
	DenyExec []string `yaml:"deny_exec,omitempty"`
	// Exec says how exec requests are judged (see ExecConfig).
	Exec *ExecConfig `yaml:"exec,omitempty"`
	// Allow opens what is refused by default.
	Allow *SSHAllow `yaml:"allow,omitempty"`

	// Kubernetes targets.
	Kubernetes *KubernetesConfig `yaml:"kubernetes,omitempty"`
}

// Credentials is a target's credentials section.
type Credentials struct {
	// User is the account interlock logs in as; a client asking for
	// another user is refused.
	User string `yaml:"user"`
	// PasswordFile holds the password (postgres, or ssh password auth).
	PasswordFile string `yaml:"password_file"`
	// PasswordEnv names an environment variable of interlock's holding
	// the password.
	PasswordEnv string `yaml:"password_env"`
	// KeyFile is an SSH private key (ssh targets).
	KeyFile string `yaml:"key_file"`
	// Certificate logs in to an ssh target with a user certificate from
	// interlock's user CA, signed for each login over a fresh key that is
	// never written down, instead of a key the target keeps authorized.
	Certificate bool `yaml:"certificate"`
}

// SSHAllow is an ssh target's allow section: channel types refused unless
// set here. Each request is journaled either way.
type SSHAllow struct {
	PortForwarding  bool `yaml:"port_forwarding"`
	AgentForwarding bool `yaml:"agent_forwarding"`
	X11             bool `yaml:"x11"`
}

// Built-in defaults.
const (
	defaultStateDir      = "/var/lib/interlock"
	defaultJournalPath   = "/var/lib/interlock/journal.db"
	defaultSyncInterval  = Duration(10_000_000) // 10ms
	defaultFlushInterval = Duration(10_000_000) // 10ms
	defaultSocket        = "/run/interlock/interlock.sock"
	defaultPinPath       = "/sys/fs/bpf/interlock"
)

// Default returns the built-in defaults: the configuration used when no
// file exists, and the base that a file's keys override. It intercepts
// nothing (no cgroups, no targets).
func Default() *Config {
	return &Config{
		StateDir: defaultStateDir,
		Journal: JournalConfig{
			Path:          defaultJournalPath,
			Sync:          SyncNormal,
			SyncInterval:  defaultSyncInterval,
			FlushInterval: defaultFlushInterval,
		},
		Intercept: InterceptConfig{
			Cgroups:           []string{},
			Fail:              FailClosed,
			ContainerRedirect: RedirectNamespace,
		},
		Control: ControlConfig{Socket: defaultSocket},
		BPF:     BPFConfig{PinPath: defaultPinPath},
		Log:     LogConfig{Level: LevelInfo, Format: FormatAuto},
		Targets: []TargetConfig{},
		Hub:     defaultHub(),
	}
}

// Target returns the target with the given name.
func (c *Config) Target(name string) (TargetConfig, bool) {
	for _, t := range c.Targets {
		if t.Name == name {
			return t, true
		}
	}
	return TargetConfig{}, false
}

// HostPort splits Address into its host (brackets removed from an IPv6
// literal, otherwise as written) and port, checking the same rules as
// Validate.
func (t TargetConfig) HostPort() (host string, port uint16, err error) {
	a, err := parseAddress(t.Address)
	if err != nil {
		return "", 0, err
	}
	return a.host, a.port, nil
}
