package redirector

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/interlock/interlock/model"
)

type fakeHosts map[string][]netip.Addr

func (f fakeHosts) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if a, ok := f[host]; ok {
		return a, nil
	}
	return nil, errors.New("no such host")
}

func TestResolveTargets(t *testing.T) {
	hosts := fakeHosts{"db.internal": {
		netip.MustParseAddr("10.0.0.5"), netip.MustParseAddr("2001:db8::5"),
		netip.MustParseAddr("::ffff:10.0.0.5"), // same address, mapped: one entry
	}}
	got, err := resolveTargets(context.Background(), hosts, []model.Target{
		{Name: "db", Protocol: model.ProtoTCP, Address: "db.internal:5432"},
		{Name: "v6", Protocol: model.ProtoTCP, Address: "[::1]:9000"},
		{Name: "gone", Protocol: model.ProtoTCP, Address: "nowhere.internal:1"},
	})
	if err == nil || !strings.Contains(err.Error(), "gone") {
		t.Errorf("an unresolvable target must be reported by name, got %v", err)
	}
	if len(got) != 2 {
		t.Fatalf("got %d resolved targets, want 2", len(got))
	}
	want := []netip.AddrPort{netip.MustParseAddrPort("10.0.0.5:5432"), netip.MustParseAddrPort("[2001:db8::5]:5432")}
	if len(got[0].addrs) != 2 || got[0].addrs[0] != want[0] || got[0].addrs[1] != want[1] {
		t.Errorf("db addresses %v, want %v", got[0].addrs, want)
	}
	if got[0].id != targetID("db") || got[0].id == got[1].id {
		t.Errorf("target ids not stable or not distinct: %d %d", got[0].id, got[1].id)
	}
	// Keys are 16 bytes with IPv4 v4-mapped, as the BPF hooks build them.
	k := addrKey(want[0])
	if k.Addr[10] != 0xff || k.Addr[11] != 0xff || k.Addr[12] != 10 || k.Port != 5432 {
		t.Errorf("IPv4 key %v is not ::ffff:10.0.0.5", k.Addr)
	}
}
