package evidence

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// FleetOptions tune VerifyFleetBundle.
type FleetOptions struct {
	// FleetKey is the fleet key the auditor trusts: the root of every
	// other check. It is required.
	FleetKey note.Verifier
	// HubKey, when set, is the cosignature key the auditor trusts; the
	// bundle's must be the same. Unset, the bundle's is used: the fleet
	// log, signed by the fleet key, vouches for every cosigned line.
	HubKey note.Verifier
	// Pinned, when set, is a fleet checkpoint the auditor holds (from the
	// bucket): the bundle's must state the same tree.
	Pinned *ExternalCheckpoint
}

// FleetReport is the outcome of VerifyFleetBundle.
type FleetReport struct {
	OK bool `json:"ok"`
	// Reason says what failed; HostID, JournalID and Seq name the host and
	// the first entry it is about, when it is about one.
	Reason    string            `json:"reason,omitempty"`
	HostID    string            `json:"host_id,omitempty"`
	JournalID string            `json:"journal_id,omitempty"`
	Seq       int64             `json:"seq,omitempty"`
	HubID     string            `json:"hub_id,omitempty"`
	FleetKey  string            `json:"fleet_key,omitempty"`
	FleetSize int64             `json:"fleet_size,omitempty"`
	FleetRoot string            `json:"fleet_root,omitempty"`
	Hosts     []FleetHostReport `json:"hosts,omitempty"`
}

// FleetHostReport is what was verified of one host.
type FleetHostReport struct {
	HostID          string `json:"host_id"`
	HostName        string `json:"host_name,omitempty"`
	JournalID       string `json:"journal_id"`
	FirstSeq        int64  `json:"first_seq"`
	LastSeq         int64  `json:"last_seq"`
	Checkpoints     int    `json:"checkpoints"`
	Payloads        int    `json:"payloads"`
	PayloadsDeleted int    `json:"payloads_deleted"`
}

// fleetError is a verification failure of a fleet bundle.
type fleetError struct {
	host, journal string
	seq           int64
	msg           string
}

func (e *fleetError) Error() string { return e.msg }

// VerifyFleetBundleFile reads and verifies a fleet bundle file. The error
// is for a file that cannot be read or parsed; one that does not verify
// gives a report with OK false.
func VerifyFleetBundleFile(path string, opts FleetOptions) (FleetReport, error) {
	f, err := os.Open(path)
	if err != nil {
		return FleetReport{}, fmt.Errorf("fleet bundle: %w", err)
	}
	defer f.Close()
	b, err := ReadFleetBundle(f)
	if err != nil {
		return FleetReport{}, fmt.Errorf("%s: %w", path, err)
	}
	return VerifyFleetBundle(b, opts), nil
}

// VerifyFleetBundle checks the whole chain of a fleet bundle, with nothing
// but the fleet key: the fleet checkpoint's signature; for each host, each
// checkpoint's host signature (with the journal key it enrolled) and the
// hub's cosignature, and the cosigned note's inclusion in the fleet log at
// the fleet checkpoint; then the host's entries: each body's canonical
// form and seq, its leaf, the tree they build against every checkpoint it
// reaches, and each payload against its commitment. The first failure is
// reported with the host and the seq it is about.
func VerifyFleetBundle(b *FleetBundle, opts FleetOptions) FleetReport {
	rep := FleetReport{HubID: b.HubID}
	if err := verifyFleet(b, opts, &rep); err != nil {
		rep.Reason = err.msg
		rep.HostID, rep.JournalID, rep.Seq = err.host, err.journal, err.seq
		return rep
	}
	rep.OK = true
	return rep
}

func verifyFleet(b *FleetBundle, opts FleetOptions, rep *FleetReport) *fleetError {
	bad := func(format string, args ...any) *fleetError {
		return &fleetError{msg: fmt.Sprintf(format, args...)}
	}
	if opts.FleetKey == nil {
		return bad("no fleet key given: the fleet key is what the whole bundle is verified against")
	}
	rep.FleetKey = fmt.Sprintf("%s+%08x", opts.FleetKey.Name(), opts.FleetKey.KeyHash())
	inner, err := note.NewVerifier(strings.TrimSpace(b.FleetKey))
	if err != nil {
		return bad("the bundle's fleet key does not parse: %v", err)
	}
	if inner.Name() != opts.FleetKey.Name() || inner.KeyHash() != opts.FleetKey.KeyHash() {
		return bad("the bundle is for fleet key %s+%08x, not the key you trust (%s)", inner.Name(), inner.KeyHash(), rep.FleetKey)
	}
	fleet, err := ParseFleetCheckpoint([]byte(b.FleetCheckpoint), opts.FleetKey)
	if err != nil {
		return bad("fleet checkpoint: %v", err)
	}
	if fleet.HubID() != b.HubID {
		return bad("the fleet checkpoint is of hub %s, the bundle says %s", fleet.HubID(), b.HubID)
	}
	rep.FleetSize, rep.FleetRoot = fleet.Size, hex.EncodeToString(fleet.Root[:])
	if opts.Pinned != nil {
		pinned, err := ParseFleetCheckpoint(opts.Pinned.Note, opts.FleetKey)
		if err != nil {
			return bad("your fleet checkpoint %s: %v", opts.Pinned.Name, err)
		}
		if !SameTree(pinned, fleet) {
			return bad("the bundle's fleet checkpoint (%d leaves) is not your fleet checkpoint %s (%d leaves, or another root)", fleet.Size, opts.Pinned.Name, pinned.Size)
		}
	}
	hubKey, err := NewCosignatureVerifier(b.HubKey)
	if err != nil {
		return bad("the bundle's hub key: %v", err)
	}
	if opts.HubKey != nil {
		if hubKey.Name() != opts.HubKey.Name() || hubKey.KeyHash() != opts.HubKey.KeyHash() {
			return bad("the bundle's hub key %s+%08x is not the one you trust (%s+%08x)", hubKey.Name(), hubKey.KeyHash(), opts.HubKey.Name(), opts.HubKey.KeyHash())
		}
		hubKey = opts.HubKey
	}
	if len(b.Hosts) == 0 {
		return bad("the bundle holds no hosts")
	}
	hosts, journals, leaves := map[string]bool{}, map[string]bool{}, map[int64]bool{}
	for i := range b.Hosts {
		h := &b.Hosts[i]
		if h.HostID == "" || hosts[h.HostID] || journals[h.JournalID] {
			return &fleetError{host: h.HostID, journal: h.JournalID, msg: fmt.Sprintf("host %d of the bundle has an empty or repeated host id %q or journal id %q", i+1, h.HostID, h.JournalID)}
		}
		hosts[h.HostID], journals[h.JournalID] = true, true
		hr, err := verifyFleetHost(h, fleet, hubKey, leaves)
		if err != nil {
			err.host, err.journal = h.HostID, h.JournalID
			err.msg = "host " + h.HostID + ": " + err.msg
			return err
		}
		rep.Hosts = append(rep.Hosts, hr)
	}
	return nil
}

func verifyFleetHost(h *FleetHost, fleet Checkpoint, hubKey note.Verifier, fleetLeaves map[int64]bool) (FleetHostReport, *fleetError) {
	hr := FleetHostReport{HostID: h.HostID, HostName: h.HostName, JournalID: h.JournalID, FirstSeq: h.FirstSeq, Checkpoints: len(h.Checkpoints)}
	bad := func(seq int64, format string, args ...any) *fleetError {
		return &fleetError{seq: seq, msg: fmt.Sprintf(format, args...)}
	}
	hostKey, err := note.NewVerifier(strings.TrimSpace(h.JournalKey))
	if err != nil {
		return hr, bad(0, "journal key does not parse: %v", err)
	}
	if len(h.Checkpoints) == 0 {
		return hr, bad(0, "no cosigned checkpoints")
	}
	if h.FirstSeq < 1 {
		return hr, bad(0, "first seq %d is not positive", h.FirstSeq)
	}
	// The chain down from the fleet checkpoint: each cosigned checkpoint
	// is a leaf of the fleet log, cosigned by the hub, signed by the host.
	cps := make([]Checkpoint, len(h.Checkpoints))
	var prev int64
	for i, fc := range h.Checkpoints {
		cp, _, err := VerifyCosigned([]byte(fc.Cosigned), hostKey, hubKey)
		if err != nil {
			return hr, bad(prev+1, "checkpoint %d (after entry %d): %v", i+1, prev, err)
		}
		if cp.Origin != Origin(h.JournalID) {
			return hr, bad(prev+1, "checkpoint of %d entries is for journal %s, not %s", cp.Size, cp.JournalID(), h.JournalID)
		}
		if cp.Size <= prev {
			return hr, bad(cp.Size, "checkpoint of %d entries follows one of %d: checkpoints go smallest first", cp.Size, prev)
		}
		if fc.FleetIndex < 0 || fc.FleetIndex >= fleet.Size || fleetLeaves[fc.FleetIndex] {
			return hr, bad(prev+1, "checkpoint of %d entries claims fleet log leaf %d, outside the fleet checkpoint's %d leaves or another's", cp.Size, fc.FleetIndex, fleet.Size)
		}
		if err := tlog.CheckRecord(fc.Inclusion, fleet.Size, fleet.Root, fc.FleetIndex, FleetLeaf([]byte(fc.Cosigned))); err != nil {
			return hr, bad(prev+1, "the cosigned checkpoint of %d entries is not leaf %d of the fleet log the fleet checkpoint of %d leaves signs: %v", cp.Size, fc.FleetIndex, fleet.Size, err)
		}
		fleetLeaves[fc.FleetIndex] = true
		cps[i], prev = cp, cp.Size
	}
	last := cps[len(cps)-1].Size
	hr.LastSeq = last
	if h.FirstSeq > last {
		return hr, bad(h.FirstSeq, "first seq %d is past the newest checkpoint (%d entries)", h.FirstSeq, last)
	}
	if int64(len(h.Entries)) != last-h.FirstSeq+1 {
		return hr, bad(h.FirstSeq, "holds %d entries, but %d..%d are %d", len(h.Entries), h.FirstSeq, last, last-h.FirstSeq+1)
	}
	tree, err := NewCompactRange(h.FirstSeq-1, h.Left)
	if err != nil {
		return hr, bad(h.FirstSeq, "left frontier: %v", err)
	}
	// Checkpoints before the entries were proven above (cosigned, in the
	// fleet log) but cover nothing this bundle holds.
	next := 0
	for next < len(cps) && cps[next].Size < h.FirstSeq {
		next++
	}
	rangeStart := h.FirstSeq
	for i := range h.Entries {
		e := &h.Entries[i]
		seq := h.FirstSeq + int64(i)
		if e.Seq != seq {
			return hr, bad(seq, "entry %d is listed as %d", seq, e.Seq)
		}
		p, err := ParseBody(e.Body)
		if err != nil {
			return hr, bad(seq, "entry %d: %v", seq, err)
		}
		switch {
		case p.Seq != uint64(seq):
			return hr, bad(seq, "entry %d's body says seq %d", seq, p.Seq)
		case seq == 1 && !opensJournal(p, h.JournalID):
			return hr, bad(1, "entry 1 does not open journal %s", h.JournalID)
		case LeafHash(e.Body) != e.Leaf:
			return hr, bad(seq, "entry %d's body does not hash to its leaf in the tree: the body was changed", seq)
		}
		if err := checkFleetPayload(p, e, &hr); err != nil {
			return hr, bad(seq, "entry %d: %s", seq, err)
		}
		tree.Add(e.Leaf)
		if next < len(cps) && cps[next].Size == seq {
			cp := cps[next]
			if tree.Root() != cp.Root {
				return hr, bad(rangeStart, "entries %d..%d (leaves as stored) do not have the tree hash the cosigned checkpoint of %d entries states: one of them was changed, with its leaf", rangeStart, seq, cp.Size)
			}
			next, rangeStart = next+1, seq+1
		}
	}
	return hr, nil
}

// checkFleetPayload checks an entry's payload against the commitment in
// its body; an entry whose payload the hub no longer holds is counted.
func checkFleetPayload(p Body, e *FleetEntry, hr *FleetHostReport) error {
	switch {
	case p.Payload == nil && (e.Payload != nil || e.Salt != nil):
		return fmt.Errorf("a payload is given but the body commits to none")
	case p.Payload == nil:
		return nil
	case e.Payload == nil && e.Salt == nil:
		hr.PayloadsDeleted++
		return nil
	case len(e.Salt) != SaltSize:
		return fmt.Errorf("the payload's salt is %d bytes, not %d", len(e.Salt), SaltSize)
	}
	if c := PayloadCommitment(e.Salt, e.Payload); !bytes.Equal(c[:], p.Payload) {
		return fmt.Errorf("the payload does not match the commitment in its body")
	}
	hr.Payloads++
	return nil
}

// WriteText writes the report as interlock journal verify and
// interlock-verify print it: one line OK or FAILED with the host and seq,
// then a line per host.
func (r FleetReport) WriteText(w io.Writer, path string) {
	if !r.OK {
		where := ""
		if r.HostID != "" {
			where = " at host " + r.HostID
			if r.Seq != 0 {
				where += fmt.Sprintf(" seq %d", r.Seq)
			}
		}
		fmt.Fprintf(w, "fleet bundle %s: FAILED%s: %s\n", path, where, r.Reason)
		return
	}
	fmt.Fprintf(w, "fleet bundle %s: OK, hub %s, %d hosts, proven against the fleet checkpoint of %d leaves signed by %s\n",
		path, r.HubID, len(r.Hosts), r.FleetSize, r.FleetKey)
	for _, h := range r.Hosts {
		name := h.HostID
		if h.HostName != "" {
			name += " (" + h.HostName + ")"
		}
		fmt.Fprintf(w, "  host %s: journal %s, entries %d to %d, %d cosigned checkpoints, %d payloads checked, %d deleted\n",
			name, h.JournalID, h.FirstSeq, h.LastSeq, h.Checkpoints, h.Payloads, h.PayloadsDeleted)
	}
}
