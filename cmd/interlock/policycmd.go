package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/urfave/cli/v3"

	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/policy"
)

func policyCommand() *cli.Command {
	return &cli.Command{
		Name:  "policy",
		Usage: "check the policy rules, and see what they decide",
		Commands: []*cli.Command{
			{
				Name:  "check",
				Usage: "lint the config's rules; each problem names its line",
				Description: "Loads the config as the daemon would, compiles every CEL condition, and\n" +
					"reports problems as FILE:LINE: KEY: message. Exits 0 when the rules are good,\n" +
					"78 otherwise.",
				Flags:  []cli.Flag{configFlag(), &cli.BoolFlag{Name: "json", Usage: "print JSON"}},
				Action: policyCheckAction,
			},
			{
				Name:  "test",
				Usage: "print the decision for an identity, a target and an operation",
				Description: "Evaluates the rules exactly as the proxy does, without holding anything: a\n" +
					"review comes back as review. Give the operation as --sql (each statement is\n" +
					"judged on its own, as the proxy judges them), --command (an ssh exec), or\n" +
					"--op KIND (shell, sftp, port_forwarding, connect, ...).\n\n" +
					"  interlock policy test --target db --uid 1001 --exe /usr/bin/psql --sql 'DELETE FROM t'",
				Flags: []cli.Flag{
					configFlag(),
					&cli.StringFlag{Name: "target", Required: true, Usage: "target name"},
					&cli.IntFlag{Name: "uid", Usage: "the process's uid"},
					&cli.IntFlag{Name: "gid", Usage: "the process's gid"},
					&cli.StringFlag{Name: "user", Usage: "user name (default: the uid's)"},
					&cli.StringFlag{Name: "exe", Usage: "executable path"},
					&cli.StringFlag{Name: "exe-sha256", Usage: "executable hash"},
					&cli.StringFlag{Name: "cgroup", Usage: "cgroup path"},
					&cli.StringFlag{Name: "unit", Usage: "systemd unit"},
					&cli.StringSliceFlag{Name: "claim", Usage: "a CI claim NAME=VALUE (repeatable)"},
					&cli.StringFlag{Name: "sql", Usage: "SQL text (postgres targets)"},
					&cli.StringFlag{Name: "command", Usage: "command line (ssh exec)"},
					&cli.StringFlag{Name: "op", Usage: "operation kind"},
					&cli.StringFlag{Name: "path", Usage: "sftp path"},
					&cli.BoolFlag{Name: "json", Usage: "print JSON"},
				},
				Action: policyTestAction,
			},
		},
	}
}

func policyCheckAction(_ context.Context, cmd *cli.Command) error {
	cfg, err := loadConfig(cmd)
	if err == nil {
		_, err = policy.New(cfg)
		if err != nil {
			err = exitWith(exitConfig, err)
		}
	}
	if cmd.Bool("json") {
		res := map[string]any{"ok": err == nil}
		if err != nil {
			res["problems"] = strings.Split(err.Error(), "\n")
		}
		if perr := printJSON(res); perr != nil {
			return perr
		}
		if err != nil {
			return exitWith(exitConfig, errors.New("the policy has problems"))
		}
		return nil
	}
	if err != nil {
		return err
	}
	fmt.Printf("%s: %d rules, default %s: OK\n", configName(cfg), len(cfg.Policy.Rules), cfg.Policy.DefaultAction())
	return nil
}

// testResult is one line of `policy test`.
type testResult struct {
	Statement string          `json:"statement,omitempty"`
	Operation model.Operation `json:"operation"`
	Decision  model.Decision  `json:"decision"`
}

func policyTestAction(_ context.Context, cmd *cli.Command) error {
	cfg, err := loadConfig(cmd)
	if err != nil {
		return err
	}
	p, err := policy.New(cfg)
	if err != nil {
		return exitWith(exitConfig, err)
	}
	t, ok := cfg.Target(cmd.String("target"))
	if !ok {
		return exitWith(exitUsage, fmt.Errorf("no target %q in %s", cmd.String("target"), configName(cfg)))
	}
	o := model.Origin{
		Target: model.Target{Name: t.Name, Protocol: t.Protocol, Address: t.Address},
		Identity: model.Identity{
			Kernel: model.KernelFacts{UID: uint32(cmd.Int("uid")), GID: uint32(cmd.Int("gid"))},
		},
	}
	if cmd.IsSet("user") || cmd.IsSet("exe") || cmd.IsSet("exe-sha256") || cmd.IsSet("cgroup") || cmd.IsSet("unit") {
		o.Identity.Proc = &model.ProcFacts{User: cmd.String("user"), Exe: cmd.String("exe"), ExeSHA256: cmd.String("exe-sha256"),
			CgroupPath: cmd.String("cgroup"), SystemdUnit: cmd.String("unit")}
	}
	for _, c := range cmd.StringSlice("claim") {
		k, v, ok := strings.Cut(c, "=")
		if !ok {
			return exitWith(exitUsage, fmt.Errorf("--claim %q: write NAME=VALUE", c))
		}
		if o.Identity.Claimed == nil {
			o.Identity.Claimed = map[string]string{}
		}
		o.Identity.Claimed[k] = v
	}

	var ops []testResult
	switch {
	case cmd.IsSet("sql"):
		if t.Protocol != model.ProtoPostgres {
			return exitWith(exitUsage, fmt.Errorf("--sql needs a postgres target; %s is %s", t.Name, t.Protocol))
		}
		stmts, err := classifySQL(cmd.String("sql"))
		if err != nil {
			return exitWith(exitUsage, err)
		}
		for _, s := range stmts {
			ops = append(ops, testResult{Statement: s.Text, Operation: s})
		}
	case cmd.IsSet("command"):
		ops = append(ops, testResult{Operation: model.Operation{Protocol: model.ProtoSSH, Kind: "exec", Text: cmd.String("command")}})
	case cmd.IsSet("op"):
		ops = append(ops, testResult{Operation: model.Operation{Protocol: t.Protocol, Kind: cmd.String("op"), Path: cmd.String("path")}})
	default:
		ops = append(ops, testResult{Operation: model.Operation{Protocol: t.Protocol, Kind: "connect"}})
	}
	for i := range ops {
		ops[i].Decision = p.Evaluate(o, ops[i].Operation)
	}
	if cmd.Bool("json") {
		return printJSON(ops)
	}
	for _, r := range ops {
		what := r.Operation.Kind
		if r.Statement != "" {
			what = strconv.Quote(firstLine(r.Statement, 70))
		}
		line := fmt.Sprintf("%-7s %s", r.Decision.Action, what)
		if r.Decision.Rule != "" {
			line += "  (rule " + r.Decision.Rule
			if r.Decision.Reason != "" {
				line += ": " + r.Decision.Reason
			}
			line += ")"
		}
		fmt.Fprintln(os.Stdout, line)
	}
	return nil
}
