package redirector

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
)

// A service on this host that listens on a wildcard address (0.0.0.0,
// ::) answers on every local address and, for 0.0.0.0, on all of
// 127.0.0.0/8: a target written as 127.0.0.1:5432 is reachable as
// 10.1.2.3:5432 or 127.0.0.9:5432 too. Those addresses are intercepted as
// the same target. (A service bound to one address answers only there.)

// LoopbackNet is the targets-map entry that stands for every 127.0.0.0/8
// address on a port (see lookup_target in bpf/interlock.c).
var LoopbackNet = netip.AddrFrom4([4]byte{127, 0, 0, 0})

// WildcardListening reports whether a TCP socket listens on port at the
// IPv4 or the IPv6 wildcard address, from the socket tables in procNet
// (this network namespace's /proc/net).
func WildcardListening(procNet string, port uint16) (v4, v6 bool, err error) {
	scan := func(file string, wildcard string) (bool, error) {
		f, err := os.Open(procNet + "/" + file)
		if errors.Is(err, os.ErrNotExist) && file == "tcp6" {
			return false, nil // no IPv6 in this kernel
		}
		if err != nil {
			return false, fmt.Errorf("read the socket table: %w", err)
		}
		defer f.Close()
		want := fmt.Sprintf("%s:%04X", wildcard, port)
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			// sl local_address rem_address st ...; st 0A is LISTEN, the
			// address is hex in network order per 32-bit word, the
			// port hex.
			fs := strings.Fields(sc.Text())
			if len(fs) > 3 && fs[3] == "0A" && fs[1] == want {
				return true, nil
			}
		}
		return false, sc.Err()
	}
	if v4, err = scan("tcp", "00000000"); err != nil {
		return false, false, err
	}
	v6, err = scan("tcp6", strings.Repeat("0", 32))
	return v4, v6, err
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

// LocalAddrs are this host's addresses (of every interface, zones
// dropped).
func LocalAddrs() []netip.Addr {
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
	local := LocalAddrs()
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
			v4, v6, _ := WildcardListening(procNet, a.Port())
			if !v4 && !v6 {
				continue
			}
			var more []netip.Addr
			for _, l := range local {
				if (l.Is4() && (v4 || v6)) || (l.Is6() && v6) {
					more = append(more, l)
				}
			}
			more = append(more, LoopbackNet)
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
