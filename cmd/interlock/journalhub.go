package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v3"
	"golang.org/x/mod/sumdb/note"

	"github.com/interlock/interlock/hub/hubapi"
	"github.com/interlock/interlock/hub/publish"
	"github.com/interlock/interlock/internal/textview"
	"github.com/interlock/interlock/journal/evidence"
)

// defaultHubBundleBytes bounds a fleet bundle downloaded by verify --hub
// (compressed): the verifier holds the bundle in memory, so a larger
// fleet is verified a host at a time (--host, --from) or with a bound
// raised on purpose.
const defaultHubBundleBytes = 1 << 30

// hubStall is how long the download may go without a byte before it is
// given up: a large bundle takes as long as it takes, a dead hub does not.
const hubStall = 2 * time.Minute

// verifyHubFlags are journal verify's flags for --hub.
func verifyHubFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "hub", Usage: "download the fleet bundle from this fleet hub (https://HUB:PORT) and verify it; with --operator"},
		&cli.StringFlag{Name: "operator", Usage: "with --hub: the `DIR` that interlock hub operator --out wrote (operator.key, operator.crt, ca.crt)"},
		&cli.StringSliceFlag{Name: "host", Usage: "with --hub: only this host id (repeatable)"},
		&cli.Int64Flag{Name: "from", Usage: "with --hub and one --host: its entries from this seq"},
		&cli.StringFlag{Name: "save", Usage: "with --hub: keep the downloaded fleet bundle in this file (to verify again offline)"},
		&cli.Int64Flag{Name: "max-bytes", Value: defaultHubBundleBytes, Usage: "with --hub: refuse a bundle larger than this many (compressed) bytes"},
	}
}

// hubTrust is what a verify --hub report says of its roots of trust.
type hubTrust struct {
	// TrustOnFirstUse is set when the fleet key is the one the hub
	// served: the verification then shows the hub's answer is coherent,
	// not that it is the fleet an auditor pinned.
	TrustOnFirstUse bool `json:"trust_on_first_use"`
	// Unpinned names what the auditor did not bring.
	Unpinned []string `json:"unpinned,omitempty"`
	// BundleSHA256 is the SHA-256 of the bundle as downloaded.
	BundleSHA256 string `json:"bundle_sha256"`
}

// verifyHubAction is journal verify --hub: the fleet bundle the hub
// serves (GET /v1/fleet/bundle, with an operator's certificate, the hub
// trusted through the operator directory's ca.crt only), verified as
// --fleet-bundle verifies a file, against the pins given.
func verifyHubAction(ctx context.Context, cmd *cli.Command) error {
	for _, f := range []string{"fleet-bundle", "bundle", "journal", "pubkey", "checkpoint", "allow-unsealed", "require-signed"} {
		if cmd.IsSet(f) {
			return exitWith(exitUsage, fmt.Errorf("--%s is not for --hub", f))
		}
	}
	base := strings.TrimSuffix(cmd.String("hub"), "/")
	if u, err := url.Parse(base); err != nil || u.Scheme != "https" || u.Host == "" {
		return exitWith(exitUsage, fmt.Errorf("--hub %q: want https://HUB:PORT", base))
	}
	dir := cmd.String("operator")
	if dir == "" {
		return exitWith(exitUsage, errors.New("--hub needs --operator DIR: the operator certificate `interlock hub operator --out DIR` wrote on the hub"))
	}
	q := url.Values{}
	for _, h := range cmd.StringSlice("host") {
		q.Add(hubapi.QueryHost, h)
	}
	if from := cmd.Int64("from"); cmd.IsSet("from") {
		if from < 1 || len(cmd.StringSlice("host")) != 1 {
			return exitWith(exitUsage, errors.New("--from takes a seq from 1, with one --host"))
		}
		q.Set(hubapi.QueryFrom, strconv.FormatInt(from, 10))
	}
	maxBytes := cmd.Int64("max-bytes")
	if maxBytes < 1 {
		return exitWith(exitUsage, errors.New("--max-bytes must be positive"))
	}
	// The pins first: a missing file is found before the download.
	opts, err := fleetPins(cmd)
	if err != nil {
		return err
	}
	if opts.Pinned != nil {
		// Ask for the bundle against the pinned checkpoint, not the
		// newest: one signed between reading the bucket and this download
		// would otherwise state another tree than the pin.
		if n, ok := pinnedFleetSize(opts.Pinned.Note, opts.FleetKey); ok {
			q.Set(hubapi.QueryFleetSize, strconv.FormatInt(n, 10))
		}
	}
	hc, err := operatorClient(dir)
	if err != nil {
		return err
	}
	where := base + hubapi.PathFleetBundle
	if len(q) > 0 {
		where += "?" + q.Encode()
	}
	b, sum, err := downloadFleetBundle(ctx, hc, where, cmd.String("save"), maxBytes)
	if err != nil {
		return err
	}
	trust := hubTrust{BundleSHA256: sum}
	if opts.FleetKey == nil {
		trust.TrustOnFirstUse = true
		trust.Unpinned = append(trust.Unpinned, "fleet key")
		if opts.FleetKey, err = note.NewVerifier(strings.TrimSpace(b.FleetKey)); err != nil {
			return exitWith(exitFailed, fmt.Errorf("the fleet key the hub served does not parse: %w", err))
		}
	}
	if opts.HubKey == nil {
		trust.Unpinned = append(trust.Unpinned, "hub key")
	}
	if opts.Pinned == nil {
		trust.Unpinned = append(trust.Unpinned, "fleet checkpoint")
	}
	rep := evidence.VerifyFleetBundle(b, opts)
	if cmd.Bool("json") {
		if err := printJSON(struct {
			Hub string `json:"hub"`
			hubTrust
			evidence.FleetReport
		}{where, trust, rep}); err != nil {
			return err
		}
	} else {
		rep.WriteText(os.Stdout, where)
		fmt.Printf("  downloaded bundle sha256 %s\n", sum)
	}
	if len(trust.Unpinned) > 0 {
		out := os.Stdout
		if cmd.Bool("json") {
			out = os.Stderr // stdout is the JSON document
		}
		printHubTrust(out, trust, rep)
	}
	return fleetExit(rep)
}

// printHubTrust says which roots of trust the hub itself served, and how
// to pin them.
func printHubTrust(w io.Writer, trust hubTrust, rep evidence.FleetReport) {
	if trust.TrustOnFirstUse {
		fmt.Fprintln(w, "  WARNING: verified against the fleet key the hub itself served (trust on first use): this shows the hub's answer holds together, not that it is the fleet you know.")
		fmt.Fprintln(w, "    Pin the fleet key with --fleet-key FILE (fleet.pub from a host's enrolment, or `interlock hub export --fleet-key-out`).")
	}
	for _, u := range trust.Unpinned {
		switch u {
		case "fleet checkpoint":
			obj := "fleet/checkpoints/<size, 20 digits>"
			if rep.FleetSize > 0 {
				obj = publish.CheckpointObject(rep.FleetSize)
			}
			fmt.Fprintf(w, "  The fleet checkpoint is the hub's: pin the copy under object lock in the bucket with --fleet-checkpoint FILE (object %s).\n", obj)
		case "hub key":
			fmt.Fprintln(w, "  The hub's cosignature key is the bundle's, vouched for by the fleet log; pin it with --hub-key FILE (hub.pub from a host's enrolment) to hold the hub to it.")
		}
	}
}

// downloadFleetBundle fetches the bundle at where into save (a temporary
// file when empty), at most maxBytes, and reads it. It returns the
// bundle and the SHA-256 of the bytes downloaded.
func downloadFleetBundle(ctx context.Context, hc *http.Client, where, save string, maxBytes int64) (*evidence.FleetBundle, string, error) {
	// The client's overall timeout would cut a large bundle; a stall
	// is what ends the download instead.
	hc.Timeout = 0
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stall := time.AfterFunc(hubStall, func() { cancel(fmt.Errorf("the hub sent nothing for %s", hubStall)) })
	defer stall.Stop()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, where, nil)
	if err != nil {
		return nil, "", exitWith(exitUsage, fmt.Errorf("--hub: %w", err))
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, "", exitWith(exitUnavailable, fmt.Errorf("download the fleet bundle: %w", causeOr(ctx, err)))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		var ref hubapi.Refusal
		if json.Unmarshal(body, &ref) == nil && ref.Code != "" {
			return nil, "", exitWith(exitUnavailable, fmt.Errorf("the hub refused the fleet bundle (%s, %d): %s", ref.Code, resp.StatusCode, textview.Escape(ref.Message)))
		}
		return nil, "", exitWith(exitUnavailable, fmt.Errorf("the hub answered the fleet bundle with %s", resp.Status))
	}
	var f *os.File
	if save != "" {
		f, err = os.OpenFile(save, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o640)
	} else {
		f, err = os.CreateTemp("", "interlock-fleet-*.bundle")
		if err == nil {
			defer os.Remove(f.Name())
		}
	}
	if err != nil {
		return nil, "", exitWith(exitIOErr, fmt.Errorf("the fleet bundle's file: %w", err))
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(stallReader{resp.Body, stall}, maxBytes+1))
	switch {
	case err != nil:
		return nil, "", exitWith(exitUnavailable, fmt.Errorf("download the fleet bundle (%d bytes in): %w", n, causeOr(ctx, err)))
	case n > maxBytes:
		return nil, "", exitWith(exitUnavailable, fmt.Errorf("the fleet bundle is larger than --max-bytes %d: raise it, or verify fewer hosts (--host, --from)", maxBytes))
	}
	// The hub names a failure after its first byte in a trailer, which
	// is there once the body was read to its end.
	if e := resp.Trailer.Get(hubapi.TrailerExportError); e != "" {
		return nil, "", exitWith(exitUnavailable, fmt.Errorf("the hub cut the fleet bundle short: %s", textview.Escape(e)))
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, "", exitWith(exitIOErr, err)
	}
	b, err := evidence.ReadFleetBundle(f)
	if err != nil {
		return nil, "", exitWith(exitIOErr, fmt.Errorf("the fleet bundle the hub served (%d bytes): %w", n, err))
	}
	return b, hex.EncodeToString(h.Sum(nil)), nil
}

// stallReader restarts the stall timer with every read that brings
// bytes.
type stallReader struct {
	r     io.Reader
	stall *time.Timer
}

func (s stallReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if n > 0 {
		s.stall.Reset(hubStall)
	}
	return n, err
}

// causeOr is ctx's cause when it ended (the stall), err otherwise.
func causeOr(ctx context.Context, err error) error {
	if c := context.Cause(ctx); c != nil {
		return c
	}
	return err
}

// pinnedFleetSize is the size of the tree a pinned fleet checkpoint
// states, to ask the hub for the bundle against it. With the fleet key
// it is read from the verified note; without (trust on first use) from
// its text alone: only a hint of which bundle to download, since the
// verifier then checks the pin against the bundle's fleet key and tree.
// ok is false when there is no size to read: the hub then serves its
// newest, and the verifier says why the pin does not hold.
func pinnedFleetSize(msg []byte, fleetKey note.Verifier) (int64, bool) {
	if fleetKey != nil {
		cp, err := evidence.ParseFleetCheckpoint(msg, fleetKey)
		return cp.Size, err == nil && cp.Size > 0
	}
	lines := strings.SplitN(string(msg), "\n", 3)
	if len(lines) < 3 {
		return 0, false
	}
	n, err := strconv.ParseInt(lines[1], 10, 64)
	return n, err == nil && n > 0
}
