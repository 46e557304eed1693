package sqlclass

import (
	pg "github.com/pganalyze/pg_query_go/v6"
)

// Schema changes that take masked data out of the rules' reach. Column
// rules name columns by table and column name, so renaming a masked
// table, column or schema, or moving the table to another schema, would
// leave its values under names no rule covers; a generated column or an
// ALTER COLUMN ... USING computed from a masked column stores a copy;
// a trigger or a rule on the table runs code that sees every row written;
// inheriting from another table, or becoming a partition of one, lets the
// parent return the rows under its own name; a publication ships the
// rows to a subscriber interlock never sees. Each is refused under column
// rules, naming the rule.

// statisticsRelations hold sample values of the columns they describe
// (most common values, histogram bounds): reading them reads the column.
var statisticsRelations = map[string]bool{
	"pg_catalog.pg_stats":              true,
	"pg_catalog.pg_stats_ext":          true,
	"pg_catalog.pg_stats_ext_exprs":    true,
	"pg_catalog.pg_statistic":          true,
	"pg_catalog.pg_statistic_ext_data": true,
}

// SchemaResolver is a Resolver that can also say whether a schema holds a
// relation with masked columns. Without one, renaming a schema is refused
// under column rules.
type SchemaResolver interface {
	SchemaMasked(schema string) (bool, error)
}

// schemaChange checks a statement that changes the schema.
func (a *flowAnalyzer) schemaChange(n *pg.Node) {
	switch x := n.GetNode().(type) {
	case *pg.Node_AlterTableStmt:
		a.alterTable(x.AlterTableStmt)
	case *pg.Node_RenameStmt:
		a.rename(x.RenameStmt)
	case *pg.Node_AlterObjectSchemaStmt:
		st := x.AlterObjectSchemaStmt
		if st.Relation != nil && a.holdsMasked(st.Relation) != nil {
			a.fail("moving %s to another schema would take its masked columns out of the mask rules' names", refOf(st.Relation))
		}
	case *pg.Node_CreateTrigStmt:
		if rv := x.CreateTrigStmt.Relation; rv != nil && a.holdsMasked(rv) != nil {
			a.fail("a trigger on %s would run code that sees its masked columns", refOf(rv))
		}
	case *pg.Node_RuleStmt:
		if rv := x.RuleStmt.Relation; rv != nil && a.holdsMasked(rv) != nil {
			a.fail("a rule on %s would rewrite statements over its masked columns", refOf(rv))
		}
	case *pg.Node_CreatePublicationStmt:
		a.publication(x.CreatePublicationStmt.ForAllTables, x.CreatePublicationStmt.Pubobjects)
	case *pg.Node_AlterPublicationStmt:
		a.publication(x.AlterPublicationStmt.ForAllTables, x.AlterPublicationStmt.Pubobjects)
	}
}

func (a *flowAnalyzer) alterTable(st *pg.AlterTableStmt) {
	if st.Relation == nil {
		return
	}
	var target *item
	resolved := false
	resolve := func() *item {
		if !resolved {
			resolved = true
			target = a.holdsMasked(st.Relation)
		}
		return target
	}
	for _, c := range st.Cmds {
		cmd := c.GetAlterTableCmd()
		if cmd == nil {
			continue
		}
		switch cmd.Subtype {
		case pg.AlterTableType_AT_AddColumn:
			cd := cmd.Def.GetColumnDef()
			if cd == nil || resolve() == nil {
				continue
			}
			for _, con := range cd.Constraints {
				if k := con.GetConstraint(); k != nil && k.Contype == pg.ConstrType_CONSTR_GENERATED && a.tableExpr(k.RawExpr, st.Relation, target) {
					a.store("generated column " + cd.Colname + " computed from a masked column")
				}
			}
		case pg.AlterTableType_AT_SetExpression:
			if resolve() != nil && a.tableExpr(cmd.Def, st.Relation, target) {
				a.store("generated column " + cmd.Name + " computed from a masked column")
			}
		case pg.AlterTableType_AT_AlterColumnType:
			cd := cmd.Def.GetColumnDef()
			if cd == nil || cd.RawDefault == nil || resolve() == nil {
				continue
			}
			if a.tableExpr(cd.RawDefault, st.Relation, target) && !columnTaint(target, cmd.Name) {
				a.store("ALTER COLUMN " + cmd.Name + " TYPE ... USING a masked column")
			}
		case pg.AlterTableType_AT_AddInherit:
			if resolve() != nil {
				a.fail("%s inheriting from another table would return its masked columns under the parent's name", refOf(st.Relation))
			}
		case pg.AlterTableType_AT_AttachPartition:
			if pc := cmd.Def.GetPartitionCmd(); pc != nil && pc.Name != nil && a.holdsMasked(pc.Name) != nil {
				a.fail("attaching %s as a partition would return its masked columns under the parent's name", refOf(pc.Name))
			}
		}
	}
}

// tableExpr is the taint of an expression over one table's columns.
func (a *flowAnalyzer) tableExpr(n *pg.Node, rv *pg.RangeVar, it *item) bool {
	if n == nil || it == nil {
		return false
	}
	sc := &scope{items: []*item{{alias: rv.Relname, cols: it.cols}}}
	return a.expr(n, sc)
}

func columnTaint(it *item, name string) bool {
	for i, n := range it.cols.names {
		if n == name {
			return it.cols.taint[i]
		}
	}
	return it.cols.unsure
}

func (a *flowAnalyzer) rename(st *pg.RenameStmt) {
	switch st.RenameType {
	case pg.ObjectType_OBJECT_TABLE, pg.ObjectType_OBJECT_VIEW, pg.ObjectType_OBJECT_MATVIEW, pg.ObjectType_OBJECT_FOREIGN_TABLE:
		if st.Relation != nil && a.holdsMasked(st.Relation) != nil {
			a.fail("renaming %s would take its masked columns out of the mask rules' names", refOf(st.Relation))
		}
	case pg.ObjectType_OBJECT_COLUMN:
		if st.Relation == nil {
			return
		}
		if it := a.holdsMasked(st.Relation); it != nil && columnTaint(it, st.Subname) {
			a.fail("renaming masked column %s of %s would take it out of the mask rules' names", st.Subname, refOf(st.Relation))
		}
	case pg.ObjectType_OBJECT_SCHEMA:
		sr, ok := a.res.(SchemaResolver)
		if !ok {
			a.fail("interlock cannot tell whether schema %s holds masked columns", st.Subname)
			return
		}
		masked, err := sr.SchemaMasked(st.Subname)
		switch {
		case err != nil:
			a.fail("interlock could not read schema %s from the catalog: %v", st.Subname, err)
		case masked:
			a.fail("renaming schema %s would take its masked columns out of the mask rules' names", st.Subname)
		}
	}
}

func (a *flowAnalyzer) publication(all bool, objects []*pg.Node) {
	if all {
		a.fail("a publication of all tables would ship masked columns to subscribers interlock does not see")
		return
	}
	for _, o := range objects {
		spec := o.GetPublicationObjSpec()
		if spec == nil {
			continue
		}
		switch spec.Pubobjtype {
		case pg.PublicationObjSpecType_PUBLICATIONOBJ_TABLE:
			if t := spec.Pubtable; t != nil && t.Relation != nil && a.holdsMasked(t.Relation) != nil {
				a.fail("publishing %s would ship its masked columns to subscribers interlock does not see", refOf(t.Relation))
			}
		default:
			// Tables in a schema, or the current schema: refused, as
			// interlock would have to list them.
			a.fail("a publication of a schema's tables would ship masked columns to subscribers interlock does not see")
		}
	}
}

// holdsMasked resolves a relation a schema change names and returns it
// when any candidate has masked columns (nil otherwise). A relation the
// catalog does not have yet was made in this transaction; only a copy
// could put masked values in it, and copies are refused.
func (a *flowAnalyzer) holdsMasked(rv *pg.RangeVar) *item {
	rels, err := a.res.Relations(Ref{Schema: rv.Schemaname, Name: rv.Relname})
	if err != nil {
		a.fail("interlock could not read relation %s from the catalog: %v", refOf(rv), err)
		return nil
	}
	if len(rels) == 0 {
		return nil
	}
	it := a.relation(rv, nil)
	if !it.cols.any {
		return nil
	}
	return it
}

func refOf(rv *pg.RangeVar) Ref { return Ref{Schema: rv.Schemaname, Name: rv.Relname} }
