package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/urfave/cli/v3"

	"github.com/interlock/interlock/journal/evidence"
)

// verifyFleetAction is journal verify --fleet-bundle: the same check as
// interlock-verify --fleet-key, offline, with the fleet key as the root
// of trust.
func verifyFleetAction(cmd *cli.Command) error {
	path := cmd.String("fleet-bundle")
	for _, f := range []string{"bundle", "journal", "pubkey", "checkpoint", "allow-unsealed", "require-signed", "operator", "host", "from", "save", "max-bytes"} {
		if cmd.IsSet(f) {
			return exitWith(exitUsage, fmt.Errorf("--%s is not for --fleet-bundle", f))
		}
	}
	if cmd.String("fleet-key") == "" {
		return exitWith(exitUsage, errors.New("--fleet-bundle needs --fleet-key: the hub's fleet public key is what the bundle is verified against"))
	}
	if _, err := readInput("fleet bundle", path); err != nil {
		return err
	}
	opts, err := fleetPins(cmd)
	if err != nil {
		return err
	}
	rep, err := evidence.VerifyFleetBundleFile(path, opts)
	if err != nil {
		return exitWith(exitIOErr, err)
	}
	if cmd.Bool("json") {
		if err := printJSON(struct {
			Bundle string `json:"fleet_bundle"`
			evidence.FleetReport
		}{path, rep}); err != nil {
			return err
		}
	} else {
		rep.WriteText(os.Stdout, path)
	}
	return fleetExit(rep)
}

// fleetPins reads what the auditor trusts of a fleet: --fleet-key,
// --hub-key and --fleet-checkpoint, each when given.
func fleetPins(cmd *cli.Command) (evidence.FleetOptions, error) {
	var opts evidence.FleetOptions
	var err error
	if fk := cmd.String("fleet-key"); fk != "" {
		if opts.FleetKey, err = loadPubkey(fk); err != nil {
			return opts, err
		}
	}
	if hk := cmd.String("hub-key"); hk != "" {
		b, err := readInput("hub key", hk)
		if err != nil {
			return opts, err
		}
		if opts.HubKey, err = evidence.NewCosignatureVerifier(string(b)); err != nil {
			return opts, exitWith(exitUsage, fmt.Errorf("hub key %s: %w", hk, err))
		}
	}
	if fc := cmd.String("fleet-checkpoint"); fc != "" {
		b, err := readInput("fleet checkpoint", fc)
		if err != nil {
			return opts, err
		}
		opts.Pinned = &evidence.ExternalCheckpoint{Name: fc, Note: b}
	}
	return opts, nil
}

// fleetExit is the exit of a fleet verification: 1 naming the host and
// seq of the first failure.
func fleetExit(rep evidence.FleetReport) error {
	if rep.OK {
		return nil
	}
	where := ""
	if rep.HostID != "" {
		where = fmt.Sprintf(" at host %s seq %d", rep.HostID, rep.Seq)
	}
	return exitWith(exitFailed, fmt.Errorf("fleet bundle verification failed%s: %s", where, rep.Reason))
}
