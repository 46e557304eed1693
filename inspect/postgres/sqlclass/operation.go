package sqlclass

import (
	"errors"

	"github.com/interlock/interlock/model"
)

// Operation is the policy operation of one classified statement: what the
// postgres handler asks policy about and what `interlock policy test`
// shows, so both describe a statement the same way.
func Operation(text string, c *Class) model.Operation {
	op := model.Operation{Protocol: model.ProtoPostgres, Kind: c.Kind, Text: text, Kinds: c.Kinds,
		Tables: c.Tables, ReadOnly: c.ReadOnly, NoWhere: c.NoWhere}
	if c.Err != "" {
		op.Detail = c.Err
	}
	return op
}

// staticClassifier serves ClassifyStatic; a Classifier caches by text and
// is safe for concurrent use.
var staticClassifier Classifier

// ClassifyStatic splits a query string into statements and describes each
// as the handler does before asking policy, without a target's catalog
// (see Static): what the text alone proves.
func ClassifyStatic(sql string) ([]model.Operation, error) {
	p := staticClassifier.Parse(sql)
	if len(p.Stmts) == 0 {
		return nil, errors.New("no statement in the SQL given: pass at least one SQL statement")
	}
	out := make([]model.Operation, 0, len(p.Stmts))
	for _, st := range p.Stmts {
		out = append(out, Operation(st.Text, Static(st.Class)))
	}
	return out, nil
}
