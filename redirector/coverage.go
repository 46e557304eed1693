package redirector

import (
	"bufio"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// A service on this host that listens on a wildcard address (0.0.0.0,
// ::) answers on every local address and, for 0.0.0.0, on all of
// 127.0.0.0/8: a target written as 127.0.0.1:5432 is reachable as
// 10.1.2.3:5432 or 127.0.0.9:5432 too. Those addresses are intercepted as
// the same target. (A service bound to one address answers only there.)

// loopbackNet is the targets-map entry that stands for every 127.0.0.0/8
// address on a port (see lookup_target in bpf/interlock.c).
var loopbackNet = netip.AddrFrom4([4]byte{127, 0, 0, 0})

// wildcardListening reports whether a TCP socket listens on port on the
// IPv4 or IPv6 wildcard address, in this network namespace.
func wildcardListening(procNet string, port uint16) (v4, v6 bool) {
	hexPort := strings.ToUpper(strconv.FormatUint(uint64(port)|0x10000, 16)[1:])
	scan := func(file, wildcard string) bool {
		f, err := os.Open(procNet + "/" + file)
		if err != nil {
			return false
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			// sl local_address rem_address st ...; st 0A is LISTEN.
			if len(fs) > 3 && fs[3] == "0A" && fs[1] == wildcard+":"+hexPort {
				return true
			}
		}
		return false
	}
	return scan("tcp", "00000000"), scan("tcp6", strings.Repeat("0", 32))
}

// isLocal says whether a is an address of this host.
func isLocal(a netip.Addr, local []netip.Addr) bool {
	if a.IsLoopback() {
		return true
	}
	for _, l := range local {
		if l == a {
			return true
		}
	}
	return false
}

func localAddrs() []netip.Addr {
	ifas, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, ifa := range ifas {
		if p, err := netip.ParsePrefix(ifa.String()); err == nil {
			out = append(out, p.Addr().Unmap().WithZone(""))
		}
	}
	return out
}

// wildcardCoverage adds, to each target on a local address whose port has
// a wildcard listener, the other addresses that reach the same listener.
// Addresses another target names are left to it.
func wildcardCoverage(targets []resolvedTarget, procNet string) {
	local := localAddrs()
	claimed := map[netip.AddrPort]bool{}
	for _, t := range targets {
		for _, a := range t.addrs {
			claimed[a] = true
		}
	}
	for i := range targets {
		t := &targets[i]
		var extra []netip.AddrPort
		for _, a := range t.addrs {
			if !isLocal(a.Addr(), local) {
				continue
			}
			v4, v6 := wildcardListening(procNet, a.Port())
			if !v4 && !v6 {
				continue
			}
			var more []netip.Addr
			for _, l := range local {
				if (l.Is4() && (v4 || v6)) || (l.Is6() && v6) {
					more = append(more, l)
				}
			}
			more = append(more, loopbackNet)
			if v6 {
				more = append(more, netip.IPv6Loopback())
			}
			for _, m := range more {
				ap := netip.AddrPortFrom(m, a.Port())
				if !claimed[ap] {
					claimed[ap] = true
					extra = append(extra, ap)
				}
			}
		}
		t.addrs = append(t.addrs, extra...)
	}
}
