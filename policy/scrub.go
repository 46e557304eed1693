package policy

import "github.com/interlock/interlock/model"

// Scrub runs the detectors of spec's rules over free text the server sends
// outside result rows (an error message, a notice, a notification's
// payload, a setting, a column name) and redacts what they find, as in
// result values. It reports whether it changed anything.
func (m *Masker) Scrub(spec *model.MaskSpec, text string) (string, bool) {
	if spec == nil {
		return text, false
	}
	var names []string
	for _, r := range spec.Rules {
		names = append(names, r.Detectors...)
	}
	if len(names) == 0 {
		return text, false
	}
	fs := Detect(names, []byte(text))
	if len(fs) == 0 {
		return text, false
	}
	return string(redact([]byte(text), fs)), true
}
