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

	"github.com/interlock/interlock/asciicast"
	"github.com/interlock/interlock/journal"
	"github.com/interlock/interlock/textview"
)

func sessionsReplayCommand() *cli.Command {
	return &cli.Command{
		Name:  "replay",
		Usage: "play a recorded terminal session with its original timing",
		Description: "Plays the terminal (pty) of a recorded SSH session on standard output, with the pauses\n" +
			"it had. SESSION-ID is the id `interlock sessions list` shows, or an unambiguous prefix of it.",
		ArgsUsage: "SESSION-ID",
		Flags: []cli.Flag{
			configFlag(),
			journalFlag(),
			&cli.FloatFlag{Name: "speed", Value: 1, Usage: "playback speed: 2 plays twice as fast"},
			&cli.DurationFlag{Name: "max-idle", Usage: "shorten pauses longer than this (e.g. 2s); 0 keeps them"},
		},
		Action: sessionsReplayAction,
	}
}

func sessionsExportCommand() *cli.Command {
	return &cli.Command{
		Name:  "export",
		Usage: "write a recorded terminal session as an asciicast v2 file",
		Description: "Writes the terminal (pty) of a recorded SSH session as an asciicast v2 file, which\n" +
			"asciinema plays (asciinema play FILE). SESSION-ID is an id or an unambiguous prefix of one.",
		ArgsUsage: "SESSION-ID",
		Flags: []cli.Flag{
			configFlag(),
			journalFlag(),
			&cli.StringFlag{Name: "format", Value: "asciicast", Usage: "output format: asciicast (v2)"},
			&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Usage: "file to write (default: standard output)"},
		},
		Action: sessionsExportAction,
	}
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
	prefix := cmd.Args().First()
	list, err := journal.ListSessions(ctx, path, journal.SessionFilter{})
	if err != nil {
		return "", "", exitWith(exitIOErr, fmt.Errorf("read %s: %w", path, err))
	}
	var found []string
	for _, s := range list {
		if s.ID == prefix {
			return path, prefix, nil
		}
		if strings.HasPrefix(s.ID, prefix) {
			found = append(found, s.ID)
		}
	}
	switch len(found) {
	case 0:
		return "", "", exitWith(exitNoInput, fmt.Errorf("no session %q in %s", prefix, path))
	case 1:
		return path, found[0], nil
	}
	return "", "", exitWith(exitUsage, fmt.Errorf("%q is the start of more than one session id; give more of it", prefix))
}

// replayRecords yields the entries of one session, in sequence order,
// read through the session index.
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
			b, err := journal.ParseBody(e.Body)
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

func replayNoTerminal(id string, err error) error {
	if errors.Is(err, asciicast.ErrNoTerminal) {
		return exitWith(exitFailed, fmt.Errorf("session %s had no terminal (no pty was requested): nothing to play; its commands and output are in the journal", id))
	}
	return exitWith(exitIOErr, err)
}

func sessionsExportAction(ctx context.Context, cmd *cli.Command) error {
	if f := cmd.String("format"); f != "asciicast" {
		return exitWith(exitUsage, fmt.Errorf("--format %q: the only format is asciicast", f))
	}
	path, id, err := replaySessionArg(ctx, cmd)
	if err != nil {
		return err
	}
	out := cmd.String("out")
	if out == "" {
		if err := asciicast.Write(os.Stdout, replayRecords(ctx, path, id)); err != nil {
			return replayNoTerminal(id, err)
		}
		return nil
	}
	// Write next to the target and rename, so a failed export leaves no
	// half file behind.
	tmp, err := os.CreateTemp(filepath.Dir(out), ".interlock-cast-*")
	if err != nil {
		return exitWith(exitIOErr, err)
	}
	defer os.Remove(tmp.Name())
	if err := asciicast.Write(tmp, replayRecords(ctx, path, id)); err != nil {
		tmp.Close()
		return replayNoTerminal(id, err)
	}
	if err := tmp.Close(); err != nil {
		return exitWith(exitIOErr, err)
	}
	if err := os.Chmod(tmp.Name(), 0o600); err != nil {
		return exitWith(exitIOErr, err)
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return exitWith(exitIOErr, err)
	}
	return nil
}

func sessionsReplayAction(ctx context.Context, cmd *cli.Command) error {
	speed := cmd.Float("speed")
	if speed <= 0 {
		return exitWith(exitUsage, errors.New("--speed must be more than 0"))
	}
	path, id, err := replaySessionArg(ctx, cmd)
	if err != nil {
		return err
	}
	// Read the events first: playing takes as long as the session did,
	// and a read snapshot held that long would keep the journal's WAL from
	// being checkpointed.
	var hdr asciicast.Header
	var events []asciicast.Event
	err = asciicast.Decode(replayRecords(ctx, path, id),
		func(h asciicast.Header) error { hdr = h; return nil },
		func(e asciicast.Event) error {
			if e.Type == "o" || e.Type == "m" {
				events = append(events, e)
			}
			return nil
		})
	if err != nil {
		return replayNoTerminal(id, err)
	}
	fmt.Fprintf(os.Stderr, "interlock: replaying session %s, recorded at %dx%d, %s\r\n", id, hdr.Width, hdr.Height,
		time.Unix(hdr.Timestamp, 0).Local().Format("2006-01-02 15:04:05"))
	return replayPlay(ctx, os.Stdout, os.Stderr, events, speed, cmd.Duration("max-idle"))
}

// play writes output events at their time, scaled by speed, with pauses
// longer than maxIdle (when set) shortened to it.
func replayPlay(ctx context.Context, w, notes io.Writer, events []asciicast.Event, speed float64, maxIdle time.Duration) error {
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
		if e.Type == "m" {
			// A marker is a note about the session, not its output: shown
			// escaped, so text it quotes cannot drive the terminal.
			fmt.Fprintf(notes, "\r\n[interlock: %s]\r\n", textview.Escape(e.Data))
			continue
		}
		if _, err := io.WriteString(w, e.Data); err != nil {
			return exitWith(exitIOErr, err)
		}
	}
	return nil
}
