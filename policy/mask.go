package policy

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/interlock/interlock/internal/atomicfile"
	"github.com/interlock/interlock/model"
)

// Masker masks result values and keeps, for the journal, a keyed hash of
// every original it replaced: an auditor can tell two masked values apart
// or match them without ever seeing them.
type Masker struct {
	key []byte
	// pads are the key's HMAC pad blocks, hashed once (nil: every hash is
	// computed by crypto/hmac).
	pads *macPads
	// types knows PostgreSQL's built-in types (arrays, ranges), for
	// reading values of them; it is only read.
	types *pgtype.Map
}

// MaskKeyFile is the HMAC key's file name in the state directory.
const MaskKeyFile = "mask.key"

// NewMasker loads the HMAC key from dir, creating it (mode 0600) at first
// use.
func NewMasker(dir string) (*Masker, error) {
	p := filepath.Join(dir, MaskKeyFile)
	key, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("masking key directory: %w", err)
		}
		if err := createMaskKey(p); err != nil {
			return nil, err
		}
		return NewMasker(dir) // ours, or the key of a process that won the race
	}
	if err != nil {
		return nil, fmt.Errorf("read masking key %s: %w", p, err)
	}
	if len(key) < 32 {
		return nil, fmt.Errorf("masking key %s is %d bytes; it must be at least 32 (remove it to make a new one, which breaks matching with earlier hashes)", p, len(key))
	}
	return NewMaskerWithKey(key), nil
}

// createMaskKey installs a new random key at p, unless another process
// installed one first: whole or not at all, so neither a crash nor a
// concurrent first start leaves or reads a short key.
func createMaskKey(p string) error {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return err
	}
	if _, err := atomicfile.Create(p, key, 0o600); err != nil {
		return fmt.Errorf("create masking key %s: %w", p, err)
	}
	return nil
}

// NewMaskerWithKey is NewMasker with the key given (tests, tools).
func NewMaskerWithKey(key []byte) *Masker {
	return &Masker{key: key, pads: newMacPads(key), types: pgtype.NewMap()}
}

// Column describes one result column.
type Column = model.MaskColumn

// maskHow is what happens to a column's values.
type maskHow uint8

const (
	scanNone    maskHow = iota // kept: no detector, or its type cannot hold a finding
	maskWhole                  // a column rule (or a masked column it derives from) masks it whole
	scanText                   // free text: findings replaced in place
	scanDecoded                // decoded for the scan; a finding masks it whole
)

// columnPlan is what happens to one column.
type columnPlan struct {
	how     maskHow
	rule    string // the column rule masking it whole, if any
	display string // table.column, for the journal
	whole   []byte // the column's whole-value mask (shared, read-only)
	oid     uint32
	binary  bool
	// ruleStat, undecodable and detStats (aligned with RowMasker.dets)
	// point at the accumulators, found once instead of per value.
	ruleStat    *maskStat
	undecodable *maskStat
	detStats    []*maskStat
}

// RowMasker masks the rows of one result set and counts what it did.
type RowMasker struct {
	cols []Column
	plan []columnPlan
	// dets are the content detectors every column not masked whole runs,
	// each once; detRules the rule each comes from (the first naming it).
	dets     []*detector
	detRules []string
	hashes   hasher
	stats    map[statKey]*maskStat
	order    []statKey
	// found is reused between values.
	found []Finding
	// arena holds the row's redacted values: reused from row to row, so a
	// replaced value is valid until the next Mask (the caller encodes the
	// row before it masks the next one).
	arena []byte
	// sc reads values that are not plain text; cur is the column it is
	// reading and hits what it found in the value so far (each original
	// is counted once per value, however many decodings show it).
	sc   valueScanner
	cur  *columnPlan
	hits []valueHit
}

type valueHit struct {
	det int
	v   string
}

// maskStat accumulates one MaskDecision. Hashes are kept raw (16 bytes
// each) in blocks of hashBlock bytes, never copied as they grow, and
// joined once, in Decisions: a large result's hashes are megabytes.
type maskStat struct {
	d MaskDecision
	// idx is its index in hasher.stats (-1 until its first original).
	idx    int32
	full   [][]byte
	hashes []byte // the block being filled
}

const hashBlock = 64 << 10

// addHash keeps the hash of an original (counted by hasher.note).
func (st *maskStat) addHash(sum []byte) {
	if len(st.hashes)+len(sum) > cap(st.hashes) {
		if c := cap(st.hashes); c < hashBlock {
			// Small results stay small: the first block doubles up to
			// hashBlock.
			b := make([]byte, len(st.hashes), min(max(256, 2*c), hashBlock))
			copy(b, st.hashes)
			st.hashes = b
		} else {
			st.full = append(st.full, st.hashes)
			st.hashes = make([]byte, 0, hashBlock)
		}
	}
	st.hashes = append(st.hashes, sum...)
}

// joined is every hash, in order, in a new slice.
func (st *maskStat) joined() []byte {
	n := len(st.hashes)
	for _, b := range st.full {
		n += len(b)
	}
	out := make([]byte, 0, n)
	for _, b := range st.full {
		out = append(out, b...)
	}
	return append(out, st.hashes...)
}

type statKey struct{ rule, column, detector string }

// MaskDecision is what masking did for one rule, column and detector.
type MaskDecision = model.MaskDecision

// UndecodableDetector is the detector name under which masking journals
// values masked whole because the detectors could not read them: a binary
// value of a type interlock cannot decode, or a malformed one.
const UndecodableDetector = "undecodable"

// Plan prepares masking for a result set's columns under spec. It returns
// nil when nothing in the result needs masking.
//
// A column is masked whole, with its type's mask, when a column rule
// covers it or when it is computed from a masked column (Column.Derived).
// Otherwise the detectors read every value that can hold what they find,
// in either format: text in place (masked whole when escapes in it hide a
// finding); bytea, json, jsonb, numbers, arrays,
// ranges and records decoded, and masked whole on a finding (SQL NULL when
// the type has no safe value); a binary value interlock cannot decode is
// masked whole (NULL) and counted under UndecodableDetector.
func (m *Masker) Plan(spec *model.MaskSpec, cols []Column) *RowMasker {
	if spec == nil || len(spec.Rules) == 0 {
		return nil
	}
	rm := &RowMasker{cols: cols, plan: make([]columnPlan, len(cols)), stats: map[statKey]*maskStat{}}
	for _, r := range spec.Rules {
		for _, name := range r.Detectors {
			if d := detectors[name]; d != nil && !containsDetector(rm.dets, d) {
				rm.dets = append(rm.dets, d)
				rm.detRules = append(rm.detRules, r.Rule)
			}
		}
	}
	needed := false
	for i, c := range cols {
		p := &rm.plan[i]
		p.display = c.Name
		if c.Table != "" {
			p.display = c.Table + "." + c.Name
		}
		p.whole = typeMask(c)
		p.oid, p.binary = c.TypeOID, c.Binary
		switch {
		case c.Derived != "":
			p.rule = c.Derived
		case c.Table != "":
			for _, r := range spec.Rules {
				if columnMatch(r.Columns, c.Table, c.Name) {
					p.rule = r.Rule
					break
				}
			}
		}
		switch k, _ := kindOf(m.types, c.TypeOID); {
		case p.rule != "":
			p.how = maskWhole
		case len(rm.dets) == 0 || k == kindNone:
			p.how = scanNone
		case k == kindText:
			p.how = scanText
		default:
			p.how = scanDecoded
		}
		needed = needed || p.how != scanNone
	}
	if !needed {
		return nil
	}
	rm.hashes = hasher{key: m.key, pads: m.pads}
	rm.sc = valueScanner{dets: rm.dets, types: m.types}
	rm.sc.onFind = rm.decodedFinding
	return rm
}

// columnMatch matches table.column globs; a glob's table part matches as
// a table glob in rules does (without a schema, the table in any schema).
func columnMatch(globs []string, table, name string) bool {
	full, tbl := splitTable(table)
	for _, g := range globs {
		i := strings.LastIndexByte(g, '.')
		if i < 0 {
			continue
		}
		if compileGlob(g[i+1:]).match(name) && compileTableGlob(g[:i]).matchTable(full, tbl) {
			return true
		}
	}
	return false
}

// Mask masks one row in place: values[i] is column i, nil for NULL. A
// replaced value is a slice of the masker's own (valid until the next
// Mask) or a shared, read-only mask; the caller's buffers are not written.
func (rm *RowMasker) Mask(values [][]byte) error {
	if len(values) != len(rm.cols) {
		return fmt.Errorf("masking: row has %d values for %d columns", len(values), len(rm.cols))
	}
	rm.arena = rm.arena[:0]
	for i, v := range values {
		if v == nil {
			continue
		}
		p := &rm.plan[i]
		switch p.how {
		case maskWhole:
			if p.ruleStat == nil {
				p.ruleStat = rm.stat(p.rule, p, "")
			}
			rm.note(p.ruleStat, v)
			values[i] = p.whole
		case scanText:
			fs := detectInto(rm.found[:0], rm.dets, v)
			rm.found = fs
			out := v
			if len(fs) > 0 {
				for _, f := range fs {
					rm.note(rm.detStat(p, f.det), v[f.Start:f.End])
				}
				out = rm.redact(v, fs)
			}
			if bytes.IndexByte(out, '\\') >= 0 {
				// Escapes (JSON \u0040, bytea \x…) may hide a finding
				// that cannot be replaced in place: then the value goes.
				rm.cur, rm.hits = p, rm.hits[:0]
				rm.sc.generic(out, 0)
				rm.sc.reset()
				if len(rm.hits) > 0 {
					out = p.whole
				}
			}
			values[i] = out
		case scanDecoded:
			rm.cur, rm.hits = p, rm.hits[:0]
			ok := rm.sc.value(p.oid, p.binary, v, 0)
			rm.sc.reset()
			switch {
			case !ok:
				// Not read whole: what it holds is unknown, so it is
				// not sent.
				if p.undecodable == nil {
					p.undecodable = rm.stat(rm.detRules[0], p, UndecodableDetector)
				}
				rm.note(p.undecodable, v)
				values[i] = nil
			case len(rm.hits) > 0:
				values[i] = p.whole
			}
		}
	}
	return nil
}

// decodedFinding notes what the scanner found in the value of column
// rm.cur, once per original.
func (rm *RowMasker) decodedFinding(det int, match []byte) {
	for _, x := range rm.hits {
		if x.det == det && x.v == string(match) {
			return
		}
	}
	rm.hits = append(rm.hits, valueHit{det: det, v: string(match)})
	rm.note(rm.detStat(rm.cur, det), match)
}

// detStat is the accumulator of detector det's findings in a column.
func (rm *RowMasker) detStat(p *columnPlan, det int) *maskStat {
	if p.detStats == nil {
		p.detStats = make([]*maskStat, len(rm.dets))
	}
	if p.detStats[det] == nil {
		p.detStats[det] = rm.stat(rm.detRules[det], p, rm.dets[det].name)
	}
	return p.detStats[det]
}

func (rm *RowMasker) stat(rule string, p *columnPlan, det string) *maskStat {
	k := statKey{rule, p.display, det}
	st := rm.stats[k]
	if st == nil {
		st = &maskStat{d: MaskDecision{Rule: rule, Column: p.display, Detector: det}, idx: -1}
		rm.stats[k] = st
		rm.order = append(rm.order, k)
	}
	return st
}

func (rm *RowMasker) note(st *maskStat, original []byte) { rm.hashes.note(st, original) }

// Decisions returns what was masked, in first-seen order.
func (rm *RowMasker) Decisions() []MaskDecision {
	rm.hashes.finish()
	out := make([]MaskDecision, 0, len(rm.order))
	for _, k := range rm.order {
		st := rm.stats[k]
		d := st.d
		d.Hashes = st.joined()
		out = append(out, d)
	}
	return out
}

// redact is the package's redact into the row's arena.
func (rm *RowMasker) redact(v []byte, fs []Finding) []byte {
	n := redactedLen(v, fs)
	if cap(rm.arena)-len(rm.arena) < n {
		// Values already handed out keep the old array.
		rm.arena = make([]byte, 0, max(8<<10, 2*n))
	}
	start := len(rm.arena)
	out := appendRedacted(rm.arena[start:start:start+n], v, fs)
	if len(out) <= n {
		// In place (markerLen is an upper bound); else out was
		// reallocated and is the caller's alone.
		rm.arena = rm.arena[:start+len(out)]
	}
	return out
}

// redact replaces each finding inside a text value by a marker that keeps
// what is safe to show.
func redact(v []byte, fs []Finding) []byte {
	return appendRedacted(make([]byte, 0, redactedLen(v, fs)), v, fs)
}

func redactedLen(v []byte, fs []Finding) int {
	n := len(v)
	for _, f := range fs {
		n += markerLen(f.Detector) - (f.End - f.Start)
	}
	return n
}

func appendRedacted(out, v []byte, fs []Finding) []byte {
	last := 0
	for _, f := range fs {
		out = append(out, v[last:f.Start]...)
		out = appendMarker(out, f.Detector, f.merged, v[f.Start:f.End])
		last = f.End
	}
	return append(out, v[last:]...)
}

// markerLen is at least the length of a marker of det.
func markerLen(det string) int {
	switch det {
	case "email":
		return len("***@***")
	case "card":
		return len("****-****-****-1111")
	case "national_id":
		return len("***-**-****")
	}
	return len("[REDACTED ]") + len(det)
}

// appendMarker appends the marker of a finding of det; merged says the
// finding took in another detector's overlapping one.
func appendMarker(out []byte, det string, merged bool, orig []byte) []byte {
	switch det {
	case "email":
		return append(out, "***@***"...)
	case "card":
		out = append(out, "****-****-****-"...)
		if merged {
			// The last digits may be another secret's.
			return append(out, "****"...)
		}
		// The last four digits, as card receipts print them.
		var last [4]byte
		n := 0
		for i := len(orig) - 1; i >= 0 && n < len(last); i-- {
			if isDigit(orig[i]) {
				n++
				last[len(last)-n] = orig[i]
			}
		}
		return append(out, last[len(last)-n:]...)
	case "national_id":
		return append(out, "***-**-****"...)
	}
	out = append(out, "[REDACTED "...)
	out = append(out, det...)
	return append(out, ']')
}
