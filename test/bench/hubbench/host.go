package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/journal"
	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/ship"
)

// host is one journal, as the daemon opens it, and, once enrolled, the
// real shipper shipping it to the hub.
type host struct {
	name    string
	j       *journal.Journal
	signer  *journal.Signer
	shipper *ship.Shipper
	stop    func()
}

func openHost(ctx context.Context, dir, name string) (*host, error) {
	jdir := filepath.Join(dir, name)
	j, err := journal.Open(ctx, journal.Options{Path: filepath.Join(jdir, "journal.db"), Logger: quiet()})
	if err != nil {
		return nil, fmt.Errorf("journal %s: %w", name, err)
	}
	s, err := journal.LoadSigner(filepath.Join(jdir, journal.KeyFile))
	if err != nil {
		j.Close()
		return nil, fmt.Errorf("journal %s key: %w", name, err)
	}
	return &host{name: name, j: j, signer: s, stop: func() {}}, nil
}

// shipDefaults is the ship section with nothing but the hub set.
var shipDefaults = config.ShipConfig{HubURL: "https://hub"}.Resolve()

var (
	shipInterval = shipDefaults.Interval
	batchEntries = shipDefaults.BatchEntries
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// enrol joins the host with a fresh token, pinning the hub's CA as
// `interlock hub join --ca-sha256` does, and makes its shipper with the
// ship section's defaults (batch_entries, batch_bytes, interval), as the
// daemon would with only ship.hub_url set. start starts it.
func (h *host) enrol(ctx context.Context, e *env) error {
	tok, pin, err := e.token()
	if err != nil {
		return err
	}
	st, err := ship.Join(ctx, ship.JoinOptions{URL: e.url, Token: tok, HostName: h.name, JournalID: h.j.ID(),
		JournalKey: h.signer.VerifierKey, CASHA256: pin}, filepath.Join(filepath.Dir(h.j.Path()), "ship"))
	if err != nil {
		return fmt.Errorf("%s: join: %w", h.name, err)
	}
	client, err := ship.NewClient(e.url, st)
	if err != nil {
		return err
	}
	sc := shipDefaults
	sc.HubURL = e.url
	// Warnings only: a failed batch is logged (and counted) but the
	// figures must not drown in it.
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	h.shipper, err = ship.New(ship.Options{Journal: h.j, HostKey: h.signer.Verifier(), State: st, Client: client, Config: sc,
		Logger: log.With("host", h.name)})
	return err
}

func (h *host) start(ctx context.Context) {
	sctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { h.shipper.Run(sctx) })
	h.stop = func() { cancel(); wg.Wait() }
}

func (h *host) close() {
	h.stop()
	h.j.Close()
}

// head is the journal's last seq: the writers' entries and the
// shipper's hub.cosignature entries alike.
func (h *host) head() int64 { return int64(h.j.Stats().LastSeq) }

// cosigned is the size of the newest checkpoint the hub cosigned and the
// shipper verified.
func (h *host) cosigned() int64 { return h.shipper.Status().CosignedSize }

// errors is the shipper's failed attempts, by code.
func (h *host) errors() map[string]uint64 {
	if h.shipper == nil {
		return nil
	}
	return h.shipper.Status().Errors
}

// waitCosigned waits until the hub has cosigned the journal up to size.
func (h *host) waitCosigned(ctx context.Context, e *env, size int64, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for h.cosigned() < size {
		if err := e.alive(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: the hub cosigned %d of %d entries in %s (shipper errors %v)", h.name, h.cosigned(), size, limit, h.errors())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

// statement is what the writers append: the ~400-byte pg.statement
// journalbench's durable runs write.
func statement(i int) model.Record {
	return model.Record{Kind: model.KindPGStatement, Session: "0198c1a4-6a7e-7b3c-9d2e-5f4a3b2c1d0e", Data: model.PGStatement{
		SQL: "SELECT id, name, email FROM accounts WHERE id = $1", Protocol: "extended", Kinds: []string{"select"}, Tables: []string{"accounts"},
		ReadOnly: true, Decision: model.Decision{Action: model.Allow, Rule: "ci-read"}, Params: []model.PGParam{{Type: "int4", Format: "text"}},
		StartNS: int64(i),
	}}
}

// appendFor runs writers goroutines doing Synced appends for d, calling
// tick with the appends so far every 50 ms meanwhile; it returns how many
// appends returned.
func (h *host) appendFor(ctx context.Context, writers int, d time.Duration, tick func(appended int64)) (int64, error) {
	var n atomic.Int64
	var failed atomic.Value
	var wg sync.WaitGroup
	stop := time.Now().Add(d)
	for range writers {
		wg.Go(func() {
			for i := 0; time.Now().Before(stop) && ctx.Err() == nil; i++ {
				if _, err := h.j.Append(ctx, statement(i), model.Synced); err != nil {
					failed.Store(err)
					return
				}
				n.Add(1)
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-done:
			if err, _ := failed.Load().(error); err != nil {
				return n.Load(), fmt.Errorf("%s: append: %w", h.name, err)
			}
			return n.Load(), ctx.Err()
		case <-t.C:
			if tick != nil {
				tick(n.Load())
			}
		}
	}
}
