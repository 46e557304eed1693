package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v3"
	"golang.org/x/sys/unix"

	"github.com/interlock/interlock/journal"
)

func journalFlag() cli.Flag {
	return &cli.StringFlag{Name: "journal", Aliases: []string{"j"}, Usage: "journal database (default: journal.path from the config)"}
}

// journalPath picks --journal, else the config's journal.path. A journal
// that does not exist is exitNoInput, with a hint.
func journalPath(cmd *cli.Command) (string, error) {
	p := cmd.String("journal")
	if p == "" {
		cfg, err := loadConfig(cmd)
		if err != nil {
			return "", err
		}
		p = cfg.Journal.Path
	}
	if _, err := os.Stat(p); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", exitWith(exitNoInput, fmt.Errorf("no journal at %s: interlock has not recorded anything there yet (or pass --journal PATH)", p))
		}
		return "", exitWith(exitIOErr, err)
	}
	return p, nil
}

func journalCommand() *cli.Command {
	return &cli.Command{
		Name:  "journal",
		Usage: "check the journal",
		Commands: []*cli.Command{{
			Name:  "verify",
			Usage: "recompute the hash chain and report the first bad entry",
			Description: "Walks every entry in sequence order, recomputes its hash from the previous one,\n" +
				"and checks that sequence numbers are contiguous and that the indexed columns\n" +
				"agree with the hashed bytes. Exits 0 when the journal verifies, 1 when it does\n" +
				"not (naming the first bad sequence number and why), 66 when there is no journal.",
			Flags: []cli.Flag{
				configFlag(),
				journalFlag(),
				&cli.BoolFlag{Name: "json", Usage: "print the report as JSON"},
				&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress output"},
			},
			Action: verifyAction,
		}},
	}
}

func verifyAction(ctx context.Context, cmd *cli.Command) error {
	path, err := journalPath(cmd)
	if err != nil {
		return err
	}
	showProgress := !cmd.Bool("quiet") && isTerminal(os.Stderr)
	started := time.Now()
	lastPrint := started
	progress := func(done, total uint64) {
		if !showProgress || time.Since(lastPrint) < 500*time.Millisecond {
			return
		}
		lastPrint = time.Now()
		pct := 0.0
		if total > 0 {
			pct = 100 * float64(done) / float64(total)
		}
		rate := float64(done) / time.Since(started).Seconds()
		fmt.Fprintf(os.Stderr, "\rverifying: %d/%d entries (%.0f%%, %.0f/s)", done, total, pct, rate)
	}
	rep, err := journal.Verify(ctx, path, progress)
	if showProgress && time.Since(started) > 500*time.Millisecond {
		fmt.Fprint(os.Stderr, "\r\033[K")
	}
	if err != nil {
		return exitWith(exitIOErr, fmt.Errorf("verify %s: %w", path, err))
	}
	if cmd.Bool("json") {
		if err := printJSON(struct {
			Journal string `json:"journal"`
			journal.VerifyReport
		}{path, rep}); err != nil {
			return err
		}
	} else if rep.OK {
		fmt.Printf("journal %s: OK, %d entries, head seq %d hash %s\n", path, rep.Entries, rep.HeadSeq, rep.HeadHash)
	} else {
		fmt.Printf("journal %s: FAILED at seq %d: %s (%d entries before it verified)\n", path, rep.FirstBadSeq, rep.Reason, rep.Entries)
	}
	if !rep.OK {
		return exitWith(exitFailed, fmt.Errorf("journal verification failed at seq %d: %s", rep.FirstBadSeq, rep.Reason))
	}
	return nil
}

func firstLine(s string, max int) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > max {
		s = s[:max] + "…"
	}
	return s
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
