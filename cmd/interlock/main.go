// Command interlock intercepts the connections that automated actors open
// to production systems and turns them into audit evidence.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	_ "net/http/pprof"
	"os"
	"runtime/debug"

	"github.com/urfave/cli/v3"

	"github.com/interlock/interlock/config"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// Exit codes, after sysexits(3), so scripts can tell a finding from a
// misconfiguration. `interlock run` passes its command's own code through.
const (
	exitOK          = 0
	exitFailed      = 1  // the check ran and found a problem (verify, doctor)
	exitUsage       = 64 // bad command line
	exitNoInput     = 66 // a file to read does not exist
	exitUnavailable = 69 // a kernel feature, the daemon or a service is missing
	exitSoftware    = 70 // internal error
	exitOSErr       = 71 // the system refused (cgroup, mount, fork)
	exitIOErr       = 74 // reading or writing a file failed
	exitNoPerm      = 77 // missing privileges
	exitConfig      = 78 // the config file is wrong
)

// exitError carries the exit code for an error.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func exitWith(code int, err error) error {
	if err == nil {
		return nil
	}
	return &exitError{code: code, err: err}
}

// childExit is returned by `run` to exit with the command's own status,
// which is not an error of interlock's.
type childExit struct{ code int }

func (c childExit) Error() string { return fmt.Sprintf("command exited with %d", c.code) }

func versionString() string {
	v := version
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += " (" + s.Value[:12] + ")"
			}
		}
	}
	return v
}

func configFlag() cli.Flag {
	return &cli.StringFlag{
		Name:    "config",
		Aliases: []string{"c"},
		Usage:   "config file (default " + config.DefaultPath + " if it exists, else built-in defaults)",
		Sources: cli.EnvVars("INTERLOCK_CONFIG"),
	}
}

func loadConfig(cmd *cli.Command) (*config.Config, error) {
	cfg, err := config.Load(cmd.String("config"))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, exitWith(exitNoInput, err)
		}
		return nil, exitWith(exitConfig, err)
	}
	return cfg, nil
}

func newLogger(cfg *config.Config, minLevel slog.Level) *slog.Logger {
	level := slog.LevelInfo
	switch cfg.Log.Level {
	case config.LevelDebug:
		level = slog.LevelDebug
	case config.LevelWarn:
		level = slog.LevelWarn
	case config.LevelError:
		level = slog.LevelError
	}
	if level < minLevel {
		level = minLevel
	}
	opts := &slog.HandlerOptions{Level: level}
	if logJSON(cfg.Log.Format, isTerminal(os.Stderr)) {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

// logJSON says whether log lines are JSON: log.format set to json or text
// wins; auto (the default) means JSON unless stderr is a terminal, so the
// daemon under systemd, in a container or piped to a collector writes
// structured lines and a person at a terminal reads text.
func logJSON(format config.LogFormat, terminal bool) bool {
	switch format {
	case config.FormatJSON:
		return true
	case config.FormatText:
		return false
	default:
		return !terminal
	}
}

func rootCommand() *cli.Command {
	return &cli.Command{
		Name:    "interlock",
		Usage:   "record and control what automated processes do to production systems",
		Version: versionString(),
		Description: "Interlock redirects the connections chosen processes open to databases and hosts\n" +
			"through a local proxy, attributes each one to the process behind it, and writes\n" +
			"everything into a tamper-evident journal.",
		Commands: []*cli.Command{
			runCommand(),
			daemonCommand(),
			sessionsCommand(),
			statementsCommand(),
			journalCommand(),
			approvalsCommand(),
			policyCommand(),
			doctorCommand(),
			sshCACommand(),
			hubCommand(),
			versionCommand(),
			packageHelperCommand(),
		},
		// Exit codes are ours to choose; urfave/cli must not exit by itself.
		ExitErrHandler: func(context.Context, *cli.Command, error) {},
		OnUsageError: func(_ context.Context, _ *cli.Command, err error, _ bool) error {
			return exitWith(exitUsage, err)
		},
	}
}

func main() {
	// INTERLOCK_PPROF=127.0.0.1:6060 serves net/http/pprof, for profiling
	// the data path; it is never on by default.
	if addr := os.Getenv("INTERLOCK_PPROF"); addr != "" {
		go func() {
			if err := http.ListenAndServe(addr, nil); err != nil {
				fmt.Fprintln(os.Stderr, "interlock: pprof:", err)
			}
		}()
	}
	err := rootCommand().Run(context.Background(), os.Args)
	os.Exit(exitCode(err))
}

func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	var ce childExit
	if errors.As(err, &ce) {
		return ce.code
	}
	fmt.Fprintf(os.Stderr, "interlock: %v\n", err)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	var ec cli.ExitCoder
	if errors.As(err, &ec) {
		return ec.ExitCode()
	}
	return exitSoftware
}

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print interlock's version",
		Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print JSON"}},
		Action: func(_ context.Context, cmd *cli.Command) error {
			if cmd.Bool("json") {
				return printJSON(map[string]string{"version": version, "full": versionString()})
			}
			fmt.Println("interlock", versionString())
			return nil
		},
	}
}
