package redirector

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/interlock/interlock/bpf"
)

const bpffsRoot = "/sys/fs/bpf"

// programs is one loaded instance of interlock's BPF objects.
type programs struct {
	objs bpf.InterlockObjects
	// mapPin is where the maps are pinned, "" when they live only as long
	// as this process (and the links that use them).
	mapPin string
	log    *slog.Logger
}

// loadPrograms loads the BPF objects. With mapPin set, the maps are pinned
// there and reused on the next load, so a daemon restart keeps in-flight
// connect records and the targets map.
func loadPrograms(mapPin string, log *slog.Logger) (*programs, error) {
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("raise the memlock limit for BPF maps: %w", err)
	}
	spec, err := bpf.LoadInterlock()
	if _, berr := btf.LoadKernelSpec(); berr != nil {
		// Without the kernel's BTF the CO-RE reads of the connecting
		// task cannot be relocated: load the build without them. No
		// program facts are recorded, so every executable is unknown
		// to policy (rules about executables cannot allow).
		log.Warn("the kernel has no BTF (/sys/kernel/btf/vmlinux): the connect hook cannot record which program connected; "+
			"every session's program identity is unknown. Use a kernel built with CONFIG_DEBUG_INFO_BTF=y", "err", berr)
		spec, err = bpf.LoadInterlockNoCore()
	}
	if err != nil {
		return nil, fmt.Errorf("parse embedded BPF objects: %w", err)
	}
	opts := &ebpf.CollectionOptions{}
	if mapPin != "" {
		if err := EnsureBPFFS(mapPin); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(mapPin, 0o700); err != nil {
			return nil, fmt.Errorf("create BPF pin directory: %w", err)
		}
		for _, m := range spec.Maps {
			if m.Name == bpf.InterlockMapTargets || m.Name == bpf.InterlockMapConfig ||
				m.Name == bpf.InterlockMapPending || m.Name == bpf.InterlockMapOrigins ||
				m.Name == bpf.InterlockMapStats || m.Name == bpf.InterlockMapPeers ||
				m.Name == bpf.InterlockMapCgroupClass {
				m.Pinning = ebpf.PinByName
			}
		}
		opts.Maps.PinPath = mapPin
	}
	p := &programs{mapPin: mapPin, log: log}
	err = spec.LoadAndAssign(&p.objs, opts)
	if errors.Is(err, ebpf.ErrMapIncompatible) {
		// An upgrade changed a map's layout: the old pins cannot be reused.
		log.Warn("pinned BPF maps do not match this version; recreating them", "dir", mapPin, "err", err)
		for _, m := range spec.Maps {
			if m.Pinning == ebpf.PinByName {
				_ = os.Remove(filepath.Join(mapPin, m.Name))
			}
		}
		err = spec.LoadAndAssign(&p.objs, opts)
	}
	if err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return nil, fmt.Errorf("the kernel's BPF verifier rejected interlock's programs: %+v", verr)
		}
		if errors.Is(err, unix.EPERM) {
			return nil, fmt.Errorf("load BPF programs: %w (interlock needs root, or CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN; run `interlock doctor`)", err)
		}
		return nil, fmt.Errorf("load BPF programs: %w", err)
	}
	return p, nil
}

func (p *programs) close() error {
	return p.objs.Close()
}

// redirectConfig is what the connect hooks need to know about interlock.
type redirectConfig struct {
	Listen4     netip.AddrPort
	Listen6     netip.AddrPort // invalid when there is no IPv6 listener
	SelfCgroup  uint64
	NetnsCookie uint64
	// ListenerMark is the SO_MARK set on the listeners; the hooks check
	// it before they redirect.
	ListenerMark uint32
	FailOpen     bool
}

func (p *programs) setConfig(c redirectConfig) error {
	var v bpf.InterlockRedirectConfig
	ip4 := c.Listen4.Addr().As4()
	v.ListenIp4 = binary.LittleEndian.Uint32(ip4[:])
	v.ListenPort4 = c.Listen4.Port()
	if c.Listen6.IsValid() {
		ip6 := c.Listen6.Addr().As16()
		for i := range 4 {
			v.ListenIp6[i] = binary.LittleEndian.Uint32(ip6[4*i:])
		}
		v.ListenPort6 = c.Listen6.Port()
	}
	if c.FailOpen {
		v.Flags |= 1
	}
	v.ListenerMark = c.ListenerMark
	v.SelfCgroup = c.SelfCgroup
	v.NetnsCookie = c.NetnsCookie
	if err := p.objs.Config.Put(uint32(0), v); err != nil {
		return fmt.Errorf("write BPF config map: %w", err)
	}
	return nil
}

// Stats are the connect hooks' counters, summed over CPUs.
type Stats struct {
	Redirected        uint64 `json:"redirected"`
	RefusedNoListener uint64 `json:"refused_no_listener"`
	PassedFailOpen    uint64 `json:"passed_fail_open"`
	RefusedOtherNetns uint64 `json:"refused_other_netns"`
	Rekeyed           uint64 `json:"rekeyed"`
	PendingMapFull    uint64 `json:"pending_map_full"`
	OriginsMapFull    uint64 `json:"origins_map_full"`
	// RefusedNotTCP counts UDP (and other non-TCP) connects and
	// datagrams to a target's address, refused.
	RefusedNotTCP uint64 `json:"refused_not_tcp"`
	// RefusedForeignSocket counts connects to a target by a task in an
	// intercepted cgroup on a socket made outside it, refused.
	RefusedForeignSocket uint64 `json:"refused_foreign_socket"`
	// RefusedUnplacedCgroup counts connects to a target from a cgroup
	// that appeared where a configured one may, before interlock placed
	// it, refused.
	RefusedUnplacedCgroup uint64 `json:"refused_unplaced_cgroup"`
	// StaleRecords counts connect records dropped because the connection
	// that reached the listener was not the one that made them.
	StaleRecords uint64 `json:"stale_records"`
	// NetnsAsked counts connects from a network namespace interlock did
	// not serve yet (refused), reported to the daemon to serve it.
	NetnsAsked uint64 `json:"netns_asked"`
}

func (p *programs) stats() (Stats, error) {
	var s Stats
	dst := []*uint64{&s.Redirected, &s.RefusedNoListener, &s.PassedFailOpen, &s.RefusedOtherNetns,
		&s.Rekeyed, &s.PendingMapFull, &s.OriginsMapFull,
		&s.RefusedNotTCP, &s.RefusedForeignSocket, &s.RefusedUnplacedCgroup, &s.StaleRecords, &s.NetnsAsked}
	for i, d := range dst {
		var per []uint64
		if err := p.objs.Stats.Lookup(uint32(i), &per); err != nil {
			return s, fmt.Errorf("read BPF stats: %w", err)
		}
		for _, v := range per {
			*d += v
		}
	}
	return s, nil
}

// attachment is interlock's programs attached to one cgroup.
type attachment struct {
	cgroupDir string
	// cgroupID is the cgroup's id when attached: a cgroup removed and made
	// again (a service restart) has a new one, and needs attaching anew.
	cgroupID uint64
	pinDir   string
	links    []link.Link
}

// progAttach is one program and where it attaches.
type progAttach struct {
	name string
	typ  ebpf.AttachType
	prog *ebpf.Program
}

// cgroupProgs are attached to each intercepted cgroup, in this order: the
// connect hooks last, so that a process already in the cgroup (one that
// appeared a moment ago) never has a connect redirected before sockops is
// there to move its record where the proxy looks for it.
func (p *programs) cgroupProgs() []progAttach {
	return []progAttach{
		{"sockops", ebpf.AttachCGroupSockOps, p.objs.InterlockSockops},
		{"getpeername4", ebpf.AttachCgroupInet4GetPeername, p.objs.InterlockGetpeername4},
		{"getpeername6", ebpf.AttachCgroupInet6GetPeername, p.objs.InterlockGetpeername6},
		{"sendmsg4", ebpf.AttachCGroupUDP4Sendmsg, p.objs.InterlockSendmsg4},
		{"sendmsg6", ebpf.AttachCGroupUDP6Sendmsg, p.objs.InterlockSendmsg6},
		{"connect4", ebpf.AttachCGroupInet4Connect, p.objs.InterlockConnect4},
		{"connect6", ebpf.AttachCGroupInet6Connect, p.objs.InterlockConnect6},
	}
}

// guardProgs are attached once, at the cgroup root (see guard in
// bpf/interlock.c).
func (p *programs) guardProgs() []progAttach {
	return []progAttach{
		{"connect4", ebpf.AttachCGroupInet4Connect, p.objs.InterlockGuardConnect4},
		{"connect6", ebpf.AttachCGroupInet6Connect, p.objs.InterlockGuardConnect6},
		{"sendmsg4", ebpf.AttachCGroupUDP4Sendmsg, p.objs.InterlockGuardSendmsg4},
		{"sendmsg6", ebpf.AttachCGroupUDP6Sendmsg, p.objs.InterlockGuardSendmsg6},
	}
}

// cgroup_class values (bpf/interlock.c).
const (
	cgIntercepted uint32 = 1
	cgFree        uint32 = 2
	cgWatched     uint32 = 3
)

func (p *programs) setClass(id uint64, class uint32) error {
	if err := p.objs.CgroupClass.Put(id, class); err != nil {
		return fmt.Errorf("write BPF cgroup_class map: %w", err)
	}
	return nil
}

func (p *programs) clearClass(id uint64) {
	_ = p.objs.CgroupClass.Delete(id)
}

// attach links the programs to a cgroup; programs attached to a cgroup also
// run for all its descendants. With pinDir set the links are pinned there,
// so they outlive this process: if interlock dies, the hooks stay and
// refuse connects to targets instead of letting them through. A link
// already pinned there is updated in place, which leaves no window.
func (p *programs) attach(cgroupDir, pinDir string) (*attachment, error) {
	return p.attachSet(cgroupDir, pinDir, p.cgroupProgs())
}

func (p *programs) attachSet(cgroupDir, pinDir string, set []progAttach) (*attachment, error) {
	a := &attachment{cgroupDir: cgroupDir, pinDir: pinDir}
	if pinDir != "" {
		if err := EnsureBPFFS(pinDir); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(pinDir, 0o700); err != nil {
			return nil, fmt.Errorf("create link pin directory: %w", err)
		}
	}
	for _, pr := range set {
		var l link.Link
		pin := ""
		if pinDir != "" {
			pin = filepath.Join(pinDir, pr.name)
			if old, err := link.LoadPinnedLink(pin, nil); err == nil {
				if err := old.Update(pr.prog); err != nil {
					old.Close()
					a.close()
					return nil, fmt.Errorf("update pinned %s link on %s: %w", pr.name, cgroupDir, err)
				}
				l = old
			}
		}
		if l == nil {
			var err error
			l, err = link.AttachCgroup(link.CgroupOptions{Path: cgroupDir, Attach: pr.typ, Program: pr.prog})
			if err != nil {
				a.close()
				return nil, fmt.Errorf("attach %s to cgroup %s: %w", pr.name, cgroupDir, err)
			}
			if pin != "" {
				if err := l.Pin(pin); err != nil {
					l.Close()
					a.close()
					return nil, fmt.Errorf("pin %s link at %s: %w", pr.name, pin, err)
				}
			}
		}
		a.links = append(a.links, l)
	}
	return a, nil
}

// close releases this process's handles. Pinned links stay attached.
func (a *attachment) close() {
	for _, l := range a.links {
		l.Close()
	}
	a.links = nil
}

// detach removes the programs from the cgroup, pinned or not.
func (a *attachment) detach() error {
	var errs []error
	for _, l := range a.links {
		if a.pinDir != "" {
			if err := l.Unpin(); err != nil {
				errs = append(errs, err)
			}
		}
		if err := l.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	a.links = nil
	if a.pinDir != "" {
		if err := os.Remove(a.pinDir); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// DetachPinned removes every pinned link under dir (as left by a daemon or
// by an `interlock run` that was killed) and the directory itself.
func DetachPinned(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if e.IsDir() {
			if err := DetachPinned(p); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		if l, err := link.LoadPinnedLink(p, nil); err == nil {
			errs = append(errs, l.Unpin(), l.Close())
		} else if err := os.Remove(p); err != nil {
			errs = append(errs, err)
		}
	}
	if err := os.Remove(dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// EnsureBPFFS makes sure dir lives on a BPF filesystem. Many hosts do not
// mount one at /sys/fs/bpf; like other eBPF daemons, interlock mounts it
// there when it is missing.
func EnsureBPFFS(dir string) error {
	if !strings.HasPrefix(filepath.Clean(dir)+"/", bpffsRoot+"/") {
		probe := dir
		for {
			var st unix.Statfs_t
			if err := unix.Statfs(probe, &st); err == nil {
				if st.Type == unix.BPF_FS_MAGIC {
					return nil
				}
				return fmt.Errorf("%s is not on a BPF filesystem: set bpf.pin_path under %s", dir, bpffsRoot)
			}
			parent := filepath.Dir(probe)
			if parent == probe {
				return fmt.Errorf("%s is not on a BPF filesystem", dir)
			}
			probe = parent
		}
	}
	var st unix.Statfs_t
	if err := unix.Statfs(bpffsRoot, &st); err == nil && st.Type == unix.BPF_FS_MAGIC {
		return nil
	}
	if err := os.MkdirAll(bpffsRoot, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", bpffsRoot, err)
	}
	if err := unix.Mount("bpffs", bpffsRoot, "bpf", 0, "mode=0700"); err != nil {
		return fmt.Errorf("mount the BPF filesystem at %s: %w (mount it with `mount -t bpf bpffs %s`)", bpffsRoot, err, bpffsRoot)
	}
	return nil
}
