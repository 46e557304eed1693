package config

// The errors Parse reports: one per problem, as FILE:LINE: KEY: message,
// with a suggestion where one helps, and capped.

import (
	"errors"
	"strings"
	"testing"
)

// firstError parses src and returns the first *Error, failing the test if
// there is none.
func firstError(t *testing.T, src string) (*Error, error) {
	t.Helper()
	cfg, err := Parse("test.yaml", []byte(src))
	if err == nil {
		t.Fatalf("Parse succeeded, want an error; got %+v", cfg)
	}
	if cfg != nil {
		t.Errorf("Parse returned a config with an error")
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not a *config.Error", err, err)
	}
	return e, err
}

var long = strings.Repeat("a", 64)

// parseErrorTests are files with one problem each (the first reported),
// and also seed FuzzParse.
var parseErrorTests = []struct {
	name string
	src  string
	line int
	key  string
	msg  string // substring of Msg
}{
	// Unknown keys, at every depth.
	{"unknown nested key", "journal:\n  path: /x\n  sync: normal\n  pathh: /y\n", 4, "journal.pathh", "did you mean path?"},
	{"unknown top-level key", "log:\n  level: info\njurnal:\n  path: /x\n", 3, "jurnal", "did you mean journal?"},
	{"unknown key wrong case", "Journal: {}\n", 1, "Journal", "did you mean journal?"},
	{"unknown key lists known", "bpf:\n  pin: /x\n", 2, "bpf.pin", "known keys here: pin_path"},
	{"unknown key in target", "targets:\n  - name: a\n    protocol: tcp\n    address: a:1\n  - name: b\n    protocol: tcp\n    adress: b:1\n", 7, "targets[1].adress", "did you mean address?"},
	{"unknown key no suggestion", "control:\n  socket: /x\n  zzzzzzzz: 1\n", 3, "control.zzzzzzzz", "unknown key (known keys here: socket)"},
	{"unknown key with dot", "log:\n  a.b: 1\n", 2, `log."a.b"`, "unknown key"},
	{"source is not a key", "source: /x\n", 1, "source", "unknown key"},

	// Wrong types.
	{"section is a string", "journal: /var/lib/x\n", 1, "journal", "must be a mapping of keys (checkpoint_sinks, flush_interval, path, sync, sync_interval), not the string"},
	{"section is a list", "log:\n  - info\n", 1, "log", "must be a mapping"},
	{"targets is a mapping", "targets:\n  name: db\n", 1, "targets", "must be a list"},
	{"cgroups is a string", "intercept:\n  cgroups: /system.slice\n", 2, "intercept.cgroups", "must be a list"},
	{"target is a string", "targets:\n  - db\n", 2, "targets[0]", "must be a mapping"},
	{"string is a list", "journal:\n  path: [a, b]\n", 2, "journal.path", "must be a string, not a list"},
	{"string is a mapping", "journal:\n  path:\n    x: 1\n", 2, "journal.path", "must be a string, not a mapping"},
	{"cgroup is a list", "intercept:\n  cgroups:\n    - [a]\n", 3, "intercept.cgroups[0]", "must be a string, not a list"},
	{"null value", "log:\n  level:\n", 2, "log.level", "has no value"},
	{"explicit null", "log:\n  level: ~\n", 2, "log.level", "has no value"},
	{"binary value", "log:\n  level: !!binary aW5mbw==\n", 2, "log.level", "not a binary value"},
	{"custom tag", "log:\n  level: !lvl info\n", 2, "log.level", "custom YAML tags"},
	{"merge key", "base: &b {level: info}\nlog:\n  <<: *b\n", 1, "base", "unknown key"},
	{"merge key only", "log:\n  <<: {level: info}\n", 2, "log.<<", "merge keys"},
	{"misspelt key and the key", "targets:\n  - name: Db\n    nme: db\n    protocol: tcp\n    address: a:1\n", 2, "targets[0].name", "must be lowercase"},
	{"complex key", "log:\n  ? [a]\n  : 1\n", 2, "log", "a key must be a plain name"},
	{"alias of wrong kind", "x: &x [1]\n", 1, "x", "unknown key"},

	// Durations.
	{"duration without unit", "journal:\n  sync_interval: 10\n", 2, "journal.sync_interval", `"10" has no unit; write for example 10ms`},
	{"duration garbage", "journal:\n  sync_interval: soon\n", 2, "journal.sync_interval", "is not a duration"},
	{"duration too short", "journal:\n  sync_interval: 500us\n", 2, "journal.sync_interval", "500µs is out of range; write a duration from 1ms to 1s"},
	{"duration zero", "journal:\n  sync_interval: 0s\n", 2, "journal.sync_interval", "out of range"},
	{"duration negative", "journal:\n  sync_interval: -5ms\n", 2, "journal.sync_interval", "out of range"},
	{"flush interval too short", "journal:\n  flush_interval: 50us\n", 2, "journal.flush_interval", "write 0 (no commit log) or a duration from 100µs to 1s"},
	{"flush interval too long", "journal:\n  flush_interval: 2s\n", 2, "journal.flush_interval", "out of range"},
	{"duration too long", "journal:\n  sync_interval: 1.5s\n", 2, "journal.sync_interval", "out of range"},
	{"duration is a list", "journal:\n  sync_interval: [1ms]\n", 2, "journal.sync_interval", "must be a duration such as 10ms, not a list"},
	{"duration on next line", "journal:\n  sync_interval:\n    2s\n", 3, "journal.sync_interval", "out of range"},

	// Enumerations.
	{"bad sync", "journal:\n  sync: fast\n", 2, "journal.sync", `"fast" is not one of: normal, always`},
	{"empty sync", "journal:\n  sync: ''\n", 2, "journal.sync", "must not be empty"},
	{"sync as bool", "journal:\n  sync: true\n", 2, "journal.sync", `"true" is not one of`},
	{"bad fail", "intercept:\n  fail: never\n", 2, "intercept.fail", "is not one of: closed, open"},
	{"bad container redirect", "intercept:\n  container_redirect: bridge\n", 2, "intercept.container_redirect", "is not one of: namespace, gateway"},
	{"container gateway not an address", "intercept:\n  container_redirect: gateway\n  container_gateway: docker0\n", 3, "intercept.container_gateway", "is not an IPv4 address"},
	{"container gateway loopback", "intercept:\n  container_redirect: gateway\n  container_gateway: 127.0.0.1\n", 3, "intercept.container_gateway", "cannot be a container network's gateway"},
	{"container gateway without gateway mode", "intercept:\n  container_gateway: 10.88.0.1\n", 2, "intercept.container_gateway", "only with container_redirect: gateway"},
	{"bad level", "log:\n  level: warning\n", 2, "log.level", "is not one of: debug, info, warn, error"},
	{"uppercase level", "log:\n  level: INFO\n", 2, "log.level", "must be written in lowercase: info"},
	{"bad format", "log:\n  format: logfmt\n", 2, "log.format", "is not one of: auto, text, json"},

	// Paths.
	{"relative journal path", "journal:\n  path: journal.db\n", 2, "journal.path", "not an absolute path"},
	{"journal path is a dir", "journal:\n  path: /var/lib/interlock/\n", 2, "journal.path", "ends with /"},
	{"empty journal path", "journal:\n  path: \"\"\n", 2, "journal.path", "must not be empty"},
	{"control char in path", "journal:\n  path: \"/x\\ty\"\n", 2, "journal.path", "control characters"},
	{"sink file relative", "journal:\n  checkpoint_sinks:\n    file: cp.txt\n", 3, "journal.checkpoint_sinks.file", "not an absolute path"},
	{"sink file is a dir", "journal:\n  checkpoint_sinks:\n    file: /mnt/cp/\n", 3, "journal.checkpoint_sinks.file", "ends with /"},
	{"sink file is the beside file", "journal:\n  path: /x/j.db\n  checkpoint_sinks:\n    file: /x/j.db.checkpoint\n", 4, "journal.checkpoint_sinks.file", "already keeps beside the journal"},
	{"sink url scheme", "journal:\n  checkpoint_sinks:\n    url: ftp://audit.example/cp\n", 3, "journal.checkpoint_sinks.url", `"ftp://audit.example/cp" is not an http:// or https:// URL`},
	{"sink url no host", "journal:\n  checkpoint_sinks:\n    url: \"https://\"\n", 3, "journal.checkpoint_sinks.url", "is not an http:// or https:// URL"},
	{"sink syslog not bool", "journal:\n  checkpoint_sinks:\n    syslog: maybe\n", 3, "journal.checkpoint_sinks.syslog", "maybe"},
	{"sinks is a list", "journal:\n  checkpoint_sinks: [syslog]\n", 2, "journal.checkpoint_sinks", "must be a mapping"},
	{"relative socket", "control:\n  socket: interlock.sock\n", 2, "control.socket", "not an absolute path"},
	{"long socket", "control:\n  socket: /" + strings.Repeat("s", 107) + "\n", 2, "control.socket", "is 108 bytes long; a unix socket path can be at most 107"},
	{"relative pin path", "bpf:\n  pin_path: sys/fs/bpf/interlock\n", 2, "bpf.pin_path", "not an absolute path"},

	// Cgroups.
	{"relative cgroup", "intercept:\n  cgroups:\n    - system.slice/a.service\n", 3, "intercept.cgroups[0]", "must start with /"},
	{"cgroup trailing slash", "intercept:\n  cgroups:\n    - /system.slice/\n", 3, "intercept.cgroups[0]", `ends with /; write "/system.slice"`},
	{"cgroup dotdot", "intercept:\n  cgroups:\n    - /system.slice/../user.slice\n", 3, "intercept.cgroups[0]", `must not contain ".." elements`},
	{"cgroup dot", "intercept:\n  cgroups:\n    - /system.slice/./a\n", 3, "intercept.cgroups[0]", `must not contain "." elements`},
	{"cgroup double slash", "intercept:\n  cgroups:\n    - /system.slice//a.service\n", 3, "intercept.cgroups[0]", `not a clean path; write "/system.slice/a.service"`},
	{"cgroup glob in a parent", "intercept:\n  cgroups:\n    - /system.slice/*/x.scope\n", 3, "intercept.cgroups[0]", "glob before its last element"},
	{"cgroup bad glob", "intercept:\n  cgroups:\n    - /system.slice/docker-[.scope\n", 3, "intercept.cgroups[0]", "not a valid glob"},
	{"cgroup with mount", "intercept:\n  cgroups:\n    - /sys/fs/cgroup/system.slice/a.service\n", 3, "intercept.cgroups[0]", `relative to it: "/system.slice/a.service"`},
	{"cgroup with hybrid mount", "intercept:\n  cgroups:\n    - /sys/fs/cgroup/unified/system.slice/a.service\n", 3, "intercept.cgroups[0]", `relative to it: "/system.slice/a.service"`},
	{"empty cgroup", "intercept:\n  cgroups: ['']\n", 2, "intercept.cgroups[0]", "must not be empty"},
	{"duplicate cgroup", "intercept:\n  cgroups:\n    - /a.slice\n    - /b.slice\n    - /a.slice\n", 5, "intercept.cgroups[2]", "listed twice (also intercept.cgroups[0] on line 3)"},

	// Targets: names.
	{"missing name", "targets:\n  - protocol: tcp\n    address: a:1\n", 2, "targets[0].name", "is required"},
	{"bad name", "targets:\n  - name: 'my db'\n    protocol: tcp\n    address: a:1\n", 2, "targets[0].name", "may hold only lowercase letters"},
	{"uppercase name", "targets:\n  - name: dB\n    protocol: tcp\n    address: a:1\n", 2, "targets[0].name", `must be lowercase: "db"`},
	{"name starts with dash", "targets:\n  - name: -db\n    protocol: tcp\n    address: a:1\n", 2, "targets[0].name", "must start with a lowercase letter or a digit"},
	{"long name", "targets:\n  - name: " + long + "\n    protocol: tcp\n    address: a:1\n", 2, "targets[0].name", "the limit is 63"},
	{"duplicate name", "targets:\n  - name: db\n    protocol: tcp\n    address: a:1\n  - name: db\n    protocol: tcp\n    address: b:1\n", 5, "targets[1].name", "already the name of targets[0] on line 2"},

	// Targets: protocols.
	{"missing protocol", "targets:\n  - name: db\n    address: a:1\n", 2, "targets[0].protocol", "is required"},
	{"postgres without credentials", "targets:\n  - name: db\n    protocol: postgres\n    address: a:1\n", 2, "targets[0].credentials", "is required for a postgres target"},
	{"ssh without host key", "targets:\n  - name: db\n    protocol: ssh\n    address: a:22\n    credentials:\n      user: u\n      key_file: /k\n", 2, "targets[0].known_hosts", "always verifies the target's host key"},
	{"tls on a tcp target", "targets:\n  - name: db\n    protocol: tcp\n    address: a:1\n    tls: require\n", 5, "targets[0].tls", "applies to postgres targets only"},
	{"bad tls mode", "targets:\n  - name: db\n    protocol: postgres\n    address: a:1\n    credentials: {user: u}\n    tls: maybe\n", 6, "targets[0].tls", "is not one of"},
	{"bad rows max", "targets:\n  - name: db\n    protocol: postgres\n    address: a:1\n    credentials: {user: u}\n    record_rows_max: lots\n", 6, "targets[0].record_rows_max", "is not a whole number"},
	{"exec mode unknown", "targets:\n  - name: h\n    protocol: ssh\n    address: a:22\n    credentials: {user: u, key_file: /k}\n    host_key: x\n    exec: {mode: allow}\n", 7, "targets[0].exec.mode", "allowlist"},
	{"exec allow outside allowlist", "targets:\n  - name: h\n    protocol: ssh\n    address: a:22\n    credentials: {user: u, key_file: /k}\n    host_key: x\n    exec: {allow: [ls]}\n", 7, "targets[0].exec.allow", "applies to mode: allowlist only"},
	{"exec allowlist empty", "targets:\n  - name: h\n    protocol: ssh\n    address: a:22\n    credentials: {user: u, key_file: /k}\n    host_key: x\n    exec: {mode: allowlist}\n", 7, "targets[0].exec.allow", "every exec is refused"},
	{"exec pattern shell", "targets:\n  - name: h\n    protocol: ssh\n    address: a:22\n    credentials: {user: u, key_file: /k}\n    host_key: x\n    exec: {mode: allowlist, allow: ['bash *']}\n", 7, "targets[0].exec.allow[0]", "is a shell"},
	{"exec pattern metachar", "targets:\n  - name: h\n    protocol: ssh\n    address: a:22\n    credentials: {user: u, key_file: /k}\n    host_key: x\n    exec: {mode: allowlist, allow: ['ls $HOME']}\n", 7, "targets[0].exec.allow[0]", "allow_exact"},
	{"exec pattern glob program", "targets:\n  - name: h\n    protocol: ssh\n    address: a:22\n    credentials: {user: u, key_file: /k}\n    host_key: x\n    exec: {mode: allowlist, allow: ['l* -l']}\n", 7, "targets[0].exec.allow[0]", "must be literal"},
	{"exec exact shell", "targets:\n  - name: h\n    protocol: ssh\n    address: a:22\n    credentials: {user: u, key_file: /k}\n    host_key: x\n    exec: {mode: allowlist, allow_exact: ['exec bash -i']}\n", 7, "targets[0].exec.allow_exact[0]", "starts a shell"},
	{"exec review without approvers", "targets:\n  - name: h\n    protocol: ssh\n    address: a:22\n    credentials: {user: u, key_file: /k}\n    host_key: x\n    exec: {mode: allowlist, allow: [ls], unlisted: review}\n", 7, "targets[0].exec.review", "name the approvers"},
	{"exec tunnels", "targets:\n  - name: h\n    protocol: ssh\n    address: a:22\n    credentials: {user: u, key_file: /k}\n    host_key: x\n    exec: {tunnels: maybe}\n", 7, "targets[0].exec.tunnels", "refuse"},
	{"bad allow bool", "targets:\n  - name: h\n    protocol: ssh\n    address: a:22\n    credentials: {user: u, key_file: /k}\n    host_key: x\n    allow: {x11: maybe}\n", 7, "targets[0].allow.x11", "is not true or false"},
	{"unknown protocol", "targets:\n  - name: db\n    protocol: http\n    address: a:1\n", 3, "targets[0].protocol", "not a protocol interlock knows"},

	// Targets: addresses.
	{"missing address", "targets:\n  - name: db\n    protocol: tcp\n", 2, "targets[0].address", "is required"},
	{"no port", "targets:\n  - name: db\n    protocol: tcp\n    address: db.internal\n", 4, "targets[0].address", "has no port; write host:port, such as db.internal:5432"},
	{"empty port", "targets:\n  - name: db\n    protocol: tcp\n    address: 'db.internal:'\n", 4, "targets[0].address", "no port after the colon"},
	{"no host", "targets:\n  - name: db\n    protocol: tcp\n    address: ':5432'\n", 4, "targets[0].address", "has no host"},
	{"port zero", "targets:\n  - name: db\n    protocol: tcp\n    address: db:0\n", 4, "targets[0].address", "out of range"},
	{"port too big", "targets:\n  - name: db\n    protocol: tcp\n    address: db:65536\n", 4, "targets[0].address", "out of range"},
	{"named port", "targets:\n  - name: db\n    protocol: tcp\n    address: db:postgresql\n", 4, "targets[0].address", "must be a number from 1 to 65535"},
	{"signed port", "targets:\n  - name: db\n    protocol: tcp\n    address: db:+5432\n", 4, "targets[0].address", "must be a number"},
	{"unbracketed ipv6", "targets:\n  - name: db\n    protocol: tcp\n    address: 2001:db8::5:5432\n", 4, "targets[0].address", "must be in brackets; write [2001:db8::5]:5432"},
	{"unbracketed ipv6 no guess", "targets:\n  - name: db\n    protocol: tcp\n    address: fe80::1%eth0:x\n", 4, "targets[0].address", "must be in brackets; write [ipv6]:port"},
	{"bracketed ipv4", "targets:\n  - name: db\n    protocol: tcp\n    address: '[10.0.0.5]:5432'\n", 4, "targets[0].address", "brackets are only for IPv6 addresses; write 10.0.0.5:5432"},
	{"bracketed name", "targets:\n  - name: db\n    protocol: tcp\n    address: '[db]:5432'\n", 4, "targets[0].address", "is not an IPv6 address"},
	{"bracket no port", "targets:\n  - name: db\n    protocol: tcp\n    address: '[::1]'\n", 4, "targets[0].address", "has no port"},
	{"bracket junk", "targets:\n  - name: db\n    protocol: tcp\n    address: '[::1]5432'\n", 4, "targets[0].address", "expected :port after ]"},
	{"unclosed bracket", "targets:\n  - name: db\n    protocol: tcp\n    address: '[::1:5432'\n", 4, "targets[0].address", "no closing ]"},
	{"ipv6 zone", "targets:\n  - name: db\n    protocol: tcp\n    address: '[fe80::1%eth0]:5432'\n", 4, "targets[0].address", "zones"},
	{"space in host", "targets:\n  - name: db\n    protocol: tcp\n    address: 'db internal:5432'\n", 4, "targets[0].address", "must not contain spaces"},
	{"bad ipv4", "targets:\n  - name: db\n    protocol: tcp\n    address: 10.0.0.256:5432\n", 4, "targets[0].address", "not a valid IPv4 address"},
	{"ipv4 leading zero", "targets:\n  - name: db\n    protocol: tcp\n    address: 010.0.0.1:5432\n", 4, "targets[0].address", "not a valid IPv4 address"},
	{"long label", "targets:\n  - name: db\n    protocol: tcp\n    address: " + long + ".example:5432\n", 4, "targets[0].address", "a label of 64 characters"},
	{"long name total", "targets:\n  - name: db\n    protocol: tcp\n    address: " + strings.Repeat("abcdefghi.", 26) + "com:1\n", 4, "targets[0].address", "at most 253"},
	{"empty label", "targets:\n  - name: db\n    protocol: tcp\n    address: db..internal:5432\n", 4, "targets[0].address", "empty label"},
	{"label dash", "targets:\n  - name: db\n    protocol: tcp\n    address: db-.internal:5432\n", 4, "targets[0].address", "cannot start or end with -"},
	{"bad char", "targets:\n  - name: db\n    protocol: tcp\n    address: db/x:5432\n", 4, "targets[0].address", `holds "/"`},
	{"non-ascii host", "targets:\n  - name: db\n    protocol: tcp\n    address: bücher.example:443\n", 4, "targets[0].address", "xn--"},
	{"numeric tld", "targets:\n  - name: db\n    protocol: tcp\n    address: db.123:5432\n", 4, "targets[0].address", "all digits"},
	{"duplicate address", "targets:\n  - name: a\n    protocol: tcp\n    address: 10.0.0.5:5432\n  - name: b\n    protocol: tcp\n    address: 10.0.0.5:5432\n", 7, "targets[1].address", "also the address of targets[0] on line 2"},
	{"duplicate v4-mapped", "targets:\n  - name: a\n    protocol: tcp\n    address: 10.0.0.5:5432\n  - name: b\n    protocol: tcp\n    address: '[::ffff:10.0.0.5]:5432'\n", 7, "targets[1].address", "also the address of targets[0]"},
	{"duplicate name case", "targets:\n  - name: a\n    protocol: tcp\n    address: DB.internal:5432\n  - name: b\n    protocol: tcp\n    address: db.internal.:5432\n", 7, "targets[1].address", "also the address of targets[0]"},
	{"duplicate ipv6 forms", "targets:\n  - {name: a, protocol: tcp, address: '[2001:db8::5]:1'}\n  - {name: b, protocol: tcp, address: '[2001:DB8:0::5]:1'}\n", 3, "targets[1].address", "also the address"},

	// Duplicate keys.
	{"duplicate top-level key", "log:\n  level: info\nlog:\n  level: debug\n", 3, "log", "duplicate key (first set on line 1)"},
	{"duplicate nested key", "journal:\n  path: /a\n  sync: normal\n  path: /b\n", 4, "journal.path", "duplicate key (first set on line 2)"},
	{"duplicate flow key", "log: {level: info, level: debug}\n", 1, "log.level", "duplicate key"},
	{"duplicate key in target", "targets:\n  - name: a\n    protocol: tcp\n    name: b\n    address: a:1\n", 4, "targets[0].name", "duplicate key"},

	// Documents and YAML syntax.
	{"empty file", "", 0, "", "holds no configuration"},
	{"only comments", "# journal:\n#   path: /x\n", 0, "", "holds no configuration"},
	{"only whitespace", "\n\n   \n", 0, "", "holds no configuration"},
	{"second document", "log:\n  level: info\n---\nlog:\n  level: debug\n", 3, "", "a second YAML document"},
	{"empty second document", "log:\n  level: info\n---\n", 3, "", "a second YAML document"},
	{"document end then more", "log: {}\n...\n---\njournal: {}\n", 3, "", "a second YAML document"},
	{"top-level list", "- journal\n", 1, "", "the top level must be a mapping"},
	{"top-level scalar", "journal\n", 1, "", "the top level must be a mapping"},
	{"top-level null", "~\n", 1, "", "the top level must be a mapping"},
	{"empty document", "# x\n---\n", 2, "", "holds an empty document"},
	{"empty document no newline", "---", 1, "", "holds an empty document"},
	{"null at end of file", "log:\n  level:", 2, "log.level", "has no value"},
	{"empty list item", "targets:\n  -\n  - name: x\n", 2, "targets[0]", "empty list item"},
	{"empty list item at end", "intercept:\n  cgroups:\n    -", 3, "intercept.cgroups[0]", "empty list item"},
	{"bad indentation", "journal:\n  path: /x\n  sync: normal\n sync_interval: 1s\n", 3, "", "invalid YAML: did not find expected key"},
	{"unclosed flow", "log: {level: info\n", 1, "", "invalid YAML"},
	{"unclosed quote", "journal:\n  path: \"/x\n", 2, "", "invalid YAML"},
	{"mapping in value", "log:\n  level: info: debug\n", 2, "", "mapping values are not allowed"},
	{"first line error", "log: level: info\n", 1, "", "mapping values are not allowed"},
	{"tab indent", "journal:\n\tpath: /x\n", 2, "", "a tab indents this line"},
	{"tab indent later", "journal:\n  path: /x\nlog:\n\tlevel: info\n", 4, "", "a tab indents this line"},
	{"tab in list", "intercept:\n  cgroups:\n    - /a\n\t- /b\n", 4, "", "a tab indents this line"},
	{"tab first line", "\tlog: {}\n", 1, "", "a tab indents this line"},
	{"control character", "log:\n  level: info\n  format: \x01\n", 3, "", "control characters"},
	{"invalid utf-8", "log:\n  level: \xff\n", 2, "", "UTF-8"},
	{"unknown anchor", "log:\n  level: info\n  format: *fmt\n", 3, "", "unknown anchor"},
	{"backquote", "log:\n  level: `info`\n", 2, "", "cannot start any token"},
}

func TestParseErrors(t *testing.T) {
	for _, tt := range parseErrorTests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := firstError(t, tt.src)
			if e.File != "test.yaml" || e.Line != tt.line || e.Key != tt.key || !strings.Contains(e.Msg, tt.msg) {
				t.Errorf("got File=%q Line=%d Key=%q Msg=%q\nwant File=%q Line=%d Key=%q Msg containing %q\nfull error:\n%v",
					e.File, e.Line, e.Key, e.Msg, "test.yaml", tt.line, tt.key, tt.msg, err)
			}
		})
	}
}

func TestErrorFormat(t *testing.T) {
	tests := []struct {
		e    Error
		want string
	}{
		{Error{File: "a.yaml", Line: 4, Key: "journal.pathh", Msg: "unknown key"}, "a.yaml:4: journal.pathh: unknown key"},
		{Error{File: "a.yaml", Line: 4, Msg: "invalid YAML"}, "a.yaml:4: invalid YAML"},
		{Error{File: "a.yaml", Msg: "too big"}, "a.yaml: too big"},
		{Error{File: "a.yaml", Key: "log.level", Msg: "bad"}, "a.yaml: log.level: bad"},
		{Error{Key: "log.level", Msg: "bad"}, "log.level: bad"},
		{Error{Line: 3, Msg: "bad"}, "line 3: bad"},
	}
	for _, tt := range tests {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

func TestParseReportsAllErrors(t *testing.T) {
	src := `journal:
  sync: fast
  sync_interval: 10
targets:
  - name: [db]
    protocol: postgres
  - nme: x
log:
  level: loud
`
	_, err := Parse("test.yaml", []byte(src))
	if err == nil {
		t.Fatal("no error")
	}
	// In file order. The type error on targets[0].name leaves out
	// "targets[0].name: is required", and the misspelt targets[1].nme
	// leaves out "targets[1].name: is required".
	want := []string{
		"test.yaml:2: journal.sync: \"fast\" is not one of: normal, always",
		"test.yaml:3: journal.sync_interval: \"10\" has no unit; write for example 10ms or 10s",
		"test.yaml:5: targets[0].name: must be a string, not a list",
		"test.yaml:5: targets[0].credentials: is required for a postgres target",
		"test.yaml:5: targets[0].address: is required",
		"test.yaml:7: targets[1].nme: unknown key; did you mean name?",
		"test.yaml:7: targets[1].protocol: is required",
		"test.yaml:7: targets[1].address: is required",
		"test.yaml:9: log.level: \"loud\" is not one of",
	}
	got := strings.Split(err.Error(), "\n")
	if len(got) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%v", len(got), len(want), err)
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("error %d = %q, want it to start with %q", i, got[i], want[i])
		}
	}
	var e *Error
	if !errors.As(err, &e) || e.Line != 2 || e.Key != "journal.sync" {
		t.Errorf("errors.As found %+v, want the first error", e)
	}
}

func TestParseCapsErrors(t *testing.T) {
	var b strings.Builder
	b.WriteString("intercept:\n  cgroups:\n")
	for i := 0; i < 5000; i++ {
		b.WriteString("    - relative\n")
	}
	_, err := Parse("test.yaml", []byte(b.String()))
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != maxErrors+1 {
		t.Fatalf("got %d lines, want %d", len(lines), maxErrors+1)
	}
	if last := lines[len(lines)-1]; last != "test.yaml: at least 980 more errors not shown" {
		t.Errorf("last line = %q", last)
	}
}
