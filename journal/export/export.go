// Package export writes journal evidence out of the database for people and
// tools outside it: the evidence bundle (a tar.gz, sealed with the journal
// key or, by a reader who may not read the key, unsealed, that an auditor
// verifies offline with nothing but the journal's public key, with
// journal/evidence, which needs no SQLite) and OCSF JSON Lines for a SIEM.
// docs/journal.md specifies the bundle.
package export

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/interlock/interlock/journal"
	"github.com/interlock/interlock/journal/evidence"
)

// ErrEmptySelection: no signed entry matches the selection, so there is
// nothing to export.
var ErrEmptySelection = errors.New("nothing selected")

func selectionOf(sel journal.Selection) evidence.Selection {
	var s evidence.Selection
	if !sel.Since.IsZero() {
		s.SinceNS = sel.Since.UnixNano()
	}
	if !sel.Until.IsZero() {
		s.UntilNS = sel.Until.UnixNano()
	}
	s.Session = sel.Session
	return s
}

// Options configure Bundle.
type Options struct {
	// Journal is the database to export.
	Journal string
	// Since, Until and Session narrow the export.
	Selection journal.Selection
	// Signer seals the bundle; it must be the journal's own key.
	Signer *journal.Signer
	// Unsealed writes the bundle without a Signer: the digest in place of
	// the seal, for a reader of the journal who may not read its key (a
	// member of the audit group). Its checkpoints are the journal's
	// stored ones, signed as it wrote; nothing new is signed.
	Unsealed bool
	// Progress, if not nil, is called now and then with the entries read
	// and the size of the range.
	Progress func(done, total int64)
}

// Bundle writes the evidence bundle of the selected entries to out. The
// range covers the selected entries up to the newest checkpoint; entries
// after it are left out (with a warning in the manifest), because nothing
// signed vouches for them yet.
func Bundle(ctx context.Context, out string, opts Options) (*evidence.Manifest, error) {
	switch {
	case opts.Signer == nil && !opts.Unsealed:
		return nil, errors.New("export: no signing key")
	case opts.Signer != nil && opts.Unsealed:
		return nil, errors.New("export: a signing key was given for an unsealed bundle")
	}
	snap, err := journal.OpenSnapshot(ctx, opts.Journal)
	if err != nil {
		return nil, err
	}
	defer snap.Close()
	var key note.Verifier
	if opts.Unsealed {
		// The key the journal records: the exporter passes on only
		// checkpoints it signed, and the auditor's verifier checks them
		// against the key the auditor trusts.
		if key, err = note.NewVerifier(snap.SigningKey); err != nil {
			return nil, fmt.Errorf("export: the journal's signing key %q does not parse: %w", snap.SigningKey, err)
		}
	} else {
		if snap.SigningKey != opts.Signer.VerifierKey {
			return nil, fmt.Errorf("export: the key given (%s) is not the journal's (%s): the bundle would not verify", opts.Signer.VerifierKey, snap.SigningKey)
		}
		key = opts.Signer.Verifier()
	}
	cps, err := snap.Checkpoints(key)
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	if len(cps) == 0 {
		return nil, fmt.Errorf("export: %w: start interlock on this journal once (it signs within a second), then export", journal.ErrNoCheckpoint)
	}
	final := cps[len(cps)-1]
	first, last, found, err := snap.SelectRange(opts.Selection, final.Size)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("export: %w: no entry of %s up to its newest checkpoint (%d entries) matches it", ErrEmptySelection, opts.Journal, final.Size)
	}
	m := &evidence.Manifest{
		Format: evidence.Format, Version: evidence.Version, JournalID: snap.JournalID, PublicKey: snap.SigningKey,
		CreatedNS: time.Now().UnixNano(), Selection: selectionOf(opts.Selection),
		FirstSeq: uint64(first), LastSeq: uint64(last), TreeSize: uint64(final.Size),
	}
	if snap.Head > final.Size {
		if _, hi, ok, err := snap.SelectRange(opts.Selection, snap.Head); err == nil && ok && hi > final.Size {
			m.Warnings = append(m.Warnings, fmt.Sprintf("selected entries after %d are not signed yet and were left out; export again in a second or two", final.Size))
		}
	}
	dir, err := os.MkdirTemp(filepath.Dir(out), ".interlock-export-")
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	defer os.RemoveAll(dir)
	b := &builder{ctx: ctx, snap: snap, m: m, dir: dir, sel: opts.Selection, progress: opts.Progress, castFiles: map[string][]string{}}
	if err := b.collect(first, last); err != nil {
		return nil, err
	}
	if err := b.writeProofs(first, last, final.Size); err != nil {
		return nil, err
	}
	if err := b.writeCheckpoints(cps, first, last, final); err != nil {
		return nil, err
	}
	if err := b.writeCasts(last); err != nil {
		return nil, err
	}
	if err := b.writeSummary(); err != nil {
		return nil, err
	}
	if err := b.add(evidence.FilePublicKey, []byte(snap.SigningKey+"\n")); err != nil {
		return nil, err
	}
	return m, b.pack(out, opts.Signer)
}

// builder holds the working files of one export.
type builder struct {
	ctx      context.Context
	snap     *journal.Snapshot
	m        *evidence.Manifest
	dir      string
	sel      journal.Selection
	progress func(done, total int64)
	files    map[string]string // bundle name -> working file
	casts    []string          // session ids with a terminal
	// castFiles are the cast files written for each of casts, in
	// channel order.
	castFiles map[string][]string
	sum       *summary
}

// create opens a working file for a bundle member.
func (b *builder) create(name string) (*os.File, error) {
	if b.files == nil {
		b.files = map[string]string{}
	}
	p := filepath.Join(b.dir, fmt.Sprintf("%d", len(b.files)))
	f, err := os.Create(p)
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	b.files[name] = p
	return f, nil
}

func (b *builder) add(name string, data []byte) error {
	f, err := b.create(name)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("export: write %s: %w", name, err)
	}
	return f.Close()
}

// collect reads the range once: selected entries go to entries.jsonl
// verbatim (and their payloads to payloads.jsonl), the others leave only
// their leaf hash in leaves.bin; the derived files are fed on the way.
func (b *builder) collect(first, last int64) error {
	outs := map[string]*bufio.Writer{}
	var files []*os.File
	for _, name := range []string{evidence.FileEntries, evidence.FilePayloads, evidence.FileLeaves, evidence.FileStatements, evidence.FileApprovals} {
		f, err := b.create(name)
		if err != nil {
			return err
		}
		files = append(files, f)
		outs[name] = bufio.NewWriterSize(f, 1<<20)
	}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	st := newStatements(outs[evidence.FileStatements])
	ap := newApprovals(outs[evidence.FileApprovals])
	b.sum = newSummary(b.m)
	total := last - first + 1
	var done int64
	enc := json.NewEncoder(outs[evidence.FilePayloads])
	err := b.snap.Entries(first, last, func(e journal.Entry) error {
		done++
		if b.progress != nil && done%16384 == 0 {
			if err := b.ctx.Err(); err != nil {
				return err
			}
			b.progress(done, total)
		}
		if !b.sel.Matches(e.TimeNS, e.Session) {
			h := evidence.LeafHash(e.Body)
			b.m.Counts.Omitted++
			_, err := outs[evidence.FileLeaves].Write(h[:])
			return err
		}
		p, err := evidence.ParseBody(e.Body)
		if err != nil {
			return fmt.Errorf("export: entry %d does not parse (run `interlock journal verify`): %w", e.Seq, err)
		}
		b.m.Counts.Entries++
		w := outs[evidence.FileEntries]
		w.Write(e.Body)
		if err := w.WriteByte('\n'); err != nil {
			return err
		}
		switch {
		case e.Payload != nil:
			b.m.Counts.Payloads++
			if err := enc.Encode(evidence.PayloadLine{Seq: e.Seq, Salt: hex.EncodeToString(e.Salt), Data: base64.StdEncoding.EncodeToString(e.Payload)}); err != nil {
				return err
			}
		case p.Payload != nil:
			b.m.Counts.PayloadsDeleted++
		}
		if err := st.add(e.Seq, p); err != nil {
			return err
		}
		if err := ap.add(e.Seq, p); err != nil {
			return err
		}
		if b.sum.add(e.Seq, p) {
			b.casts = append(b.casts, p.Session)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if b.progress != nil {
		b.progress(done, total)
	}
	if err := st.flush(); err != nil {
		return err
	}
	b.m.Counts.Statements, b.m.Counts.Approvals = st.rows, ap.rows
	b.m.Counts.Sessions = uint64(len(b.sum.sessions))
	for _, w := range outs {
		if err := w.Flush(); err != nil {
			return fmt.Errorf("export: %w", err)
		}
	}
	return nil
}

func (b *builder) writeProofs(first, last, treeSize int64) error {
	left, err := b.snap.Frontier(first - 1)
	if err != nil {
		return fmt.Errorf("export: tree frontier at %d: %w", first-1, err)
	}
	p := evidence.Proofs{TreeSize: uint64(treeSize), FirstSeq: uint64(first), LastSeq: uint64(last), Left: left, Consistency: []tlog.Hash{}}
	if last < treeSize {
		if p.Consistency, err = tlog.ProveTree(treeSize, last, b.snap.HashReader()); err != nil {
			return fmt.Errorf("export: consistency proof %d to %d: %w", last, treeSize, err)
		}
	}
	if p.Left == nil {
		p.Left = []tlog.Hash{}
	}
	js, err := json.MarshalIndent(p, "", " ")
	if err != nil {
		return err
	}
	return b.add(evidence.FileProofs, append(js, '\n'))
}

// writeCheckpoints keeps the checkpoints the verifier can check: those
// inside the range (it rebuilds their trees) and the newest, reached by
// the consistency proof.
func (b *builder) writeCheckpoints(cps []evidence.Checkpoint, first, last int64, final evidence.Checkpoint) error {
	var buf []byte
	for _, cp := range cps {
		if (cp.Size >= first && cp.Size <= last) || (cp.Size == final.Size && cp.TimeNS == final.TimeNS) {
			line, err := json.Marshal(evidence.CheckpointLine{Note: string(cp.Note)})
			if err != nil {
				return err
			}
			buf = append(append(buf, line...), '\n')
			b.m.Counts.Checkpoints++
		}
	}
	return b.add(evidence.FileCheckpoints, buf)
}

// pack writes the tar in the fixed order, with the manifest first, and
// seals it into out (with its digest alone when signer is nil).
func (b *builder) pack(out string, signer *journal.Signer) error {
	order := append([]string(nil), evidence.FixedFiles()...)
	sort.Strings(b.casts)
	for _, id := range b.casts {
		for _, name := range b.castFiles[id] {
			if _, ok := b.files[name]; ok {
				order = append(order, name)
			}
		}
	}
	order = append(order, evidence.FileSummary)
	b.m.Files = nil
	for _, name := range order {
		sum, size, err := hashFile(b.files[name])
		if err != nil {
			return err
		}
		b.m.Files = append(b.m.Files, evidence.File{Name: name, Size: size, SHA256: sum})
	}
	manifest, err := json.MarshalIndent(b.m, "", " ")
	if err != nil {
		return err
	}
	manifest = append(manifest, '\n')
	sw, err := evidence.NewSealWriter(b.dir)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	defer sw.Abort()
	tw := tar.NewWriter(sw)
	mtime := time.Unix(0, b.m.CreatedNS).Truncate(time.Second)
	hdr := func(name string, size int64) *tar.Header {
		return &tar.Header{Name: name, Size: size, Mode: 0o644, ModTime: mtime, Typeflag: tar.TypeReg, Format: tar.FormatPAX}
	}
	if err := tw.WriteHeader(hdr(evidence.FileManifest, int64(len(manifest)))); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if _, err := tw.Write(manifest); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	for _, f := range b.m.Files {
		if err := tw.WriteHeader(hdr(f.Name, f.Size)); err != nil {
			return fmt.Errorf("export: %w", err)
		}
		src, err := os.Open(b.files[f.Name])
		if err != nil {
			return fmt.Errorf("export: %w", err)
		}
		_, err = io.Copy(tw, src)
		src.Close()
		if err != nil {
			return fmt.Errorf("export: write %s: %w", f.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	tmp := out + ".tmp"
	of, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	bw := bufio.NewWriterSize(of, 1<<20)
	if signer != nil {
		err = sw.Finish(bw, signer)
	} else {
		err = sw.FinishUnsealed(bw)
	}
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = of.Sync()
	}
	if cerr := of.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, out)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("export: write %s: %w", out, err)
	}
	return nil
}

func hashFile(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, fmt.Errorf("export: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, fmt.Errorf("export: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}
