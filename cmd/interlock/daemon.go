package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/control"
	"github.com/interlock/interlock/control/server"
	"github.com/interlock/interlock/engine"
	"github.com/interlock/interlock/policy"
)

func daemonCommand() *cli.Command {
	return &cli.Command{
		Name:  "daemon",
		Usage: "intercept the configured cgroups until SIGTERM",
		Description: "Attaches interlock's programs to every cgroup in intercept.cgroups (their\n" +
			"descendants included), serves the control socket for `interlock run`, and\n" +
			"records every intercepted session. SIGHUP reloads targets and cgroups.\n\n" +
			"The programs stay attached (pinned under bpf.pin_path) when the daemon stops, so\n" +
			"connects to targets from intercepted cgroups are refused until it is back, not\n" +
			"let through. --detach-on-exit removes them on a clean stop instead.",
		Flags: []cli.Flag{
			configFlag(),
			&cli.BoolFlag{Name: "detach-on-exit", Usage: "detach the programs on SIGTERM: connects to targets then go direct, unrecorded"},
		},
		Action: daemonAction,
	}
}

func daemonAction(ctx context.Context, cmd *cli.Command) error {
	if err := requireCaps(); err != nil {
		return err
	}
	cfg, err := loadConfig(cmd)
	if err != nil {
		return err
	}
	log := newLogger(cfg, slog.LevelDebug-4)
	slog.SetDefault(log)
	if c, err := net.DialTimeout("unix", cfg.Control.Socket, time.Second); err == nil {
		c.Close()
		return exitWith(exitUnavailable, fmt.Errorf("another interlock daemon is running (control socket %s answers)", cfg.Control.Socket))
	}

	pin := filepath.Join(cfg.BPF.PinPath, "daemon")
	eng, err := engine.New(ctx, cfg, engine.Options{
		MapPin:  filepath.Join(pin, "maps"),
		LinkPin: filepath.Join(pin, "links"),
		Logger:  log,
	})
	if err != nil {
		return exitWith(engineExitCode(err), err)
	}
	for _, p := range eng.Redirector().CollectPinned() {
		log.Info("pinned programs from an earlier daemon", "cgroup", p.Cgroup, "kept", p.Kept, "reason", p.Reason)
	}
	srv := &server.Control{Engine: eng, Version: versionString(), Config: cfg.Source, Logger: log}
	if err := srv.Listen(cfg.Control.Socket); err != nil {
		eng.Close()
		return exitWith(exitUnavailable, err)
	}
	asrv := &server.Approvals{Broker: eng.Approvals(), Logger: log}
	if err := asrv.Listen(filepath.Join(filepath.Dir(cfg.Control.Socket), control.ApprovalsSocketName)); err != nil {
		srv.Close()
		eng.Close()
		return exitWith(exitUnavailable, err)
	}
	var metricsSrv *http.Server
	if cfg.Metrics.Listen != "" {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", eng.Metrics().Handler())
		metricsSrv = &http.Server{Addr: cfg.Metrics.Listen, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		ln, err := net.Listen("tcp", cfg.Metrics.Listen)
		if err != nil {
			asrv.Close()
			srv.Close()
			eng.Close()
			return exitWith(exitUnavailable, fmt.Errorf("metrics.listen %s: %w", cfg.Metrics.Listen, err))
		}
		go metricsSrv.Serve(ln)
	}
	stopConsole, err := startConsole(cfg, eng, log)
	if err != nil {
		if metricsSrv != nil {
			metricsSrv.Close()
		}
		asrv.Close()
		srv.Close()
		eng.Close()
		return err
	}
	// Signals are taken before "ready" is said: a SIGHUP sent by whoever
	// waited for it (systemctl reload, a script) must reload, not be lost
	// or end the daemon.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	eng.Start()
	addrs := []string{}
	for _, ln := range eng.Redirector().Listeners() {
		addrs = append(addrs, ln.Addr().String())
	}
	logPolicyWarnings(log, cfg)
	log.Info("interlock daemon ready", "version", versionString(), "config", configName(cfg),
		"journal", cfg.Journal.Path, "cgroups", cfg.Intercept.Cgroups, "targets", len(cfg.Targets), "listeners", addrs)
	logNothingToIntercept(log, cfg)
	publishPostgresCA(cfg, log)
	stopShipper := startShipper(cfg, eng, log)
	sdNotify("READY=1")

	for sig := range sigs {
		if sig == syscall.SIGHUP {
			reload(ctx, cmd, eng, log)
			continue
		}
		log.Info("stopping", "signal", sig.String())
		sdNotify("STOPPING=1")
		break
	}
	var errs []error
	errs = append(errs, srv.Close(), asrv.Close())
	if metricsSrv != nil {
		metricsSrv.Close()
	}
	if cmd.Bool("detach-on-exit") {
		for _, cg := range eng.Redirector().Attached() {
			if err := eng.Redirector().Detach(cg); err != nil {
				errs = append(errs, err)
			}
		}
		log.Info("programs detached: connects to targets now go direct")
	} else if n := len(eng.Redirector().Attached()); n > 0 {
		log.Info("programs stay attached: connects to targets from the intercepted cgroups are refused until interlock runs again", "cgroups", n)
	}
	// The shipper appends to the journal: it stops before the engine
	// closes it.
	stopShipper()
	stopConsole()
	errs = append(errs, eng.Close())
	if err := errors.Join(errs...); err != nil {
		return exitWith(exitSoftware, err)
	}
	return nil
}

func configName(cfg *config.Config) string {
	if cfg.Source == "" {
		return "built-in defaults"
	}
	return cfg.Source
}

func reload(ctx context.Context, cmd *cli.Command, eng *engine.Engine, log *slog.Logger) {
	sdNotify("RELOADING=1")
	defer sdNotify("READY=1")
	cfg, err := config.Load(cmd.String("config"))
	if err != nil {
		log.Error("reload refused: the config is broken; keeping the running one", "err", err)
		return
	}
	if err := eng.Reload(ctx, cfg); err != nil {
		log.Error("reload refused: keeping the running config", "err", err)
		return
	}
	logPolicyWarnings(log, cfg)
	publishPostgresCA(cfg, log)
	log.Info("config reloaded", "config", configName(cfg), "targets", len(cfg.Targets), "cgroups", cfg.Intercept.Cgroups)
}

// sdNotify tells systemd about state changes when it started us as a
// Type=notify service; without NOTIFY_SOCKET it does nothing.
func sdNotify(state string) {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return
	}
	if path[0] == '@' {
		path = "\x00" + path[1:]
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return
	}
	defer c.Close()
	_, _ = c.Write([]byte(state))
}

// logPolicyWarnings logs what `interlock policy check` warns about: rules
// that can never fire.
func logPolicyWarnings(log *slog.Logger, cfg *config.Config) {
	for _, w := range policy.Lint(cfg) {
		log.Warn("policy: " + w.Error())
	}
}
