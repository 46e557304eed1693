package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v3"
	"golang.org/x/mod/sumdb/note"

	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/hub/publish"
	"github.com/interlock/interlock/hub/server"
	"github.com/interlock/interlock/hub/store"
	"github.com/interlock/interlock/internal/atomicfile"
	"github.com/interlock/interlock/internal/textview"
	"github.com/interlock/interlock/journal/evidence"
)

func hubCommand() *cli.Command {
	return &cli.Command{
		Name:  "hub",
		Usage: "run and manage the fleet hub that hosts ship their journals to, and enrol this host with one",
		Description: "The hub (docs/hub.md) keeps every enrolled host's journal in PostgreSQL, accepts\n" +
			"only batches that continue what it holds and match the host's signed checkpoint,\n" +
			"cosigns each accepted checkpoint, and signs fleet checkpoints over all of them.\n" +
			"Its settings are the hub section of the config file (docs/config.md).",
		Commands: []*cli.Command{
			hubJoinCommand(),
			{
				Name:  "serve",
				Usage: "serve the hub (as its systemd unit does)",
				Description: "Creates the hub's keys and CA in hub.state_dir at first start, brings the\n" +
					"database's schema up to date, and serves HTTPS with mutual TLS on hub.listen.",
				Flags:  []cli.Flag{configFlag()},
				Action: hubServe,
			},
			{
				Name:  "token",
				Usage: "join tokens for enrolling hosts",
				Commands: []*cli.Command{{
					Name:  "create",
					Usage: "make a one-time join token and print it with the hub CA's fingerprint",
					Description: "The token enrols one host (interlock hub join on the host) within its lifetime.\n" +
						"The hub keeps only its hash. The fingerprint lets the host pin the hub's CA.",
					Flags: []cli.Flag{configFlag(),
						&cli.DurationFlag{Name: "ttl", Usage: "how long the token is valid (default hub.token_ttl)"},
						&cli.BoolFlag{Name: "json", Usage: "print JSON"}},
					Action: hubTokenCreate,
				}},
			},
			{
				Name:   "hosts",
				Usage:  "list the enrolled hosts and how far each has shipped",
				Flags:  []cli.Flag{configFlag(), &cli.BoolFlag{Name: "json", Usage: "print JSON"}},
				Action: hubHosts,
			},
			{
				Name:  "export",
				Usage: "write a fleet bundle that verifies offline against the fleet key",
				Description: "Writes the fleet bundle (docs/hub.md) of every host, or of --host, against the\n" +
					"newest fleet checkpoint the hub signed. Verify it with\n" +
					"  interlock journal verify --fleet-bundle FILE --fleet-key fleet.pub\n" +
					"Exits 0 once written: the bundle is copied as stored, unchecked.",
				Flags: []cli.Flag{configFlag(),
					&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Usage: "the bundle file to write", Required: true},
					&cli.StringSliceFlag{Name: "host", Usage: "export only this host id (repeatable)"},
					&cli.Int64Flag{Name: "from", Usage: "with one --host: its entries from this seq (the bundle carries the tree before it)"},
					&cli.Int64Flag{Name: "fleet-size", Usage: "against the fleet checkpoint of this size (one the hub signed, e.g. the bucket's copy an auditor pinned) instead of the newest"},
					&cli.StringFlag{Name: "fleet-key-out", Usage: "also write the fleet key (the verifier key auditors pin) to this file"}},
				Action: hubExport,
			},
			{
				Name:  "operator",
				Usage: "issue an operator's client certificate (for searching sessions and verifying the fleet)",
				Description: "Writes operator.key, operator.crt and the hub's ca.crt into --out: the\n" +
					"certificate the hub's sessions search and fleet bundle download ask for (sessions list --hub,\n" +
					"journal verify --hub). Hosts cannot obtain one.",
				Flags: []cli.Flag{configFlag(),
					&cli.StringFlag{Name: "name", Usage: "who the certificate is for", Required: true},
					&cli.StringFlag{Name: "out", Usage: "directory to write the key and certificates to", Required: true},
					&cli.DurationFlag{Name: "lifetime", Value: 90 * 24 * time.Hour, Usage: "how long the certificate is valid"}},
				Action: hubOperator,
			},
		},
	}
}

// hubDatabase resolves hub.database: a connection string, or the file
// holding one.
func hubDatabase(cfg *config.Config) (string, error) {
	if err := cfg.ValidateHubServe(); err != nil {
		return "", exitWith(exitConfig, err)
	}
	db := cfg.Hub.Database
	if !strings.HasPrefix(db, "/") {
		return db, nil
	}
	b, err := os.ReadFile(db)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", exitWith(exitNoInput, fmt.Errorf("hub.database: %w", err))
	case errors.Is(err, fs.ErrPermission):
		return "", exitWith(exitNoPerm, fmt.Errorf("hub.database: %w", err))
	case err != nil:
		return "", exitWith(exitIOErr, fmt.Errorf("hub.database: %w", err))
	}
	return strings.TrimSpace(string(b)), nil
}

// openHub loads the config, the hub's keys and its store.
func openHub(ctx context.Context, cmd *cli.Command) (*config.Config, *server.Keys, *store.Store, error) {
	cfg, err := loadConfig(cmd)
	if err != nil {
		return nil, nil, nil, err
	}
	conn, err := hubDatabase(cfg)
	if err != nil {
		return nil, nil, nil, err
	}
	keys, err := server.LoadOrCreateKeys(cfg.Hub.StateDir)
	if err != nil {
		if errors.Is(err, fs.ErrPermission) {
			return nil, nil, nil, exitWith(exitNoPerm, err)
		}
		return nil, nil, nil, exitWith(exitIOErr, err)
	}
	st, err := store.Open(ctx, conn)
	if err != nil {
		return nil, nil, nil, exitWith(exitUnavailable, err)
	}
	return cfg, keys, st, nil
}

func hubServe(ctx context.Context, cmd *cli.Command) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	cfg, keys, st, err := openHub(ctx, cmd)
	if err != nil {
		return err
	}
	defer st.Close()
	log := newLogger(cfg, slog.LevelDebug-4)
	opts := server.Options{
		Store: st, Keys: keys, Names: cfg.Hub.TLS.Names,
		MaxBatchEntries: cfg.Hub.MaxBatchEntries, MaxBatchBytes: cfg.Hub.MaxBatchBytes,
		FleetInterval: time.Duration(cfg.Hub.FleetInterval), Logger: log,
	}
	if cfg.Hub.TLS.Cert != "" {
		c, err := tls.LoadX509KeyPair(cfg.Hub.TLS.Cert, cfg.Hub.TLS.Key)
		if err != nil {
			return exitWith(exitConfig, cfg.Errorf("hub.tls.cert", "%v", err))
		}
		opts.Cert = &c
	}
	if len(opts.Names) == 0 {
		opts.Names = []string{"localhost", "127.0.0.1", "::1"}
		if h, err := os.Hostname(); err == nil && h != "" {
			opts.Names = append(opts.Names, h)
		}
	}
	if cfg.Hub.Publish.Enabled() {
		po, err := publish.FromConfig(cfg.Hub.Publish)
		if err != nil {
			return exitWith(exitConfig, err)
		}
		p, err := publish.New(ctx, po)
		if err != nil {
			// A bucket without object lock would keep nothing safe: no
			// start rather than checkpoints that prove nothing.
			return exitWith(exitUnavailable, err)
		}
		fv, err := note.NewVerifier(keys.FleetKey)
		if err != nil {
			return exitWith(exitSoftware, err)
		}
		opts.Publisher = fleetPublisher{p: p, fleetKey: fv}
	}
	con, err := hubConsole(cfg, st, keys, log)
	if err != nil {
		return err
	}
	if con != nil {
		opts.Console = con.Handler()
		// The console's session cookie signs people in to the approver
		// API too, before a bearer token is looked for.
		opts.Authenticators = append(opts.Authenticators, consoleAuth{con})
	}
	if o := cfg.Hub.OIDC; o.Enabled() {
		bearer, err := server.NewOIDCBearer(ctx, server.OIDCConfig{Issuer: o.Issuer, ClientID: o.ClientID,
			UsernameClaim: o.UsernameClaim, GroupsClaim: o.GroupsClaim, Roles: o.Roles.Map()})
		if err != nil {
			return exitWith(exitConfig, cfg.Errorf("hub.oidc", "%v", err))
		}
		opts.Authenticators = append(opts.Authenticators, bearer)
	}
	srv, err := server.New(opts)
	if err != nil {
		return exitWith(exitSoftware, err)
	}
	if con != nil {
		con.UseApprovals(consoleApprovals{srv})
	}
	ln, err := net.Listen("tcp", cfg.Hub.Listen)
	if err != nil {
		return exitWith(exitOSErr, cfg.Errorf("hub.listen", "%v", err))
	}
	log.Info("hub: serving", "listen", ln.Addr().String(), "hub_id", keys.HubID, "ca_sha256", keys.CAFingerprint(),
		"cosigner_key", keys.CosignerKey, "fleet_key", keys.FleetKey)
	return srv.Serve(ctx, ln)
}

// fleetPublisher hands the server's fleet checkpoints to the S3
// publisher, which takes them parsed.
type fleetPublisher struct {
	p        *publish.Publisher
	fleetKey note.Verifier
}

func (f fleetPublisher) Publish(ctx context.Context, size int64, n []byte) error {
	cp, err := evidence.ParseFleetCheckpoint(n, f.fleetKey)
	if err != nil {
		return fmt.Errorf("hub: fleet checkpoint %d: %w", size, err)
	}
	if cp.Size != size {
		return fmt.Errorf("hub: fleet checkpoint stored as size %d is of size %d", size, cp.Size)
	}
	return f.p.Publish(ctx, cp)
}

func hubExport(ctx context.Context, cmd *cli.Command) error {
	_, keys, st, err := openHub(ctx, cmd)
	if err != nil {
		return err
	}
	defer st.Close()
	plan, err := server.PlanExport(ctx, st, keys, server.ExportOptions{Hosts: cmd.StringSlice("host"), From: cmd.Int64("from"), FleetSize: cmd.Int64("fleet-size")})
	switch {
	case errors.Is(err, server.ErrExportRange):
		return exitWith(exitUsage, err)
	case errors.Is(err, store.ErrNoFleetCheckpoint), errors.Is(err, store.ErrNoSuchFleetCheckpoint), errors.Is(err, store.ErrNoHost),
		errors.Is(err, server.ErrNothingToExport):
		return exitWith(exitFailed, err)
	case err != nil:
		return exitWith(exitUnavailable, err)
	}
	// Streamed to the file: the whole fleet's entries need not fit in
	// memory.
	if err := atomicfile.WriteFrom(cmd.String("out"), 0o640, func(w io.Writer) error {
		return plan.WriteTo(ctx, w, nil)
	}); err != nil {
		return exitWith(exitIOErr, err)
	}
	if p := cmd.String("fleet-key-out"); p != "" {
		if err := atomicfile.Write(p, []byte(keys.FleetKey+"\n"), 0o644); err != nil {
			return exitWith(exitIOErr, err)
		}
	}
	fmt.Printf("fleet bundle of %d hosts, %d entries, in %s\n", plan.Hosts(), plan.Entries(), cmd.String("out"))
	return nil
}

// tokenOut is what `hub token create --json` prints.
type tokenOut struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
	// CASHA256 is the hub CA's certificate fingerprint, which a joining
	// host pins.
	CASHA256 string `json:"ca_sha256"`
}

func hubTokenCreate(ctx context.Context, cmd *cli.Command) error {
	cfg, keys, st, err := openHub(ctx, cmd)
	if err != nil {
		return err
	}
	defer st.Close()
	ttl := time.Duration(cfg.Hub.TokenTTL)
	if cmd.IsSet("ttl") {
		ttl = cmd.Duration("ttl")
	}
	if ttl < time.Minute || ttl > 30*24*time.Hour {
		return exitWith(exitUsage, fmt.Errorf("--ttl %s is out of range; give 1m to 720h", ttl))
	}
	out := tokenOut{Token: server.NewToken(), ExpiresAt: time.Now().Add(ttl).UTC().Truncate(time.Second), CASHA256: keys.CAFingerprint()}
	if err := st.AddToken(ctx, server.HashToken(out.Token), out.ExpiresAt); err != nil {
		return exitWith(exitUnavailable, err)
	}
	if cmd.Bool("json") {
		return printJSON(out)
	}
	fmt.Printf("token:      %s\nexpires:    %s\nca sha256:  %s\n", out.Token, out.ExpiresAt.Format(time.RFC3339), out.CASHA256)
	return nil
}

func hubHosts(ctx context.Context, cmd *cli.Command) error {
	_, _, st, err := openHub(ctx, cmd)
	if err != nil {
		return err
	}
	defer st.Close()
	hosts, err := st.Hosts(ctx)
	if err != nil {
		return exitWith(exitUnavailable, err)
	}
	if cmd.Bool("json") {
		return printJSON(hosts)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tNAME\tJOURNAL\tENTRIES\tCOSIGNED\tLAST BATCH\tENROLLED")
	for _, h := range hosts {
		last := "never"
		if !h.LastBatchAt.IsZero() {
			last = h.LastBatchAt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%s\n", h.ID, textview.Escape(h.Name), h.JournalID, h.Size, h.CosignedSize,
			last, h.EnrolledAt.UTC().Format(time.RFC3339))
	}
	return tw.Flush()
}

func hubOperator(ctx context.Context, cmd *cli.Command) error {
	cfg, err := loadConfig(cmd)
	if err != nil {
		return err
	}
	keys, err := server.LoadOrCreateKeys(cfg.Hub.StateDir)
	if err != nil {
		return exitWith(exitIOErr, err)
	}
	name := cmd.String("name")
	if name == "" || len(name) > 64 || textview.Escape(name) != name {
		return exitWith(exitUsage, errors.New("--name: want 1 to 64 printable characters"))
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return exitWith(exitSoftware, err)
	}
	certPEM, fp, err := keys.IssueOperator(key.Public(), name, cmd.Duration("lifetime"))
	if err != nil {
		return exitWith(exitSoftware, err)
	}
	kd, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return exitWith(exitSoftware, err)
	}
	out := cmd.String("out")
	if err := os.MkdirAll(out, 0o700); err != nil {
		return exitWith(exitIOErr, err)
	}
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{"operator.key", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}), 0o600},
		{"operator.crt", certPEM, 0o644},
		{"ca.crt", keys.CAPEM, 0o644},
	} {
		if err := atomicfile.Write(filepath.Join(out, f.name), f.data, f.mode); err != nil {
			return exitWith(exitIOErr, err)
		}
	}
	fmt.Printf("operator certificate for %s (sha256 %s) in %s\n", name, fp, out)
	return nil
}
