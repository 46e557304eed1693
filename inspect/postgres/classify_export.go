package postgres

import (
	"errors"

	"github.com/interlock/interlock/model"
)

var exported classifier

// Classify splits a query string into statements and describes each as
// the handler does before asking policy: `interlock policy test` uses it
// to give the same decisions the proxy gives.
func Classify(sql string) ([]model.Operation, error) {
	p := exported.parse(sql)
	if len(p.stmts) == 0 {
		return nil, errors.New("no statement in the SQL given")
	}
	out := make([]model.Operation, 0, len(p.stmts))
	for _, st := range p.stmts {
		cl := st.class
		out = append(out, model.Operation{Protocol: model.ProtoPostgres, Kind: cl.kind, Text: st.text,
			Kinds: cl.kinds, Tables: cl.tables, ReadOnly: cl.readOnly, NoWhere: cl.noWhere})
	}
	return out, nil
}
