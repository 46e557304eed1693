package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v3"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/sys/unix"

	"github.com/interlock/interlock/internal/textview"
	"github.com/interlock/interlock/journal"
	"github.com/interlock/interlock/journal/evidence"
	"github.com/interlock/interlock/journal/export"
)

func journalFlag() cli.Flag {
	return &cli.StringFlag{Name: "journal", Aliases: []string{"j"}, Usage: "journal database (default: journal.path from the config)"}
}

// journalPath picks --journal, else the config's journal.path. A journal
// that does not exist is exitNoInput, with a hint; one the user may not
// read is exitNoPerm, naming the group to join.
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
		if errors.Is(err, fs.ErrPermission) {
			return "", journalDenied(p)
		}
		return "", exitWith(exitIOErr, err)
	}
	if err := journalReadable(p); err != nil {
		return "", err
	}
	return p, nil
}

// stateDir is the config's state_dir, where the journal key lives.
func stateDir(cmd *cli.Command) (string, error) {
	cfg, err := loadConfig(cmd)
	if err != nil {
		return "", err
	}
	return cfg.StateDir, nil
}

// readInput reads a file the user named; a missing one is exitNoInput.
func readInput(what, path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, exitWith(exitNoInput, fmt.Errorf("no %s at %s", what, path))
	}
	if err != nil {
		return nil, exitWith(exitIOErr, fmt.Errorf("read %s: %w", what, err))
	}
	return b, nil
}

func journalCommand() *cli.Command {
	return &cli.Command{
		Name:     "journal",
		Usage:    "verify, export and prune the journal",
		Commands: []*cli.Command{verifyCommand(), exportCommand(), pruneCommand()},
	}
}

func verifyCommand() *cli.Command {
	return &cli.Command{
		Name:  "verify",
		Usage: "check a journal or an exported bundle, and report the first bad entry",
		Description: "With --journal (or the config's journal), walks every entry: contiguous sequence numbers,\n" +
			"the canonical encoding, the hash chain, the Merkle tree, each payload against its commitment,\n" +
			"and every checkpoint (stored, the file beside the database, and --checkpoint) against the tree.\n" +
			"With --bundle, checks an exported bundle offline: its seal, manifest, entries, proofs and\n" +
			"checkpoints, with --pubkey as the only thing trusted. An unsealed bundle (exported by a\n" +
			"member of the audit group, who may not read the signing key) fails unless --allow-unsealed.\n" +
			"With --fleet-bundle and --fleet-key, checks a fleet bundle (interlock hub export) offline:\n" +
			"each host's entries, checkpoints and the hub's cosignatures, up to the fleet checkpoint.\n" +
			"With --hub and --operator, downloads that fleet bundle from the hub (mutual TLS, the hub\n" +
			"trusted through the operator directory's ca.crt only) and checks it the same way; without\n" +
			"--fleet-key it verifies against the fleet key the hub served (trust on first use, and says\n" +
			"so): pin --fleet-key and the --fleet-checkpoint from the bucket (the bundle is then asked\n" +
			"for against that checkpoint's size, not the hub's newest).\n" +
			"Exits 0 when everything verifies, 1 when something does not (naming the first bad sequence\n" +
			"number and why), 66 when an input is missing, 69 when the hub cannot be reached or refuses.",
		Flags: append([]cli.Flag{
			configFlag(),
			journalFlag(),
			&cli.StringFlag{Name: "bundle", Aliases: []string{"b"}, Usage: "verify this exported bundle instead of a journal"},
			&cli.StringSliceFlag{Name: "checkpoint", Usage: "a checkpoint file the journal or bundle must contain (repeatable)"},
			&cli.StringFlag{Name: "pubkey", Usage: "the public key to trust (default: state_dir/journal.pub for a journal; the bundle's own key for a bundle)"},
			&cli.BoolFlag{Name: "require-signed", Usage: "fail when entries after the newest checkpoint are not signed (for a closed journal)"},
			&cli.BoolFlag{Name: "allow-unsealed", Usage: "with --bundle: accept a bundle exported without the signing key (journal export --unsealed); its checkpoints prove its entries, not its views"},
			&cli.StringFlag{Name: "fleet-bundle", Usage: "verify this fleet bundle (interlock hub export) instead of a journal"},
			&cli.StringFlag{Name: "fleet-key", Usage: "with --fleet-bundle or --hub: the hub's fleet public key to trust (required with --fleet-bundle; with --hub, default: the hub's, trusted on first use)"},
			&cli.StringFlag{Name: "hub-key", Usage: "with --fleet-bundle or --hub: the hub's cosignature key to trust (default: the bundle's, which the fleet log vouches for)"},
			&cli.StringFlag{Name: "fleet-checkpoint", Usage: "with --fleet-bundle or --hub: a fleet checkpoint you hold (from the bucket); the bundle's must state the same tree"},
			&cli.BoolFlag{Name: "json", Usage: "print the report as JSON"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress output"},
		}, verifyHubFlags()...),
		Action: verifyAction,
	}
}

// progressPrinter prints a progress line on stderr when it is a terminal,
// at most twice a second, and clears it at the end.
type progressPrinter struct {
	on      bool
	verb    string
	started time.Time
	last    time.Time
	printed bool
}

func newProgress(cmd *cli.Command, verb string) *progressPrinter {
	return &progressPrinter{on: !cmd.Bool("quiet") && isTerminal(os.Stderr), verb: verb, started: time.Now()}
}

func (p *progressPrinter) update(done, total int64) {
	if !p.on || time.Since(p.last) < 500*time.Millisecond {
		return
	}
	p.last, p.printed = time.Now(), true
	rate := float64(done) / time.Since(p.started).Seconds()
	if total > 0 {
		fmt.Fprintf(os.Stderr, "\r%s: %d/%d entries (%.0f%%, %.0f/s)", p.verb, done, total, 100*float64(done)/float64(total), rate)
	} else {
		fmt.Fprintf(os.Stderr, "\r%s: %d entries (%.0f/s)", p.verb, done, rate)
	}
}

func (p *progressPrinter) clear() {
	if p.printed {
		fmt.Fprint(os.Stderr, "\r\033[K")
	}
}

func readCheckpoints(cmd *cli.Command) ([]evidence.ExternalCheckpoint, error) {
	var out []evidence.ExternalCheckpoint
	for _, f := range cmd.StringSlice("checkpoint") {
		b, err := readInput("checkpoint", f)
		if err != nil {
			return nil, err
		}
		out = append(out, evidence.ExternalCheckpoint{Name: f, Note: b})
	}
	return out, nil
}

func loadPubkey(path string) (note.Verifier, error) {
	if _, err := readInput("public key", path); err != nil {
		return nil, err
	}
	v, _, err := evidence.LoadVerifier(path)
	if err != nil {
		return nil, exitWith(exitUsage, err)
	}
	return v, nil
}

func verifyAction(ctx context.Context, cmd *cli.Command) error {
	if cmd.String("hub") != "" {
		return verifyHubAction(ctx, cmd)
	}
	if cmd.String("fleet-bundle") != "" {
		return verifyFleetAction(cmd)
	}
	for _, f := range []string{"fleet-key", "hub-key", "fleet-checkpoint", "operator", "host", "from", "save", "max-bytes"} {
		if cmd.IsSet(f) {
			return exitWith(exitUsage, fmt.Errorf("--%s is for --fleet-bundle or --hub", f))
		}
	}
	if cmd.String("bundle") != "" {
		if cmd.String("journal") != "" {
			return exitWith(exitUsage, errors.New("give --journal or --bundle, not both"))
		}
		return verifyBundleAction(ctx, cmd)
	}
	if cmd.Bool("allow-unsealed") {
		return exitWith(exitUsage, errors.New("--allow-unsealed is for --bundle"))
	}
	path, err := journalPath(cmd)
	if err != nil {
		return err
	}
	opts := journal.VerifyOptions{RequireSigned: cmd.Bool("require-signed")}
	if opts.External, err = readCheckpoints(cmd); err != nil {
		return err
	}
	if b, err := os.ReadFile(journal.CheckpointPath(path)); err == nil {
		opts.External = append(opts.External, evidence.ExternalCheckpoint{Name: journal.CheckpointPath(path), Note: b})
	}
	pub := cmd.String("pubkey")
	// The config's state directory holds the key of the config's journal;
	// a journal named on its own (--journal without --config) is checked
	// against the key it records, and the report says so.
	if pub == "" && (!cmd.IsSet("journal") || cmd.IsSet("config")) {
		if dir, err := stateDir(cmd); err == nil {
			if _, err := os.Stat(filepath.Join(dir, journal.PublicKeyFile)); err == nil {
				pub = filepath.Join(dir, journal.PublicKeyFile)
			}
		}
	}
	if pub != "" {
		if opts.PublicKey, err = loadPubkey(pub); err != nil {
			return err
		}
	}
	prog := newProgress(cmd, "verifying")
	opts.Progress = func(done, total uint64) { prog.update(int64(done), int64(total)) }
	rep, err := journal.VerifyWith(ctx, path, opts)
	prog.clear()
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
	} else {
		printJournalReport(path, rep)
	}
	if !rep.OK {
		return exitWith(exitFailed, fmt.Errorf("journal verification failed%s: %s", atSeq(rep.FirstBadSeq), rep.Reason))
	}
	return nil
}

func atSeq(seq uint64) string {
	if seq == 0 {
		return ""
	}
	return fmt.Sprintf(" at seq %d", seq)
}

func printJournalReport(path string, rep journal.VerifyReport) {
	if !rep.OK {
		fmt.Printf("journal %s: FAILED%s: %s (%d entries before it verified)\n", path, atSeq(rep.FirstBadSeq), rep.Reason, rep.Entries)
		return
	}
	fmt.Printf("journal %s: OK, %d entries, head seq %d hash %s\n", path, rep.Entries, rep.HeadSeq, rep.HeadHash)
	fmt.Printf("  tree root %s\n", rep.TreeRoot)
	keyNote := ""
	if rep.KeyFromJournal {
		keyNote = " (the key the journal records: pass --pubkey with the key you were given to check who signed)"
	}
	if rep.SignedAt != nil {
		fmt.Printf("  signed up to seq %d by a checkpoint of %s, key %s%s; %d checkpoints checked\n",
			rep.SignedSize, rep.SignedAt.Format(time.RFC3339), rep.Key, keyNote, rep.Checkpoints)
	} else {
		fmt.Printf("  no checkpoint signs any entry yet (key %s%s)\n", rep.Key, keyNote)
	}
	if rep.Unsigned > 0 {
		fmt.Printf("  %d newest entries are not signed yet (a live journal signs within a second)\n", rep.Unsigned)
	}
	fmt.Printf("  %d payloads checked, %d deleted by retention\n", rep.Payloads, rep.PayloadsDeleted)
}

func verifyBundleAction(ctx context.Context, cmd *cli.Command) error {
	path := cmd.String("bundle")
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return exitWith(exitNoInput, fmt.Errorf("no bundle at %s", path))
		}
		return exitWith(exitIOErr, err)
	}
	opts := evidence.BundleOptions{AllowUnsealed: cmd.Bool("allow-unsealed")}
	var err error
	if opts.External, err = readCheckpoints(cmd); err != nil {
		return err
	}
	if pub := cmd.String("pubkey"); pub != "" {
		if opts.PublicKey, err = loadPubkey(pub); err != nil {
			return err
		}
	}
	prog := newProgress(cmd, "verifying")
	opts.Progress = func(done uint64) { prog.update(int64(done), 0) }
	rep, err := evidence.VerifyBundle(ctx, path, opts)
	prog.clear()
	if err != nil {
		return exitWith(exitIOErr, fmt.Errorf("verify %s: %w", path, err))
	}
	if cmd.Bool("json") {
		if err := printJSON(struct {
			Bundle string `json:"bundle"`
			evidence.BundleReport
		}{path, rep}); err != nil {
			return err
		}
	} else if rep.OK {
		fmt.Printf("bundle %s: OK, journal %s, entries %d to %d (%d included, %d by hash), proven against the signed tree of %d entries\n",
			path, rep.JournalID, rep.FirstSeq, rep.LastSeq, rep.Counts.Entries, rep.Counts.Omitted, rep.TreeSize)
		if rep.KeyFromBundle {
			fmt.Printf("  checked with the key inside the bundle (%s); pass --pubkey with the key you were given to check who signed\n", rep.Key)
		} else if rep.Sealed {
			fmt.Printf("  signed by %s\n", rep.Key)
		} else {
			fmt.Printf("  its checkpoints signed by %s; the bundle itself is unsealed\n", rep.Key)
		}
		fmt.Printf("  %d payloads checked, %d deleted by retention; %d checkpoints\n", rep.Counts.Payloads, rep.Counts.PayloadsDeleted, rep.Counts.Checkpoints)
		for _, w := range rep.Warnings {
			fmt.Printf("  warning: %s\n", w)
		}
	} else {
		where := rep.File
		if where != "" {
			where = " in " + where
		}
		fmt.Printf("bundle %s: FAILED%s%s: %s\n", path, atSeq(rep.FirstBadSeq), where, rep.Reason)
	}
	if !rep.OK {
		return exitWith(exitFailed, fmt.Errorf("bundle verification failed%s: %s", atSeq(rep.FirstBadSeq), rep.Reason))
	}
	return nil
}

// parseWhen reads --since/--until: RFC 3339, a date (UTC midnight), or a
// duration meaning that long ago.
func parseWhen(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return time.Now().Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%q is not a time: write RFC 3339 (2026-03-01T12:00:00Z), a date (2026-03-01) or a duration ago (24h)", s)
}

func exportCommand() *cli.Command {
	return &cli.Command{
		Name:  "export",
		Usage: "write an evidence bundle (or OCSF JSON Lines) of the journal",
		Description: "--format bundle (default) writes a sealed tar.gz that verifies offline with the journal's\n" +
			"public key alone: entries verbatim, payloads, checkpoints, proofs, statements.csv,\n" +
			"approvals.csv, terminal recordings (sessions/ID.cast; ID-chN.cast for later pty channels) and summary.html.\n" +
			"The seal needs the signing key, which is root's. A member of the audit group (who may not\n" +
			"read it) gets an unsealed bundle instead, as --unsealed writes: the same members, proven by\n" +
			"the checkpoints interlock signed into the journal (the newest one ends the bundle), while\n" +
			"its views (CSVs, casts, summary) are the exporter's word. Verify it with --allow-unsealed.\n" +
			"--format ocsf writes OCSF JSON Lines (Authentication 3002, SSH Activity 4007,\n" +
			"Datastore Activity 6005, API Activity 6003 for Kubernetes requests) for a SIEM.",
		Flags: []cli.Flag{
			configFlag(),
			journalFlag(),
			&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Usage: "file to write", Required: true},
			&cli.StringFlag{Name: "since", Usage: "only entries at or after this time (RFC 3339, date, or duration ago)"},
			&cli.StringFlag{Name: "until", Usage: "only entries at or before this time"},
			&cli.StringFlag{Name: "session", Usage: "only this session's entries"},
			&cli.StringFlag{Name: "format", Value: "bundle", Usage: "bundle or ocsf"},
			&cli.StringFlag{Name: "key", Usage: "the journal's signing key, to seal the bundle (default: state_dir/journal.key)"},
			&cli.BoolFlag{Name: "unsealed", Usage: "write the bundle without the signing key (the default for a user who may not read it)"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress output"},
		},
		Action: exportAction,
	}
}

func exportAction(ctx context.Context, cmd *cli.Command) error {
	path, err := journalPath(cmd)
	if err != nil {
		return err
	}
	var sel journal.Selection
	if sel.Since, err = parseWhen(cmd.String("since")); err == nil {
		sel.Until, err = parseWhen(cmd.String("until"))
	}
	if err != nil {
		return exitWith(exitUsage, err)
	}
	if !sel.Since.IsZero() && !sel.Until.IsZero() && sel.Until.Before(sel.Since) {
		return exitWith(exitUsage, errors.New("--until is before --since"))
	}
	if s := cmd.String("session"); s != "" {
		if sel.Session, err = sessionByPrefix(ctx, path, s); err != nil {
			return err
		}
	}
	out := cmd.String("out")
	prog := newProgress(cmd, "exporting")
	switch cmd.String("format") {
	case "ocsf":
		if cmd.Bool("unsealed") || cmd.IsSet("key") {
			return exitWith(exitUsage, errors.New("--unsealed and --key are for --format bundle"))
		}
		f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
		if err != nil {
			return exitWith(exitIOErr, err)
		}
		n, err := export.OCSF(ctx, f, export.OCSFOptions{Journal: path, Selection: sel, Progress: prog.update})
		prog.clear()
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return exitWith(exitIOErr, fmt.Errorf("export %s: %w", path, err))
		}
		fmt.Fprintf(os.Stderr, "wrote %d OCSF events to %s\n", n, out)
		return nil
	case "bundle":
	default:
		return exitWith(exitUsage, fmt.Errorf("--format %q: write bundle or ocsf", cmd.String("format")))
	}
	opts := export.Options{Journal: path, Selection: sel, Progress: prog.update}
	keyNote, err := bundleSigner(cmd, &opts)
	if err != nil {
		return err
	}
	m, err := export.Bundle(ctx, out, opts)
	prog.clear()
	if err != nil {
		if errors.Is(err, journal.ErrNoCheckpoint) || errors.Is(err, export.ErrEmptySelection) {
			return exitWith(exitFailed, err)
		}
		return exitWith(exitIOErr, err)
	}
	what := "wrote"
	if opts.Unsealed {
		what = "wrote the unsealed bundle"
	}
	fmt.Fprintf(os.Stderr, "%s %s: entries %d to %d (%d included), %d sessions, %d statements, %d approvals, %d terminal recordings\n",
		what, out, m.FirstSeq, m.LastSeq, m.Counts.Entries, m.Counts.Sessions, m.Counts.Statements, m.Counts.Approvals, m.Counts.Casts)
	if opts.Unsealed {
		fmt.Fprintf(os.Stderr, "unsealed%s: the journal's checkpoint of %d entries, which interlock signed, proves its entries; "+
			"its views (CSVs, casts, summary) are your word. Verify it with --allow-unsealed\n", keyNote, m.TreeSize)
	}
	for _, w := range m.Warnings {
		fmt.Fprintf(os.Stderr, "warning: %s\n", w)
	}
	return nil
}

// bundleSigner sets the signer that seals the bundle, or Unsealed. A user
// who may not read the default key (a member of the audit group) gets an
// unsealed bundle rather than a refusal: the checkpoints interlock signed
// into the journal prove its entries, and no one but root need ever read
// the key. A key named with --key must be read, or the export fails. The
// note says why a bundle is unsealed when the user did not ask for it.
func bundleSigner(cmd *cli.Command, opts *export.Options) (note string, err error) {
	keyPath := cmd.String("key")
	if cmd.Bool("unsealed") {
		if keyPath != "" {
			return "", exitWith(exitUsage, errors.New("give --key or --unsealed, not both"))
		}
		opts.Unsealed = true
		return "", nil
	}
	if keyPath == "" {
		dir, err := stateDir(cmd)
		if err != nil {
			return "", err
		}
		keyPath = filepath.Join(dir, journal.KeyFile)
		if errors.Is(openable(keyPath), fs.ErrPermission) {
			opts.Unsealed = true
			return fmt.Sprintf(" (the signing key %s is root's; export as root for a sealed bundle)", keyPath), nil
		}
	}
	switch err := openable(keyPath); {
	case errors.Is(err, fs.ErrNotExist):
		return "", exitWith(exitNoInput, fmt.Errorf("no signing key at %s: a sealed bundle needs the journal's key (--key PATH), or write it --unsealed", keyPath))
	case errors.Is(err, fs.ErrPermission):
		return "", exitWith(exitNoPerm, fmt.Errorf("a sealed bundle needs the journal's signing key %s, which only root may read: "+
			"run the export as root, or write it --unsealed (its signed checkpoints prove its entries)", keyPath))
	}
	signer, err := journal.LoadSigner(keyPath)
	if err != nil {
		return "", exitWith(exitNoPerm, err)
	}
	opts.Signer = signer
	return "", nil
}

func pruneCommand() *cli.Command {
	return &cli.Command{
		Name:  "prune-payloads",
		Usage: "delete payloads (result rows, terminal output) older than a time, keeping the evidence verifiable",
		Description: "Deletes the payloads of entries older than --before and journals a journal.retention entry\n" +
			"saying so. Entries, their hashes and every checkpoint stay: the journal still verifies, and\n" +
			"verify reports the payloads as deleted by retention. Safe while the daemon runs.",
		Flags: []cli.Flag{
			configFlag(),
			journalFlag(),
			&cli.StringFlag{Name: "before", Usage: "delete payloads of entries before this time (RFC 3339, date, or duration ago such as 2160h)", Required: true},
			&cli.BoolFlag{Name: "json", Usage: "print the result as JSON"},
		},
		Action: pruneAction,
	}
}

func pruneAction(ctx context.Context, cmd *cli.Command) error {
	before, err := parseWhen(cmd.String("before"))
	if err != nil {
		return exitWith(exitUsage, err)
	}
	path, err := journalPath(cmd)
	if err != nil {
		return err
	}
	cfg, err := loadConfig(cmd)
	if err != nil {
		return err
	}
	j, err := journal.Open(ctx, journal.Options{
		Path: path, StateDir: cfg.StateDir, CheckpointSinks: cfg.Journal.CheckpointSinks.List(),
		Sync: journal.SyncMode(cfg.Journal.Sync), Logger: newLogger(cfg, slog.LevelWarn),
		HoldForHub: cfg.Ship.Enabled(),
	})
	if err != nil {
		return exitWith(exitIOErr, err)
	}
	res, err := j.PrunePayloads(ctx, before)
	if cerr := j.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return exitWith(exitIOErr, err)
	}
	if cmd.Bool("json") {
		return printJSON(res)
	}
	if res.Deleted == 0 {
		fmt.Printf("no payloads before %s\n", before.UTC().Format(time.RFC3339))
		return nil
	}
	fmt.Printf("deleted %d payloads before %s; recorded as entry %d\n", res.Deleted, before.UTC().Format(time.RFC3339), res.Seq)
	return nil
}

// firstLine is a one-line view of client text: escaped, and saying what
// it leaves out (textview.Summary).
func firstLine(s string, max int) string {
	return textview.Summary(s, max)
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
