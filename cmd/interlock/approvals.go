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

	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/control"
	"github.com/interlock/interlock/control/controlapi"
	"github.com/interlock/interlock/internal/textview"
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
				Name:  "show",
				Usage: "show one pending request in full: every line of its text, escaped, and the text's SHA-256",
				Description: "The list cuts the text to one line; this prints all of it, numbered, with control\n" +
					"bytes, invalid UTF-8 and bidi/zero-width characters shown as escapes (\\x1b, \\u202e),\n" +
					"and the command that approves exactly this text (approve --expect SHA256).",
				ArgsUsage: "ID",
				Flags:     []cli.Flag{configFlag(), sock, &cli.BoolFlag{Name: "json", Usage: "print JSON"}},
				Action:    approvalsShowAction,
			},
			{
				Name:      "approve",
				Usage:     "approve a held operation",
				ArgsUsage: "ID",
				Flags: []cli.Flag{configFlag(), sock, &cli.StringFlag{Name: "reason", Aliases: []string{"r"}, Usage: "why (journaled)"}, &cli.BoolFlag{Name: "json", Usage: "print the decision as JSON"},
					&cli.StringFlag{Name: "expect", Usage: "approve only if the held text's SHA-256 is `SHA256` (as `approvals show` prints it); otherwise nothing is approved and the exit code is 1"}},
				Action: func(ctx context.Context, cmd *cli.Command) error { return decideAction(ctx, cmd, true) },
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
	controlapi.Pending
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

// opCellMax bounds the operation cell of the list; the rest is counted in
// the cell and `approvals show` prints all of it.
const opCellMax = 60

// requestText is the held operation's exact text: the request carries the
// raw bytes when JSON could not (invalid UTF-8).
func requestText(r model.ApprovalRequest) string {
	if len(r.TextBytes) > 0 {
		return string(r.TextBytes)
	}
	return r.Operation.Text
}

// requesterView names who asked, every client-controlled part escaped: an
// executable path can hold a newline or an escape sequence that would
// otherwise print as another program.
func requesterView(id model.Identity) string {
	if pr := id.Proc; pr != nil {
		return fmt.Sprintf("%s (uid %d) %s", textview.Escape(pr.User), id.Kernel.UID, textview.Escape(pr.Exe))
	}
	return fmt.Sprintf("uid %d", id.Kernel.UID)
}

// printPending is the list view: one line a request. Every cell is
// escaped (a cell with a raw newline or ESC would draw another table);
// an operation cut to fit says how much it left out, and a note names the
// command that prints it whole.
func printPending(w io.Writer, list []sourced) {
	if len(list) == 0 {
		fmt.Fprintln(w, "no operations are waiting for approval")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tWAITING\tLEFT\tTARGET\tRULE\tREQUESTER\tOPERATION\tAPPROVALS\tYOU")
	var cut []string
	for _, p := range list {
		r := p.Request
		text := requestText(r)
		op := textview.Summary(text, opCellMax)
		if text == "" {
			op = textview.Escape(r.Operation.Kind)
		}
		if op != textview.Escape(text) && text != "" {
			cut = append(cut, r.ID)
		}
		you := "may decide"
		if !p.MayDecide {
			you = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d/%d\t%s\n", textview.Escape(r.ID),
			time.Since(p.Created).Round(time.Second), time.Until(p.Deadline).Round(time.Second),
			textview.Escape(r.Target), textview.Escape(r.Rule), requesterView(r.Requester), op, p.Approvals, r.Needed, you)
	}
	tw.Flush()
	for _, id := range cut {
		fmt.Fprintf(w, "%s: the operation is longer than shown; `interlock approvals show %s` prints all of it\n", id, id)
	}
	// A transaction held at COMMIT by an effects rule: what it did, as
	// the server reported it, so the approver sees the exact effect.
	for _, p := range list {
		if e := p.Request.Operation.Effects; e != nil {
			fmt.Fprintf(w, "\n%s: what the transaction did (read from the server before its COMMIT):\n", p.Request.ID)
			printEffects(w, e)
		}
	}
}

// printRequest is the full view of one request: every line of the text,
// numbered and escaped, its size and SHA-256, and the command that
// approves exactly that text.
func printRequest(w io.Writer, p sourced) {
	r := p.Request
	text := requestText(r)
	row := func(k, v string) { fmt.Fprintf(w, "%-10s %s\n", k, v) }
	row("request", textview.Escape(r.ID))
	row("target", textview.Escape(r.Target))
	rule := textview.Escape(r.Rule)
	if r.Reason != "" {
		rule += " (" + textview.Escape(r.Reason) + ")"
	}
	row("rule", rule)
	row("requester", requesterView(r.Requester))
	if r.Session != "" {
		row("session", textview.Escape(r.Session))
	}
	row("approvals", fmt.Sprintf("%d of %d, scope %s, by %s", p.Approvals, r.Needed, textview.Escape(r.Scope), textview.Escape(strings.Join(r.Approvers, ", "))))
	row("waiting", fmt.Sprintf("%s, denied in %s unless decided", time.Since(p.Created).Round(time.Second), time.Until(p.Deadline).Round(time.Second)))
	what := textview.Escape(string(r.Operation.Protocol) + " " + r.Operation.Kind)
	for _, x := range []string{r.Operation.Path, r.Operation.Detail} {
		if x != "" {
			what += " " + textview.Escape(x)
		}
	}
	row("operation", what)
	lines := strings.Count(text, "\n") + 1
	row("text", fmt.Sprintf("%d bytes, %d %s, sha256 %s", len(text), lines, map[bool]string{true: "line", false: "lines"}[lines == 1], r.TextSHA256))
	if text != "" {
		fmt.Fprintln(w, textview.Block(text, "  "))
	}
	if got := textview.Hash(text); r.TextSHA256 != "" && got != r.TextSHA256 {
		// The text reached this view altered: do not offer to approve it.
		fmt.Fprintf(w, "WARNING: the text shown hashes to %s, not to the request's %s: it was altered on the way; do not approve from this view\n", got, r.TextSHA256)
	} else if p.MayDecide {
		fmt.Fprintf(w, "approve exactly this text:\n  interlock approvals approve %s --expect %s --reason '...'\n", r.ID, r.TextSHA256)
		if r.RequireExpect {
			fmt.Fprintln(w, "(the rule requires --expect: an approval without it approves nothing)")
		}
	}
	if e := r.Operation.Effects; e != nil {
		fmt.Fprintln(w, "what the transaction did (read from the server before its COMMIT):")
		printEffects(w, e)
	}
}

func approvalsShowAction(ctx context.Context, cmd *cli.Command) error {
	id := cmd.Args().First()
	if id == "" || cmd.Args().Len() > 1 {
		return exitWith(exitUsage, errors.New("give exactly one request id (see `interlock approvals list`)"))
	}
	socks, err := approvalSockets(cmd)
	if err != nil {
		return err
	}
	list, err := collect(ctx, socks, 0)
	if err != nil {
		return exitWith(exitUnavailable, err)
	}
	if id, err = requestByPrefix(list, id); err != nil {
		return err
	}
	for _, p := range list {
		if p.Request.ID != id {
			continue
		}
		if cmd.Bool("json") {
			return printJSON(p)
		}
		printRequest(os.Stdout, p)
		return nil
	}
	return exitWith(exitNoInput, fmt.Errorf("no pending request %s you may see (decided already, timed out, or a wrong id; `interlock approvals list` shows the pending ones)", id))
}

// printEffects lists a transaction's effects, one relation a line.
func printEffects(w io.Writer, e *model.PGEffects) {
	if e.Error != "" {
		fmt.Fprintf(w, "  INCOMPLETE: the effects could not be read in full: %s\n", textview.Escape(e.Error))
	}
	if len(e.Tables) == 0 {
		fmt.Fprintf(w, "  no relation changed or locked beyond reading (%d rows reported by its statements)\n", e.Rows)
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  RELATION\tINSERTED\tUPDATED\tDELETED\tLOCK\tCHANGED")
	for _, t := range e.Tables {
		// Relation names are the client's to choose (CREATE TABLE "\x1b...").
		name := textview.Escape(t.Name)
		if len(t.Also) > 0 {
			name += " (also " + textview.Escape(strings.Join(t.Also, ", ")) + ")"
		}
		changed := t.Changes()
		lock, what := textview.Escape(t.Lock), strings.Join(changed, ", ")
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
	expect := strings.ToLower(strings.TrimPrefix(strings.TrimSpace(cmd.String("expect")), "sha256:"))
	if cmd.IsSet("expect") {
		if len(expect) != 64 || strings.Trim(expect, "0123456789abcdef") != "" {
			return exitWith(exitUsage, fmt.Errorf("--expect %q is not a SHA-256 in hex (64 characters); copy it from `interlock approvals show %s`", cmd.String("expect"), id))
		}
	}
	socks, err := approvalSockets(cmd)
	if err != nil {
		return err
	}
	// A unique prefix of a pending id names it. An id that names none of
	// the requests the caller may see goes on as given: the broker says
	// why (not an approver, decided already, no such request).
	if list, err := collect(ctx, socks, 0); err == nil {
		full, err := requestByPrefix(list, id)
		var ee *exitError
		switch {
		case err == nil && full != id && approve && expect == "":
			// Ids sharing their first characters are made within the same
			// minute: the request the approver read under this prefix may
			// be gone and the session's next one hold it now. Only the
			// text's hash binds a prefix to what was read.
			return exitWith(exitUsage, fmt.Errorf("%q is a prefix of %s: approving by a prefix needs --expect SHA256 (as `interlock approvals show %s` prints it), or give the whole id", id, full, full))
		case err == nil:
			id = full
		case errors.As(err, &ee) && ee.code == exitNoInput:
		default:
			return err
		}
	}
	for _, s := range socks {
		d, err := control.DialApprovals(s).DecideExpect(ctx, id, approve, reason, expect)
		if err != nil {
			if control.HasStatus(err, http.StatusNotFound) {
				continue
			}
			if control.HasStatus(err, http.StatusPreconditionRequired) {
				return exitWith(exitUsage, err)
			}
			if control.HasStatus(err, http.StatusConflict) {
				// The held text is not the one the approver read.
				return exitWith(exitFailed, err)
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
