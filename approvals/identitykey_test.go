package approvals

import (
	"testing"

	"github.com/interlock/interlock/model"
)

// TestIdentityKeyNeedsVerifiedExecutable: a ttl grant made for a process
// whose executable facts are only claimed covers that process alone, not
// every process claiming the same hash.
func TestIdentityKeyNeedsVerifiedExecutable(t *testing.T) {
	id := func(tgid uint32, trust string) model.Identity {
		return model.Identity{
			Kernel: model.KernelFacts{UID: 1000, TGID: tgid, ProcStartNS: uint64(tgid) * 1000},
			Proc:   &model.ProcFacts{Exe: "/usr/bin/psql", ExeSHA256: "abc", ExeTrust: trust},
		}
	}
	if identityKey(id(1, model.ExeVerified)) != identityKey(id(2, model.ExeVerified)) {
		t.Errorf("two processes of the same verified program have different keys")
	}
	for _, trust := range []string{model.ExeClaimed, model.ExeUnknown} {
		a, b := identityKey(id(1, trust)), identityKey(id(2, trust))
		if a == b || a == identityKey(id(1, model.ExeVerified)) {
			t.Errorf("%s: keys %q and %q: a claimed hash must not name a grant", trust, a, b)
		}
	}
	if identityKey(model.Identity{Kernel: model.KernelFacts{UID: 1, TGID: 5, ConnectBootNS: 9}}) == identityKey(model.Identity{Kernel: model.KernelFacts{UID: 1, TGID: 6, ConnectBootNS: 9}}) {
		t.Errorf("uninspected processes share a key")
	}
}
