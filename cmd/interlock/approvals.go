package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/interlock/interlock/approvals"
	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/control"
	"github.com/interlock/interlock/model"
)

func approvalsCommand() *cli.Command {
	sock := &cli.StringFlag{Name: "socket", Usage: "an approvals socket (default: the daemon's and every running `interlock run`'s)"}
	return &cli.Command{
		Name:  "approvals",
		Usage: "list, approve and deny operations held for review",
		Description: "Run these as yourself, not with sudo: the kernel tells interlock who is calling,\n" +
			"and the rule that held the operation names who may approve. Whoever made the\n" +
			"request (the same uid) can never approve it.",
		Commands: []*cli.Command{
			{
				Name:  "list",
				Usage: "list pending requests",
				Flags: []cli.Flag{configFlag(), sock, &cli.BoolFlag{Name: "json", Usage: "print JSON"},
					&cli.BoolFlag{Name: "watch", Aliases: []string{"w"}, Usage: "keep listing as requests come and go"}},
				Action: approvalsListAction,
			},
			{
				Name:      "approve",
				Usage:     "approve a held operation",
				ArgsUsage: "ID",
				Flags:     []cli.Flag{configFlag(), sock, &cli.StringFlag{Name: "reason", Aliases: []string{"r"}, Usage: "why (journaled)"}, &cli.BoolFlag{Name: "json", Usage: "print the decision as JSON"}},
				Action:    func(ctx context.Context, cmd *cli.Command) error { return decideAction(ctx, cmd, true) },
			},
			{
				Name:      "deny",
				Usage:     "deny a held operation",
				ArgsUsage: "ID",
				Flags:     []cli.Flag{configFlag(), sock, &cli.StringFlag{Name: "reason", Aliases: []string{"r"}, Usage: "why (required, journaled and shown to the client)"}, &cli.BoolFlag{Name: "json", Usage: "print the decision as JSON"}},
				Action:    func(ctx context.Context, cmd *cli.Command) error { return decideAction(ctx, cmd, false) },
			},
		},
	}
}

// approvalSockets picks --socket, else every socket that may hold requests.
func approvalSockets(cmd *cli.Command) ([]string, error) {
	if s := cmd.String("socket"); s != "" {
		return []string{s}, nil
	}
	socket := config.Default().Control.Socket
	if cfg, err := config.Load(cmd.String("config")); err == nil {
		socket = cfg.Control.Socket
	} else if cmd.IsSet("config") {
		return nil, exitWith(exitConfig, err)
	}
	var live []string
	for _, s := range control.ApprovalsSockets(socket) {
		if _, err := os.Stat(s); err == nil {
			live = append(live, s)
		}
	}
	if len(live) == 0 {
		return nil, exitWith(exitUnavailable, errors.New("no interlock is serving approvals here (no daemon, no `interlock run`)"))
	}
	return live, nil
}

type sourced struct {
	approvals.Pending
	Socket string `json:"socket"`
}

func collect(ctx context.Context, socks []string, wait time.Duration) ([]sourced, error) {
	var out []sourced
	var errs []error
	for _, s := range socks {
		l, err := control.DialApprovals(s).List(ctx, wait)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", s, err))
			continue
		}
		wait = 0 // wait on the first socket only
		for _, p := range l {
			out = append(out, sourced{p, s})
		}
	}
	if len(out) == 0 && len(errs) == len(socks) {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

func approvalsListAction(ctx context.Context, cmd *cli.Command) error {
	socks, err := approvalSockets(cmd)
	if err != nil {
		return err
	}
	wait := time.Duration(0)
	for {
		list, err := collect(ctx, socks, wait)
		if err != nil {
			return exitWith(exitUnavailable, err)
		}
		if cmd.Bool("json") {
			if list == nil {
				list = []sourced{}
			}
			if err := printJSON(list); err != nil {
				return err
			}
		} else {
			printPending(os.Stdout, list)
		}
		if !cmd.Bool("watch") {
			return nil
		}
		wait = 30 * time.Second
	}
}

func printPending(w io.Writer, list []sourced) {
	if len(list) == 0 {
		fmt.Fprintln(w, "no operations are waiting for approval")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tWAITING\tLEFT\tTARGET\tRULE\tREQUESTER\tOPERATION\tAPPROVALS\tYOU")
	for _, p := range list {
		r := p.Request
		who := fmt.Sprintf("uid %d", r.Requester.Kernel.UID)
		if pr := r.Requester.Proc; pr != nil {
			who = fmt.Sprintf("%s (uid %d) %s", pr.User, r.Requester.Kernel.UID, pr.Exe)
		}
		op := r.Operation.Text
		if op == "" {
			op = r.Operation.Kind
		}
		you := "may decide"
		if !p.MayDecide {
			you = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d/%d\t%s\n", r.ID,
			time.Since(p.Created).Round(time.Second), time.Until(p.Deadline).Round(time.Second),
			r.Target, r.Rule, who, firstLine(strings.TrimSpace(op), 60), p.Approvals, r.Needed, you)
	}
	tw.Flush()
	// A transaction held at COMMIT by an effects rule: what it did, as
	// the server reported it, so the approver sees the exact effect.
	for _, p := range list {
		if e := p.Request.Operation.Effects; e != nil {
			fmt.Fprintf(w, "\n%s: what the transaction did (read from the server before its COMMIT):\n", p.Request.ID)
			printEffects(w, e)
		}
	}
}

// printEffects lists a transaction's effects, one relation a line.
func printEffects(w io.Writer, e *model.PGEffects) {
	if e.Error != "" {
		fmt.Fprintf(w, "  INCOMPLETE: the effects could not be read in full: %s\n", e.Error)
	}
	if len(e.Tables) == 0 {
		fmt.Fprintf(w, "  no relation changed or locked beyond reading (%d rows reported by its statements)\n", e.Rows)
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  RELATION\tINSERTED\tUPDATED\tDELETED\tLOCK\tCHANGED")
	for _, t := range e.Tables {
		name := t.Name
		if len(t.Also) > 0 {
			name += " (also " + strings.Join(t.Also, ", ") + ")"
		}
		var changed []string
		for _, c := range []struct {
			set  bool
			what string
		}{
			{t.Created, "created"}, {t.Dropped, "dropped"}, {t.Rewritten, "rewritten (truncated)"},
			{t.Altered(), "altered"}, {t.System, "system catalog"},
		} {
			if c.set {
				changed = append(changed, c.what)
			}
		}
		lock, what := t.Lock, strings.Join(changed, ", ")
		if lock == "" {
			lock = "-"
		}
		if what == "" {
			what = "-"
		}
		fmt.Fprintf(tw, "  %s\t%d\t%d\t%d\t%s\t%s\n", name, t.Inserted, t.Updated, t.Deleted, lock, what)
	}
	tw.Flush()
	fmt.Fprintf(w, "  %d rows reported by its statements\n", e.Rows)
}

func decideAction(ctx context.Context, cmd *cli.Command, approve bool) error {
	id := cmd.Args().First()
	if id == "" || cmd.Args().Len() > 1 {
		return exitWith(exitUsage, errors.New("give exactly one request id (see `interlock approvals list`)"))
	}
	reason := cmd.String("reason")
	if !approve && strings.TrimSpace(reason) == "" {
		return exitWith(exitUsage, errors.New("deny needs --reason: it is journaled and shown to the client"))
	}
	socks, err := approvalSockets(cmd)
	if err != nil {
		return err
	}
	for _, s := range socks {
		d, err := control.DialApprovals(s).Decide(ctx, id, approve, reason)
		if err != nil {
			if control.HasStatus(err, http.StatusNotFound) {
				continue
			}
			if control.HasStatus(err, http.StatusForbidden) {
				return exitWith(exitNoPerm, err)
			}
			return exitWith(exitUnavailable, err)
		}
		if cmd.Bool("json") {
			return printJSON(d)
		}
		verb := "denied"
		if approve {
			verb = "approved"
		}
		fmt.Printf("%s %s\n", verb, id)
		return nil
	}
	return exitWith(exitNoInput, fmt.Errorf("no pending request %s (decided already, timed out, or a wrong id)", id))
}
