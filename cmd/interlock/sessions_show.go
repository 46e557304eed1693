package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v3"

	"github.com/interlock/interlock/sessionview"
)

func sessionsShowCommand() *cli.Command {
	return &cli.Command{
		Name:  "show",
		Usage: "list what a recorded session did, request by request and byte by byte",
		Description: "Prints every event of a recorded session in order, with its time offset and channel:\n" +
			"channels opened or refused; requests (pty, shell, exec with its exact command,\n" +
			"subsystem, env, signals, forwarding), refused ones with their command and decision; sftp\n" +
			"operations; exit statuses; masking; journal gaps; and every chunk of input (in), output\n" +
			"(out) and stderr (err). A kubernetes session shows each API request (verb, resource,\n" +
			"namespace and name, API group, who it was made as, decision) and its response, each exec\n" +
			"or attach as a channel, port-forward streams and bearer token owners. Nothing is rendered as a terminal would: client bytes are escaped\n" +
			"(\\r \\n \\x1b ..., bytes that are not UTF-8 as \\xNN, a backslash doubled, a quote as \\\"),\n" +
			"so a command line erased with backspaces or escape codes, or typed with echo off, is\n" +
			"there to read, and no byte acts on your terminal.\n" +
			"\n" +
			"--json prints one object {session, events, channels} for scripts: each event has the\n" +
			"entry's data as journaled and its payload byte for byte (payload_b64), beside the\n" +
			"escaped text. `interlock sessions export --format jsonl` writes the same events as JSON\n" +
			"Lines. SESSION-ID is an id (`interlock sessions list`) or an unambiguous prefix of one.",
		ArgsUsage: "SESSION-ID",
		Flags: []cli.Flag{
			configFlag(),
			journalFlag(),
			channelFlag("only the events of channel `N` (and the session's own)"),
			&cli.BoolFlag{Name: "json", Usage: "print JSON: events with their exact bytes (base64)"},
		},
		Action: sessionsShowAction,
	}
}

func sessionsShowAction(ctx context.Context, cmd *cli.Command) error {
	want, err := channelArg(cmd)
	if err != nil {
		return err
	}
	path, id, err := replaySessionArg(ctx, cmd)
	if err != nil {
		return err
	}
	if want != nil {
		// Checked first, so a wrong number prints nothing but the error.
		sess, err := replayScan(ctx, path, id)
		if err != nil {
			return err
		}
		if sess.Channel(*want) == nil {
			return exitWith(exitUsage, fmt.Errorf("session %s has no channel %d; its channels are: %s", id, *want, allChannels(sess)))
		}
	}
	w := bufio.NewWriter(os.Stdout)
	if cmd.Bool("json") {
		_, err = sessionview.WriteJSON(w, id, replayRecords(ctx, path, id), want)
	} else {
		_, err = sessionview.WritePlain(w, id, replayRecords(ctx, path, id), want)
	}
	if err != nil {
		w.Flush()
		return exitWith(exitIOErr, fmt.Errorf("read session %s from %s: %w", id, path, err))
	}
	if err := w.Flush(); err != nil {
		return exitWith(exitIOErr, err)
	}
	return nil
}

func allChannels(sess *sessionview.Session) string {
	if len(sess.Channels) == 0 {
		return "none"
	}
	var b strings.Builder
	for i, c := range sess.Channels {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%d", c.Channel)
	}
	return b.String()
}
