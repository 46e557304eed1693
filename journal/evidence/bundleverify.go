package evidence

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/interlock/interlock/model"
)

// BundleOptions tune VerifyBundle.
type BundleOptions struct {
	// PublicKey is the key the auditor trusts. Nil means the key inside
	// the bundle, which shows the bundle is intact but not who made it.
	PublicKey note.Verifier
	// External are checkpoints the auditor holds: the bundle must agree
	// with each (one that covers more entries than the bundle's newest
	// shows the journal was cut before the export).
	External []ExternalCheckpoint
	// Progress is called now and then with the entries checked.
	Progress func(done uint64)
	// AllowUnsealed accepts a bundle that carries a digest instead of a
	// seal (exported without the signing key); the report says what that
	// leaves unproven. Without it such a bundle fails, after every other
	// check, so a bundle's weaker claim is never taken by default.
	AllowUnsealed bool
}

// BundleReport is the outcome of VerifyBundle.
type BundleReport struct {
	OK bool `json:"ok"`
	// Reason says what failed; File is the bundle member it is in and
	// FirstBadSeq the entry, when it is about one.
	Reason      string `json:"reason,omitempty"`
	File        string `json:"file,omitempty"`
	FirstBadSeq uint64 `json:"first_bad_seq,omitempty"`
	JournalID   string `json:"journal_id,omitempty"`
	Key         string `json:"key,omitempty"`
	// KeyFromBundle: checked with the bundle's own key (no key given).
	KeyFromBundle bool `json:"key_from_bundle,omitempty"`
	// Sealed: the journal key signed the whole file. False for an
	// unsealed bundle that verified with AllowUnsealed (and for a failed
	// verification).
	Sealed   bool     `json:"sealed"`
	FirstSeq uint64   `json:"first_seq,omitempty"`
	LastSeq  uint64   `json:"last_seq,omitempty"`
	TreeSize uint64   `json:"tree_size,omitempty"`
	TreeRoot string   `json:"tree_root,omitempty"`
	Counts   Counts   `json:"counts"`
	Warnings []string `json:"warnings,omitempty"`
}

// bundleError is a verification failure (as opposed to an I/O error).
type bundleError struct {
	file string
	seq  uint64
	msg  string
}

func (e *bundleError) Error() string { return e.msg }

func fail(file string, seq uint64, format string, args ...any) error {
	return &bundleError{file: file, seq: seq, msg: fmt.Sprintf(format, args...)}
}

// VerifyBundle checks a bundle file with nothing but a public key: the
// seal over every byte, the manifest's list of files and their hashes,
// every checkpoint's signature, the tree of the range rebuilt from the
// entries and the leaf hashes of the entries left out, matched against
// every checkpoint it holds (and the consistency proof to the newest), each
// entry's canonical form and selection, and each payload against its
// commitment. Nothing in the bundle goes unchecked: a proof with hashes
// left over, a checkpoint outside what the bundle can prove, or a file the
// manifest does not list fails it. The error is for failures to read the
// file; a bundle that does not verify gives a report with OK false.
func VerifyBundle(ctx context.Context, path string, opts BundleOptions) (BundleReport, error) {
	f, err := os.Open(path)
	if err != nil {
		return BundleReport{}, fmt.Errorf("bundle: %w", err)
	}
	defer f.Close()
	v := &bundleVerifier{ctx: ctx, opts: opts}
	err = v.run(bufio.NewReaderSize(f, 1<<20))
	var be *bundleError
	switch {
	case err == nil:
		v.rep.OK = true
	case errors.As(err, &be):
		v.rep.Reason, v.rep.File, v.rep.FirstBadSeq = be.msg, be.file, be.seq
	default:
		return BundleReport{}, err
	}
	return v.rep, nil
}

type bundleVerifier struct {
	ctx    context.Context
	opts   BundleOptions
	rep    BundleReport
	key    note.Verifier
	m      Manifest
	proofs Proofs
	cps    []Checkpoint // sorted by size
	nextCP int
	leaves []byte
	tree   CompactRange
	// commitments are the payload commitments of entries.jsonl in seq
	// order; payloads.jsonl, in seq order too, is matched against them
	// from the front.
	commitments []commitment
	leafSHA     hash.Hash // reused: one SHA-256 state for a million leaves
}

func (v *bundleVerifier) run(r io.Reader) error {
	seal, err := readSealHeader(r)
	if err != nil {
		return fail("", 0, "%v", err)
	}
	// klauspost's gzip is the standard library's reader with a faster
	// inflate (about 0.7x the CPU on a bundle), pure Go, and it checks the
	// same CRC and size at the end.
	gz, err := gzip.NewReader(io.MultiReader(bytes.NewReader(seal.header), seal.rest))
	if err != nil {
		return fail("", 0, "bundle is not a valid gzip file: %v", err)
	}
	gz.Multistream(false)
	tr := tar.NewReader(gz)
	if err := v.members(tr); err != nil {
		return err
	}
	// Read to the end: the gzip trailer (CRC, size) is checked at EOF,
	// and the seal covers every byte after the header.
	if _, err := io.Copy(io.Discard, gz); err != nil {
		return fail("", 0, "bundle is corrupt: %v", err)
	}
	if _, err := io.Copy(io.Discard, seal.rest); err != nil {
		return fmt.Errorf("bundle: read: %w", err)
	}
	sealed, err := seal.check(v.key)
	if err != nil {
		return fail("", 0, "%v", err)
	}
	if !sealed {
		if !v.opts.AllowUnsealed {
			return fail("", 0, "the bundle is unsealed (exported without the journal's signing key, as a member of the audit group does): "+
				"its entries, payloads and checkpoints verify, but %s; pass --allow-unsealed to accept it on those terms", v.unproven())
		}
		v.rep.Warnings = append(v.rep.Warnings, "unsealed: exported without the signing key; the entries, payloads and checkpoints are proven by the signed checkpoints, but "+v.unproven())
	}
	v.rep.Sealed = sealed
	return nil
}

// unproven is what only the seal vouches for, and so what the exporter of
// an unsealed bundle could have made up: the views derived from the
// entries and, when the export was narrowed, that no selected entry was
// left out as a bare leaf hash. A whole-journal export has no leaf hashes
// to hide one in (manifest and finish check that).
func (v *bundleVerifier) unproven() string {
	views := "the views (statements.csv, approvals.csv, the casts, summary.html) are only the exporter's word"
	if v.m.Selection == (Selection{}) {
		return views
	}
	return views + ", and so is that every entry the selection matches is included"
}

// member is the next file of the tar, hashed as it is read.
type member struct {
	name string
	r    io.Reader
	h    hash.Hash
	n    int64
}

func (m *member) Read(p []byte) (int, error) {
	n, err := m.r.Read(p)
	m.h.Write(p[:n])
	m.n += int64(n)
	return n, err
}

func next(tr *tar.Reader, want string) (*member, error) {
	hdr, err := tr.Next()
	if err == io.EOF {
		return nil, fail(want, 0, "bundle ends before %s", want)
	}
	if err != nil {
		return nil, fail(want, 0, "bundle is corrupt before %s: %v", want, err)
	}
	if hdr.Name != want || hdr.Typeflag != tar.TypeReg {
		return nil, fail(hdr.Name, 0, "unexpected member %q (type %c) where %s belongs", hdr.Name, hdr.Typeflag, want)
	}
	return &member{name: want, r: tr, h: sha256.New()}, nil
}

// done checks a member against the manifest once read.
func (v *bundleVerifier) done(m *member, i int) error {
	if _, err := io.Copy(io.Discard, m); err != nil {
		return fail(m.name, 0, "bundle is corrupt in %s: %v", m.name, err)
	}
	f := v.m.Files[i]
	if got := hex.EncodeToString(m.h.Sum(nil)); got != f.SHA256 || m.n != f.Size {
		return fail(m.name, 0, "%s: SHA-256 %s (%d bytes) differs from the manifest's %s (%d bytes)", m.name, got, m.n, f.SHA256, f.Size)
	}
	return nil
}

func (v *bundleVerifier) members(tr *tar.Reader) error {
	mf, err := next(tr, FileManifest)
	if err != nil {
		return err
	}
	if err := v.manifest(mf); err != nil {
		return err
	}
	handlers := map[string]func(*member) error{
		FilePublicKey: v.publicKey, FileCheckpoints: v.checkpoints, FileProofs: v.readProofs,
		FileLeaves: v.readLeaves, FileEntries: v.entries, FilePayloads: v.payloads,
	}
	for i, f := range v.m.Files {
		m, err := next(tr, f.Name)
		if err != nil {
			return err
		}
		if h := handlers[f.Name]; h != nil {
			if err := h(m); err != nil {
				return err
			}
		}
		if err := v.done(m, i); err != nil {
			return err
		}
	}
	if hdr, err := tr.Next(); err != io.EOF {
		if err != nil {
			return fail("", 0, "bundle is corrupt after its last member: %v", err)
		}
		return fail(hdr.Name, 0, "member %q is not listed in the manifest", hdr.Name)
	}
	return v.finish()
}

func (v *bundleVerifier) manifest(m *member) error {
	b, err := io.ReadAll(io.LimitReader(m, 64<<20))
	if err != nil {
		return fail(FileManifest, 0, "bundle is corrupt in %s: %v", FileManifest, err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v.m); err != nil {
		return fail(FileManifest, 0, "%s does not parse: %v", FileManifest, err)
	}
	// The manifest is covered by the seal only; re-encoding it must give
	// the same bytes, so no byte of it is without meaning.
	again, _ := json.MarshalIndent(v.m, "", " ")
	if !bytes.Equal(append(again, '\n'), b) {
		return fail(FileManifest, 0, "%s is not in canonical form", FileManifest)
	}
	switch {
	case v.m.Format != Format || v.m.Version != Version:
		return fail(FileManifest, 0, "not an interlock evidence bundle version %d (format %q version %d)", Version, v.m.Format, v.m.Version)
	case v.m.FirstSeq < 1 || v.m.LastSeq < v.m.FirstSeq || v.m.TreeSize < v.m.LastSeq:
		return fail(FileManifest, 0, "manifest range %d..%d of a tree of %d is impossible", v.m.FirstSeq, v.m.LastSeq, v.m.TreeSize)
	case v.m.Selection == (Selection{}) && (v.m.FirstSeq != 1 || v.m.LastSeq != v.m.TreeSize):
		// Nothing narrowed the export, so it holds every signed entry.
		return fail(FileManifest, 0, "manifest selects everything but its range %d..%d is not the whole signed tree of %d", v.m.FirstSeq, v.m.LastSeq, v.m.TreeSize)
	}
	want := FixedFiles()
	for i, f := range v.m.Files {
		switch {
		case i < len(want) && f.Name != want[i]:
			return fail(FileManifest, 0, "manifest lists %q where %s belongs", f.Name, want[i])
		case i >= len(want) && i == len(v.m.Files)-1 && f.Name != FileSummary:
			return fail(FileManifest, 0, "manifest lists %q where %s belongs", f.Name, FileSummary)
		case i >= len(want) && i < len(v.m.Files)-1 && (!strings.HasPrefix(f.Name, "sessions/") || !strings.HasSuffix(f.Name, ".cast") ||
			!SafeName(strings.TrimSuffix(strings.TrimPrefix(f.Name, "sessions/"), ".cast"))):
			return fail(FileManifest, 0, "manifest lists unexpected file %q", f.Name)
		}
	}
	if len(v.m.Files) < len(want)+1 {
		return fail(FileManifest, 0, "manifest lists %d files; a bundle has at least %d", len(v.m.Files), len(want)+1)
	}
	v.rep.JournalID, v.rep.FirstSeq, v.rep.LastSeq, v.rep.TreeSize = v.m.JournalID, v.m.FirstSeq, v.m.LastSeq, v.m.TreeSize
	v.rep.Warnings = v.m.Warnings
	return nil
}

func (v *bundleVerifier) publicKey(m *member) error {
	b, err := io.ReadAll(io.LimitReader(m, 4096))
	if err != nil {
		return fail(m.name, 0, "bundle is corrupt in %s: %v", m.name, err)
	}
	vkey := strings.TrimSuffix(string(b), "\n")
	if vkey+"\n" != string(b) || vkey != v.m.PublicKey {
		return fail(m.name, 0, "%s does not hold the manifest's public key", m.name)
	}
	inner, err := note.NewVerifier(vkey)
	if err != nil {
		return fail(m.name, 0, "%s does not parse: %v", m.name, err)
	}
	v.key = inner
	if v.opts.PublicKey == nil {
		v.rep.KeyFromBundle = true
	} else if v.opts.PublicKey.Name() != inner.Name() || v.opts.PublicKey.KeyHash() != inner.KeyHash() {
		return fail(m.name, 0, "the bundle was signed with key %s+%08x, not the key you trust (%s+%08x)",
			inner.Name(), inner.KeyHash(), v.opts.PublicKey.Name(), v.opts.PublicKey.KeyHash())
	} else {
		v.key = v.opts.PublicKey
	}
	v.rep.Key = fmt.Sprintf("%s+%08x", v.key.Name(), v.key.KeyHash())
	return nil
}

func (v *bundleVerifier) checkpoints(m *member) error {
	sc := bufio.NewScanner(m)
	sc.Buffer(nil, 1<<20)
	line := 0
	add := func(name string, msg []byte) error {
		cp, err := ParseCheckpoint(msg, v.key)
		switch {
		case err != nil:
			return fail(m.name, 0, "%s: %v", name, err)
		case cp.Origin != Origin(v.m.JournalID):
			return fail(m.name, 0, "%s is for journal %s, not %s", name, cp.JournalID(), v.m.JournalID)
		case cp.Size > int64(v.m.TreeSize):
			return fail(m.name, 0, "%s covers %d entries but the bundle's newest checkpoint covers %d: the journal was cut before this export", name, cp.Size, v.m.TreeSize)
		case cp.Size < int64(v.m.FirstSeq) || (cp.Size > int64(v.m.LastSeq) && cp.Size != int64(v.m.TreeSize)):
			return fail(m.name, 0, "%s (size %d) is outside what this bundle can prove (%d..%d, and %d)", name, cp.Size, v.m.FirstSeq, v.m.LastSeq, v.m.TreeSize)
		}
		v.cps = append(v.cps, cp)
		return nil
	}
	for sc.Scan() {
		line++
		var cl CheckpointLine
		if err := json.Unmarshal(sc.Bytes(), &cl); err != nil {
			return fail(m.name, 0, "line %d does not parse: %v", line, err)
		}
		if again, _ := json.Marshal(cl); !bytes.Equal(again, sc.Bytes()) {
			return fail(m.name, 0, "line %d is not in canonical form", line)
		}
		if err := add(fmt.Sprintf("checkpoint on line %d", line), []byte(cl.Note)); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fail(m.name, 0, "bundle is corrupt in %s: %v", m.name, err)
	}
	hasFinal := false
	for _, cp := range v.cps {
		hasFinal = hasFinal || cp.Size == int64(v.m.TreeSize)
	}
	if !hasFinal {
		return fail(m.name, 0, "no checkpoint covers the manifest's tree of %d entries", v.m.TreeSize)
	}
	for _, e := range v.opts.External {
		if err := add("your checkpoint "+e.Name, e.Note); err != nil {
			return err
		}
	}
	sortCheckpoints(v.cps)
	v.rep.Counts.Checkpoints = uint64(line)
	return nil
}

func (v *bundleVerifier) readProofs(m *member) error {
	b, err := io.ReadAll(io.LimitReader(m, 1<<20))
	if err != nil {
		return fail(m.name, 0, "bundle is corrupt in %s: %v", m.name, err)
	}
	if err := json.Unmarshal(b, &v.proofs); err != nil {
		return fail(m.name, 0, "%s does not parse: %v", m.name, err)
	}
	again, _ := json.MarshalIndent(v.proofs, "", " ")
	if !bytes.Equal(append(again, '\n'), b) {
		return fail(m.name, 0, "%s is not in canonical form", m.name)
	}
	p := v.proofs
	if p.TreeSize != v.m.TreeSize || p.FirstSeq != v.m.FirstSeq || p.LastSeq != v.m.LastSeq {
		return fail(m.name, 0, "%s is for range %d..%d of %d, the manifest says %d..%d of %d", m.name, p.FirstSeq, p.LastSeq, p.TreeSize, v.m.FirstSeq, v.m.LastSeq, v.m.TreeSize)
	}
	if v.tree, err = NewCompactRange(int64(p.FirstSeq)-1, p.Left); err != nil {
		return fail(m.name, 0, "left frontier: %v", err)
	}
	return nil
}

func (v *bundleVerifier) readLeaves(m *member) error {
	b, err := io.ReadAll(m)
	if err != nil {
		return fail(m.name, 0, "bundle is corrupt in %s: %v", m.name, err)
	}
	if len(b)%HashSize != 0 {
		return fail(m.name, 0, "%s is %d bytes, not a whole number of hashes", m.name, len(b))
	}
	v.leaves = b
	return nil
}

// grow adds leaves from leaves.bin until the tree's size is to.
func (v *bundleVerifier) grow(to uint64, file string) error {
	for uint64(v.tree.Size()) < to {
		if len(v.leaves) == 0 {
			return fail(file, uint64(v.tree.Size())+1, "entry %d is neither in %s nor in %s", v.tree.Size()+1, FileEntries, FileLeaves)
		}
		var h tlog.Hash
		copy(h[:], v.leaves)
		v.leaves = v.leaves[HashSize:]
		v.tree.Add(h)
		v.rep.Counts.Omitted++
		if err := v.matchCheckpoints(file); err != nil {
			return err
		}
	}
	return nil
}

// matchCheckpoints compares the rebuilt tree with every checkpoint of its
// size.
func (v *bundleVerifier) matchCheckpoints(file string) error {
	size := v.tree.Size()
	for v.nextCP < len(v.cps) && v.cps[v.nextCP].Size <= size {
		cp := v.cps[v.nextCP]
		v.nextCP++
		if cp.Size < size || v.tree.Root() != cp.Root {
			return fail(file, 0, "the entries up to %d do not have the tree hash the checkpoint of %d entries signed at %s states",
				size, cp.Size, cp.Time().Format(time.RFC3339Nano))
		}
	}
	return nil
}

func (v *bundleVerifier) entries(m *member) error {
	sc := bufio.NewScanner(m)
	// 256 KiB reads: fewer calls through tar, inflate and the member hash.
	sc.Buffer(make([]byte, 256<<10), MaxPayload+(1<<20))
	sel := v.m.Selection
	line := 0
	for sc.Scan() {
		line++
		body := sc.Bytes()
		p, err := ParseBody(body)
		if err != nil {
			return fail(m.name, 0, "line %d: %v", line, err)
		}
		switch {
		case p.Seq <= uint64(v.tree.Size()):
			return fail(m.name, p.Seq, "line %d: entry %d is out of order (after %d)", line, p.Seq, v.tree.Size())
		case p.Seq > v.m.LastSeq:
			return fail(m.name, p.Seq, "line %d: entry %d is past the bundle's range (last %d)", line, p.Seq, v.m.LastSeq)
		case !sel.Matches(p.Time, p.Session):
			return fail(m.name, p.Seq, "line %d: entry %d is not in the exported selection", line, p.Seq)
		case p.Seq == 1 && !opensJournal(p, v.m.JournalID):
			return fail(m.name, 1, "entry 1 does not name journal %s", v.m.JournalID)
		}
		if err := v.grow(p.Seq-1, m.name); err != nil {
			return err
		}
		v.tree.Add(v.leafHash(body))
		if err := v.matchCheckpoints(m.name); err != nil {
			var be *bundleError
			if errors.As(err, &be) {
				be.seq = p.Seq
			}
			return err
		}
		if p.Payload != nil {
			v.commitments = append(v.commitments, commitment{p.Seq, p.Payload})
		}
		v.rep.Counts.Entries++
		if v.opts.Progress != nil && v.rep.Counts.Entries%16384 == 0 {
			if err := v.ctx.Err(); err != nil {
				return err
			}
			v.opts.Progress(v.rep.Counts.Entries)
		}
	}
	if err := sc.Err(); err != nil {
		return fail(m.name, 0, "bundle is corrupt in %s: %v", m.name, err)
	}
	if err := v.grow(v.m.LastSeq, FileLeaves); err != nil {
		return err
	}
	if len(v.leaves) != 0 {
		return fail(FileLeaves, 0, "%s has %d leaf hashes left over after entry %d", FileLeaves, len(v.leaves)/HashSize, v.m.LastSeq)
	}
	root := v.tree.Root()
	v.rep.TreeRoot = hex.EncodeToString(root[:])
	// The newest checkpoint: the consistency proof must take the tree of
	// the range to it, using every hash it has.
	final := v.cps[len(v.cps)-1]
	for _, cp := range v.cps[v.nextCP:] {
		if cp.Size != final.Size || cp.Root != final.Root {
			return fail(FileCheckpoints, 0, "checkpoints of %d and %d entries after the range disagree", cp.Size, final.Size)
		}
	}
	switch {
	case final.Size == int64(v.m.LastSeq):
		if len(v.proofs.Consistency) != 0 {
			return fail(FileProofs, 0, "the consistency proof has %d hashes but the range ends at the checkpoint: proofs must be used whole", len(v.proofs.Consistency))
		}
	default:
		if err := tlog.CheckTree(v.proofs.Consistency, final.Size, final.Root, int64(v.m.LastSeq), root); err != nil {
			return fail(FileProofs, 0, "the tree of entries 1..%d is not a prefix of the checkpoint of %d entries: %v", v.m.LastSeq, final.Size, err)
		}
	}
	v.nextCP = len(v.cps)
	return nil
}

// leafHash is LeafHash(body) without a new SHA-256 state per entry.
func (v *bundleVerifier) leafHash(body []byte) (h tlog.Hash) {
	if v.leafSHA == nil {
		v.leafSHA = sha256.New()
	}
	v.leafSHA.Reset()
	v.leafSHA.Write([]byte{0}) // RFC 6962's leaf prefix, as tlog.RecordHash
	v.leafSHA.Write(body)
	v.leafSHA.Sum(h[:0])
	return h
}

// opensJournal reports whether p is the journal.open entry of journal
// id, as the journal's own Verify requires of entry 1.
func opensJournal(p Body, id string) bool {
	var od OpenData
	return p.Kind == model.KindJournalOpen && json.Unmarshal(p.Data, &od) == nil && od.JournalID == id
}

// finish compares what was counted with the manifest.
func (v *bundleVerifier) finish() error {
	c, mc := v.rep.Counts, v.m.Counts
	for _, x := range []struct {
		name      string
		got, want uint64
	}{
		{"entries", c.Entries, mc.Entries}, {"omitted", c.Omitted, mc.Omitted}, {"payloads", c.Payloads, mc.Payloads},
		{"payloads_deleted", c.PayloadsDeleted, mc.PayloadsDeleted}, {"checkpoints", c.Checkpoints, mc.Checkpoints},
		{"casts", uint64(len(v.m.Files) - len(FixedFiles()) - 1), mc.Casts}, // less the summary
	} {
		if x.got != x.want {
			return fail(FileManifest, 0, "manifest counts %d %s, the bundle holds %d", x.want, x.name, x.got)
		}
	}
	if c.Entries == 0 {
		return fail(FileEntries, 0, "the bundle holds no entries")
	}
	if c.Omitted != 0 && v.m.Selection == (Selection{}) {
		return fail(FileLeaves, 0, "the manifest selects everything, yet %d entries are there as leaf hashes only", c.Omitted)
	}
	v.rep.Counts = mc
	return nil
}

func sortCheckpoints(cps []Checkpoint) {
	sort.SliceStable(cps, func(i, k int) bool { return cps[i].Size < cps[k].Size })
}
