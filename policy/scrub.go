package policy

import "github.com/interlock/interlock/model"

// Scrub runs the detectors of spec's rules over free text the server sends
// outside result rows (an error message, a notice, a notification's
// payload, a setting, a column name) and redacts what they find, as in
// result values (ScrubText). It reports whether it changed anything.
func (m *Masker) Scrub(spec *model.MaskSpec, text string) (string, bool) {
	out, found := ScrubText(SpecDetectors(spec), text)
	return out, len(found) > 0
}
