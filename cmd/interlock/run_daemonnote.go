package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/interlock/interlock/control"
)

// warnDaemonGoverns tells the caller of `interlock run -c FILE` that a
// running daemon intercepts the run with its own config, not FILE: its
// targets decide what is intercepted and its journal what is recorded, so a
// target only FILE names goes direct. It names the daemon's config file and
// the flag that makes the run use FILE.
func warnDaemonGoverns(ctx context.Context, log *slog.Logger, daemon *control.Client, ignored string) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	attrs := []any{"ignored_config", ignored}
	if st, err := daemon.Status(ctx); err == nil {
		if abs, aerr := filepath.Abs(ignored); aerr == nil && st.Config != "" && sameFile(abs, st.Config) {
			return // the daemon runs with --config: nothing is ignored
		}
		file := st.Config
		if file == "" {
			file = "(built-in defaults)"
		}
		attrs = append(attrs, "daemon_config", file, "daemon_pid", st.PID, "daemon_targets", len(st.Targets), "journal", st.Journal)
	} else {
		attrs = append(attrs, "daemon_config", "unknown: "+err.Error())
	}
	attrs = append(attrs, "to use --config instead", "interlock run --engine embedded -c "+ignored+" -- CMD")
	log.Warn("a daemon is running and intercepts this run with its own config: only its targets are intercepted "+
		"and recorded in its journal; connections to targets only --config names go direct", attrs...)
}

// sameFile reports whether a and b name one file.
func sameFile(a, b string) bool {
	if a == b {
		return true
	}
	fa, err := os.Stat(a)
	if err != nil {
		return false
	}
	fb, err := os.Stat(b)
	return err == nil && os.SameFile(fa, fb)
}
