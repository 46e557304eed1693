package main

import (
	"log/slog"

	"github.com/interlock/interlock/config"
)

// logNothingToIntercept says, once at start, what a daemon that will
// intercept nothing (no targets) or only `interlock run` jobs (no cgroups)
// needs configured, and where: a daemon that starts quietly and records
// nothing looks like one that works.
func logNothingToIntercept(log *slog.Logger, cfg *config.Config) {
	file := cfg.Source
	if file == "" {
		file = config.DefaultPath + " (absent: built-in defaults are in use; the package installs an example)"
	}
	const next = "check with `interlock doctor`, then reload (systemctl reload interlock, or SIGHUP)"
	const docs = "/usr/share/doc/interlock/config.md (docs/config.md in the source)"
	switch {
	case len(cfg.Targets) == 0:
		log.Warn("nothing to intercept: no targets are configured, so no connection is redirected or recorded. "+
			"Name the systems to guard under targets: and the cgroups of the jobs under intercept.cgroups",
			"config", file, "docs", docs, "next", next)
	case len(cfg.Intercept.Cgroups) == 0:
		log.Warn("no cgroups to intercept: only `interlock run` commands are intercepted. "+
			"Name the cgroups of the jobs to watch under intercept.cgroups (a systemd unit's, e.g. /system.slice/runner.service)",
			"config", file, "docs", docs, "next", next)
	}
}
