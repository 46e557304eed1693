package postgres

import (
	"github.com/interlock/interlock/inspect"
	"github.com/interlock/interlock/model"
)

// maxMaskedRow bounds a row of a masked result: it is held whole in
// memory to be masked; a larger one ends the session rather than pass
// unmasked.
const maxMaskedRow = 64 << 20

// dataRow forwards one DataRow (raw is the whole message, body its
// contents), masked when the run's result is, and records it.
func (s *session) dataRow(r *run, raw, body []byte) error {
	plan, err := s.maskPlan(r)
	if err != nil {
		return err
	}
	if plan == nil {
		s.row(r, body)
		return s.toClient(raw)
	}
	if err := r.row.Decode(body); err != nil {
		return serverErr("%v", err)
	}
	if err := plan.Mask(r.row.Values); err != nil {
		return serverErr("masking failed, the row is not sent: %v", err)
	}
	out, err := r.row.Encode(r.out[:0])
	if err != nil {
		return serverErr("masked row: %v", err)
	}
	r.out = out
	// The recorded copy is the masked one.
	s.row(r, out[5:])
	return s.toClient(out)
}

// maskPlan works out, once per run, which columns its mask rules cover.
// Masking fails closed: without the columns' names, no row goes out.
func (s *session) maskPlan(r *run) (inspect.RowMasker, error) {
	if r.mask == nil || s.h.masker == nil {
		if r.mask != nil {
			return nil, serverErr("the result must be masked, but no masker is configured")
		}
		return nil, nil
	}
	if r.planned {
		return r.plan, nil
	}
	r.planned = true
	if len(r.fields) == 0 {
		return nil, serverErr("the result must be masked, but its columns were not described; refusing to send it")
	}
	var oids []uint32
	seen := map[uint32]bool{}
	for _, f := range r.fields {
		if f.table != 0 && !seen[f.table] {
			seen[f.table] = true
			oids = append(oids, f.table)
		}
	}
	names := map[uint32]*tableInfo{}
	if len(oids) > 0 {
		var err error
		names, err = s.h.cat.names(s.ctx, s.t, s.origin.OrigDst, s.database, oids)
		if err != nil {
			return nil, serverErr("the result must be masked, but its columns could not be named: %v", err)
		}
	}
	cols := make([]model.MaskColumn, len(r.fields))
	derived := ""
	if r.flow != nil && r.flow.Any() {
		derived = maskRuleNames(r.mask)
	}
	for i, f := range r.fields {
		cols[i] = model.MaskColumn{Name: f.name, TypeOID: f.oid, Binary: f.format == 1}
		if ti := names[f.table]; ti != nil {
			cols[i].Table = ti.name
			if n, ok := ti.cols[f.attnum]; ok {
				cols[i].Name = n
			}
		}
		// A column the data flow says may carry a masked value is masked
		// whole: computed ones, and any whose position the flow could not
		// place that is not a plain column of a table.
		switch {
		case derived == "":
		case i < len(r.flow.Columns) && r.flow.Columns[i]:
			cols[i].Derived = derived
		case r.flow.Unsure && (f.table == 0 || names[f.table] == nil || names[f.table].kind != 'r' && names[f.table].kind != 'p'):
			cols[i].Derived = derived
		}
	}
	r.plan = s.h.masker.Plan(r.mask, cols)
	return r.plan, nil
}

// maskRecords are the pg.mask entries of a run whose result was masked:
// one per rule and column (or detector), the keyed hashes as payload.
func (s *session) maskRecords(r *run) []model.Record {
	if r.plan == nil {
		return nil
	}
	var out []model.Record
	for _, d := range r.plan.Decisions() {
		out = append(out, model.Record{
			Kind: model.KindPGMask, Session: s.id,
			Data:    model.PGMask{Statement: r.stmtSeq(), Rule: d.Rule, Column: d.Column, Detector: d.Detector, Count: d.Count},
			Payload: d.Hashes,
		})
	}
	return out
}
