package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/redirector"
	"github.com/interlock/interlock/runner"
)

// The checks of what a watched process could use to get around
// interception on this host: taking another process's sockets, leaving an
// intercepted cgroup, reaching a target at an address interlock does not
// intercept (issue 12).

const yamaPath = "/proc/sys/kernel/yama/ptrace_scope"

// yamaCheck: without Yama's ptrace restriction, a process in an
// intercepted cgroup may ptrace, or pidfd_getfd, any process of its own
// uid. One outside the cgroups that holds a connected socket to a target
// (a developer's psql, a CI runner's tunnel) then lends it one that no
// connect hook ever sees.
func yamaCheck(file string) check {
	c := check{Name: "yama ptrace_scope"}
	const risk = "a process in an intercepted cgroup can take a connected socket from any process of its uid outside them (ptrace, pidfd_getfd) and use it unseen"
	const persist = "persist it in /etc/sysctl.d/10-ptrace.conf"
	b, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		c.Status, c.Detail = "warn", "the Yama LSM is not active (no "+file+"): "+risk
		c.Fix = "enable Yama (CONFIG_SECURITY_YAMA=y, and yama in the lsm= boot parameter if the kernel sets one), then `sysctl -w kernel.yama.ptrace_scope=1` (or 2) and " + persist
		return c
	}
	if err != nil {
		c.Status, c.Detail, c.Fix = "warn", fmt.Sprintf("cannot read %s: %v", file, err), "run doctor as root"
		return c
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		c.Status, c.Detail = "warn", fmt.Sprintf("%s holds %q, not a number", file, strings.TrimSpace(string(b)))
		return c
	}
	switch {
	case v <= 0:
		c.Status, c.Detail = "warn", "kernel.yama.ptrace_scope is 0: "+risk
		c.Fix = "`sysctl -w kernel.yama.ptrace_scope=1` (or 2) and " + persist
	case v == 1:
		c.Status, c.Detail = "ok", "kernel.yama.ptrace_scope is 1: a process may ptrace or pidfd_getfd only its own descendants"
	case v == 2:
		c.Status, c.Detail = "ok", "kernel.yama.ptrace_scope is 2: only CAP_SYS_PTRACE may ptrace or pidfd_getfd"
	default:
		c.Status, c.Detail = "ok", fmt.Sprintf("kernel.yama.ptrace_scope is %d: no process may ptrace or pidfd_getfd another", v)
	}
	return c
}

// cgroupAncestorsCheck: a process may move itself into any cgroup whose
// cgroup.procs its user may write, provided it may also write that of the
// common ancestor. If a user other than root may write a cgroup above an
// intercepted one, that user's processes in it can leave the
// interception. The rule is the one `interlock run` applies to its own
// cgroup (runner.NonRootWritable).
func cgroupAncestorsCheck(root, cg string) check {
	c := check{Name: "cgroup " + cg + " ancestors"}
	if cg == "/" {
		c.Status, c.Detail = "ok", "the root cgroup has no ancestors"
		return c
	}
	exps, err := runner.NonRootWritable(root, path.Dir(cg))
	if err != nil {
		c.Status, c.Detail, c.Fix = "warn", err.Error(), "run doctor as root"
		return c
	}
	if len(exps) == 0 {
		c.Status, c.Detail = "ok", "only root may write the cgroups above it, so a process in it cannot move itself out"
		return c
	}
	// The highest exposed cgroup has only root-owned cgroups above it:
	// intercepting it instead keeps every move the user can make inside.
	top := exps[len(exps)-1].Cgroup
	c.Status = "warn"
	c.Detail = "a user other than root may write " + runner.Describe(exps) +
		": a process of that user in " + cg + " can move itself there, out of interception"
	c.Fix = "intercept " + top + " instead (only root may write the cgroups above it), " +
		"or run the service in a cgroup below a root-owned slice rather than a user's (user@UID.service is the user's)"
	return c
}

// netResolver is net.DefaultResolver's lookup, faked in tests.
type netResolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// coverageProbe looks for addresses a target's service answers at that
// are not in the target's address set.
type coverageProbe struct {
	resolver netResolver
	// local are this host's addresses (net.InterfaceAddrs).
	local []netip.Addr
	// procNet is where the tcp and tcp6 socket tables are (/proc/net).
	procNet string
	// intercepted are the addresses the daemon intercepts, by target;
	// nil when no daemon answers.
	intercepted map[string][]netip.AddrPort
}

// covers says whether an address set intercepts a (all of 127.0.0.0/8
// when the set holds 127.0.0.0 with the port).
func covers(set []netip.AddrPort, a netip.AddrPort) bool {
	if slices.Contains(set, a) {
		return true
	}
	return a.Addr().Is4() && a.Addr().As4()[0] == 127 && slices.Contains(set, netip.AddrPortFrom(redirector.LoopbackNet, a.Port()))
}

func (p coverageProbe) checks(ctx context.Context, targets []config.TargetConfig) []check {
	var out []check
	for _, tc := range targets {
		host, portStr, err := net.SplitHostPort(tc.Address)
		if err != nil {
			continue // the config check has said so
		}
		port, err := strconv.ParseUint(portStr, 10, 16)
		if err != nil {
			continue
		}
		var addrs []netip.Addr
		if ip, err := netip.ParseAddr(host); err == nil {
			addrs = []netip.Addr{ip.Unmap().WithZone("")}
		} else {
			var c check
			c, addrs = p.nameCheck(ctx, tc.Name, host, uint16(port))
			out = append(out, c)
		}
		if c, ok := p.listenerCheck(tc.Name, addrs, uint16(port)); ok {
			out = append(out, c)
		}
	}
	return out
}

// nameCheck resolves a target's host name for A and AAAA records apart,
// and reports addresses that are not in the target's address set: the
// daemon's, or else what one lookup for both families gives now, as
// interlock's own resolution does. A name whose answers vary between
// queries (round robin, a resolver that returns one family) shows here.
func (p coverageProbe) nameCheck(ctx context.Context, target, host string, port uint16) (check, []netip.Addr) {
	c := check{Name: "target " + target + " addresses"}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var all []netip.Addr
	var errs []string
	for _, fam := range []struct{ network, rr string }{{"ip4", "A"}, {"ip6", "AAAA"}} {
		ips, err := p.resolver.LookupNetIP(ctx, fam.network, host)
		if err != nil {
			var dnsErr *net.DNSError
			if !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
				errs = append(errs, fam.rr+": "+err.Error())
			}
			continue
		}
		for _, ip := range ips {
			if ip = ip.Unmap().WithZone(""); !slices.Contains(all, ip) {
				all = append(all, ip)
			}
		}
	}
	if len(all) == 0 {
		c.Status, c.Detail = "warn", fmt.Sprintf("%s has no A or AAAA record now (%s)", host, strings.Join(errs, "; "))
		c.Fix = "connects to the target are intercepted at the addresses last resolved; fix the name or write an address"
		return c, nil
	}
	var set []netip.AddrPort
	source := "the daemon intercepts"
	if p.intercepted != nil {
		set = p.intercepted[target]
	} else {
		source = "interlock resolves it to"
		ips, err := p.resolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			c.Status, c.Detail = "warn", fmt.Sprintf("%s: %v", host, err)
			return c, all
		}
		for _, ip := range ips {
			set = append(set, netip.AddrPortFrom(ip.Unmap().WithZone(""), port))
		}
	}
	var missing []string
	for _, ip := range all {
		if !covers(set, netip.AddrPortFrom(ip, port)) {
			missing = append(missing, ip.String())
		}
	}
	if len(missing) == 0 {
		// An error of one family when the other answered is most often
		// "no such record" in a form that is not a DNSError (/etc/hosts).
		c.Status, c.Detail = "ok", fmt.Sprintf("%s: A and AAAA give %s; %s all of them", host, joinAddrs(all), source)
		return c, all
	}
	c.Status = "warn"
	c.Detail = fmt.Sprintf("%s also resolves to %s, which is not in the target's address set (%s %s): a connect there is not intercepted",
		host, strings.Join(missing, ", "), source, joinAddrPorts(set))
	c.Fix = "the daemon re-resolves names every 30 s; if this stays, the name's answers differ between queries " +
		"(round robin, split DNS, one family at a time): list the addresses as targets of their own, or give the target an address"
	return c, all
}

// listenerCheck: a service on this host that listens on a wildcard
// address answers at every local address of the family (for 0.0.0.0, all
// of 127.0.0.0/8; for ::, IPv4 too unless the socket is IPv6-only), not
// only at the target's. It says where else, and which of those the
// daemon intercepts. ok is false when there is nothing to say.
func (p coverageProbe) listenerCheck(target string, addrs []netip.Addr, port uint16) (c check, ok bool) {
	local := false
	for _, a := range addrs {
		local = local || a.IsLoopback() || slices.Contains(p.local, a)
	}
	if !local {
		return c, false
	}
	v4, v6, err := redirector.WildcardListening(p.procNet, port)
	if err != nil {
		return check{Name: "target " + target + " listener", Status: "warn", Detail: err.Error(), Fix: "run doctor as root"}, true
	}
	if !v4 && !v6 {
		return c, false
	}
	var also []netip.AddrPort
	add := func(a netip.Addr) {
		ap := netip.AddrPortFrom(a, port)
		if !slices.Contains(addrs, a) && !slices.Contains(also, ap) {
			also = append(also, ap)
		}
	}
	for _, l := range p.local {
		if l.Is4() && !l.IsLoopback() || l.Is6() && v6 && !l.IsLoopback() {
			add(l)
		}
	}
	add(redirector.LoopbackNet) // stands for 127.0.0.0/8
	if v6 {
		add(netip.IPv6Loopback())
	}
	var on []string
	if v4 {
		on = append(on, fmt.Sprintf("0.0.0.0:%d", port))
	}
	if v6 {
		on = append(on, fmt.Sprintf("[::]:%d", port))
	}
	c = check{Name: "target " + target + " listener"}
	names := make([]string, len(also))
	var uncovered []string
	for i, a := range also {
		names[i] = a.String()
		if a.Addr() == redirector.LoopbackNet {
			names[i] = fmt.Sprintf("127.0.0.0/8 port %d", port)
		}
		if p.intercepted == nil || !covers(p.intercepted[target], a) {
			uncovered = append(uncovered, names[i])
		}
	}
	c.Detail = fmt.Sprintf("the service listens on %s: reachable also at: %s", strings.Join(on, " and "), strings.Join(names, ", "))
	if v6 && !v4 {
		c.Detail += " (the IPv4 ones unless the socket is IPv6-only)"
	}
	switch {
	case p.intercepted == nil:
		c.Status = "warn"
		c.Detail += "; interlock intercepts those too only if they are in the target's address set, and no daemon answers to say"
		c.Fix = "start the daemon and run doctor again to see which it intercepts; or bind the service to the target's address alone"
	case len(uncovered) > 0:
		c.Status = "warn"
		c.Detail += "; the daemon does not intercept " + strings.Join(uncovered, ", ")
		c.Fix = "interlock intercepts an address only if it is in the target's address set: list those addresses as targets, " +
			"or bind the service to the target's address alone"
	default:
		c.Status = "ok"
		c.Detail += "; the daemon intercepts all of them"
	}
	return c, true
}

func joinAddrs(as []netip.Addr) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}

func joinAddrPorts(as []netip.AddrPort) string {
	if len(as) == 0 {
		return "none"
	}
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}
