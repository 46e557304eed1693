package config

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/interlock/interlock/model"
)

// Limits checked by Validate.
const (
	minSyncInterval = time.Millisecond
	// minFlushInterval: below it each batch would be its own SQLite
	// transaction again.
	minFlushInterval = 100 * time.Microsecond
	maxSyncInterval  = time.Second
	// maxSocketPath is the longest path a unix socket can bind to
	// (sun_path is 108 bytes, with the terminating NUL).
	maxSocketPath = 107
	maxNameLen    = 63
	// maxAddressLen is a 253-character DNS name with its trailing dot,
	// a colon and five digits, with some slack.
	maxAddressLen = 300
)

// Validate checks every value. It returns nil, one *Error, or an
// errors.Join of several. Errors name the line each key was read from when
// c came from Parse or Load; for a Config built in code, Line is 0.
func (c *Config) Validate() error {
	l := &errorList{file: c.Source, lines: c.lines}
	c.validate(l)
	return l.err()
}

// validate adds c's problems to l.
func (c *Config) validate(l *errorList) {
	absPath(l, "state_dir", c.StateDir, false)
	absPath(l, "journal.path", c.Journal.Path, true)
	oneOf(l, "journal.sync", string(c.Journal.Sync), SyncNormal, SyncAlways)
	if d := time.Duration(c.Journal.SyncInterval); d < minSyncInterval || d > maxSyncInterval {
		l.add("journal.sync_interval", fmt.Sprintf("%s is out of range; write a duration from %s to %s", d, minSyncInterval, maxSyncInterval))
	}
	if d := time.Duration(c.Journal.FlushInterval); d != 0 && (d < minFlushInterval || d > maxSyncInterval) {
		l.add("journal.flush_interval", fmt.Sprintf("%s is out of range; write 0 (no commit log) or a duration from %s to %s", d, minFlushInterval, maxSyncInterval))
	}
	c.validateCheckpointSinks(l)

	c.validateCgroups(l)
	oneOf(l, "intercept.fail", string(c.Intercept.Fail), FailClosed, FailOpen)
	oneOf(l, "intercept.container_redirect", string(c.Intercept.ContainerRedirect), RedirectNamespace, RedirectGateway)
	if g := c.Intercept.ContainerGateway; g != "" {
		a, err := netip.ParseAddr(g)
		switch {
		case err != nil || !a.Is4():
			l.add("intercept.container_gateway", fmt.Sprintf("%q is not an IPv4 address", g))
		case a.IsLoopback() || a.IsUnspecified() || a.IsMulticast():
			l.add("intercept.container_gateway", fmt.Sprintf("%s cannot be a container network's gateway", a))
		case c.Intercept.ContainerRedirect != RedirectGateway:
			l.add("intercept.container_gateway", "is used only with container_redirect: gateway")
		}
	}

	if absPath(l, "control.socket", c.Control.Socket, true) && len(c.Control.Socket) > maxSocketPath {
		l.add("control.socket", fmt.Sprintf("is %d bytes long; a unix socket path can be at most %d", len(c.Control.Socket), maxSocketPath))
	}
	absPath(l, "bpf.pin_path", c.BPF.PinPath, false)

	oneOf(l, "log.level", string(c.Log.Level), LevelDebug, LevelInfo, LevelWarn, LevelError)
	oneOf(l, "log.format", string(c.Log.Format), FormatAuto, FormatText, FormatJSON)

	c.validateMetrics(l)
	c.validatePolicy(l)
	c.validateLimits(l)
	c.Identity.validate(l)
	c.validateShip(l)
	c.validateTargets(l)
	c.validateHub(l)
	c.validateConsole(l)
}

// absPath checks that p is a usable absolute path; file says it names a
// file (so a trailing slash is a mistake). It reports whether p passed.
func absPath(l *errorList, key, p string, file bool) bool {
	switch {
	case p == "":
		l.add(key, "must not be empty; give an absolute path")
	case hasControl(p):
		l.add(key, quote(p)+" holds control characters")
	case !strings.HasPrefix(p, "/"):
		l.add(key, quote(p)+" is not an absolute path; it must start with /")
	case file && strings.HasSuffix(p, "/"):
		l.add(key, quote(p)+" ends with /; give the path of a file, not a directory")
	default:
		return true
	}
	return false
}

func hasControl(s string) bool {
	return strings.IndexFunc(s, unicode.IsControl) >= 0
}

func oneOf[T ~string](l *errorList, key, v string, allowed ...T) {
	names := make([]string, len(allowed))
	for i, a := range allowed {
		if v == string(a) {
			return
		}
		names[i] = string(a)
	}
	list := strings.Join(names, ", ")
	switch {
	case v == "":
		l.add(key, "must not be empty; write one of: "+list)
	case strings.ToLower(v) != v && oneOfLower(strings.ToLower(v), names):
		l.add(key, quote(v)+" must be written in lowercase: "+strings.ToLower(v))
	default:
		l.add(key, quote(v)+" is not one of: "+list)
	}
}

func oneOfLower(v string, names []string) bool {
	for _, n := range names {
		if v == n {
			return true
		}
	}
	return false
}

func (c *Config) validateCgroups(l *errorList) {
	first := map[string]int{}
	for i, p := range c.Intercept.Cgroups {
		key := "intercept.cgroups[" + strconv.Itoa(i) + "]"
		if msg := cgroupPathProblem(p); msg != "" {
			l.add(key, msg)
			continue
		}
		if j, dup := first[p]; dup {
			l.add(key, quote(p)+" is listed twice (also "+l.describeKey("intercept.cgroups["+strconv.Itoa(j)+"]")+")")
			continue
		}
		first[p] = i
	}
}

// validCgroupGlob says whether a last element is a pattern path.Match
// accepts.
func validCgroupGlob(elem string) bool {
	_, err := path.Match(elem, "")
	return err == nil
}

// cgroupPathProblem says what is wrong with a cgroup path, or "".
func cgroupPathProblem(p string) string {
	for _, mount := range []string{"/sys/fs/cgroup/unified", "/sys/fs/cgroup"} {
		if p == mount || strings.HasPrefix(p, mount+"/") {
			rel := strings.TrimPrefix(p, mount)
			if rel == "" {
				rel = "/"
			}
			return quote(p) + " includes the cgroup2 mount point; write the path relative to it: " + quote(path.Clean(rel))
		}
	}
	switch {
	case p == "":
		return "must not be empty; give a cgroup path such as /system.slice/actions-runner.service"
	case hasControl(p):
		return quote(p) + " holds control characters"
	case !strings.HasPrefix(p, "/"):
		return quote(p) + " must start with / (a path relative to the cgroup2 mount, as in /proc/PID/cgroup after \"0::\")"
	case strings.ContainsAny(path.Dir(p), "*?["):
		return quote(p) + " has a glob before its last element; a pattern may only name the children of one cgroup, " +
			"such as /system.slice/docker-*.scope"
	case strings.ContainsAny(p, "*?[") && !validCgroupGlob(path.Base(p)):
		return quote(p) + " is not a valid glob (path.Match syntax: *, ?, [a-z])"
	case p != "/" && strings.HasSuffix(p, "/"):
		return quote(p) + " ends with /; write " + quote(strings.TrimRight(p, "/"))
	}
	for _, elem := range strings.Split(p, "/") {
		if elem == ".." || elem == "." {
			return quote(p) + " must not contain \"" + elem + "\" elements"
		}
	}
	if clean := path.Clean(p); clean != p {
		return quote(p) + " is not a clean path; write " + quote(clean)
	}
	return ""
}

func (c *Config) validateTargets(l *errorList) {
	names := map[string]int{}
	addrs := map[string]int{}
	for i, t := range c.Targets {
		key := "targets[" + strconv.Itoa(i) + "]"

		if msg := nameProblem(t.Name); msg != "" {
			l.add(key+".name", msg)
		} else if j, dup := names[t.Name]; dup {
			l.add(key+".name", quote(t.Name)+" is already the name of "+l.describeKey("targets["+strconv.Itoa(j)+"]")+"; target names must be unique")
		} else {
			names[t.Name] = i
		}

		switch t.Protocol {
		case model.ProtoTCP, model.ProtoPostgres, model.ProtoSSH, model.ProtoKubernetes:
		case "":
			l.add(key+".protocol", "is required; write tcp, postgres, ssh or kubernetes")
		default:
			l.add(key+".protocol", quote(string(t.Protocol))+" is not a protocol interlock knows; write tcp, postgres, ssh or kubernetes")
		}
		validateTargetOptions(l, i, t)

		if t.Address == "" {
			l.add(key+".address", "is required; write host:port, such as db.internal:5432 or [2001:db8::5]:5432")
			continue
		}
		a, err := parseAddress(t.Address)
		if err != nil {
			l.add(key+".address", err.Error())
			continue
		}
		if j, dup := addrs[a.canon]; dup {
			l.add(key+".address", quote(t.Address)+" is also the address of "+l.describeKey("targets["+strconv.Itoa(j)+"]")+
				"; a destination can belong to only one target")
			continue
		}
		addrs[a.canon] = i
	}
}

// describeKey names an earlier key in a message, with its line if known.
func (l *errorList) describeKey(key string) string {
	if line := lineOf(l.lines, key); line > 0 {
		return fmt.Sprintf("%s on line %d", key, line)
	}
	return key
}

// nameProblem says what is wrong with a target name, or "".
func nameProblem(n string) string {
	if n == "" {
		return "is required; write a short name such as db (lowercase letters, digits, _ . -)"
	}
	if len(n) > maxNameLen {
		return fmt.Sprintf("%s is %d characters long; the limit is %d", quote(n), len(n), maxNameLen)
	}
	if lower := strings.ToLower(n); lower != n && nameProblem(lower) == "" {
		return quote(n) + " must be lowercase: " + quote(lower)
	}
	if c := n[0]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
		return quote(n) + " must start with a lowercase letter or a digit"
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-' {
			continue
		}
		return quote(n) + " may hold only lowercase letters, digits, _ . and -"
	}
	return ""
}

// address is a parsed target address.
type address struct {
	host string // IP literal (unbracketed) or DNS name, as written
	port uint16
	// canon identifies the destination for duplicate detection: IPs in
	// canonical form (IPv4-mapped IPv6 unmapped), names lowercased without
	// a trailing dot.
	canon string
}

// parseAddress checks a target address: host:port or [ipv6]:port.
func parseAddress(s string) (address, error) {
	if s == "" {
		return address{}, errors.New("address is empty; write host:port")
	}
	if len(s) > maxAddressLen {
		return address{}, fmt.Errorf("%s is %d characters long, too long for host:port", quote(s), len(s))
	}
	if hasControl(s) || strings.ContainsAny(s, " \t") {
		return address{}, fmt.Errorf("%s must not contain spaces or control characters", quote(s))
	}
	var host, portStr string
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return address{}, fmt.Errorf("%s has no closing ]; write [ipv6]:port", quote(s))
		}
		host, rest := s[1:end], s[end+1:]
		if rest == "" {
			return address{}, fmt.Errorf("%s has no port; write [%s]:port", quote(s), host)
		}
		if rest[0] != ':' {
			return address{}, fmt.Errorf("%s: expected :port after ]", quote(s))
		}
		portStr = rest[1:]
		ip, err := netip.ParseAddr(host)
		switch {
		case err != nil || !ip.Is6():
			if err == nil && ip.Is4() {
				return address{}, fmt.Errorf("%s: brackets are only for IPv6 addresses; write %s:%s", quote(s), host, portStr)
			}
			return address{}, fmt.Errorf("%s: %s is not an IPv6 address", quote(s), quote(host))
		case ip.Zone() != "":
			return address{}, fmt.Errorf("%s: IPv6 zones (%%%s) are not supported", quote(s), ip.Zone())
		}
		port, err := parsePort(s, portStr)
		if err != nil {
			return address{}, err
		}
		return address{host: host, port: port, canon: netip.AddrPortFrom(ip.Unmap(), port).String()}, nil
	}

	if strings.Count(s, ":") > 1 {
		if i := strings.LastIndexByte(s, ':'); i > 0 {
			if ip, err := netip.ParseAddr(s[:i]); err == nil && ip.Is6() && isDigits(s[i+1:]) && s[i+1:] != "" {
				return address{}, fmt.Errorf("%s: an IPv6 address must be in brackets; write [%s]:%s", quote(s), s[:i], s[i+1:])
			}
		}
		return address{}, fmt.Errorf("%s: an IPv6 address must be in brackets; write [ipv6]:port, such as [2001:db8::5]:5432", quote(s))
	}
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return address{}, fmt.Errorf("%s has no port; write host:port, such as %s:5432", quote(s), s)
	}
	host, portStr = s[:i], s[i+1:]
	if host == "" {
		return address{}, fmt.Errorf("%s has no host; write host:port, such as db.internal%s", quote(s), s)
	}
	port, err := parsePort(s, portStr)
	if err != nil {
		return address{}, err
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return address{host: host, port: port, canon: netip.AddrPortFrom(ip.Unmap(), port).String()}, nil
	}
	if msg := dnsNameProblem(host); msg != "" {
		return address{}, fmt.Errorf("%s: %s", quote(s), msg)
	}
	canon := strings.ToLower(strings.TrimSuffix(host, ".")) + ":" + strconv.Itoa(int(port))
	return address{host: host, port: port, canon: canon}, nil
}

func parsePort(s, p string) (uint16, error) {
	if p == "" {
		return 0, fmt.Errorf("%s has no port after the colon", quote(s))
	}
	if !isDigits(p) {
		return 0, fmt.Errorf("%s: port %s must be a number from 1 to 65535", quote(s), quote(p))
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%s: port %s is out of range; it must be from 1 to 65535", quote(s), p)
	}
	return uint16(n), nil
}

// dnsNameProblem checks host name syntax: labels of 1 to 63 letters,
// digits, hyphens (not at either end) and underscores, 253 characters in
// all, an optional trailing dot. It returns what is wrong, or "".
func dnsNameProblem(h string) string {
	name := strings.TrimSuffix(h, ".")
	if name == "" {
		return "the host is not a valid DNS name"
	}
	if len(name) > 253 {
		return fmt.Sprintf("the host name is %d characters long; a DNS name can be at most 253", len(name))
	}
	labels := strings.Split(name, ".")
	allDigitsAndDots := true
	for _, lab := range labels {
		if lab == "" {
			return "the host name has an empty label (\"..\", or a leading dot)"
		}
		if len(lab) > 63 {
			return fmt.Sprintf("the host name has a label of %d characters; a DNS label can be at most 63", len(lab))
		}
		for i := 0; i < len(lab); i++ {
			c := lab[i]
			switch {
			case c >= '0' && c <= '9':
			case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '-', c == '_':
				allDigitsAndDots = false
			case c >= 0x80:
				return "the host name is not ASCII; write an internationalized name in its ASCII (xn--) form"
			default:
				return fmt.Sprintf("the host name holds %s, which a DNS name cannot", quote(string(rune(c))))
			}
		}
		if lab[0] == '-' || lab[len(lab)-1] == '-' {
			return "a host name label cannot start or end with -"
		}
	}
	if allDigitsAndDots {
		return quote(h) + " is not a valid IPv4 address (four numbers 0-255, without leading zeros)"
	}
	if isDigits(labels[len(labels)-1]) {
		return "the host name's last label is all digits, which no DNS name has"
	}
	return ""
}

// validateCheckpointSinks checks journal.checkpoint_sinks. A file sink on
// the journal's own checkpoint file is refused: it would be written twice
// and prove nothing more.
func (c *Config) validateCheckpointSinks(l *errorList) {
	s := c.Journal.CheckpointSinks
	if s.File != "" && absPath(l, "journal.checkpoint_sinks.file", s.File, true) && s.File == c.Journal.Path+".checkpoint" {
		l.add("journal.checkpoint_sinks.file", quote(s.File)+" is the checkpoint file interlock already keeps beside the journal; name a file on another disk or host")
	}
	if s.URL != "" {
		u, err := url.Parse(s.URL)
		switch {
		case hasControl(s.URL):
			l.add("journal.checkpoint_sinks.url", quote(s.URL)+" holds control characters")
		case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
			l.add("journal.checkpoint_sinks.url", quote(s.URL)+" is not an http:// or https:// URL")
		}
	}
}
