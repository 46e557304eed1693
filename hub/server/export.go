package server

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/interlock/interlock/hub/store"
	"github.com/interlock/interlock/journal/evidence"
)

// Export builds the fleet bundle (docs/hub.md, "Fleet bundle") of the
// hosts named in hostIDs (every host when empty) against the newest
// fleet checkpoint: each host's checkpoints that fleet checkpoint covers,
// with their inclusion proofs, and its entries up to the newest of them.
// It copies what the store holds without checking it: checking is the
// verifier's job, and a row altered in the database must reach it as it
// is.
func Export(ctx context.Context, st *store.Store, keys *Keys, hostIDs []string) (*evidence.FleetBundle, error) {
	fc, err := st.LatestFleetCheckpoint(ctx)
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
	b := &evidence.FleetBundle{HubID: keys.HubID, FleetKey: keys.FleetKey, HubKey: keys.CosignerKey, FleetCheckpoint: string(fc.Note)}
	var hosts []store.Host
	if len(hostIDs) == 0 {
		if hosts, err = st.Hosts(ctx); err != nil {
			return nil, err
		}
	}
	for _, id := range hostIDs {
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
		entries, err := st.Entries(ctx, h.ID, 1, last)
		if err != nil {
			return nil, err
		}
		fh.Entries = make([]evidence.FleetEntry, len(entries))
		for i, e := range entries {
			fe := evidence.FleetEntry{Seq: e.Seq, Body: e.Body, Salt: e.Salt, Payload: e.Payload}
			if len(e.Leaf) != tlog.HashSize {
				return nil, fmt.Errorf("hub: export: entry %d of %s: stored leaf is %d bytes", e.Seq, h.ID, len(e.Leaf))
			}
			copy(fe.Leaf[:], e.Leaf)
			fh.Entries[i] = fe
		}
		b.Hosts = append(b.Hosts, fh)
	}
	if len(b.Hosts) == 0 && len(hostIDs) > 0 {
		return nil, errors.New("hub: export: none of the hosts has a checkpoint under the newest fleet checkpoint yet")
	}
	return b, nil
}
