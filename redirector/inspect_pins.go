package redirector

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// Read-only views of what is pinned, for `interlock doctor`. Nothing here
// attaches, detaches, unpins or removes anything.

// AttachedPrograms names the links pinned for each intercepted cgroup, as
// attach pins them (one file per program, named after it).
var AttachedPrograms = func() []string {
	var names []string
	for _, pr := range new(programs).cgroupProgs() {
		names = append(names, pr.name)
	}
	return names
}()

// PinnedCgroupDir is the directory under a link pin directory (such as
// the daemon's <bpf.pin_path>/daemon/links) that holds the links of the
// cgroup with the given id.
func PinnedCgroupDir(linkPin string, cgroupID uint64) string {
	return filepath.Join(linkPin, fmt.Sprintf("cg-%d", cgroupID))
}

// PinnedCgroupIDs lists the cgroup ids that have a pin directory under
// linkPin. A missing linkPin is no error: nothing is pinned.
func PinnedCgroupIDs(linkPin string) ([]uint64, error) {
	entries, err := os.ReadDir(linkPin)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ids []uint64
	for _, e := range entries {
		s, ok := strings.CutPrefix(e.Name(), "cg-")
		if !ok || !e.IsDir() {
			continue
		}
		if id, err := strconv.ParseUint(s, 10, 64); err == nil {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// PinnedLink is one pinned link as the kernel describes it.
type PinnedLink struct {
	// Name is the pin's file name (the program: connect4, sockops, …).
	Name string
	// CgroupID is the cgroup the link is attached to; 0 when that cgroup
	// was removed and the link is defunct.
	CgroupID   uint64
	AttachType ebpf.AttachType
	ProgramID  ebpf.ProgramID
	// Err is why the pin could not be read as a cgroup link.
	Err error
}

// InspectPinnedLinks reads, without changing them, the links pinned as
// files directly in dir. A missing dir gives os.ErrNotExist.
func InspectPinnedLinks(dir string) ([]PinnedLink, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []PinnedLink
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		pl := PinnedLink{Name: e.Name()}
		// The kernel hands out link pins read-write only; this process
		// just reads the info and closes its handle, which leaves the pin
		// and the attachment as they were.
		l, err := link.LoadPinnedLink(filepath.Join(dir, e.Name()), nil)
		if err != nil {
			pl.Err = err
			out = append(out, pl)
			continue
		}
		info, err := l.Info()
		l.Close()
		switch {
		case err != nil:
			pl.Err = err
		case info.Cgroup() == nil:
			pl.Err = fmt.Errorf("a %v link, not a cgroup link", info.Type)
		default:
			pl.CgroupID = info.Cgroup().CgroupId
			pl.AttachType = ebpf.AttachType(info.Cgroup().AttachType)
			pl.ProgramID = info.Program
		}
		out = append(out, pl)
	}
	return out, nil
}
