package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/interlock/interlock/internal/textview"
	"github.com/interlock/interlock/journal"
	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/sessionview"
)

func sessionsCommand() *cli.Command {
	return &cli.Command{
		Name:  "sessions",
		Usage: "list, show, replay and export recorded sessions",
		Commands: []*cli.Command{sessionsShowCommand(), sessionsReplayCommand(), sessionsExportCommand(), {
			Name:  "list",
			Usage: "list sessions from the journal, or with --hub those of every host at a fleet hub, newest first",
			Flags: append([]cli.Flag{
				configFlag(),
				journalFlag(),
				&cli.BoolFlag{Name: "json", Usage: "print JSON (one array)"},
				&cli.DurationFlag{Name: "since", Usage: "only sessions opened within this long (e.g. 1h)"},
				&cli.IntFlag{Name: "limit", Value: 100, Usage: "at most this many sessions (0: all)"},
			}, sessionsHubFlags()...),
			Action: sessionsListAction,
		}},
	}
}

func sessionsListAction(ctx context.Context, cmd *cli.Command) error {
	if cmd.String("hub") != "" {
		return sessionsHubList(ctx, cmd)
	}
	for _, f := range []string{"operator", "host", "user", "target"} {
		if cmd.IsSet(f) {
			return exitWith(exitUsage, fmt.Errorf("--%s searches a fleet hub: give --hub URL too", f))
		}
	}
	path, err := journalPath(cmd)
	if err != nil {
		return err
	}
	f := journal.SessionFilter{Limit: int(cmd.Int("limit"))}
	if d := cmd.Duration("since"); d > 0 {
		f.Since = time.Now().Add(-d)
	}
	list, err := journal.ListSessions(ctx, path, f)
	if err != nil {
		return exitWith(exitIOErr, fmt.Errorf("read sessions from %s: %w", path, err))
	}
	if cmd.Bool("json") {
		if list == nil {
			list = []journal.SessionSummary{}
		}
		return printJSON(list)
	}
	return printSessions(os.Stdout, list)
}

// printSessions is the sessions table, one line a session: the client's
// text in it (the executable path, an error quoting a statement, claimed
// CI values) escaped. The principals are short here: the login user, the
// workload's name and provenance, the agent's name; --json and `sessions
// show` have the rest.
func printSessions(w io.Writer, list []journal.SessionSummary) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "OPENED\tSESSION\tTARGET\tDESTINATION\tPID\tUID\tEXE\tHUMAN\tWORKLOAD\tAGENT\tUP\tDOWN\tDURATION\tSTATUS")
	cut := false
	for _, s := range list {
		status, dur := "open", "-"
		if s.Close != nil {
			status = "closed"
			dur = time.Duration(s.DurationNS).Round(time.Millisecond).String()
		}
		if s.Error != "" {
			// The error can quote the client (a statement, a path): its
			// count says when it was cut; --json has it whole.
			status = "error: " + textview.Summary(s.Error, 40)
			cut = cut || status != "error: "+textview.Escape(s.Error)
		}
		// The executable path is the client's to choose: a newline or an
		// escape sequence in it must not print as another program.
		exe := textview.Escape(s.Exe)
		if s.Exe == "" {
			exe = "?"
		}
		workload, wcut := workloadCell(s.Workload)
		cut = cut || wcut
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n",
			s.Open.Local().Format("2006-01-02 15:04:05"), textview.Escape(s.ID), textview.Escape(s.Target), s.OrigDst, s.PID, s.UID, exe,
			orDash(sessionview.LoginText(s.Human)), workload, orDash(sessionview.AgentText(s.Agent)),
			s.BytesUp, s.BytesDown, dur, status)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if cut {
		fmt.Fprintln(w, "errors and workloads cut to fit: `interlock sessions list --json` prints them whole")
	}
	return nil
}

// workloadCell is the workload's name, cut to fit, and its provenance,
// which is never cut: "acme/billing@refs/heads/main (verified)". A
// refused token only says so here (its error can be long).
func workloadCell(w *model.Workload) (cell string, cut bool) {
	if w == nil {
		return "-", false
	}
	const max = 40
	name := sessionview.WorkloadName(w, max)
	prov := sessionview.ProvenanceText(w.Provenance)
	if w.Error != "" {
		prov += ", token refused"
	}
	return name + " (" + prov + ")", w.Error != "" || name != sessionview.WorkloadName(w, 0)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
