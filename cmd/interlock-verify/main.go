// Command interlock-verify checks an interlock evidence bundle offline,
// with nothing but the journal's public key: the seal over every byte, the
// manifest, every entry and payload, the Merkle tree and every signed
// checkpoint. It is the verifier of `interlock journal verify --bundle`
// without the rest of interlock: pure Go, no SQLite, no cgo, so an auditor
// builds it anywhere with
//
//	CGO_ENABLED=0 go build ./cmd/interlock-verify
//
// With --fleet-key it checks a fleet bundle (interlock hub export)
// instead: every host's entries up to one fleet checkpoint of a hub.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/interlock/interlock/journal/evidence"
)

// Exit codes, as interlock's own (sysexits.h).
const (
	exitOK      = 0
	exitFailed  = 1  // the bundle does not verify
	exitUsage   = 64 // bad command line
	exitNoInput = 66 // a file to read does not exist
	exitIOErr   = 74 // reading a file failed
)

const usage = `usage: interlock-verify [--pubkey FILE] [--checkpoint FILE]... [--allow-unsealed] [--json] BUNDLE
       interlock-verify --fleet-key FILE [--hub-key FILE] [--fleet-checkpoint FILE] [--json] FLEET-BUNDLE

Checks an interlock evidence bundle (from interlock journal export) offline:
its seal, manifest, entries, payloads, Merkle tree and signed checkpoints.

  --pubkey FILE       the journal public key you trust (journal.pub, as you
                      were given it); without it the bundle's own key is used,
                      which shows the bundle is intact but not who made it
  --checkpoint FILE   a checkpoint you kept: the bundle must agree with it
                      (repeatable)
  --allow-unsealed    accept a bundle exported without the signing key (by a
                      member of the audit group): its signed checkpoints prove
                      its entries, not its views (CSVs, casts, summary)
  --json              print the report as JSON

With --fleet-key, checks a fleet bundle (from interlock hub export) instead:
each host's entries against its checkpoints, their host signatures and the
hub's cosignatures, their inclusion in the fleet log, and the fleet
checkpoint's signature.

  --fleet-key FILE         the hub's fleet public key you trust (required)
  --hub-key FILE           the hub's cosignature key you trust (default: the
                           bundle's, which the fleet log vouches for)
  --fleet-checkpoint FILE  a fleet checkpoint you hold (from the bucket): the
                           bundle's must state the same tree

Exits 0 when the bundle verifies, 1 when it does not (naming the first bad
entry and why), 64 on a bad command line, 66 when a file is missing, 74 when
a file cannot be read.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// repeated is a flag that may be given more than once.
type repeated []string

func (r *repeated) String() string     { return strings.Join(*r, ",") }
func (r *repeated) Set(v string) error { *r = append(*r, v); return nil }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("interlock-verify", flag.ContinueOnError)
	fl.SetOutput(io.Discard)
	pubkey := fl.String("pubkey", "", "")
	asJSON := fl.Bool("json", false, "")
	allowUnsealed := fl.Bool("allow-unsealed", false, "")
	var checkpoints repeated
	fl.Var(&checkpoints, "checkpoint", "")
	fleetKey := fl.String("fleet-key", "", "")
	hubKey := fl.String("hub-key", "", "")
	fleetCheckpoint := fl.String("fleet-checkpoint", "", "")
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usage)
			return exitOK
		}
		fmt.Fprintf(stderr, "interlock-verify: %v\n\n%s", err, usage)
		return exitUsage
	}
	if fl.NArg() != 1 {
		fmt.Fprintf(stderr, "interlock-verify: give exactly one bundle (got %d)\n\n%s", fl.NArg(), usage)
		return exitUsage
	}
	path := fl.Arg(0)
	if code, err := readable(path); err != nil {
		fmt.Fprintf(stderr, "interlock-verify: bundle: %v\n", err)
		return code
	}
	if *fleetKey != "" {
		if *pubkey != "" || len(checkpoints) != 0 || *allowUnsealed {
			fmt.Fprintf(stderr, "interlock-verify: --pubkey, --checkpoint and --allow-unsealed are for an evidence bundle, not a fleet bundle\n\n%s", usage)
			return exitUsage
		}
		return verifyFleet(path, *fleetKey, *hubKey, *fleetCheckpoint, *asJSON, stdout, stderr)
	}
	if *hubKey != "" || *fleetCheckpoint != "" {
		fmt.Fprintf(stderr, "interlock-verify: --hub-key and --fleet-checkpoint need --fleet-key\n\n%s", usage)
		return exitUsage
	}
	opts := evidence.BundleOptions{AllowUnsealed: *allowUnsealed}
	if *pubkey != "" {
		if code, err := readable(*pubkey); err != nil {
			fmt.Fprintf(stderr, "interlock-verify: public key: %v\n", err)
			return code
		}
		v, _, err := evidence.LoadVerifier(*pubkey)
		if err != nil {
			fmt.Fprintf(stderr, "interlock-verify: %v\n", err)
			return exitUsage
		}
		opts.PublicKey = v
	}
	for _, f := range checkpoints {
		b, err := os.ReadFile(f)
		if err != nil {
			code, _ := readable(f)
			fmt.Fprintf(stderr, "interlock-verify: checkpoint: %v\n", err)
			return code
		}
		opts.External = append(opts.External, evidence.ExternalCheckpoint{Name: f, Note: b})
	}
	rep, err := evidence.VerifyBundle(ctx, path, opts)
	if err != nil {
		fmt.Fprintf(stderr, "interlock-verify: verify %s: %v\n", path, err)
		return exitIOErr
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(struct {
			Bundle string `json:"bundle"`
			evidence.BundleReport
		}{path, rep}); err != nil {
			fmt.Fprintf(stderr, "interlock-verify: %v\n", err)
			return exitIOErr
		}
	} else {
		printReport(stdout, path, rep)
	}
	if !rep.OK {
		return exitFailed
	}
	return exitOK
}

// verifyFleet checks a fleet bundle.
func verifyFleet(path, fleetKey, hubKey, pinned string, asJSON bool, stdout, stderr io.Writer) int {
	var opts evidence.FleetOptions
	if code, err := readable(fleetKey); err != nil {
		fmt.Fprintf(stderr, "interlock-verify: fleet key: %v\n", err)
		return code
	}
	v, _, err := evidence.LoadVerifier(fleetKey)
	if err != nil {
		fmt.Fprintf(stderr, "interlock-verify: fleet key: %v\n", err)
		return exitUsage
	}
	opts.FleetKey = v
	if hubKey != "" {
		b, err := os.ReadFile(hubKey)
		if err != nil {
			code, _ := readable(hubKey)
			fmt.Fprintf(stderr, "interlock-verify: hub key: %v\n", err)
			return code
		}
		if opts.HubKey, err = evidence.NewCosignatureVerifier(string(b)); err != nil {
			fmt.Fprintf(stderr, "interlock-verify: hub key %s: %v\n", hubKey, err)
			return exitUsage
		}
	}
	if pinned != "" {
		b, err := os.ReadFile(pinned)
		if err != nil {
			code, _ := readable(pinned)
			fmt.Fprintf(stderr, "interlock-verify: fleet checkpoint: %v\n", err)
			return code
		}
		opts.Pinned = &evidence.ExternalCheckpoint{Name: pinned, Note: b}
	}
	rep, err := evidence.VerifyFleetBundleFile(path, opts)
	if err != nil {
		fmt.Fprintf(stderr, "interlock-verify: %v\n", err)
		return exitIOErr
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(struct {
			Bundle string `json:"fleet_bundle"`
			evidence.FleetReport
		}{path, rep}); err != nil {
			fmt.Fprintf(stderr, "interlock-verify: %v\n", err)
			return exitIOErr
		}
	} else {
		rep.WriteText(stdout, path)
	}
	if !rep.OK {
		return exitFailed
	}
	return exitOK
}

// readable tells a missing file (66) from one that cannot be read (74).
func readable(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return exitNoInput, err
		}
		return exitIOErr, err
	}
	f.Close()
	return exitOK, nil
}

func printReport(w io.Writer, path string, rep evidence.BundleReport) {
	if !rep.OK {
		where := ""
		if rep.FirstBadSeq != 0 {
			where = fmt.Sprintf(" at seq %d", rep.FirstBadSeq)
		}
		if rep.File != "" {
			where += " in " + rep.File
		}
		fmt.Fprintf(w, "bundle %s: FAILED%s: %s\n", path, where, rep.Reason)
		return
	}
	fmt.Fprintf(w, "bundle %s: OK, journal %s, entries %d to %d (%d included, %d by hash), proven against the signed tree of %d entries\n",
		path, rep.JournalID, rep.FirstSeq, rep.LastSeq, rep.Counts.Entries, rep.Counts.Omitted, rep.TreeSize)
	if rep.KeyFromBundle {
		fmt.Fprintf(w, "  checked with the key inside the bundle (%s); pass --pubkey with the key you were given to check who signed\n", rep.Key)
	} else if rep.Sealed {
		fmt.Fprintf(w, "  signed by %s\n", rep.Key)
	} else {
		fmt.Fprintf(w, "  its checkpoints signed by %s; the bundle itself is unsealed\n", rep.Key)
	}
	fmt.Fprintf(w, "  %d payloads checked, %d deleted by retention; %d checkpoints\n", rep.Counts.Payloads, rep.Counts.PayloadsDeleted, rep.Counts.Checkpoints)
	for _, warn := range rep.Warnings {
		fmt.Fprintf(w, "  warning: %s\n", warn)
	}
}
