package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/urfave/cli/v3"

	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/inspect/postgres/sqlclass"
	"github.com/interlock/interlock/internal/textview"
	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/policy"
	"github.com/interlock/interlock/policy/cmdline"
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
					"reports problems as FILE:LINE: KEY: message. Rules that can never do what they\n" +
					"say (a targets glob that matches no target, a postgres kind in an ssh-only rule,\n" +
					"an effects rule on a target whose effects are not read, ...) are reported as\n" +
					"FILE:LINE: KEY: warning: message. Exits 0 when the rules are good (warnings or\n" +
					"not), 78 otherwise.",
				Flags:  []cli.Flag{configFlag(), &cli.BoolFlag{Name: "json", Usage: "print JSON"}},
				Action: policyCheckAction,
			},
			{
				Name:  "test",
				Usage: "print the decision for an identity, a target and an operation",
				Description: "Evaluates the rules exactly as the proxy does, without holding anything: a\n" +
					"review comes back as review. Give the operation as --sql (each statement is\n" +
					"judged on its own, as the proxy judges them), --command (an ssh exec; with\n" +
					"--pty, or when it starts a shell, it is judged as a shell too), or\n" +
					"--op KIND (shell, sftp, port_forwarding, connect, ...). Each decision's line is\n" +
					"followed by its explanation: the kinds and tables found, each rule of the target\n" +
					"that applies or not and why, and why the decision won.\n\n" +
					"  interlock policy test --target db --uid 1001 --exe /usr/bin/psql --sql 'DELETE FROM t'",
				Flags: []cli.Flag{
					configFlag(),
					&cli.StringFlag{Name: "target", Required: true, Usage: "target name"},
					&cli.IntFlag{Name: "uid", Usage: "the process's uid"},
					&cli.IntFlag{Name: "gid", Usage: "the process's gid"},
					&cli.StringFlag{Name: "user", Usage: "user name (default: the uid's)"},
					&cli.StringFlag{Name: "exe", Usage: "executable path"},
					&cli.StringFlag{Name: "exe-sha256", Usage: "executable hash"},
					&cli.StringFlag{Name: "exe-trust", Value: "verified", Usage: "how far the executable facts hold: verified, claimed (another user or mount namespace), unknown (exec between connect and accept) or gone (the process exited)"},
					&cli.StringFlag{Name: "cgroup", Usage: "cgroup path"},
					&cli.StringFlag{Name: "unit", Usage: "systemd unit"},
					&cli.StringSliceFlag{Name: "claim", Usage: "a CI claim NAME=VALUE (repeatable)"},
					&cli.StringFlag{Name: "login-user", Usage: "the user who logged in (the audit login uid's name); without --login-user, --login-uid or --no-login the login is unknown"},
					&cli.IntFlag{Name: "login-uid", Usage: "the audit login uid (default: --login-user's)"},
					&cli.BoolFlag{Name: "no-login", Usage: "the process descends from no login (a service)"},
					&cli.StringFlag{Name: "agent", Usage: "the agent of identity.agents found in the process's ancestry, or none"},
					&cli.StringSliceFlag{Name: "verified", Usage: "a claim NAME=VALUE of a verified CI job's OIDC token, such as repository=acme/billing (repeatable; the workload is claimed, with the same claims, when --claimed-workload is set)"},
					&cli.BoolFlag{Name: "claimed-workload", Usage: "the --verified claims come from the environment, not a verified token (as when a token is missing or fails)"},
					&cli.StringFlag{Name: "sql", Usage: "SQL text (postgres targets)"},
					&cli.StringFlag{Name: "command", Usage: "command line (ssh exec)"},
					&cli.BoolFlag{Name: "pty", Usage: "the exec of --command runs on a pty (ssh -t): it is judged as a shell too"},
					&cli.StringFlag{Name: "op", Usage: "operation kind"},
					&cli.StringFlag{Name: "path", Usage: "sftp path, absolute: judged as the proxy judges it, after resolving \".\", \"..\" and \"//\" (links are resolved by the target, which policy test cannot ask)"},
					&cli.StringSliceFlag{Name: "open", Usage: "the access the sftp operation needs: read, write, create, truncate, append (comma-separated or repeated)"},
					&cli.BoolFlag{Name: "json", Usage: "print JSON"},
				},
				Action: policyTestAction,
			},
		},
	}
}

func policyCheckAction(_ context.Context, cmd *cli.Command) error {
	cfg, err := loadConfig(cmd)
	warnings := []string{}
	if err == nil {
		for _, w := range policy.Lint(cfg) {
			warnings = append(warnings, w.Error())
		}
		if _, perr := policy.New(cfg); perr != nil {
			err = exitWith(exitConfig, perr)
		}
	}
	if cmd.Bool("json") {
		res := map[string]any{"ok": err == nil, "warnings": warnings}
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
	for _, w := range warnings {
		fmt.Println(w)
	}
	if err != nil {
		return err
	}
	line := fmt.Sprintf("%s: %d rules, default %s: OK", configName(cfg), len(cfg.Policy.Rules), cfg.Policy.DefaultAction())
	switch len(warnings) {
	case 0:
	case 1:
		line += " (1 warning)"
	default:
		line += fmt.Sprintf(" (%d warnings)", len(warnings))
	}
	fmt.Println(line)
	return nil
}

// testResult is one line of `policy test`, with its explanation.
type testResult struct {
	Statement string              `json:"statement,omitempty"`
	Operation model.Operation     `json:"operation"`
	Decision  model.Decision      `json:"decision"`
	Explain   *policy.Explanation `json:"explain,omitempty"`
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
	// The process described is one interlock identified, unless
	// --exe-trust says otherwise.
	switch trust := cmd.String("exe-trust"); trust {
	case model.ExeVerified, model.ExeClaimed, model.ExeUnknown:
		o.Identity.Proc = &model.ProcFacts{User: cmd.String("user"), Exe: cmd.String("exe"), ExeSHA256: cmd.String("exe-sha256"),
			CgroupPath: cmd.String("cgroup"), SystemdUnit: cmd.String("unit"), ExeTrust: trust}
		if trust == model.ExeUnknown {
			o.Identity.ProcError = "--exe-trust unknown"
		}
	case "gone":
		o.Identity.ProcError = "--exe-trust gone: the process exited before it could be inspected"
	default:
		return exitWith(exitUsage, fmt.Errorf("--exe-trust must be verified, claimed, unknown or gone, not %q", trust))
	}
	if err := policyTestPrincipals(cmd, cfg, &o.Identity); err != nil {
		return err
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
	if vs := cmd.StringSlice("verified"); len(vs) > 0 {
		w := &model.Workload{Provenance: model.ProvVerified, Claims: map[string]string{}}
		if cmd.Bool("claimed-workload") {
			w.Provenance = model.ProvClaimed
		}
		for _, c := range vs {
			k, v, ok := strings.Cut(c, "=")
			if !ok || k == "" {
				return exitWith(exitUsage, fmt.Errorf("--verified %q: write NAME=VALUE, such as repository=acme/billing", c))
			}
			w.Claims[k] = v
		}
		o.Identity.Workload = w
	} else if cmd.Bool("claimed-workload") {
		return exitWith(exitUsage, errors.New("--claimed-workload needs the claims: give them with --verified NAME=VALUE"))
	}

	var ops []testResult
	switch {
	case cmd.IsSet("sql"):
		if t.Protocol != model.ProtoPostgres {
			return exitWith(exitUsage, fmt.Errorf("--sql needs a postgres target; %s is %s", t.Name, t.Protocol))
		}
		stmts, err := sqlclass.ClassifyStatic(cmd.String("sql"))
		if err != nil {
			return exitWith(exitUsage, err)
		}
		for _, s := range stmts {
			ops = append(ops, testResult{Statement: s.Text, Operation: s})
		}
	case cmd.IsSet("command"):
		text := cmd.String("command")
		ops = append(ops, testResult{Operation: model.Operation{Protocol: model.ProtoSSH, Kind: "exec", Text: text}})
		// As the proxy does: an exec on a pty, or one that starts a
		// shell, is judged as a shell too.
		if why := cmdline.ExecAsShell(text, cmd.Bool("pty")); why != "" {
			ops = append(ops, testResult{Operation: model.Operation{Protocol: model.ProtoSSH, Kind: "shell", Text: text, Detail: why}})
		}
	case cmd.IsSet("op"):
		if msg := config.KindProblem(cmd.String("op")); msg != "" {
			return exitWith(exitUsage, errors.New("--op: "+msg))
		}
		op := model.Operation{Protocol: t.Protocol, Kind: cmd.String("op")}
		if cmd.IsSet("path") {
			p := cmd.String("path")
			if !strings.HasPrefix(p, "/") {
				return exitWith(exitUsage, fmt.Errorf("--path %q is relative: the proxy judges the path the target resolves (from the session's working directory); give it absolute", p))
			}
			op.Path = path.Clean(p)
		}
		for _, s := range cmd.StringSlice("open") {
			for _, a := range strings.Split(s, ",") {
				a = strings.TrimSpace(a)
				if !slices.Contains([]string{"read", "write", "create", "truncate", "append", "exclusive"}, a) {
					return exitWith(exitUsage, fmt.Errorf("--open %q: the accesses are read, write, create, truncate, append", a))
				}
				if !slices.Contains(op.Open, a) {
					op.Open = append(op.Open, a)
				}
			}
		}
		ops = append(ops, testResult{Operation: op})
	default:
		ops = append(ops, testResult{Operation: model.Operation{Protocol: t.Protocol, Kind: "connect"}})
	}
	for i := range ops {
		d, ex := p.Explain(o, ops[i].Operation)
		ops[i].Decision, ops[i].Explain = d, &ex
	}
	if cmd.Bool("json") {
		return printJSON(ops)
	}
	printTestResults(os.Stdout, ops)
	return nil
}

// printTestResults writes one line per operation (the decision, which
// scripts may read), then its explanation, indented.
func printTestResults(w io.Writer, ops []testResult) {
	for _, r := range ops {
		what := r.Operation.Kind
		if r.Operation.Kind == "shell" && r.Operation.Detail != "" {
			what += " (the exec, because " + r.Operation.Detail + ")"
		}
		if r.Statement != "" {
			what = `"` + firstLine(r.Statement, 70) + `"`
		}
		line := fmt.Sprintf("%-7s %s", r.Decision.Action, what)
		if r.Decision.Rule != "" {
			line += "  (rule " + r.Decision.Rule
			if r.Decision.Reason != "" {
				line += ": " + r.Decision.Reason
			}
			line += ")"
		}
		fmt.Fprintln(w, line)
		if r.Explain != nil {
			printExplanation(w, r)
		}
	}
}

func printExplanation(w io.Writer, r testResult) {
	ex := r.Explain
	const indent = "        "
	var facts []string
	if len(ex.Kinds) > 0 {
		facts = append(facts, "kinds: "+strings.Join(ex.Kinds, ", "))
	}
	if len(ex.Tables) > 0 {
		facts = append(facts, "tables: "+strings.Join(ex.Tables, ", "))
	}
	if r.Operation.Path != "" {
		facts = append(facts, "path: "+textview.Escape(r.Operation.Path))
	}
	if len(r.Operation.Open) > 0 {
		facts = append(facts, "open: "+strings.Join(r.Operation.Open, ", "))
	}
	if ex.ReadOnly {
		facts = append(facts, "read-only")
	}
	if ex.NoWhere {
		facts = append(facts, "no WHERE")
	}
	if ex.Opaque {
		facts = append(facts, "opaque (runs code its text does not show)")
	}
	if ex.Unknown {
		u := "unknown (interlock could not parse it"
		if ex.ParseError != "" {
			u += ": " + ex.ParseError
		}
		facts = append(facts, u+")")
	}
	if len(facts) > 0 {
		fmt.Fprintln(w, indent+strings.Join(facts, "; "))
	}
	for _, r := range ex.Rules {
		verdict := "does not apply"
		if r.Applies {
			verdict = "applies"
		}
		line := fmt.Sprintf("%s%s rule %s %s", indent, r.Action, r.Rule, verdict)
		if r.Note != "" {
			line += ": " + r.Note
		}
		fmt.Fprintln(w, line)
	}
	if ex.Why != "" {
		fmt.Fprintln(w, indent+"why: "+ex.Why)
	}
}

// policyTestPrincipals sets the human and the agent from the flags.
func policyTestPrincipals(cmd *cli.Command, cfg *config.Config, id *model.Identity) error {
	switch {
	case cmd.Bool("no-login") && (cmd.IsSet("login-user") || cmd.IsSet("login-uid")):
		return exitWith(exitUsage, errors.New("--no-login contradicts --login-user and --login-uid"))
	case cmd.Bool("no-login"):
		id.Human = &model.Human{NoLogin: true, Provenance: model.ProvProc}
	case cmd.IsSet("login-user") || cmd.IsSet("login-uid"):
		h := &model.Human{LoginUser: cmd.String("login-user"), Provenance: model.ProvProc}
		uid := cmd.Int("login-uid")
		if !cmd.IsSet("login-uid") {
			u, err := user.Lookup(h.LoginUser)
			if err != nil {
				return exitWith(exitUsage, fmt.Errorf("--login-user %s: %w; give --login-uid too", h.LoginUser, err))
			}
			n, err := strconv.ParseUint(u.Uid, 10, 32)
			if err != nil {
				return exitWith(exitUsage, fmt.Errorf("--login-user %s: uid %q: %w", h.LoginUser, u.Uid, err))
			}
			uid = int(n)
		}
		if uid < 0 || uid >= 1<<32-1 {
			return exitWith(exitUsage, fmt.Errorf("--login-uid %d is not a login uid", uid))
		}
		v := uint32(uid)
		h.LoginUID = &v
		if h.LoginUser == "" {
			if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
				h.LoginUser = u.Username
			}
		}
		id.Human = h
	}
	switch a := cmd.String("agent"); {
	case a == "" || a == config.AgentNone:
	case slices.Contains(cfg.Identity.AgentNames(), a):
		id.Agent = &model.Agent{Name: a, Provenance: model.ProvProc}
	default:
		return exitWith(exitUsage, fmt.Errorf("--agent %q is not an agent of identity.agents in %s (nor none)", a, configName(cfg)))
	}
	return nil
}
