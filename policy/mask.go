package policy

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/interlock/interlock/atomicfile"
	"github.com/interlock/interlock/model"
)

// Masker masks result values and keeps, for the journal, a keyed hash of
// every original it replaced: an auditor can tell two masked values apart
// or match them without ever seeing them.
type Masker struct {
	key []byte
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
	return &Masker{key: key}, nil
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

// NewMaskerWithKey is for tests.
func NewMaskerWithKey(key []byte) *Masker { return &Masker{key: key} }

// Column describes one result column.
type Column = model.MaskColumn

// columnPlan is what happens to one column.
type columnPlan struct {
	rule    string // the column rule masking it whole, if any
	display string // table.column, for the journal
	whole   []byte // the column's whole-value mask (shared, read-only)
	// ruleStat and detStats (aligned with RowMasker.dets) point at the
	// accumulators, found once instead of per value.
	ruleStat *maskStat
	detStats []*maskStat
}

// RowMasker masks the rows of one result set and counts what it did.
type RowMasker struct {
	cols []Column
	plan []columnPlan
	// dets are the content detectors every column not masked whole runs,
	// each once; detRules the rule each comes from (the first naming it).
	dets     []*detector
	detRules []string
	mac      hash.Hash
	sum      []byte
	stats    map[statKey]*maskStat
	order    []statKey
	// found is reused between values.
	found []Finding
}

// maskStat accumulates one MaskDecision; hashes are kept raw (16 bytes
// each) and encoded once, in Decisions.
type maskStat struct {
	d      MaskDecision
	hashes []byte
}

type statKey struct{ rule, column, detector string }

// MaskDecision is what masking did for one rule, column and detector.
type MaskDecision = model.MaskDecision

// Plan prepares masking for a result set's columns under spec. It returns
// nil when nothing in the result needs masking.
func (m *Masker) Plan(spec *model.MaskSpec, cols []Column) *RowMasker {
	if spec == nil || len(spec.Rules) == 0 {
		return nil
	}
	rm := &RowMasker{cols: cols, plan: make([]columnPlan, len(cols)), stats: map[statKey]*maskStat{}}
	any := false
	for _, r := range spec.Rules {
		for _, name := range r.Detectors {
			any = true
			if d := detectors[name]; d != nil && !slices.Contains(rm.dets, d) {
				rm.dets = append(rm.dets, d)
				rm.detRules = append(rm.detRules, r.Rule)
			}
		}
	}
	for i, c := range cols {
		p := &rm.plan[i]
		p.display = c.Name
		if c.Table != "" {
			p.display = c.Table + "." + c.Name
		}
		p.whole = typeMask(c)
		if c.Table == "" {
			continue
		}
		for _, r := range spec.Rules {
			if columnMatch(r.Columns, c.Table, c.Name) {
				p.rule = r.Rule
				any = true
				break
			}
		}
	}
	if !any {
		return nil
	}
	rm.mac = hmac.New(sha256.New, m.key)
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
// replaced value gets a new slice; the caller's buffers are not written.
func (rm *RowMasker) Mask(values [][]byte) error {
	if len(values) != len(rm.cols) {
		return fmt.Errorf("masking: row has %d values for %d columns", len(values), len(rm.cols))
	}
	for i, v := range values {
		if v == nil {
			continue
		}
		p := &rm.plan[i]
		c := rm.cols[i]
		if p.rule != "" {
			if p.ruleStat == nil {
				p.ruleStat = rm.stat(p.rule, p, "")
			}
			rm.note(p.ruleStat, v)
			values[i] = p.whole
			continue
		}
		if len(rm.dets) == 0 {
			continue
		}
		if c.Binary && !textLike(c.TypeOID) {
			// A detector reads text; binary numbers and dates cannot hold
			// an email or a key.
			continue
		}
		fs := detectInto(rm.found[:0], rm.dets, v)
		rm.found = fs
		if len(fs) == 0 {
			continue
		}
		for _, f := range fs {
			rm.note(rm.detStat(p, f.Detector), v[f.Start:f.End])
		}
		if !textLike(c.TypeOID) {
			values[i] = p.whole
			continue
		}
		values[i] = redact(v, fs)
	}
	return nil
}

// detStat is the accumulator of a detector's findings in a column.
func (rm *RowMasker) detStat(p *columnPlan, det string) *maskStat {
	if p.detStats == nil {
		p.detStats = make([]*maskStat, len(rm.dets))
	}
	for i, d := range rm.dets {
		if d.name == det {
			if p.detStats[i] == nil {
				p.detStats[i] = rm.stat(rm.detRules[i], p, det)
			}
			return p.detStats[i]
		}
	}
	return rm.stat("", p, det)
}

func (rm *RowMasker) stat(rule string, p *columnPlan, det string) *maskStat {
	k := statKey{rule, p.display, det}
	st := rm.stats[k]
	if st == nil {
		st = &maskStat{d: MaskDecision{Rule: rule, Column: p.display, Detector: det}}
		rm.stats[k] = st
		rm.order = append(rm.order, k)
	}
	return st
}

func (rm *RowMasker) note(st *maskStat, original []byte) {
	st.d.Count++
	rm.mac.Reset()
	rm.mac.Write(original)
	rm.sum = rm.mac.Sum(rm.sum[:0])
	st.hashes = append(st.hashes, rm.sum[:16]...)
}

// Decisions returns what was masked, in first-seen order.
func (rm *RowMasker) Decisions() []MaskDecision {
	out := make([]MaskDecision, 0, len(rm.order))
	for _, k := range rm.order {
		st := rm.stats[k]
		d := st.d
		d.Hashes = append([]byte(nil), st.hashes...)
		out = append(out, d)
	}
	return out
}

// redact replaces each finding inside a text value by a marker that keeps
// what is safe to show.
func redact(v []byte, fs []Finding) []byte {
	out := make([]byte, 0, len(v))
	last := 0
	for _, f := range fs {
		out = append(out, v[last:f.Start]...)
		out = append(out, marker(f.Detector, v[f.Start:f.End])...)
		last = f.End
	}
	return append(out, v[last:]...)
}

func marker(det string, orig []byte) string {
	switch det {
	case "email":
		return "***@***"
	case "card":
		// The last four digits, as card receipts print them.
		digits := make([]byte, 0, 19)
		for _, c := range orig {
			if c >= '0' && c <= '9' {
				digits = append(digits, c)
			}
		}
		return "****-****-****-" + string(digits[len(digits)-4:])
	case "national_id":
		return "***-**-****"
	}
	return "[REDACTED " + det + "]"
}
