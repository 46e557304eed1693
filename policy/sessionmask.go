package policy

import "github.com/interlock/interlock/model"

// SessionMasks returns the mask rules that can apply to a session of this
// origin, whatever its operations: what the server sends outside result
// rows (errors, notices, notifications, settings) is scrubbed with them.
// An identity interlock could not inspect counts as matching (unknown
// never opens data).
func (p *Policy) SessionMasks(o model.Origin) *model.MaskSpec {
	rs := p.rs.Load()
	var spec *model.MaskSpec
	for i := range rs.rules {
		r := &rs.rules[i]
		if r.action != model.Mask || r.mask == nil || !r.takes(o.Target.Name, o.Target.Protocol) {
			continue
		}
		if r.id != nil && matchIdentity(r, o.Identity, p.names) == noMatch {
			continue
		}
		if spec == nil {
			spec = &model.MaskSpec{}
		}
		spec.Rules = append(spec.Rules, model.MaskRule{Rule: r.name, Columns: r.mask.Columns, Detectors: r.mask.Detectors, Live: r.mask.Live, Transfers: r.mask.Transfers})
	}
	return spec
}
