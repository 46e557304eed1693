package redirector

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/interlock/interlock/bpf"
	"github.com/interlock/interlock/identity"
)

// lineage is the kernel side of agent lineage (bpf/lineage.c): the exec
// and fork tracing programs, attached for the whole machine, and their
// maps. It implements identity.LineageKernel. Its links are not pinned:
// they go with this process, and the next daemon tags the running agents
// again (identity's scan).
type lineage struct {
	objs  bpf.LineageObjects
	links []link.Link
}

// loadLineage loads and attaches the lineage programs. They need the
// kernel's BTF (tp_btf programs, task storage).
func loadLineage() (*lineage, error) {
	if _, err := btf.LoadKernelSpec(); err != nil {
		return nil, fmt.Errorf("the kernel has no BTF (/sys/kernel/btf/vmlinux): %w", err)
	}
	l := &lineage{}
	if err := bpf.LoadLineageObjects(&l.objs, nil); err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return nil, fmt.Errorf("the kernel's BPF verifier rejected the lineage programs: %+v", verr)
		}
		return nil, fmt.Errorf("load the lineage programs: %w", err)
	}
	for _, p := range []*ebpf.Program{l.objs.LineageExec, l.objs.LineageFork} {
		lk, err := link.AttachTracing(link.TracingOptions{Program: p})
		if err != nil {
			l.close()
			return nil, fmt.Errorf("attach the lineage program %s: %w", p, err)
		}
		l.links = append(l.links, lk)
	}
	return l, nil
}

func (l *lineage) close() error {
	var errs []error
	for _, lk := range l.links {
		errs = append(errs, lk.Close())
	}
	l.links = nil
	errs = append(errs, l.objs.Close())
	return errors.Join(errs...)
}

// kernelDev turns a dev_t as stat reports it into the kernel's internal
// encoding, the one inode->i_sb->s_dev holds, and back.
func kernelDev(dev uint64) uint32 {
	return unix.Major(dev)<<20 | unix.Minor(dev)&(1<<20-1)
}

func userDev(dev uint32) uint64 { return unix.Mkdev(dev>>20, dev&(1<<20-1)) }

// Lookup implements identity.LineageKernel.
func (l *lineage) Lookup(pidfd int) (identity.LineageTag, bool, error) {
	var v bpf.LineageLineageTag
	err := l.objs.Lineage.Lookup(uint32(pidfd), &v)
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return identity.LineageTag{}, false, nil
	}
	if err != nil {
		return identity.LineageTag{}, false, fmt.Errorf("lineage map lookup: %w", err)
	}
	return identity.LineageTag{
		AgentID: v.AgentId, RootTGID: v.RootTgid, RootStartNS: v.RootStartNs,
		Exe: identity.LineageExe{Dev: userDev(v.ExeDev), Ino: v.ExeIno},
	}, true, nil
}

// Tag implements identity.LineageKernel.
func (l *lineage) Tag(pidfd int, t identity.LineageTag) error {
	v := bpf.LineageLineageTag{
		AgentId: t.AgentID, RootTgid: t.RootTGID, RootStartNs: t.RootStartNS,
		ExeIno: t.Exe.Ino, ExeDev: kernelDev(t.Exe.Dev),
	}
	if err := l.objs.Lineage.Update(uint32(pidfd), &v, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("lineage map update: %w", err)
	}
	return nil
}

// SetExes implements identity.LineageKernel: the map ends holding exactly
// exes (entries are put before stale ones go, so a registered executable
// is never missing in between).
func (l *lineage) SetExes(exes map[identity.LineageExe]uint32) error {
	want := make(map[bpf.LineageExeKey]uint32, len(exes))
	for e, id := range exes {
		want[bpf.LineageExeKey{Ino: e.Ino, Dev: kernelDev(e.Dev)}] = id
	}
	var errs []error
	for k, id := range want {
		if err := l.objs.AgentExes.Put(k, id); err != nil {
			errs = append(errs, fmt.Errorf("agent_exes put: %w", err))
		}
	}
	var stale []bpf.LineageExeKey
	var k bpf.LineageExeKey
	var id uint32
	it := l.objs.AgentExes.Iterate()
	for it.Next(&k, &id) {
		if _, ok := want[k]; !ok {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		errs = append(errs, fmt.Errorf("agent_exes iterate: %w", err))
	}
	for _, k := range stale {
		if err := l.objs.AgentExes.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, fmt.Errorf("agent_exes delete: %w", err))
		}
	}
	return errors.Join(errs...)
}
