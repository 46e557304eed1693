package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/control"
	"github.com/interlock/interlock/redirector"
)

// packageHelperCommand is the hidden `interlock package-helper`: what the
// package build and the packages' maintainer scripts ask the binary, so
// that the shell scripts need not parse YAML or know the pin layout.
func packageHelperCommand() *cli.Command {
	return &cli.Command{
		Name:   "package-helper",
		Usage:  "helpers for the package build and the maintainer scripts",
		Hidden: true,
		Commands: []*cli.Command{
			{
				Name:      "gendocs",
				Usage:     "write the shell completions and the man page generated from the CLI into DIR",
				ArgsUsage: "DIR",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "date", Usage: "date for the man page, YYYY-MM-DD (default: $SOURCE_DATE_EPOCH, else today)"},
				},
				Action: gendocsAction,
			},
			{
				Name:  "should-start",
				Usage: "exit 0 if the config asks for interception (cgroups and targets), 1 otherwise",
				Description: "The packages start the service on installation only when this says yes: the\n" +
					"shipped config intercepts nothing, so the service is started once an admin\n" +
					"has configured it (or the config was provisioned before the package).",
				Flags:  []cli.Flag{configFlag(), &cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print nothing"}},
				Action: shouldStartAction,
			},
			{
				Name:  "detach",
				Usage: "remove the daemon's pinned programs, so connects to targets go direct again",
				Description: "Run by the packages' pre-removal script after the service is stopped: without\n" +
					"the binary, nothing would be left to serve or detach the pinned hooks, and\n" +
					"every intercepted connect to a target would be refused until the next boot.\n" +
					"Refuses while a daemon answers on the control socket.",
				Flags:  []cli.Flag{configFlag()},
				Action: detachAction,
			},
		},
	}
}

func gendocsAction(_ context.Context, cmd *cli.Command) error {
	dir := cmd.Args().First()
	if dir == "" || cmd.Args().Len() != 1 {
		return exitWith(exitUsage, errors.New("usage: interlock package-helper gendocs DIR"))
	}
	date, err := docDate(cmd.String("date"))
	if err != nil {
		return exitWith(exitUsage, err)
	}
	files, err := generateDocs(cmd.Root(), version, date)
	if err != nil {
		return exitWith(exitSoftware, err)
	}
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return exitWith(exitIOErr, err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			return exitWith(exitIOErr, err)
		}
	}
	return nil
}

// docDate is the man page's date: the flag, else SOURCE_DATE_EPOCH (for
// reproducible builds), else today.
func docDate(flag string) (time.Time, error) {
	if flag != "" {
		t, err := time.Parse("2006-01-02", flag)
		if err != nil {
			return time.Time{}, fmt.Errorf("--date %q: want YYYY-MM-DD", flag)
		}
		return t, nil
	}
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH %q is not a number of seconds", s)
		}
		return time.Unix(n, 0).UTC(), nil
	}
	return time.Now().UTC(), nil
}

func shouldStartAction(_ context.Context, cmd *cli.Command) error {
	say := func(format string, a ...any) {
		if !cmd.Bool("quiet") {
			fmt.Printf(format+"\n", a...)
		}
	}
	path := cmd.String("config")
	if path == "" {
		path = config.DefaultPath
	}
	cfg, err := config.Load(path)
	if err != nil {
		say("no: %v", err)
		return exitWith(exitFailed, errors.New("the config does not ask for interception"))
	}
	if len(cfg.Intercept.Cgroups) == 0 || len(cfg.Targets) == 0 {
		say("no: %s names %d cgroups and %d targets; interception needs both", path, len(cfg.Intercept.Cgroups), len(cfg.Targets))
		return exitWith(exitFailed, errors.New("the config does not ask for interception"))
	}
	say("yes: %s names %d cgroups and %d targets", path, len(cfg.Intercept.Cgroups), len(cfg.Targets))
	return nil
}

func detachAction(ctx context.Context, cmd *cli.Command) error {
	if err := requireCaps(); err != nil {
		return err
	}
	cfg, err := config.Load(cmd.String("config"))
	if err != nil {
		// A broken config must not leave the hooks behind: fall back to
		// the built-in pin path.
		fmt.Fprintf(os.Stderr, "interlock: %v; using the built-in bpf.pin_path\n", err)
		cfg = config.Default()
	}
	if c, err := control.Dial(ctx, cfg.Control.Socket, time.Second); err == nil {
		s, _ := c.Status(ctx)
		return exitWith(exitUnavailable, fmt.Errorf("a daemon (pid %d) answers on %s: stop it first", s.PID, cfg.Control.Socket))
	}
	dir := filepath.Join(cfg.BPF.PinPath, "daemon")
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		fmt.Printf("nothing pinned under %s\n", dir)
		return nil
	}
	if err := redirector.DetachPinned(dir); err != nil {
		return exitWith(exitOSErr, fmt.Errorf("detach %s: %w", dir, err))
	}
	_ = os.Remove(cfg.BPF.PinPath) // only if empty: runs may still pin there
	fmt.Printf("detached the daemon's programs (%s)\n", dir)
	return nil
}
