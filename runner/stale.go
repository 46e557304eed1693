package runner

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/interlock/interlock/internal/cgroupfs"
	"github.com/interlock/interlock/redirector"
)

// State records an embedded `interlock run` in the runtime directory, so
// that if it is killed, a later run (or `interlock doctor`) can find the
// cgroup and pinned links it left and clean them up.
type State struct {
	PID        int    `json:"pid"`
	StartTicks uint64 `json:"start_ticks"`
	Cgroup     string `json:"cgroup"`
	CgroupDir  string `json:"cgroup_dir"`
	LinkPin    string `json:"link_pin"`
}

// NewState describes the calling process's run.
func NewState(cg *Cgroup, linkPin string) (State, error) {
	start, err := startTicks(os.Getpid())
	if err != nil {
		return State{}, err
	}
	return State{PID: os.Getpid(), StartTicks: start, Cgroup: cg.Path, CgroupDir: cg.Dir, LinkPin: linkPin}, nil
}

func statePath(dir string, pid int) string {
	return filepath.Join(dir, fmt.Sprintf("run-%d.json", pid))
}

// Save writes the state file.
func (s State) Save(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("runtime directory %s: %w", dir, err)
	}
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return os.WriteFile(statePath(dir, s.PID), b, 0o600)
}

// Remove deletes the state file.
func (s State) Remove(dir string) error {
	err := os.Remove(statePath(dir, s.PID))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// LinkPinDir is where an embedded run pins its links.
func LinkPinDir(pinRoot string, pid int, start uint64) string {
	return filepath.Join(pinRoot, "run", fmt.Sprintf("%d-%d", pid, start))
}

// startTicks reads a process's start time (clock ticks since boot): with
// the pid it names one process, even after the pid is reused.
func startTicks(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	// Fields after the comm start at field 3 (state); starttime is 22.
	if len(f) < 20 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// StartTicks is startTicks for the calling process.
func StartTicks() (uint64, error) { return startTicks(os.Getpid()) }

// Stale is a run whose owner is gone.
type Stale struct {
	State
	// Populated runs still have processes: their connects to targets stay
	// refused until someone ends them.
	Populated bool
	Cleaned   bool
	Err       error
}

// CollectStale finds runs whose interlock process died and removes what
// they left, unless processes remain in their cgroup. With dryRun it only
// reports.
func CollectStale(dir string, dryRun bool, log *slog.Logger) []Stale {
	if log == nil {
		log = slog.Default()
	}
	files, _ := filepath.Glob(filepath.Join(dir, "run-*.json"))
	var out []Stale
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var st State
		if err := json.Unmarshal(b, &st); err != nil {
			log.Warn("unreadable run state file", "file", f, "err", err)
			continue
		}
		if t, err := startTicks(st.PID); err == nil && t == st.StartTicks {
			continue // still running
		}
		s := Stale{State: st}
		populated, err := cgroupfs.Populated(st.CgroupDir)
		s.Populated = err == nil && populated
		if s.Populated || dryRun {
			out = append(out, s)
			continue
		}
		var errs []error
		if st.LinkPin != "" {
			if err := redirector.DetachPinned(st.LinkPin); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
		cg := &Cgroup{Path: st.Cgroup, Dir: st.CgroupDir}
		if _, err := os.Stat(st.CgroupDir); err == nil {
			cg.fd, _ = os.Open(st.CgroupDir)
			if cg.fd != nil {
				errs = append(errs, cg.Remove())
			}
		}
		s.Err = errors.Join(errs...)
		if s.Err == nil {
			_ = os.Remove(f)
			s.Cleaned = true
		}
		out = append(out, s)
	}
	return out
}
