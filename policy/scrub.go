package policy

import (
	"bytes"

	"github.com/interlock/interlock/model"
)

// Scrub runs the detectors of spec's rules over free text the server sends
// outside result rows (an error message, a notice, a notification's
// payload, a setting, a column name) and redacts what they find, as in
// result values (ScrubText). It reports whether it changed anything.
func (m *Masker) Scrub(spec *model.MaskSpec, text string) (string, bool) {
	out, found := ScrubText(SpecDetectors(spec), text)
	return out, len(found) > 0
}

// Scrubbed is one finding ScrubText replaced.
type Scrubbed struct {
	// Detector names the detector that found it.
	Detector string
	// Original is the text it replaced. It is for the keyed hash the
	// journal keeps (Masker.Hash); never record it.
	Original string
}

// ScrubText masks free text a server sends while a mask rule with
// detectors applies, outside of result rows: error and notice fields,
// NOTIFY payloads, ParameterStatus values, column names. It runs the
// named detectors over s (unknown names are ignored: the config refuses
// them) and replaces each finding in place by the marker a text column
// gets (***@***, ****-****-****-1111, ***-**-****, [REDACTED token]...).
//
// It returns the scrubbed text (s itself when nothing was found) and what
// it replaced, in order: found is empty exactly when s is returned
// unchanged. A finding that only escapes reveal (JSON \u0040, bytea \x…,
// backslashes doubled by quoting) cannot be replaced in place: then the
// whole text is replaced by "[REDACTED detector]".
//
// ScrubDecisions turns found into the decisions to journal.
func ScrubText(detectors []string, s string) (text string, found []Scrubbed) {
	ds := lookupDetectors(detectors)
	if len(ds) == 0 || s == "" {
		return s, nil
	}
	v := []byte(s)
	fs := detectInto(nil, ds, v)
	for _, f := range fs {
		found = append(found, Scrubbed{Detector: f.Detector, Original: s[f.Start:f.End]})
	}
	text = s
	if len(fs) > 0 {
		v = redact(v, fs)
		text = string(v)
	}
	if bytes.IndexByte(v, '\\') < 0 {
		return text, found
	}
	var hidden []Scrubbed
	sc := valueScanner{dets: ds, onFind: func(det int, m []byte) {
		f := Scrubbed{Detector: ds[det].name, Original: string(m)}
		for _, h := range hidden {
			if h == f {
				return // shown by two decodings: one original
			}
		}
		hidden = append(hidden, f)
	}}
	sc.generic(v, 0)
	if len(hidden) == 0 {
		return text, found
	}
	return "[REDACTED " + hidden[0].Detector + "]", append(found, hidden...)
}

// SpecDetectors lists the detectors the rules of spec name, each once, in
// order (nil when none does): what ScrubText runs under that spec.
func SpecDetectors(spec *model.MaskSpec) []string {
	if spec == nil {
		return nil
	}
	var out []string
	for _, r := range spec.Rules {
		for _, d := range r.Detectors {
			if !containsString(out, d) {
				out = append(out, d)
			}
		}
	}
	return out
}

func containsString(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// ScrubDecisions are the decisions to journal for what ScrubText replaced
// in one field (column names it: "error.detail", "notify payload"): one
// per detector, in first-seen order, under the first rule of spec that
// names the detector (as result masking does), with hash (Masker.Hash,
// or inspect.Masker's) of each original.
func ScrubDecisions(spec *model.MaskSpec, column string, found []Scrubbed, hash func([]byte) []byte) []MaskDecision {
	var out []MaskDecision
	for _, f := range found {
		i := 0
		for i < len(out) && out[i].Detector != f.Detector {
			i++
		}
		if i == len(out) {
			out = append(out, MaskDecision{Rule: detectorRule(spec, f.Detector), Column: column, Detector: f.Detector})
		}
		out[i].Count++
		out[i].Hashes = append(out[i].Hashes, hash([]byte(f.Original))...)
	}
	return out
}

// detectorRule is the first rule of spec naming detector det.
func detectorRule(spec *model.MaskSpec, det string) string {
	if spec != nil {
		for _, r := range spec.Rules {
			if containsString(r.Detectors, det) {
				return r.Rule
			}
		}
	}
	return ""
}
