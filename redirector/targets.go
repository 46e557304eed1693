package redirector

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"
	"slices"
	"strconv"

	"github.com/cilium/ebpf"

	"github.com/interlock/interlock/bpf"
	"github.com/interlock/interlock/model"
)

// targetID names a target in the BPF maps. It is derived from the target's
// name, not its position in the config, so a connect record written before
// a daemon restart still names the same target afterwards.
func targetID(name string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(name))
	id := h.Sum32()
	if id == 0 {
		id = 1
	}
	return id
}

// resolvedTarget is a target with the addresses it currently resolves to.
type resolvedTarget struct {
	model.Target
	id    uint32
	addrs []netip.AddrPort
}

// Resolver turns a host name into addresses; net.DefaultResolver fits.
type HostResolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// resolveTargets resolves every target's host to all of its addresses:
// a client may reach any of them, so all must be intercepted. A target
// that does not resolve is an error; the caller decides whether a stale
// set is better than none.
func resolveTargets(ctx context.Context, r HostResolver, targets []model.Target) ([]resolvedTarget, error) {
	out := make([]resolvedTarget, 0, len(targets))
	ids := map[uint32]string{}
	var errs []error
	for _, t := range targets {
		host, portStr, err := net.SplitHostPort(t.Address)
		if err != nil {
			errs = append(errs, fmt.Errorf("target %s: address %q: %w", t.Name, t.Address, err))
			continue
		}
		port, err := strconv.ParseUint(portStr, 10, 16)
		if err != nil || port == 0 {
			errs = append(errs, fmt.Errorf("target %s: bad port in %q", t.Name, t.Address))
			continue
		}
		id := targetID(t.Name)
		if other, dup := ids[id]; dup {
			errs = append(errs, fmt.Errorf("targets %s and %s hash to the same id: rename one", other, t.Name))
			continue
		}
		ids[id] = t.Name
		var ips []netip.Addr
		if ip, err := netip.ParseAddr(host); err == nil {
			ips = []netip.Addr{ip}
		} else {
			ips, err = r.LookupNetIP(ctx, "ip", host)
			if err != nil {
				errs = append(errs, fmt.Errorf("target %s: resolve %s: %w", t.Name, host, err))
				continue
			}
		}
		rt := resolvedTarget{Target: t, id: id}
		for _, ip := range ips {
			ap := netip.AddrPortFrom(ip.Unmap().WithZone(""), uint16(port))
			if !slices.Contains(rt.addrs, ap) {
				rt.addrs = append(rt.addrs, ap)
			}
		}
		out = append(out, rt)
	}
	wildcardCoverage(out, "/proc/self/net")
	return out, errors.Join(errs...)
}

// addrKey is the BPF targets-map key for an address: always in 16-byte
// form, IPv4 as ::ffff:a.b.c.d.
func addrKey(ap netip.AddrPort) bpf.InterlockAddrKey {
	return bpf.InterlockAddrKey{Addr: ap.Addr().As16(), Port: ap.Port()}
}

// syncTargets makes the BPF targets map hold exactly the given addresses.
// New entries go in before stale ones come out, so a target that keeps an
// address is never briefly unintercepted.
func syncTargets(m *ebpf.Map, targets []resolvedTarget) error {
	want := map[bpf.InterlockAddrKey]bpf.InterlockTargetVal{}
	for _, t := range targets {
		for _, a := range t.addrs {
			k := addrKey(a)
			if prev, ok := want[k]; ok && prev.TargetId != t.id {
				return fmt.Errorf("address %s belongs to two targets", a)
			}
			want[k] = bpf.InterlockTargetVal{TargetId: t.id}
		}
	}
	for k, v := range want {
		if err := m.Put(k, v); err != nil {
			return fmt.Errorf("update BPF targets map: %w", err)
		}
	}
	var (
		k     bpf.InterlockAddrKey
		v     bpf.InterlockTargetVal
		stale []bpf.InterlockAddrKey
	)
	it := m.Iterate()
	for it.Next(&k, &v) {
		if _, ok := want[k]; !ok {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read BPF targets map: %w", err)
	}
	for _, k := range stale {
		if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("remove stale target address: %w", err)
		}
	}
	return nil
}
