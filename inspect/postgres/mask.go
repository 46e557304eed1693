package postgres

import (
	"encoding/binary"

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
	values, err := splitRow(r.vals[:0], body)
	if err != nil {
		return err
	}
	r.vals = values
	if err := plan.Mask(values); err != nil {
		return serverErr("masking failed, the row is not sent: %v", err)
	}
	out := joinRow(r.out[:0], values)
	r.out = out
	// The recorded copy is the masked one.
	s.row(r, out[5:])
	return s.toClient(out)
}

// maskPlan works out, once per run, which columns its mask rules cover.
// Masking fails closed: without the columns' names, no row goes out.
func (s *session) maskPlan(r *run) (planRow, error) {
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
	for i, f := range r.fields {
		cols[i] = model.MaskColumn{Name: f.name, TypeOID: f.oid, Binary: f.format == 1}
		if ti := names[f.table]; ti != nil {
			cols[i].Table = ti.name
			if n, ok := ti.cols[f.attnum]; ok {
				cols[i].Name = n
			}
		}
	}
	r.plan = s.h.masker.Plan(r.mask, cols)
	return r.plan, nil
}

// planRow is the part of inspect.RowMasker used here.
type planRow interface {
	Mask(values [][]byte) error
	Decisions() []model.MaskDecision
}

// splitRow reads a DataRow's values (nil for NULL) into out.
func splitRow(out [][]byte, body []byte) ([][]byte, error) {
	if len(body) < 2 {
		return nil, serverErr("short DataRow")
	}
	n := int(int16(binary.BigEndian.Uint16(body)))
	if n < 0 {
		return nil, serverErr("negative column count")
	}
	out = append(out[:0], make([][]byte, n)...)
	p := 2
	for i := range out {
		if p+4 > len(body) {
			return nil, serverErr("truncated DataRow")
		}
		l := int(int32(binary.BigEndian.Uint32(body[p:])))
		p += 4
		if l < 0 {
			continue
		}
		if p+l > len(body) {
			return nil, serverErr("truncated DataRow")
		}
		out[i] = body[p : p+l : p+l]
		p += l
	}
	if p != len(body) {
		return nil, serverErr("DataRow has trailing data")
	}
	return out, nil
}

// joinRow encodes a whole DataRow message into out.
func joinRow(out []byte, values [][]byte) []byte {
	n := 2
	for _, v := range values {
		n += 4 + len(v)
	}
	out = header(out, 'D', n)
	out = binary.BigEndian.AppendUint16(out, uint16(len(values)))
	for _, v := range values {
		if v == nil {
			out = binary.BigEndian.AppendUint32(out, 0xffffffff)
			continue
		}
		out = binary.BigEndian.AppendUint32(out, uint32(len(v)))
		out = append(out, v...)
	}
	return out
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
			Data:    model.PGMask{Statement: r.seq, Rule: d.Rule, Column: d.Column, Detector: d.Detector, Count: d.Count},
			Payload: d.Hashes,
		})
	}
	return out
}
