package evidence

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
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
// version. It writes what a FleetBundleWriter given the same bundle
// writes, byte for byte.
func WriteFleetBundle(w io.Writer, b *FleetBundle) error {
	fw, err := NewFleetBundleWriter(w, b)
	if err != nil {
		return err
	}
	for i := range b.Hosts {
		if err := fw.Host(&b.Hosts[i]); err != nil {
			return err
		}
		for j := range b.Hosts[i].Entries {
			if err := fw.Entry(&b.Hosts[i].Entries[j]); err != nil {
				return err
			}
		}
	}
	return fw.Close()
}

// FleetBundleWriter writes a fleet bundle a host and an entry at a time,
// so that a hub can serve one of any size from a bounded memory. The
// JSON is the encoding of the whole FleetBundle, produced in pieces: each
// piece is the standard encoding of its struct with its list (the
// bundle's hosts, a host's entries) left open.
type FleetBundleWriter struct {
	zw     *gzip.Writer
	bw     *bufio.Writer
	hosts  int
	inHost bool
	first  bool // no entry written yet in the open host
	err    error
}

// NewFleetBundleWriter starts a fleet bundle of b's header (its format and
// version filled in; its Hosts are ignored: add them with Host).
func NewFleetBundleWriter(w io.Writer, b *FleetBundle) (*FleetBundleWriter, error) {
	b.Format, b.Version = FleetFormat, FleetVersion
	head := *b
	head.Hosts = []FleetHost{}
	zw := gzip.NewWriter(w)
	fw := &FleetBundleWriter{zw: zw, bw: bufio.NewWriterSize(zw, 1<<16)}
	return fw, fw.open(&head, `"hosts":[]}`)
}

// open writes v's JSON without the empty list that ends it (tail).
func (fw *FleetBundleWriter) open(v any, tail string) error {
	if fw.err != nil {
		return fw.err
	}
	j, err := json.Marshal(v)
	switch {
	case err != nil:
		fw.err = err
	case !bytes.HasSuffix(j, []byte(tail)):
		// A field added after the list would end up inside it.
		fw.err = fmt.Errorf("%T does not end with its list", v)
	default:
		_, fw.err = fw.bw.Write(j[:len(j)-2])
	}
	return fw.failed()
}

// failed is the writer's first error, with context.
func (fw *FleetBundleWriter) failed() error {
	if fw.err == nil {
		return nil
	}
	return fmt.Errorf("evidence: write fleet bundle: %w", fw.err)
}

func (fw *FleetBundleWriter) write(s string) error {
	if fw.err == nil {
		_, fw.err = fw.bw.WriteString(s)
	}
	return fw.err
}

// Host starts the next host (h's Entries are ignored: add them with
// Entry).
func (fw *FleetBundleWriter) Host(h *FleetHost) error {
	if fw.inHost {
		fw.write("]}")
	}
	if fw.hosts > 0 {
		fw.write(",")
	}
	head := *h
	head.Entries = []FleetEntry{}
	fw.hosts++
	fw.inHost, fw.first = true, true
	return fw.open(&head, `"entries":[]}`)
}

// Entry adds the next entry of the current host.
func (fw *FleetBundleWriter) Entry(e *FleetEntry) error {
	if !fw.inHost && fw.err == nil {
		fw.err = errors.New("an entry before any host")
	}
	if !fw.first {
		fw.write(",")
	}
	fw.first = false
	if fw.err != nil {
		return fw.failed()
	}
	j, err := json.Marshal(e)
	if err != nil {
		fw.err = err
		return fw.failed()
	}
	_, fw.err = fw.bw.Write(j)
	return fw.failed()
}

// Close ends the bundle and flushes it. A bundle not closed (its writer
// failed half way) is cut short, and does not parse.
func (fw *FleetBundleWriter) Close() error {
	if fw.inHost {
		fw.write("]}")
		fw.inHost = false
	}
	// json.Encoder ends a document with a newline; so did this format.
	fw.write("]}\n")
	if fw.err == nil {
		fw.err = fw.bw.Flush()
	}
	if fw.err == nil {
		fw.err = fw.zw.Close()
	}
	return fw.failed()
}

// Flush hands what was written so far to the compressor, which passes
// it on as its blocks fill. It does not flush the compressor itself: a
// sync flush would change the compressed bytes, and a bundle served in a
// stream is the same file, byte for byte, as the one written at once.
func (fw *FleetBundleWriter) Flush() error {
	if fw.err == nil {
		fw.err = fw.bw.Flush()
	}
	return fw.failed()
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
