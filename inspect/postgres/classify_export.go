package postgres

import (
	"errors"

	"github.com/interlock/interlock/inspect/postgres/sqlclass"
	"github.com/interlock/interlock/model"
)

var exported sqlclass.Classifier

// Classify splits a query string into statements and describes each as
// the handler does before asking policy, without the target's catalog
// (sqlclass.Static): `interlock policy test` uses it.
func Classify(sql string) ([]model.Operation, error) {
	p := exported.Parse(sql)
	if len(p.Stmts) == 0 {
		return nil, errors.New("no statement in the SQL given")
	}
	out := make([]model.Operation, 0, len(p.Stmts))
	for _, st := range p.Stmts {
		out = append(out, operation(st.Text, sqlclass.Static(st.Class)))
	}
	return out, nil
}
