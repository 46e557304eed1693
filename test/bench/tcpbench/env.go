package main

import (
	"fmt"
	"path/filepath"
	"runtime"
	"time"

	"golang.org/x/sys/unix"

	"github.com/interlock/interlock/test/bench/benchutil"
)

// envFacts describe the machine the numbers come from.
type envFacts struct {
	Kernel    string `json:"kernel"`
	CPUs      int    `json:"cpus"`
	CPUModel  string `json:"cpu_model,omitempty"`
	GoVersion string `json:"go_version"`
	Interlock string `json:"interlock_version"`
	// Before and BeforePath are the -before binary's version and path.
	Before           string `json:"before_version,omitempty"`
	BeforePath       string `json:"before_path,omitempty"`
	JournalPath      string `json:"journal_path"`
	JournalFS        string `json:"journal_fs"`
	JournalSync      string `json:"journal_sync"`
	JournalSyncEvery string `json:"journal_sync_interval"`
	// Disk sync latency in the journal's directory, measured in this
	// run: fdatasync and fsync, each after a 4 KiB append. SQLite syncs
	// its WAL with fsync.
	FsyncN          int     `json:"fsync_n"`
	FdatasyncP50US  float64 `json:"fdatasync_p50_us"`
	FdatasyncP99US  float64 `json:"fdatasync_p99_us"`
	FdatasyncMeanUS float64 `json:"fdatasync_mean_us"`
	FsyncP50US      float64 `json:"fsync_p50_us"`
	FsyncP99US      float64 `json:"fsync_p99_us"`
	FsyncMeanUS     float64 `json:"fsync_mean_us"`
}

// fsType names the filesystem holding dir.
func fsType(dir string) string {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return "unknown"
	}
	names := map[int64]string{
		unix.EXT4_SUPER_MAGIC:      "ext4",
		unix.TMPFS_MAGIC:           "tmpfs",
		unix.XFS_SUPER_MAGIC:       "xfs",
		unix.BTRFS_SUPER_MAGIC:     "btrfs",
		unix.OVERLAYFS_SUPER_MAGIC: "overlayfs",
	}
	if n, ok := names[int64(st.Type)]; ok {
		return n
	}
	return fmt.Sprintf("0x%x", st.Type)
}

// measureSync is the p50, p99 and mean of n syncs on the journal's disk
// (benchutil.SyncLatencies).
func measureSync(dir string, n int, sync func(fd int) error) (p50, p99, mean time.Duration, err error) {
	lat, err := benchutil.SyncLatencies(dir, n, sync)
	if err != nil {
		return 0, 0, 0, err
	}
	var sum time.Duration
	for _, d := range lat {
		sum += d
	}
	return percentile(lat, 0.5), percentile(lat, 0.99), sum / time.Duration(n), nil
}

func collectEnv(interlockBin, journalPath string, fsyncN int) (envFacts, error) {
	e := envFacts{
		Kernel:           benchutil.Kernel(),
		CPUs:             runtime.NumCPU(),
		CPUModel:         benchutil.CPUModel(),
		GoVersion:        runtime.Version(),
		JournalPath:      journalPath,
		JournalFS:        fsType(filepath.Dir(journalPath)),
		JournalSync:      "normal",
		JournalSyncEvery: "10ms",
		FsyncN:           fsyncN,
	}
	v, err := benchutil.InterlockVersion(interlockBin)
	if err != nil {
		return e, err
	}
	e.Interlock = v
	p50, p99, mean, err := measureSync(filepath.Dir(journalPath), fsyncN, unix.Fdatasync)
	if err != nil {
		return e, fmt.Errorf("measure fdatasync latency: %w", err)
	}
	e.FdatasyncP50US, e.FdatasyncP99US, e.FdatasyncMeanUS = us(p50), us(p99), us(mean)
	p50, p99, mean, err = measureSync(filepath.Dir(journalPath), fsyncN, unix.Fsync)
	if err != nil {
		return e, fmt.Errorf("measure fsync latency: %w", err)
	}
	e.FsyncP50US, e.FsyncP99US, e.FsyncMeanUS = us(p50), us(p99), us(mean)
	return e, nil
}
