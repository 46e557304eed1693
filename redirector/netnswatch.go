package redirector

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"

	"github.com/interlock/interlock/bpf"
)

// netnsWatch is bpf/netnswatch.c attached: a program executed in an
// intercepted cgroup, in a namespace not served yet, reports the
// namespace on the ring the connect hooks use, so that the namespace is
// usually served before the program's first connect (which the hook
// would otherwise refuse).
type netnsWatch struct {
	objs bpf.NetnsWatchObjects
	link link.Link
}

// loadNetnsWatch loads the watch on the connect hooks' maps. Without BTF
// it cannot, and a namespace is served at its first connect only.
func loadNetnsWatch(p *programs) (*netnsWatch, error) {
	if _, err := btf.LoadKernelSpec(); err != nil {
		return nil, fmt.Errorf("the kernel has no BTF: %w", err)
	}
	spec, err := bpf.LoadNetnsWatch()
	if err != nil {
		return nil, fmt.Errorf("parse the netns watch: %w", err)
	}
	w := &netnsWatch{}
	opts := &ebpf.CollectionOptions{MapReplacements: map[string]*ebpf.Map{
		bpf.InterlockMapConfig:         p.objs.Config,
		bpf.InterlockMapNetnsListeners: p.objs.NetnsListeners,
		bpf.InterlockMapNetnsEvents:    p.objs.NetnsEvents,
		bpf.InterlockMapNetnsAsked:     p.objs.NetnsAsked,
		bpf.InterlockMapCgroupClass:    p.objs.CgroupClass,
	}}
	if err := spec.LoadAndAssign(&w.objs, opts); err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return nil, fmt.Errorf("the kernel's BPF verifier rejected the netns watch: %+v", verr)
		}
		return nil, fmt.Errorf("load the netns watch: %w", err)
	}
	l, err := link.AttachTracing(link.TracingOptions{Program: w.objs.NetnsExec})
	if err != nil {
		w.objs.Close()
		return nil, fmt.Errorf("attach the netns watch: %w", err)
	}
	w.link = l
	return w, nil
}

func (w *netnsWatch) close() {
	w.link.Close()
	w.objs.Close()
}
