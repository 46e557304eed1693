package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/interlock/interlock/hub/hubapi"
	"github.com/interlock/interlock/internal/textview"
)

// statementsCommand searches the statements and commands of every host
// at a fleet hub (GET /v1/statements, docs/hub.md). One host's own are
// read with `sessions show`.
func statementsCommand() *cli.Command {
	return &cli.Command{
		Name:  "statements",
		Usage: "search the statements and commands of every host at a fleet hub",
		Commands: []*cli.Command{{
			Name: "list",
			Usage: "list the SQL statements and ssh commands (exec, subsystem, shell) of every host's sessions at a fleet hub, " +
				"newest first, with an operator's certificate",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "hub", Usage: "the fleet hub (https://HUB:PORT)"},
				&cli.StringFlag{Name: "operator", Usage: "the `DIR` that interlock hub operator --out wrote (operator.key, operator.crt, ca.crt)"},
				&cli.StringFlag{Name: "host", Usage: "only this host id"},
				&cli.StringFlag{Name: "session", Usage: "only this session id"},
				&cli.StringFlag{Name: "user", Usage: "only sessions of this user (the process's or the login's)"},
				&cli.StringFlag{Name: "target", Usage: "only sessions to this target"},
				&cli.StringFlag{Name: "kind", Usage: "only this kind: a statement kind (select, drop_table, ...), an ssh request type (exec, subsystem, shell), or pg.statement or ssh.request"},
				&cli.StringFlag{Name: "table", Usage: "only statements naming this table"},
				&cli.StringFlag{Name: "action", Usage: "only operations policy decided so: allow, deny, review or mask"},
				&cli.StringFlag{Name: "text", Usage: "only statements or commands containing this text (any case, at most 256 bytes)"},
				&cli.DurationFlag{Name: "since", Usage: "only operations within this long (e.g. 1h)"},
				&cli.IntFlag{Name: "limit", Value: 100, Usage: "at most this many operations (at most 1000)"},
				&cli.BoolFlag{Name: "json", Usage: "print JSON (one array)"},
			},
			Action: statementsListAction,
		}},
	}
}

func statementsListAction(ctx context.Context, cmd *cli.Command) error {
	if cmd.String("hub") == "" {
		return exitWith(exitUsage, errors.New("statements list searches a fleet hub: give --hub URL and --operator DIR"))
	}
	if a := cmd.String("action"); a != "" && a != "allow" && a != "deny" && a != "review" && a != "mask" {
		return exitWith(exitUsage, fmt.Errorf("--action %q: want allow, deny, review or mask", a))
	}
	if n := cmd.Int("limit"); n < 1 || n > 1000 {
		return exitWith(exitUsage, fmt.Errorf("--limit %d: want 1 to 1000", n))
	}
	base, hc, err := operatorFlags(cmd)
	if err != nil {
		return err
	}
	q := hubQuery(cmd, map[string]string{
		"host": hubapi.QueryHost, "session": hubapi.QuerySession, "user": hubapi.QueryUser, "target": hubapi.QueryTarget,
		"kind": hubapi.QueryKind, "table": hubapi.QueryTable, "action": hubapi.QueryAction, "text": hubapi.QueryText,
	})
	q.Set(hubapi.QueryLimit, strconv.Itoa(int(cmd.Int("limit"))))
	var found hubapi.Statements
	if err := hubSearch(ctx, hc, base+hubapi.PathStatements, q, "statements", &found); err != nil {
		return err
	}
	if found.Statements == nil {
		found.Statements = []hubapi.Statement{}
	}
	if cmd.Bool("json") {
		return printJSON(found.Statements)
	}
	return printHubStatements(os.Stdout, found.Statements)
}

// maxStatementText cuts a statement's text in the table (--json has it
// whole).
const maxStatementText = 120

// printHubStatements is the table of the hub's statements. The text,
// names and ids are the hosts' or their clients' to choose: escaped,
// and the text on one line.
func printHubStatements(w io.Writer, list []hubapi.Statement) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tHOST\tHOST ID\tSEQ\tSESSION\tTARGET\tUSER\tKIND\tDECISION\tTEXT")
	for _, s := range list {
		kind := strings.Join(s.Kinds, ",")
		if kind == "" {
			kind = s.Kind
		}
		decision := string(s.Decision.Action)
		if s.Decision.Rule != "" {
			decision += " (" + s.Decision.Rule + ")"
		}
		text := strings.Join(strings.Fields(s.Text), " ")
		if r := []rune(text); len(r) > maxStatementText {
			text = string(r[:maxStatementText]) + "…"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n",
			time.Unix(0, s.TimeNS).Local().Format("2006-01-02 15:04:05"), textview.Escape(s.HostName), textview.Escape(s.HostID), s.Seq,
			textview.Escape(s.Session), orDash(textview.Escape(s.Target)), orDash(textview.Escape(s.User)), textview.Escape(kind),
			orDash(textview.Escape(decision)), textview.Escape(text))
	}
	return tw.Flush()
}
