package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/urfave/cli/v3"
	"golang.org/x/mod/sumdb/note"

	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/engine"
	"github.com/interlock/interlock/journal"
	"github.com/interlock/interlock/ship"
)

// hubJoinCommand enrols this host with a fleet hub (docs/hub.md). The
// hub's own commands (serve, token) join it under `interlock hub`.
func hubJoinCommand() *cli.Command {
	return &cli.Command{
		Name:      "join",
		Usage:     "enrol this host with a fleet hub, to ship its journal there",
		ArgsUsage: "URL",
		Description: "Sends the hub a join token, this host's journal id and journal key, and a request for a\n" +
			"TLS client certificate, over TLS that verifies the hub with --ca FILE or by the CA\n" +
			"fingerprint `interlock hub token create` printed (--ca-sha256). Keeps what the hub\n" +
			"answers (host id, client key and certificate, the hub's CA, cosignature and fleet keys)\n" +
			"in ship.state_dir, and prints the host id. Then set ship.hub_url and restart the daemon.",
		Flags: []cli.Flag{
			configFlag(),
			&cli.StringFlag{Name: "token", Usage: "the join token", Required: true},
			&cli.StringFlag{Name: "ca", Usage: "PEM file of the CA that issued the hub's certificate"},
			&cli.StringFlag{Name: "ca-sha256", Usage: "hex SHA-256 of the hub's CA certificate, as 'interlock hub token create' printed it"},
			&cli.StringFlag{Name: "name", Usage: "this host's name at the hub (default: the host name)"},
			&cli.BoolFlag{Name: "force", Usage: "replace an existing enrolment"},
		},
		Action: hubJoinAction,
	}
}

func hubJoinAction(ctx context.Context, cmd *cli.Command) error {
	if cmd.Args().Len() != 1 {
		return exitWith(exitUsage, errors.New("hub join takes the hub's URL: interlock hub join https://HUB:PORT --token T"))
	}
	cfg, err := loadConfig(cmd)
	if err != nil {
		return err
	}
	sc := cfg.Ship.Resolve()
	if _, err := os.Stat(filepath.Join(sc.StateDir, ship.HostIDFile)); err == nil && !cmd.Bool("force") {
		return exitWith(exitUsage, fmt.Errorf("this host is already enrolled (%s); --force replaces the enrolment", sc.StateDir))
	}
	snap, err := journal.OpenSnapshot(ctx, cfg.Journal.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return exitWith(exitNoInput, fmt.Errorf("no journal at %s yet: start the daemon once, so that the journal and its key exist", cfg.Journal.Path))
	}
	if err != nil {
		return exitWith(exitIOErr, err)
	}
	journalID := snap.JournalID
	snap.Close()
	pub, err := os.ReadFile(filepath.Join(cfg.StateDir, journal.PublicKeyFile))
	if err != nil {
		return exitWith(exitNoInput, fmt.Errorf("journal key: %w", err))
	}
	o := ship.JoinOptions{URL: cmd.Args().First(), Token: cmd.String("token"), HostName: cmd.String("name"),
		JournalID: journalID, JournalKey: strings.TrimSpace(string(pub)), CASHA256: cmd.String("ca-sha256")}
	if f := cmd.String("ca"); f != "" {
		if o.CAPEM, err = os.ReadFile(f); err != nil {
			return exitWith(exitNoInput, fmt.Errorf("--ca: %w", err))
		}
	}
	if o.HostName == "" {
		if o.HostName, err = os.Hostname(); err != nil {
			return exitWith(exitOSErr, fmt.Errorf("host name: %w (give --name)", err))
		}
	}
	st, err := ship.Join(ctx, o, sc.StateDir)
	if err != nil {
		return exitWith(exitUnavailable, err)
	}
	if err := st.Save(); err != nil {
		return exitWith(exitIOErr, err)
	}
	fmt.Println(st.HostID)
	if cfg.Ship.HubURL != strings.TrimSuffix(o.URL, "/") {
		fmt.Fprintf(os.Stderr, "enrolled in %s; set ship.hub_url: %s in %s and restart the daemon to ship the journal\n",
			sc.StateDir, o.URL, configName(cfg))
	}
	return nil
}

// startShipper starts shipping the journal when ship.hub_url is set; stop
// ends it and waits. Without an enrolment it logs why and ships nothing:
// the host keeps intercepting and its own journal, and retention holds
// what is not cosigned (doctor says so too).
func startShipper(cfg *config.Config, eng *engine.Engine, log *slog.Logger) (stop func()) {
	if !cfg.Ship.Enabled() {
		return func() {}
	}
	sc := cfg.Ship.Resolve()
	sh, err := newShipper(cfg, sc, eng, log)
	if err != nil {
		log.Error("not shipping the journal to the hub", "hub", sc.HubURL, "err", err)
		return func() {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		sh.Run(ctx)
	}()
	startHubApprovals(ctx, sc, eng, &wg, log)
	log.Info("shipping the journal to the hub", "hub", sc.HubURL, "state_dir", sc.StateDir)
	return func() {
		cancel()
		wg.Wait()
	}
}

func newShipper(cfg *config.Config, sc config.Ship, eng *engine.Engine, log *slog.Logger) (*ship.Shipper, error) {
	st, err := ship.LoadState(sc.StateDir)
	if err != nil {
		return nil, err
	}
	pub, err := os.ReadFile(filepath.Join(cfg.StateDir, journal.PublicKeyFile))
	if err != nil {
		return nil, fmt.Errorf("journal key: %w", err)
	}
	hostKey, err := note.NewVerifier(strings.TrimSpace(string(pub)))
	if err != nil {
		return nil, fmt.Errorf("journal key %s: %w", journal.PublicKeyFile, err)
	}
	client, err := ship.NewClient(sc.HubURL, st)
	if err != nil {
		return nil, err
	}
	return ship.New(ship.Options{Journal: eng.Journal(), HostKey: hostKey, State: st, Client: client,
		Config: sc, Metrics: eng.Metrics(), Logger: log})
}

// shipCheck is doctor's line on shipping: the enrolment, and how far the
// hub's journaled cosignatures are behind the journal.
func shipCheck(ctx context.Context, cfg *config.Config) check {
	const name = "ship"
	if !cfg.Ship.Enabled() {
		return check{Name: name, Status: "ok", Detail: "not configured (ship.hub_url): the journal stays on this host only"}
	}
	sc := cfg.Ship.Resolve()
	if _, err := ship.LoadState(sc.StateDir); err != nil {
		return check{Name: name, Status: "fail", Detail: strings.TrimPrefix(err.Error(), "ship: "),
			Fix: "enrol: interlock hub join " + sc.HubURL + " --token T --ca-sha256 HEX (from `interlock hub token create` on the hub)"}
	}
	st, err := journal.ReadShipState(ctx, cfg.Journal.Path)
	if err != nil {
		return check{Name: name, Status: "warn", Detail: "enrolled with " + sc.HubURL + "; the journal cannot be read: " + err.Error()}
	}
	if st.Cosigned.Size == 0 {
		return check{Name: name, Status: "warn", Detail: fmt.Sprintf("enrolled with %s; the hub has cosigned nothing yet: %d entries behind", sc.HubURL, st.Behind),
			Fix: "is the daemon running and the hub reachable? see its log and interlock_ship_errors_total"}
	}
	at := time.Unix(0, st.Cosigned.CosignedNS)
	detail := fmt.Sprintf("%s cosigned entries 1..%d at %s; %d entries behind (head %d)",
		sc.HubURL, st.Cosigned.Size, at.UTC().Format(time.RFC3339), st.Behind, st.Head)
	if st.Behind > 0 && time.Since(at) > 10*time.Minute {
		return check{Name: name, Status: "warn", Detail: detail,
			Fix: "the hub has cosigned nothing for " + time.Since(at).Round(time.Minute).String() + ": see the daemon's log and interlock_ship_errors_total; retention holds what is behind"}
	}
	return check{Name: name, Status: "ok", Detail: detail}
}
