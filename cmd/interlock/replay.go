package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v3"
	"golang.org/x/sys/unix"

	"github.com/interlock/interlock/asciicast"
	"github.com/interlock/interlock/internal/textview"
	"github.com/interlock/interlock/journal"
	"github.com/interlock/interlock/journal/evidence"
	"github.com/interlock/interlock/sessionview"
)

func sessionsReplayCommand() *cli.Command {
	return &cli.Command{
		Name:  "replay",
		Usage: "play a recorded terminal session with its original timing",
		Description: "Plays each terminal channel of a recorded SSH session on standard output, with the\n" +
			"pauses it had: every channel that asked for a pty or ran a shell or a command, one after\n" +
			"the other in the order they started, each announced by a header on standard error (a\n" +
			"second shell over the same connection, as ssh's ControlMaster opens, is a second\n" +
			"channel). --channel N plays one. --input also shows what the client typed, marked and\n" +
			"escaped, including what the terminal did not echo (a password typed at a prompt).\n" +
			"\n" +
			"A replay is a picture of the screen: a command line erased with backspaces or escape\n" +
			"codes is erased again, and bytes that are not UTF-8 are drawn as U+FFFD. `interlock\n" +
			"sessions show SESSION-ID` lists what was done byte for byte.\n" +
			"SESSION-ID is the id `interlock sessions list` shows, or an unambiguous prefix of it.",
		ArgsUsage: "SESSION-ID",
		Flags: []cli.Flag{
			configFlag(),
			journalFlag(),
			channelFlag("play only channel `N` (default: every terminal channel; sessions show lists them)"),
			&cli.BoolFlag{Name: "input", Usage: "show what the client typed, marked [input: ...] and escaped, where it was typed"},
			&cli.FloatFlag{Name: "speed", Value: 1, Usage: "playback speed: 2 plays twice as fast"},
			&cli.DurationFlag{Name: "max-idle", Usage: "shorten pauses longer than this (e.g. 2s); 0 keeps them"},
		},
		Action: sessionsReplayAction,
	}
}

func sessionsExportCommand() *cli.Command {
	return &cli.Command{
		Name:  "export",
		Usage: "write a recorded session as asciicast v2, JSON Lines or raw bytes",
		Description: "--format asciicast (the default) writes a terminal channel of a recorded SSH session as\n" +
			"an asciicast v2 file, which asciinema plays (asciinema play FILE): output, what the client\n" +
			"typed as \"i\" events, window changes. A session with one terminal channel needs nothing\n" +
			"more; with several, choose one with --channel N or write each with --out-dir DIR\n" +
			"(SESSION-chN.cast). asciicast is UTF-8 JSON: bytes that are not UTF-8 become U+FFFD.\n" +
			"\n" +
			"--format jsonl writes every event of the session (requests, sftp operations, chunks of\n" +
			"input and output), one JSON object a line, with each chunk's exact bytes in\n" +
			"payload_b64: the lossless export. --format raw writes the exact bytes of one channel's\n" +
			"stream (--channel N, --stream o, e or i), for cmp and the like.\n" +
			"SESSION-ID is an id or an unambiguous prefix of one.",
		ArgsUsage: "SESSION-ID",
		Flags: []cli.Flag{
			configFlag(),
			journalFlag(),
			&cli.StringFlag{Name: "format", Value: "asciicast", Usage: "output format: asciicast (v2), jsonl or raw"},
			channelFlag("the channel `N` to write (sessions show lists them)"),
			&cli.StringFlag{Name: "stream", Value: "o", Usage: "with --format raw: o (stdout), e (stderr) or i (what the client sent)"},
			&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Usage: "file to write (default: standard output)"},
			&cli.StringFlag{Name: "out-dir", Usage: "with --format asciicast: write each terminal channel to DIR/SESSION-chN.cast"},
		},
		Action: sessionsExportAction,
	}
}

func channelFlag(usage string) cli.Flag {
	return &cli.IntFlag{Name: "channel", Usage: usage, HideDefault: true}
}

// channelArg is the --channel flag: nil when it was not given.
func channelArg(cmd *cli.Command) (*uint32, error) {
	if !cmd.IsSet("channel") {
		return nil, nil
	}
	n := cmd.Int("channel")
	if n < 0 || n > 1<<32-1 {
		return nil, exitWith(exitUsage, fmt.Errorf("--channel %d: a channel number is 0 or more (`interlock sessions show` lists them)", n))
	}
	c := uint32(n)
	return &c, nil
}

// replaySessionArg resolves the SESSION-ID argument to a full session id,
// from the journal's session list (its open entries alone).
func replaySessionArg(ctx context.Context, cmd *cli.Command) (path, id string, err error) {
	if cmd.Args().Len() != 1 {
		return "", "", exitWith(exitUsage, errors.New("give one SESSION-ID (see `interlock sessions list`)"))
	}
	path, err = journalPath(cmd)
	if err != nil {
		return "", "", err
	}
	id, err = sessionByPrefix(ctx, path, cmd.Args().First())
	return path, id, err
}

// replayRecords yields the entries of one session, in sequence order,
// from its session.open to its session.close (journal.OpenSnapshot).
func replayRecords(ctx context.Context, path, id string) iter.Seq2[asciicast.Record, error] {
	return func(yield func(asciicast.Record, error) bool) {
		snap, err := journal.OpenSnapshot(ctx, path)
		if err != nil {
			yield(asciicast.Record{}, err)
			return
		}
		defer snap.Close()
		errStop := errors.New("stop")
		err = snap.SessionEntries(id, snap.Head, func(e journal.Entry) error {
			b, err := evidence.ParseBody(e.Body)
			if err != nil {
				return fmt.Errorf("entry %d: %w", e.Seq, err)
			}
			if !yield(asciicast.Record{Seq: e.Seq, Kind: e.Kind, TimeNS: e.TimeNS, Data: b.Data, Payload: e.Payload}, nil) {
				return errStop
			}
			return nil
		})
		if err != nil && !errors.Is(err, errStop) {
			yield(asciicast.Record{}, err)
		}
	}
}

// replayScan reads which channels the session had.
func replayScan(ctx context.Context, path, id string) (*sessionview.Session, error) {
	sess, err := sessionview.Read(replayRecords(ctx, path, id), nil)
	if err != nil {
		return nil, exitWith(exitIOErr, fmt.Errorf("read session %s from %s: %w", id, path, err))
	}
	return sess, nil
}

// replayChannels picks the terminal channels to play or export: the one
// --channel names, or all of them.
func replayChannels(sess *sessionview.Session, id string, want *uint32) ([]*sessionview.Channel, error) {
	terms := sess.Terminals()
	if want != nil {
		if c := sess.Channel(*want); c != nil && c.Terminal() {
			return []*sessionview.Channel{c}, nil
		}
		return nil, exitWith(exitUsage, fmt.Errorf("session %s has no terminal channel %d; its terminal channels are: %s (`interlock sessions show %s` lists everything it did)",
			id, *want, channelList(terms), id))
	}
	if len(terms) == 0 {
		return nil, exitWith(exitFailed, fmt.Errorf("session %s had no terminal (no pty, shell or command; sftp or forwarding only): nothing to play; `interlock sessions show %s` lists what it did",
			id, id))
	}
	return terms, nil
}

func channelList(cs []*sessionview.Channel) string {
	if len(cs) == 0 {
		return "none"
	}
	var b strings.Builder
	for i, c := range cs {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%d (%s)", c.Channel, c.Describe())
	}
	return b.String()
}

func sessionsExportAction(ctx context.Context, cmd *cli.Command) error {
	format := cmd.String("format")
	switch format {
	case "asciicast", "jsonl", "raw":
	default:
		return exitWith(exitUsage, fmt.Errorf("--format %q: the formats are asciicast, jsonl and raw", format))
	}
	want, err := channelArg(cmd)
	if err != nil {
		return err
	}
	out, outDir := cmd.String("out"), cmd.String("out-dir")
	if out != "" && outDir != "" {
		return exitWith(exitUsage, errors.New("give --out FILE or --out-dir DIR, not both"))
	}
	if outDir != "" && format != "asciicast" {
		return exitWith(exitUsage, fmt.Errorf("--out-dir writes one asciicast per channel; --format %s writes one file: use --out", format))
	}
	stream := cmd.String("stream")
	if format == "raw" {
		if want == nil {
			return exitWith(exitUsage, errors.New("--format raw writes one channel's stream: give --channel N (`interlock sessions show` lists them)"))
		}
		if stream != "o" && stream != "e" && stream != "i" {
			return exitWith(exitUsage, fmt.Errorf("--stream %q: o (stdout), e (stderr) or i (what the client sent)", stream))
		}
	}
	path, id, err := replaySessionArg(ctx, cmd)
	if err != nil {
		return err
	}
	switch format {
	case "jsonl":
		return writeOut(out, func(w io.Writer) error {
			_, err := sessionview.WriteJSONL(w, replayRecords(ctx, path, id), want)
			return err
		})
	case "raw":
		var deleted int64
		err := writeOut(out, func(w io.Writer) error {
			var err error
			_, deleted, err = sessionview.WriteRaw(w, replayRecords(ctx, path, id), *want, stream)
			return err
		})
		if err == nil && deleted > 0 {
			return exitWith(exitFailed, fmt.Errorf("%d bytes of channel %d's stream %s were deleted by retention: the copy written lacks them", deleted, *want, stream))
		}
		return err
	}
	sess, err := replayScan(ctx, path, id)
	if err != nil {
		return err
	}
	chans, err := replayChannels(sess, id, want)
	if err != nil {
		return err
	}
	if outDir != "" {
		// The id names the files: one the journal holds, but a journal
		// is a file anyone may hand over; no path in it.
		if id == "" || strings.ContainsAny(id, "/\\") || strings.HasPrefix(id, ".") {
			return exitWith(exitFailed, fmt.Errorf("session id %s cannot name a file: use --channel N with --out FILE", textview.Escape(id)))
		}
		for _, c := range chans {
			name := filepath.Join(outDir, fmt.Sprintf("%s-ch%d.cast", id, c.Channel))
			if err := writeOut(name, func(w io.Writer) error {
				return asciicast.WriteChannel(w, replayRecords(ctx, path, id), c.Channel)
			}); err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "interlock: wrote %s: channel %d, %s\n", name, c.Channel, c.Describe())
		}
		return nil
	}
	if len(chans) > 1 {
		return exitWith(exitUsage, fmt.Errorf("session %s has %d terminal channels: %s; choose one with --channel N, or write each with --out-dir DIR",
			id, len(chans), channelList(chans)))
	}
	return writeOut(out, func(w io.Writer) error {
		return asciicast.WriteChannel(w, replayRecords(ctx, path, id), chans[0].Channel)
	})
}

// writeOut runs write on standard output (out "") or on a file written
// next to out and renamed, so a failed export leaves no half file behind.
func writeOut(out string, write func(io.Writer) error) error {
	if out == "" {
		if err := write(os.Stdout); err != nil {
			return exitWith(exitIOErr, err)
		}
		return nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(out), ".interlock-export-*")
	if err != nil {
		return exitWith(exitIOErr, fmt.Errorf("write %s: %w", out, err))
	}
	defer os.Remove(tmp.Name())
	if err := write(tmp); err != nil {
		tmp.Close()
		return exitWith(exitIOErr, fmt.Errorf("write %s: %w", out, err))
	}
	if err := tmp.Close(); err != nil {
		return exitWith(exitIOErr, fmt.Errorf("write %s: %w", out, err))
	}
	if err := os.Chmod(tmp.Name(), 0o600); err != nil {
		return exitWith(exitIOErr, err)
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return exitWith(exitIOErr, fmt.Errorf("write %s: %w", out, err))
	}
	return nil
}

// replayTrack is one channel to play: its header and events.
type replayTrack struct {
	ch     *sessionview.Channel
	hdr    asciicast.Header
	events []asciicast.Event
}

func sessionsReplayAction(ctx context.Context, cmd *cli.Command) error {
	speed := cmd.Float("speed")
	if speed <= 0 {
		return exitWith(exitUsage, errors.New("--speed must be more than 0"))
	}
	want, err := channelArg(cmd)
	if err != nil {
		return err
	}
	path, id, err := replaySessionArg(ctx, cmd)
	if err != nil {
		return err
	}
	sess, err := replayScan(ctx, path, id)
	if err != nil {
		return err
	}
	chans, err := replayChannels(sess, id, want)
	if err != nil {
		return err
	}
	input := cmd.Bool("input")
	// Read the events first: playing takes as long as the session did,
	// and a read snapshot held that long would keep the journal's WAL from
	// being checkpointed.
	tracks := make([]replayTrack, len(chans))
	for i, c := range chans {
		tr := &tracks[i]
		tr.ch = c
		err := asciicast.DecodeChannel(replayRecords(ctx, path, id), c.Channel,
			func(h asciicast.Header) error { tr.hdr = h; return nil },
			func(e asciicast.Event) error {
				if e.Type == "o" || e.Type == "m" || input && e.Type == "i" {
					tr.events = append(tr.events, e)
				}
				return nil
			})
		if err != nil {
			return exitWith(exitIOErr, fmt.Errorf("read channel %d of session %s: %w", c.Channel, id, err))
		}
	}
	marks := inputMarks(os.Stdout)
	for i, tr := range tracks {
		fmt.Fprintf(os.Stderr, "\r\ninterlock: replaying session %s channel %d (%d of %d): %s; recorded at %dx%d, %s\r\n",
			id, tr.ch.Channel, i+1, len(tracks), tr.ch.Describe(), tr.hdr.Width, tr.hdr.Height,
			time.Unix(tr.hdr.Timestamp, 0).Local().Format("2006-01-02 15:04:05"))
		if err := replayPlay(ctx, os.Stdout, os.Stderr, tr.events, speed, cmd.Duration("max-idle"), marks); err != nil {
			return err
		}
	}
	return nil
}

// inputMarks are what --input puts around typed text: reverse video on a
// terminal, so it stands out from the output it is drawn among; nothing
// else in a file.
func inputMarks(f *os.File) [2]string {
	if _, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS); err == nil {
		return [2]string{"\x1b[7m[input: ", "]\x1b[27m"}
	}
	return [2]string{"[input: ", "]"}
}

// replayPlay writes output events at their time, scaled by speed, with
// pauses longer than maxIdle (when set) shortened to it. Input events
// (there only with --input) are written escaped between marks.
func replayPlay(ctx context.Context, w, notes io.Writer, events []asciicast.Event, speed float64, maxIdle time.Duration, marks [2]string) error {
	start := time.Now()
	var at, prev time.Duration
	for _, e := range events {
		gap := time.Duration(e.TimeNS) - prev
		prev = time.Duration(e.TimeNS)
		if maxIdle > 0 && gap > maxIdle {
			gap = maxIdle
		}
		at += time.Duration(float64(gap) / speed)
		if d := time.Until(start.Add(at)); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
		}
		data := e.Data
		switch e.Type {
		case "m":
			// A marker is a note about the session, not its output: shown
			// escaped, so text it quotes cannot drive the terminal.
			fmt.Fprintf(notes, "\r\n[interlock: %s]\r\n", textview.Escape(e.Data))
			continue
		case "i":
			// What the client typed is shown as bytes: typed escape
			// sequences and control keys must not act on this terminal,
			// and a typed "]" must not end the mark early.
			data = marks[0] + strings.ReplaceAll(textview.Escape(e.Data), "]", `\]`) + marks[1]
		}
		if _, err := io.WriteString(w, data); err != nil {
			return exitWith(exitIOErr, err)
		}
	}
	return nil
}
