package redirector

import (
	"os"
	"testing"

	"github.com/cilium/ebpf/rlimit"

	"github.com/interlock/interlock/bpf"
	"github.com/interlock/interlock/test/testenv"
)

// TestNoCoreProgramsLoad: the build for kernels without BTF passes this
// kernel's verifier into the same objects the redirector uses, so the
// fallback is a working set of programs and not dead weight.
func TestNoCoreProgramsLoad(t *testing.T) {
	if os.Geteuid() != 0 {
		if testenv.CI() {
			t.Fatal("loading BPF programs needs root (CI=true: failing, not skipping)")
		}
		t.Skip("needs root")
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Fatal(err)
	}
	spec, err := bpf.LoadInterlockNoCore()
	if err != nil {
		t.Fatal(err)
	}
	var objs bpf.InterlockObjects
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		t.Fatalf("load the programs built without CO-RE: %v", err)
	}
	defer objs.Close()
	if objs.InterlockConnect4 == nil || objs.InterlockGuardConnect4 == nil || objs.CgroupClass == nil {
		t.Fatal("programs or maps missing")
	}
}
