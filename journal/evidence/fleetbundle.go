package evidence

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"

	"golang.org/x/mod/sumdb/tlog"
)

// A fleet bundle is what an auditor needs to verify hosts' entries offline
// against one fleet checkpoint of a hub (docs/hub.md, "Fleet bundle"): per
// host, its entries, its checkpoints with the hub's cosignatures and their
// inclusion proofs in the fleet log; the fleet checkpoint; the keys. It is
// one JSON document, gzip-compressed. Nothing in it needs a seal: the
// fleet checkpoint, signed by the fleet key the auditor holds, proves the
// fleet log; the fleet log proves each cosigned checkpoint byte for byte;
// each checkpoint proves its host's entries. What it does not prove (host
// names, host ids) is named in docs/hub.md.

// Fleet bundle format identifiers.
const (
	FleetFormat  = "interlock-fleet-bundle"
	FleetVersion = 1
)

// FleetBundle is a fleet bundle.
type FleetBundle struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
	HubID   string `json:"hub_id"`
	// FleetKey is the note verifier key of the fleet checkpoints, HubKey
	// that of the hub's cosignatures (CosignatureKey's form). The auditor
	// brings the fleet key; the bundle's copy must be the same key.
	FleetKey string `json:"fleet_key"`
	HubKey   string `json:"hub_key"`
	// FleetCheckpoint is the signed fleet checkpoint (the note, byte for
	// byte, as published in the bucket) every host checkpoint is proven
	// against.
	FleetCheckpoint string      `json:"fleet_checkpoint"`
	Hosts           []FleetHost `json:"hosts"`
}

// FleetHost is one host's part of a fleet bundle.
type FleetHost struct {
	HostID   string `json:"host_id"`
	HostName string `json:"host_name,omitempty"`
	// JournalID and JournalKey are the host's journal id and the note
	// verifier key that signs its checkpoints, as it enrolled them.
	JournalID  string `json:"journal_id"`
	JournalKey string `json:"journal_key"`
	// Checkpoints are the host's checkpoints the hub cosigned, smallest
	// first, each with its place in the fleet log. The newest one's size
	// is the last entry's seq.
	Checkpoints []FleetHostCheckpoint `json:"checkpoints"`
	// FirstSeq is the first entry (1 unless the export was narrowed);
	// Left the frontier hashes of the tree of size FirstSeq-1, which the
	// entries extend.
	FirstSeq int64       `json:"first_seq"`
	Left     []tlog.Hash `json:"left,omitempty"`
	// Entries are entries FirstSeq.. to the newest checkpoint's size, in
	// order.
	Entries []FleetEntry `json:"entries"`
}

// FleetHostCheckpoint is a host checkpoint as the hub cosigned it, and
// the proof that the fleet log holds it.
type FleetHostCheckpoint struct {
	// Cosigned is the host's checkpoint note with the hub's cosignature
	// line (Cosign), byte for byte: the fleet log's leaf.
	Cosigned string `json:"cosigned"`
	// FleetIndex is its leaf's index in the fleet log (from 0), Inclusion
	// the RFC 6962 inclusion proof of that leaf in the fleet checkpoint's
	// tree.
	FleetIndex int64       `json:"fleet_index"`
	Inclusion  []tlog.Hash `json:"inclusion"`
}

// FleetEntry is one entry of a host's journal as the hub holds it: the
// body, the payload and its salt while the hub has them, and the leaf
// hash the hub stored when it accepted the entry.
//
// Leaf is redundant with the body (it is LeafHash(Body)), on purpose:
// the leaves prove against the checkpoint, then each body against its
// leaf, so an altered body is named by its seq; without them only the
// checkpoint range it fell in could be named.
type FleetEntry struct {
	Seq     int64     `json:"seq"`
	Body    []byte    `json:"body"`
	Leaf    tlog.Hash `json:"leaf"`
	Salt    []byte    `json:"salt,omitempty"`
	Payload []byte    `json:"payload,omitempty"`
}

// WriteFleetBundle writes b, gzip-compressed, filling in its format and
// version.
func WriteFleetBundle(w io.Writer, b *FleetBundle) error {
	b.Format, b.Version = FleetFormat, FleetVersion
	zw := gzip.NewWriter(w)
	bw := bufio.NewWriterSize(zw, 1<<16)
	if err := json.NewEncoder(bw).Encode(b); err != nil {
		return fmt.Errorf("evidence: write fleet bundle: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("evidence: write fleet bundle: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("evidence: write fleet bundle: %w", err)
	}
	return nil
}

// ReadFleetBundle reads a fleet bundle, gzip-compressed or not. It checks
// only that it parses; VerifyFleetBundle checks what it says.
func ReadFleetBundle(r io.Reader) (*FleetBundle, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	var in io.Reader = br
	if magic, _ := br.Peek(2); bytes.Equal(magic, []byte{0x1f, 0x8b}) {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("evidence: fleet bundle: %w", err)
		}
		in = zr
	}
	dec := json.NewDecoder(in)
	dec.DisallowUnknownFields()
	var b FleetBundle
	if err := dec.Decode(&b); err != nil {
		return nil, fmt.Errorf("evidence: fleet bundle does not parse: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("evidence: fleet bundle has more after its JSON document")
	}
	if b.Format != FleetFormat || b.Version != FleetVersion {
		return nil, fmt.Errorf("evidence: not an interlock fleet bundle version %d (format %q version %d)", FleetVersion, b.Format, b.Version)
	}
	return &b, nil
}
