package policy

import "github.com/interlock/interlock/model"

// ColumnRule returns the name of the first mask rule of spec whose
// columns cover table.column (table is schema.table), or "".
func ColumnRule(spec *model.MaskSpec, table, column string) string {
	if spec == nil {
		return ""
	}
	for _, r := range spec.Rules {
		if columnMatch(r.Columns, table, column) {
			return r.Rule
		}
	}
	return ""
}
