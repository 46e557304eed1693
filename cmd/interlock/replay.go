package main

import (
	"context"
	"errors"

	"github.com/urfave/cli/v3"
)

// STUB: the SSH work replaces this file with replay and asciicast export.

func sessionsReplayCommand() *cli.Command {
	return &cli.Command{
		Name:      "replay",
		Usage:     "play a recorded terminal session with its original timing",
		ArgsUsage: "SESSION-ID",
		Action: func(context.Context, *cli.Command) error {
			return exitWith(exitUnavailable, errors.New("replay needs recorded ssh sessions, which this build does not record yet"))
		},
	}
}

func sessionsExportCommand() *cli.Command {
	return &cli.Command{
		Name:      "export",
		Usage:     "write a recorded terminal session as an asciicast v2 file",
		ArgsUsage: "SESSION-ID",
		Action: func(context.Context, *cli.Command) error {
			return exitWith(exitUnavailable, errors.New("export needs recorded ssh sessions, which this build does not record yet"))
		},
	}
}
