package server

import (
	"context"
	"errors"
	"fmt"
	"io"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/interlock/interlock/hub/store"
	"github.com/interlock/interlock/journal/evidence"
)

// ExportOptions narrow an export.
type ExportOptions struct {
	// Hosts are the host ids to export; every host when empty.
	Hosts []string
	// From, above 1, starts the entries of the one host in Hosts at this
	// seq; the bundle then carries the frontier of the tree before it, so
	// the entries still prove against every checkpoint after it.
	From int64
	// FleetSize, when set, exports against the fleet checkpoint of this
	// size instead of the newest: the one an auditor pinned from the
	// bucket, so that a checkpoint signed since does not change the
	// bundle under the pin.
	FleetSize int64
}

// Errors of PlanExport that are the request's, not the hub's.
var (
	// ErrNothingToExport: none of the hosts asked for has a checkpoint
	// under the newest fleet checkpoint yet.
	ErrNothingToExport = errors.New("hub: export: none of the hosts has a checkpoint under the fleet checkpoint yet")
	// ErrExportRange: From is not within the one host's entries.
	ErrExportRange = errors.New("hub: export: bad range")
)

// exportPage is how many entries an export reads from the store at a
// time: what it holds in memory besides each host's checkpoints. (A
// variable for the tests, which cut short an answer after a page.)
var exportPage int64 = 512

// ExportPlan is a fleet bundle (docs/hub.md, "Fleet bundle") without its
// entries: the newest fleet checkpoint (or the one of ExportOptions.FleetSize), and per host its checkpoints that
// checkpoint covers with their inclusion proofs. WriteTo adds the entries
// as it writes, a page at a time.
type ExportPlan struct {
	st     *store.Store
	bundle evidence.FleetBundle
	// last is, per host of the bundle, the seq of its newest checkpoint
	// under the fleet checkpoint: its entries run FirstSeq..last.
	last []int64
}

// PlanExport reads what a fleet bundle of opts needs but the entries.
// It copies what the store holds without checking it: checking is the
// verifier's job, and a row altered in the database must reach it as it
// is.
func PlanExport(ctx context.Context, st *store.Store, keys *Keys, opts ExportOptions) (*ExportPlan, error) {
	if opts.From > 1 && len(opts.Hosts) != 1 {
		return nil, fmt.Errorf("%w: a first seq is for one host", ErrExportRange)
	}
	var fc store.FleetCheckpoint
	var err error
	if opts.FleetSize > 0 {
		fc, err = st.FleetCheckpointOfSize(ctx, opts.FleetSize)
	} else {
		fc, err = st.LatestFleetCheckpoint(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("hub: export: %w", err)
	}
	fv, err := note.NewVerifier(keys.FleetKey)
	if err != nil {
		return nil, fmt.Errorf("hub: export: fleet key: %w", err)
	}
	fcp, err := evidence.ParseFleetCheckpoint(fc.Note, fv)
	if err != nil {
		return nil, fmt.Errorf("hub: export: the stored fleet checkpoint %d: %w", fc.Size, err)
	}
	p := &ExportPlan{st: st, bundle: evidence.FleetBundle{HubID: keys.HubID, FleetKey: keys.FleetKey, HubKey: keys.CosignerKey, FleetCheckpoint: string(fc.Note)}}
	var hosts []store.Host
	if len(opts.Hosts) == 0 {
		if hosts, err = st.Hosts(ctx); err != nil {
			return nil, err
		}
	}
	for _, id := range opts.Hosts {
		h, err := st.Host(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("hub: export: host %s: %w", id, err)
		}
		hosts = append(hosts, h)
	}
	fleetHashes := st.FleetHashes(ctx)
	for _, h := range hosts {
		fh := evidence.FleetHost{HostID: h.ID, HostName: h.Name, JournalID: h.JournalID, JournalKey: h.JournalKey, FirstSeq: 1}
		cps, err := st.Checkpoints(ctx, h.ID)
		if err != nil {
			return nil, err
		}
		var last int64
		for _, c := range cps {
			if c.FleetIndex >= fcp.Size {
				continue // after the fleet checkpoint: the next export has it
			}
			proof, err := tlog.ProveRecord(fcp.Size, c.FleetIndex, fleetHashes)
			if err != nil {
				return nil, fmt.Errorf("hub: export: inclusion of checkpoint %d of %s: %w", c.Size, h.ID, err)
			}
			fh.Checkpoints = append(fh.Checkpoints, evidence.FleetHostCheckpoint{Cosigned: string(c.Cosigned), FleetIndex: c.FleetIndex, Inclusion: proof})
			last = max(last, c.Size)
		}
		if last == 0 {
			continue // nothing of this host under the fleet checkpoint yet
		}
		if opts.From > 1 {
			if opts.From > last {
				return nil, fmt.Errorf("%w: host %s has entries 1 to %d under the fleet checkpoint, none from %d", ErrExportRange, h.ID, last, opts.From)
			}
			fh.FirstSeq = opts.From
			// The stored hashes, as they are: altered ones fail the
			// first checkpoint after From.
			if fh.Left, err = st.TreeHashes(ctx, h.ID).ReadHashes(evidence.FrontierIndexes(opts.From - 1)); err != nil {
				return nil, fmt.Errorf("hub: export: the tree of %s before entry %d: %w", h.ID, opts.From, err)
			}
		}
		p.bundle.Hosts = append(p.bundle.Hosts, fh)
		p.last = append(p.last, last)
	}
	if len(p.bundle.Hosts) == 0 && len(opts.Hosts) > 0 {
		return nil, ErrNothingToExport
	}
	return p, nil
}

// Hosts is how many hosts the bundle holds.
func (p *ExportPlan) Hosts() int { return len(p.bundle.Hosts) }

// Entries is how many entries the bundle holds.
func (p *ExportPlan) Entries() int64 {
	var n int64
	for i, h := range p.bundle.Hosts {
		n += p.last[i] - h.FirstSeq + 1
	}
	return n
}

// WriteTo writes the fleet bundle, reading the entries a page at a time;
// flush, when set, is called after each page (to push a streamed answer
// on). On an error the bundle is left cut short, so it does not parse.
func (p *ExportPlan) WriteTo(ctx context.Context, w io.Writer, flush func() error) error {
	fw, err := evidence.NewFleetBundleWriter(w, &p.bundle)
	if err != nil {
		return err
	}
	for i := range p.bundle.Hosts {
		h := &p.bundle.Hosts[i]
		if err := fw.Host(h); err != nil {
			return err
		}
		for from := h.FirstSeq; from <= p.last[i]; from += exportPage {
			entries, err := p.st.Entries(ctx, h.HostID, from, min(from+exportPage-1, p.last[i]))
			if err != nil {
				return err
			}
			for _, e := range entries {
				fe := evidence.FleetEntry{Seq: e.Seq, Body: e.Body, Salt: e.Salt, Payload: e.Payload}
				if len(e.Leaf) != tlog.HashSize {
					return fmt.Errorf("hub: export: entry %d of %s: stored leaf is %d bytes", e.Seq, h.HostID, len(e.Leaf))
				}
				copy(fe.Leaf[:], e.Leaf)
				if err := fw.Entry(&fe); err != nil {
					return err
				}
			}
			if flush != nil {
				if err := fw.Flush(); err != nil {
					return err
				}
				if err := flush(); err != nil {
					return fmt.Errorf("hub: export: %w", err)
				}
			}
		}
	}
	return fw.Close()
}
