// Package ship is the host side of the fleet hub (docs/hub.md): it enrols
// the host with a hub, then ships the local journal's entries to it in
// order, each batch with a checkpoint the journal signed for the batch's
// end, and journals the hub's cosignature of each as a hub.cosignature
// entry.
package ship

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/mod/sumdb/note"

	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/hub/hubapi"
	"github.com/interlock/interlock/journal"
	"github.com/interlock/interlock/journal/evidence"
	"github.com/interlock/interlock/metrics"
	"github.com/interlock/interlock/model"
)

// Error codes of interlock_ship_errors_total besides the hub's refusal
// codes (hubapi.Code*).
const (
	// CodeUnreachable: no answer from the hub (network, TLS, timeout).
	CodeUnreachable = "unreachable"
	// CodeHTTP: an error answer that is not a refusal of the hub's API.
	CodeHTTP = "http"
	// CodeBadCosignature: the hub answered with a cosignature that does
	// not verify with its enrolled key, or not of the batch's checkpoint.
	CodeBadCosignature = "bad_cosignature"
	// CodeHubAhead: the hub holds more entries than this journal has (the
	// journal was replaced or rolled back): nothing can be shipped.
	CodeHubAhead = "hub_ahead"
	// CodeJournal: the local journal could not be read or written.
	CodeJournal = "journal"
)

// Options configure a Shipper.
type Options struct {
	Journal *journal.Journal
	// HostKey verifies the journal's own checkpoints (journal.pub).
	HostKey note.Verifier
	State   *State
	Client  *Client
	Config  config.Ship
	// Metrics, when set, gets the interlock_ship_* series.
	Metrics *metrics.Metrics
	Logger  *slog.Logger
}

// Shipper ships one journal to one hub. Run owns the shipping; the
// counters are atomics that gauges and Status read from other goroutines.
type Shipper struct {
	opts   Options
	cfg    config.Ship
	log    *slog.Logger
	hubKey note.Verifier

	hubSize, cosigned, localHead atomic.Int64
	lastSuccess                  atomic.Int64 // unix ns; 0 before the first
	errMu                        sync.Mutex
	errs                         map[string]uint64
	errVec                       *prometheus.CounterVec
}

// New checks opts and registers the metrics.
func New(opts Options) (*Shipper, error) {
	if opts.Journal == nil || opts.HostKey == nil || opts.State == nil || opts.Client == nil {
		return nil, errors.New("ship: a journal, its key, an enrolment and a client are required")
	}
	hubKey, err := opts.State.HubVerifier()
	if err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Shipper{opts: opts, cfg: opts.Config, hubKey: hubKey, errs: map[string]uint64{},
		log: opts.Logger.With("component", "ship", "hub", opts.Config.HubURL, "host_id", opts.State.HostID)}
	if s.cfg.BatchEntries < 1 {
		s.cfg.BatchEntries = 1
	}
	if m := opts.Metrics; m != nil {
		m.AddGauge("ship_behind_entries", "Journal entries the fleet hub does not hold yet.",
			func() float64 { return float64(max(0, s.localHead.Load()-s.hubSize.Load())) })
		m.AddGauge("ship_cosigned_size", "Tree size of the newest checkpoint the fleet hub cosigned.",
			func() float64 { return float64(s.cosigned.Load()) })
		m.AddGauge("ship_last_success_timestamp_seconds", "When the fleet hub last accepted a batch (Unix seconds; 0: not yet).",
			func() float64 { return float64(s.lastSuccess.Load()) / 1e9 })
		s.errVec = m.AddCounterVec("ship_errors_total", "Failed shipping attempts, by code: the hub's refusal codes, "+
			"unreachable, http, bad_cosignature, hub_ahead, journal. Every one is retried; nothing is dropped.", "code")
	}
	return s, nil
}

// Status is the shipper's view, for tests and the daemon's log.
type Status struct {
	// HubSize is what the hub holds, CosignedSize its newest cosignature,
	// LocalHead the journal's head when last read.
	HubSize, CosignedSize, LocalHead int64
	LastSuccess                      time.Time
	// Errors counts failed attempts by code.
	Errors map[string]uint64
}

// Status returns the current counters.
func (s *Shipper) Status() Status {
	st := Status{HubSize: s.hubSize.Load(), CosignedSize: s.cosigned.Load(), LocalHead: s.localHead.Load(), Errors: map[string]uint64{}}
	if ns := s.lastSuccess.Load(); ns != 0 {
		st.LastSuccess = time.Unix(0, ns)
	}
	s.errMu.Lock()
	for k, v := range s.errs {
		st.Errors[k] = v
	}
	s.errMu.Unlock()
	return st
}

// Run ships until ctx ends. It never gives up and never skips: after a
// refusal or while the hub is unreachable it waits (doubling from
// retry_min to retry_max, with jitter) and tries the same entries again,
// starting from what the hub says it holds.
func (s *Shipper) Run(ctx context.Context) {
	var head *hubapi.Head
	failures := 0
	for ctx.Err() == nil {
		shipped, next, err := s.step(ctx, head)
		var wait time.Duration
		switch {
		case ctx.Err() != nil:
			return
		case err == nil:
			head, failures = next, 0
			if shipped == 0 {
				wait = s.cfg.Interval
			}
		default:
			code := errCode(err)
			s.countError(code)
			failures++
			// Resume from what the hub holds: never resend what it has,
			// never skip what it lacks.
			head = nil
			var re *RefusalError
			if errors.As(err, &re) && re.Code == hubapi.CodeNotContiguous && re.Head != nil {
				head = re.Head
			}
			// A first not_contiguous is the normal way to learn the head
			// moved (another shipper, a hub restored): retry at once.
			if code != hubapi.CodeNotContiguous || failures > 1 {
				wait = backoff(s.cfg.RetryMin, s.cfg.RetryMax, failures)
			}
			s.log.Warn("shipping to the hub failed; retrying", "code", code, "err", err, "retry_in", wait.Round(time.Millisecond))
		}
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
		}
	}
}

// backoff is min·2^(n-1), capped at max, with jitter in its upper half
// so that hosts cut off together do not all come back at once.
func backoff(lo, hi time.Duration, n int) time.Duration {
	d := lo
	for i := 1; i < n && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	if d < 2 {
		return d
	}
	return d/2 + rand.N(d/2)
}

func (s *Shipper) countError(code string) {
	s.errMu.Lock()
	s.errs[code]++
	s.errMu.Unlock()
	if s.errVec != nil {
		s.errVec.WithLabelValues(code).Inc()
	}
}

func errCode(err error) string {
	var re *RefusalError
	var ce codedError
	switch {
	case errors.As(err, &re) && re.Code != "":
		return re.Code
	case errors.As(err, &re):
		return CodeHTTP
	case errors.As(err, &ce):
		return ce.code
	}
	return CodeUnreachable
}

// codedError is a failure found on this side, with its metric code.
type codedError struct {
	code string
	err  error
}

func (e codedError) Error() string { return e.err.Error() }
func (e codedError) Unwrap() error { return e.err }

func coded(code string, format string, args ...any) error {
	return codedError{code, fmt.Errorf("ship: "+format, args...)}
}

// step ships one batch after head (read from the hub when nil). It
// returns how many entries the hub accepted (0: nothing new was synced)
// and the hub's new head.
func (s *Shipper) step(ctx context.Context, head *hubapi.Head) (int, *hubapi.Head, error) {
	if head == nil {
		h, err := s.opts.Client.Head(ctx)
		if err != nil {
			return 0, nil, err
		}
		head = &h
		s.cosigned.Store(h.CosignedSize)
	}
	s.hubSize.Store(head.Size)
	b, err := s.readBatch(ctx, head.Size+1)
	if err != nil || b == nil {
		return 0, head, err
	}
	cp := b.cp
	resp, err := s.opts.Client.Send(ctx, &hubapi.Batch{From: head.Size + 1, Entries: b.entries, Checkpoint: cp.Note})
	if err != nil {
		return 0, head, err
	}
	got, at, err := evidence.VerifyCosigned(resp.Cosigned, s.opts.HostKey, s.hubKey)
	if err != nil {
		return 0, nil, coded(CodeBadCosignature, "the hub's answer to the batch %d..%d: %w", head.Size+1, cp.Size, err)
	}
	if !evidence.SameTree(got, cp) {
		return 0, nil, coded(CodeBadCosignature, "the hub cosigned the tree of size %d root %x, not the batch's (size %d root %x)", got.Size, got.Root, cp.Size, cp.Root)
	}
	next := resp.Head
	s.hubSize.Store(max(next.Size, cp.Size))
	s.cosigned.Store(cp.Size)
	s.lastSuccess.Store(time.Now().UnixNano())
	// A batch of hub.cosignature entries alone gets no entry of its own:
	// otherwise each would call for the next, forever. The hub holds
	// them, and the next real batch's cosignature covers them.
	if !b.onlyCosignatures {
		rec := model.Record{Kind: model.KindHubCosignature, Data: model.HubCosignature{
			Size: cp.Size, Root: cp.Root[:], HostID: s.opts.State.HostID, HubKey: s.hubKey.Name(),
			CosignedNS: at.UnixNano(), Note: string(resp.Cosigned),
		}}
		if _, err := s.opts.Journal.Append(ctx, rec, model.Committed); err != nil {
			// The hub holds the entries; the next cosignature covers them.
			s.countError(CodeJournal)
			s.log.Error("hub cosignature not journaled", "size", cp.Size, "err", err)
		}
	}
	s.log.Debug("batch cosigned by the hub", "from", head.Size+1, "size", cp.Size, "entries", len(b.entries))
	return len(b.entries), &next, nil
}

type batch struct {
	entries          []hubapi.Entry
	cp               evidence.Checkpoint
	onlyCosignatures bool
}

// errBatchFull stops the read at the batch's byte bound.
var errBatchFull = errors.New("batch full")

// readBatch reads the entries from `from` on, within the batch bounds, and
// a checkpoint the journal signed of the tree they end. It returns nil
// when nothing after from is synced yet.
func (s *Shipper) readBatch(ctx context.Context, from int64) (*batch, error) {
	snap, err := journal.OpenSnapshot(ctx, s.opts.Journal.Path())
	if err != nil {
		return nil, coded(CodeJournal, "%w", err)
	}
	defer snap.Close()
	s.localHead.Store(snap.Head)
	switch {
	case snap.Head < from-1:
		return nil, coded(CodeHubAhead, "the hub holds %d entries of this journal, which has %d: was the journal replaced or rolled back?", from-1, snap.Head)
	case snap.Head < from:
		return nil, nil
	}
	last := min(snap.Head, from+int64(s.cfg.BatchEntries)-1)
	b := &batch{onlyCosignatures: true}
	var size int64
	var kinds []string
	err = snap.Entries(from, last, func(e journal.Entry) error {
		n := int64(len(e.Body) + len(e.Payload) + len(e.Salt))
		if len(b.entries) > 0 && size+n > s.cfg.BatchBytes {
			return errBatchFull
		}
		if want := from + int64(len(b.entries)); int64(e.Seq) != want {
			return fmt.Errorf("entry %d follows %d", e.Seq, want-1)
		}
		size += n
		b.entries = append(b.entries, hubapi.Entry{Seq: int64(e.Seq), Body: bytes.Clone(e.Body), Salt: bytes.Clone(e.Salt), Payload: bytes.Clone(e.Payload)})
		kinds = append(kinds, e.Kind)
		return nil
	})
	if err != nil && !errors.Is(err, errBatchFull) {
		return nil, coded(CodeJournal, "read entries from %d: %w", from, err)
	}
	if len(b.entries) == 0 {
		return nil, coded(CodeJournal, "entry %d is missing from the journal (head %d)", from, snap.Head)
	}
	cp, err := s.opts.Journal.CheckpointAt(ctx, from+int64(len(b.entries))-1)
	switch {
	case errors.Is(err, journal.ErrNoCheckpoint):
		return nil, nil
	case err != nil:
		return nil, coded(CodeJournal, "%w", err)
	case cp.Size < from:
		// What follows the hub's head is not synced yet.
		return nil, nil
	}
	n := cp.Size - from + 1
	b.entries, b.cp = b.entries[:n], cp
	for _, k := range kinds[:n] {
		b.onlyCosignatures = b.onlyCosignatures && k == model.KindHubCosignature
	}
	return b, nil
}
