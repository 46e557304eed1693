package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/urfave/cli/v3"

	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/control"
	"github.com/interlock/interlock/control/controlapi"
	"github.com/interlock/interlock/control/server"
	"github.com/interlock/interlock/engine"
	"github.com/interlock/interlock/identity/argvredact"
	"github.com/interlock/interlock/internal/cgroupfs"
	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/runner"
)

func runCommand() *cli.Command {
	one := 1
	return &cli.Command{
		Name:      "run",
		Usage:     "run a command with its connections to targets intercepted",
		ArgsUsage: "[--] CMD [ARGS...]",
		Description: "Starts CMD in a fresh cgroup whose connections to the configured targets go\n" +
			"through interlock. If an interlock daemon is running, it does the interception;\n" +
			"otherwise this process does. When CMD exits, processes it left behind in the cgroup\n" +
			"are killed, a one-line summary goes to stderr, and interlock exits with CMD's exit\n" +
			"code (128+N if a signal N ended it).\n\n" +
			"The cgroup goes below interlock's own when only root may write that cgroup and every\n" +
			"one above it, so an interception of the caller still covers CMD. When another user\n" +
			"may write one of them (systemd's user@UID.service and what is below it belong to\n" +
			"UID), CMD could move itself there and connect unintercepted: the cgroup then goes\n" +
			"below " + runner.RunParent + " at the cgroup2 root instead (-v says which and why).\n" +
			"A CMD running as root can leave any cgroup.\n\n" +
			"CMD gets stdin, stdout and stderr, and no other descriptor interlock inherited: a\n" +
			"socket connected before CMD started, outside any intercepted cgroup, would reach a\n" +
			"target unseen. --keep-fd N passes descriptor N on, at the same number (for example\n" +
			"a make jobserver's pipes, or a socket-activated listener); what flows through it is\n" +
			"not intercepted.\n\n" +
			"CMD gets interlock's environment less the variables a target's\n" +
			"credentials.password_env names: interlock logs in with them, the command must not\n" +
			"read them.\n\n" +
			"Exit codes of interlock's own: 64 usage, 69 unavailable, 71 system error, 77 missing\n" +
			"privileges, 78 bad config, 126 CMD not executable, 127 CMD not found.",
		StopOnNthArg: &one,
		// A flag that does not parse (--keep-fd x) is a usage error, 64;
		// the root command's handler does not reach subcommands.
		OnUsageError: func(_ context.Context, _ *cli.Command, err error, _ bool) error {
			return exitWith(exitUsage, err)
		},
		Flags: []cli.Flag{
			configFlag(),
			&cli.StringFlag{Name: "engine", Value: "auto", Usage: "auto (daemon if one runs), daemon, or embedded"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no summary line"},
			&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "log the engine's info messages to stderr"},
			&cli.IntSliceFlag{Name: "keep-fd", Usage: "pass inherited descriptor N on to CMD at the same number (repeatable); every other one above 2 is closed"},
		},
		Action: runAction,
	}
}

// runSession is the engine side of one `interlock run`: embedded or
// delegated to the daemon.
type runSession interface {
	end(ctx context.Context, result model.RunEnd) (engine.Tally, error)
	journalPath() string
}

func runAction(ctx context.Context, cmd *cli.Command) error {
	argv := cmd.Args().Slice()
	if len(argv) > 0 && argv[0] == "--" {
		argv = argv[1:]
	}
	if len(argv) == 0 {
		return exitWith(exitUsage, errors.New("run needs a command: interlock run [--] CMD [ARGS...]"))
	}
	mode := cmd.String("engine")
	if mode != "auto" && mode != "daemon" && mode != "embedded" {
		return exitWith(exitUsage, fmt.Errorf("--engine must be auto, daemon or embedded, not %q", mode))
	}
	keep, err := keptFDs(cmd.IntSlice("keep-fd"))
	if err != nil {
		return exitWith(exitUsage, err)
	}
	// Only for the log: which descriptors CMD will not get.
	inherited, inheritedErr := runner.InheritedFDs()
	// Before anything else runs: from here on, no descriptor reaches CMD
	// unless it is named in --keep-fd.
	if err := runner.CloseOnExecAbove(); err != nil {
		return exitWith(exitOSErr, fmt.Errorf("%w; without it, descriptors interlock inherited would reach the command: "+
			"start interlock with none open above 2", err))
	}
	if err := requireCaps(); err != nil {
		return err
	}
	cfg, err := loadConfig(cmd)
	if err != nil {
		return err
	}
	minLevel := slog.LevelWarn
	if cmd.Bool("verbose") {
		minLevel = slog.LevelDebug - 4
	}
	log := newLogger(cfg, minLevel)
	root, err := cgroupfs.Root()
	if err != nil {
		return exitWith(exitUnavailable, err)
	}
	runDir := control.RunsDir(cfg.Control.Socket)
	for _, s := range runner.CollectStale(runDir, false, log) {
		if s.Populated {
			log.Warn("a killed `interlock run` left processes behind; their connects to targets are refused",
				"cgroup", s.Cgroup, "end them with", "echo 1 > "+filepath.Join(s.CgroupDir, "cgroup.kill"))
		}
	}

	cg, err := runner.Create(root, fmt.Sprintf("interlock-run-%d", os.Getpid()))
	if err != nil {
		return exitWith(exitOSErr, err)
	}
	if cg.Placement.Relocated {
		log.Info("the command's cgroup is below interlock's own subtree, not the caller's",
			"cgroup", cg.Path, "caller_cgroup", cg.Placement.Caller, "why", cg.Placement.Why())
	} else {
		log.Info("the command's cgroup is below the caller's", "cgroup", cg.Path, "why", cg.Placement.Why())
	}
	if inheritedErr != nil {
		log.Debug("cannot list the descriptors interlock inherited", "err", inheritedErr)
	}
	logInheritedFDs(log, inherited, keep)
	defer func() {
		if err := cg.Remove(); err != nil {
			log.Warn("remove run cgroup", "cgroup", cg.Path, "err", err)
		}
	}()

	start := time.Now()
	var sess runSession
	var daemon *control.Client
	if mode != "embedded" {
		daemon, err = control.Dial(ctx, cfg.Control.Socket, time.Second)
		if err != nil && mode == "daemon" {
			return exitWith(exitUnavailable, fmt.Errorf("no interlock daemon answers on %s: %w", cfg.Control.Socket, err))
		}
	}
	if daemon != nil {
		if cmd.IsSet("config") {
			warnDaemonGoverns(ctx, log, daemon, cmd.String("config"))
		}
		sess, err = startDaemonRun(ctx, daemon, cg, argv)
	} else {
		sess, err = startEmbeddedRun(ctx, cfg, cg, argv, runDir, log)
	}
	if err != nil {
		return err
	}

	child := cg.Command(argv)
	child.ExtraFiles = runner.PassFDs(keep)
	// The command is what the targets' credentials are kept from: the
	// variables interlock reads them from stay with interlock.
	var scrubbed []string
	child.Env, scrubbed = runner.ScrubEnv(os.Environ(), secretEnvNames(cfg))
	if len(scrubbed) > 0 {
		log.Info("the command does not get the variables that hold targets' credentials", "removed", scrubbed)
	}
	if err := child.Start(); err != nil {
		_, _ = sess.end(ctx, model.RunEnd{ExitCode: 127, DurationNS: time.Since(start).Nanoseconds()})
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
			return exitWith(127, fmt.Errorf("%s: command not found", argv[0]))
		}
		// clone3 refuses CLONE_INTO_CGROUP with EBUSY when the cgroup may
		// not hold processes (its parent enables domain controllers and
		// has processes of its own, or its type is domain invalid).
		if errors.Is(err, syscall.EBUSY) || errors.Is(err, syscall.EOPNOTSUPP) {
			return exitWith(exitOSErr, fmt.Errorf("start %s in cgroup %s: %w: the cgroup may not hold processes; "+
				"check cgroup.type and the parent's cgroup.subtree_control (cgroup v2's no-internal-process rule)", argv[0], cg.Path, err))
		}
		return exitWith(126, fmt.Errorf("start %s: %w", argv[0], err))
	}
	stopSignals := forwardSignals(child.Process)
	waitErr := child.Wait()
	stopSignals()
	var ee *exec.ExitError
	if waitErr != nil && !errors.As(waitErr, &ee) {
		log.Error("wait for command", "err", waitErr)
	}
	code, sig := runner.ExitStatus(child.ProcessState)

	killed, kerr := cg.Kill(5 * time.Second)
	if kerr != nil {
		log.Error("could not end the processes the command left behind", "err", kerr)
	}
	tally, err := sess.end(ctx, model.RunEnd{
		ExitCode: code, Signal: sig, DurationNS: time.Since(start).Nanoseconds(), Killed: killed,
	})
	if err != nil {
		log.Error("finish the run's interception", "err", err)
	}
	if !cmd.Bool("quiet") {
		fmt.Fprintln(os.Stderr, summaryLine(tally, killed, sess.journalPath()))
	}
	return childExit{code: code}
}

// secretEnvNames are the environment variables interlock reads a
// credential from: each target's credentials.password_env. When a daemon
// does the interception its config names the same variables unless it was
// started with another file; the daemon's own environment never reaches
// the command anyway.
func secretEnvNames(cfg *config.Config) []string {
	var names []string
	for _, t := range cfg.Targets {
		if t.Credentials != nil && t.Credentials.PasswordEnv != "" && !slices.Contains(names, t.Credentials.PasswordEnv) {
			names = append(names, t.Credentials.PasswordEnv)
		}
	}
	return names
}

// keptFDs checks the --keep-fd values: each must be a descriptor
// interlock was started with. It must run before CloseOnExecAbove, which
// erases the difference between those and interlock's own.
func keptFDs(want []int) ([]int, error) {
	var out []int
	for _, fd := range want {
		if fd < 3 {
			return nil, fmt.Errorf("--keep-fd %d: stdin, stdout and stderr (0, 1, 2) always reach the command; name descriptors from 3 up", fd)
		}
		if slices.Contains(out, fd) {
			continue
		}
		if err := runner.Inherited(fd); err != nil {
			return nil, fmt.Errorf("--keep-fd %d: interlock was not started with descriptor %d open (%v); "+
				"open it in whatever starts interlock, as a shell does with `interlock run --keep-fd %d -- CMD %d<FILE`", fd, fd, err, fd, fd)
		}
		out = append(out, fd)
	}
	slices.Sort(out)
	return out, nil
}

// logInheritedFDs says which inherited descriptors the command does not
// get, with what they are, so a command that misses one can be told why.
func logInheritedFDs(log *slog.Logger, inherited, keep []int) {
	if len(inherited) == 0 {
		return
	}
	var closed, kept []string
	for _, fd := range inherited {
		what, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
		if err != nil {
			what = "?"
		}
		d := fmt.Sprintf("%d (%s)", fd, what)
		if slices.Contains(keep, fd) {
			kept = append(kept, d)
		} else {
			closed = append(closed, d)
		}
	}
	log.Info("descriptors interlock inherited", "not_passed_on", closed, "passed_on", kept)
}

// forwardSignals passes termination signals on to the command. SIGINT and
// SIGQUIT from a terminal already reach the whole foreground process group,
// so interlock only ignores them rather than sending a second copy.
func forwardSignals(p *os.Process) func() {
	ch := make(chan os.Signal, 8)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGINT, syscall.SIGQUIT)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case s := <-ch:
				if s != syscall.SIGINT && s != syscall.SIGQUIT {
					_ = p.Signal(s)
				}
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(ch)
		close(done)
	}
}

func summaryLine(t engine.Tally, killed int, journalPath string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "interlock: %d session", t.Sessions)
	if t.Sessions != 1 {
		b.WriteString("s")
	}
	if len(t.ByTarget) > 0 {
		names := make([]string, 0, len(t.ByTarget))
		for n := range t.ByTarget {
			names = append(names, n)
		}
		sort.Strings(names)
		parts := make([]string, 0, len(names))
		for _, n := range names {
			parts = append(parts, fmt.Sprintf("%s×%d", n, t.ByTarget[n]))
		}
		fmt.Fprintf(&b, " (%s)", strings.Join(parts, ", "))
	}
	fmt.Fprintf(&b, ", %d refused", t.Refused)
	if t.Anomalies > 0 {
		fmt.Fprintf(&b, ", %d anomalies", t.Anomalies)
	}
	fmt.Fprintf(&b, ", %s up, %s down", humanBytes(t.BytesUp), humanBytes(t.BytesDown))
	if killed > 0 {
		fmt.Fprintf(&b, ", %d leftover processes killed", killed)
	}
	fmt.Fprintf(&b, "; journal %s", journalPath)
	return b.String()
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// embeddedRun intercepts the run's cgroup with an engine in this process.
type embeddedRun struct {
	eng       *engine.Engine
	approvals *server.Approvals
	watch     *engine.Watch
	cg        *runner.Cgroup
	id        string
	state     runner.State
	runDir    string
	log       *slog.Logger
}

func startEmbeddedRun(ctx context.Context, cfg *config.Config, cg *runner.Cgroup, argv []string, runDir string, log *slog.Logger) (runSession, error) {
	ticks, err := runner.StartTicks()
	if err != nil {
		return nil, exitWith(exitOSErr, err)
	}
	linkPin := runner.LinkPinDir(cfg.BPF.PinPath, os.Getpid(), ticks)
	state, err := runner.NewState(cg, linkPin)
	if err != nil {
		return nil, exitWith(exitOSErr, err)
	}
	if err := state.Save(runDir); err != nil {
		return nil, exitWith(exitOSErr, err)
	}
	// The run intercepts its own cgroup only; the daemon's cgroups in the
	// config are not its business.
	runCfg := *cfg
	runCfg.Intercept.Cgroups = nil
	eng, err := engine.New(ctx, &runCfg, engine.Options{LinkPin: linkPin, Logger: log})
	if err != nil {
		state.Remove(runDir)
		return nil, exitWith(engineExitCode(err), err)
	}
	publishPostgresCA(&runCfg, log)
	r := &embeddedRun{eng: eng, cg: cg, state: state, runDir: runDir, log: log}
	r.watch = eng.WatchCgroup(cg.Path, cg.ID)
	if err := eng.Redirector().Attach(cg.Path); err != nil {
		eng.Close()
		state.Remove(runDir)
		return nil, exitWith(exitOSErr, err)
	}
	r.approvals = &server.Approvals{Broker: eng.Approvals(), Logger: log}
	if err := r.approvals.Listen(control.RunApprovalsSocket(runDir, os.Getpid())); err != nil {
		log.Warn("no approvals socket for this run: operations held for review will time out", "err", err)
		r.approvals = nil
	}
	eng.Start()
	id, _ := uuid.NewV7()
	r.id = id.String()
	// The command runs with its argv; the record holds it with its
	// secrets' values replaced.
	jargv, n := argvredact.Argv(argv)
	rs := model.RunStart{Argv: jargv, ArgvRedacted: n, Cgroup: cg.Path, CgroupID: cg.ID, Engine: "embedded", Invoker: eng.Self(ctx)}
	// The run record is synced before the command starts: it says who
	// started what, and must exist even if the host loses power next.
	if _, err := eng.Journal().Append(ctx, model.Record{Kind: model.KindRunStart, Session: r.id, Data: rs}, model.Synced); err != nil {
		r.teardown()
		return nil, exitWith(exitIOErr, fmt.Errorf("journal the run: %w", err))
	}
	return r, nil
}

func (r *embeddedRun) journalPath() string { return r.eng.JournalPath() }

func (r *embeddedRun) end(ctx context.Context, res model.RunEnd) (engine.Tally, error) {
	t, err := r.eng.EndRun(ctx, r.id, r.watch, res)
	return t, errors.Join(err, r.teardown())
}

func (r *embeddedRun) teardown() error {
	if r.approvals != nil {
		r.approvals.Close()
	}
	err := r.eng.Redirector().Detach(r.cg.Path)
	err = errors.Join(err, r.eng.Close())
	if err == nil {
		// The run's pin directory held only its cgroup's links.
		if rerr := os.Remove(r.state.LinkPin); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			r.log.Debug("remove the run's pin directory", "dir", r.state.LinkPin, "err", rerr)
		}
		err = r.state.Remove(r.runDir)
	}
	return err
}

// daemonRun has the daemon intercept the run's cgroup.
type daemonRun struct {
	c    *control.Client
	info controlapi.RunInfo
}

func startDaemonRun(ctx context.Context, c *control.Client, cg *runner.Cgroup, argv []string) (runSession, error) {
	info, err := c.StartRun(ctx, cg.Path, argv)
	if err != nil {
		return nil, exitWith(exitUnavailable, fmt.Errorf("the interlock daemon could not intercept the run: %w", err))
	}
	return &daemonRun{c: c, info: info}, nil
}

func (r *daemonRun) journalPath() string { return r.info.Journal }

func (r *daemonRun) end(ctx context.Context, res model.RunEnd) (engine.Tally, error) {
	return r.c.EndRun(context.WithoutCancel(ctx), r.info.ID, res)
}

// engineExitCode classifies an engine start failure.
func engineExitCode(err error) int {
	switch {
	case errors.Is(err, syscall.EPERM), errors.Is(err, syscall.EACCES):
		return exitNoPerm
	case errors.Is(err, syscall.ENOENT):
		return exitUnavailable
	default:
		return exitUnavailable
	}
}
