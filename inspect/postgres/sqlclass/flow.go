package sqlclass

import (
	"fmt"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// The data flow of a statement's output under column mask rules: which
// output columns may carry a masked value, or anything computed from one,
// through expressions, casts, functions, aggregates, whole-row references,
// subqueries, set operations, CTEs and views. Where it cannot tell, a
// column counts as carrying one (it is masked whole); where the data flow
// cannot be established at all (a relation it cannot find, a view it
// cannot read, a function that reads relations it names), the statement
// is refused. It is a syntactic analysis over the catalog's names: a
// column is tainted when any column it could refer to is.

// Relation is what the flow analysis knows of one relation.
type Relation struct {
	// Name is schema.relation.
	Name string
	// Kind is pg_class.relkind: r, p (tables), v (view), m (materialized
	// view), f (foreign table).
	Kind byte
	// Columns are the relation's columns in order.
	Columns []string
	// Masked says, per column, that a mask rule covers it. For a view or
	// a materialized view the analysis works it out from Definition.
	Masked []bool
	// Definition is a view's or materialized view's query.
	Definition string
}

// Resolver finds the relations a name can denote: the relation in the
// named schema, or every relation of that name in any schema when the
// name is unqualified (the session's search_path is the client's to set).
type Resolver interface {
	Relations(r Ref) ([]*Relation, error)
}

// Flow is what the analysis found.
type Flow struct {
	// Columns says, per output column, that it may carry a masked value.
	Columns []bool
	// Unsure: output positions could not be matched to expressions; every
	// computed output column counts as carrying a masked value.
	Unsure bool
	// Stored names where a masked value flows into storage or a side
	// effect (CREATE TABLE AS, INSERT ... SELECT, UPDATE SET, COPY,
	// set_config, pg_notify): refused by default.
	Stored string
	// Refuse says why the data flow cannot be established.
	Refuse string
	// Touches says the statement reads a relation with masked columns:
	// what the server says about it (an error's detail, a context line)
	// may quote them.
	Touches bool
}

// Any says some output column may carry a masked value.
func (f Flow) Any() bool {
	if f.Unsure {
		return true
	}
	for _, t := range f.Columns {
		if t {
			return true
		}
	}
	return false
}

// maxFlowDepth bounds nesting (views of views, subqueries).
const maxFlowDepth = 64

// readsRelations are built-in functions that read relations or queries
// named in their arguments: what they read does not show in the
// statement.
var readsRelations = words(`table_to_xml table_to_xmlschema table_to_xml_and_xmlschema query_to_xml
	query_to_xmlschema query_to_xml_and_xmlschema cursor_to_xml cursor_to_xmlschema schema_to_xml
	schema_to_xmlschema schema_to_xml_and_xmlschema database_to_xml database_to_xmlschema
	database_to_xml_and_xmlschema ts_stat pg_read_file pg_read_binary_file lo_get lo_export`)

// storesArgs are built-in functions whose arguments leave the statement:
// into a setting, a notification, a large object, a sequence.
var storesArgs = words(`set_config pg_notify lo_from_bytea lo_put lo_import setval pg_logical_emit_message`)

// AnalyzeFlow works out the data flow of a statement's output. c must
// come from Parse (it keeps the parse tree).
func AnalyzeFlow(c *Class, res Resolver) Flow {
	a := &flowAnalyzer{res: res, views: map[*Relation][]bool{}}
	if c.tree == nil {
		return Flow{Refuse: "the statement did not parse"}
	}
	cols := a.statement(c.tree)
	if a.refuse != "" {
		return Flow{Refuse: a.refuse}
	}
	return Flow{Columns: cols.taint, Unsure: cols.unsure, Stored: a.stored, Touches: a.touches}
}

type flowAnalyzer struct {
	res     Resolver
	refuse  string
	stored  string
	touches bool
	depth   int
	views   map[*Relation][]bool
}

func (a *flowAnalyzer) fail(format string, args ...any) {
	if a.refuse == "" {
		a.refuse = fmt.Sprintf(format, args...)
	}
}

func (a *flowAnalyzer) store(where string) {
	if a.stored == "" {
		a.stored = where
	}
}

// columns is a query's output: names and taint by position. unsure: the
// positions are not known (a * over columns interlock cannot list).
type columns struct {
	names  []string
	taint  []bool
	unsure bool
	any    bool
}

func (c *columns) add(name string, t bool) {
	c.names = append(c.names, name)
	c.taint = append(c.taint, t)
	c.any = c.any || t
}

// item is a relation visible in a query's FROM (or a CTE's template).
type item struct {
	alias string
	cols  columns
}

type scope struct {
	items  []*item
	ctes   map[string]*columns
	parent *scope
}

func (s *scope) cte(name string) *columns {
	for ; s != nil; s = s.parent {
		if c, ok := s.ctes[name]; ok {
			return c
		}
	}
	return nil
}

// anyTaint says a relation in scope (or an outer one) carries a masked
// column.
func (s *scope) anyTaint() bool {
	for ; s != nil; s = s.parent {
		for _, it := range s.items {
			if it.cols.any {
				return true
			}
		}
	}
	return false
}

// statement analyzes a top-level statement.
func (a *flowAnalyzer) statement(n *pg.Node) columns {
	switch x := n.GetNode().(type) {
	case *pg.Node_SelectStmt:
		out := a.query(x.SelectStmt, nil)
		if x.SelectStmt.IntoClause != nil && out.any {
			a.store("SELECT INTO")
		}
		return out
	case *pg.Node_InsertStmt:
		sc := a.withClause(x.InsertStmt.WithClause, nil)
		if x.InsertStmt.SelectStmt != nil {
			if in := a.queryNode(x.InsertStmt.SelectStmt, sc); in.any {
				a.store("INSERT ... SELECT into " + x.InsertStmt.Relation.GetRelname())
			}
		}
		return a.returning(x.InsertStmt.Relation, x.InsertStmt.ReturningList, nil, sc)
	case *pg.Node_UpdateStmt:
		sc := a.withClause(x.UpdateStmt.WithClause, nil)
		sc = a.from(x.UpdateStmt.FromClause, sc, x.UpdateStmt.Relation)
		for _, t := range x.UpdateStmt.TargetList {
			if rt := t.GetResTarget(); rt != nil && a.expr(rt.Val, sc) {
				a.store("UPDATE ... SET " + rt.Name + " from a masked value")
			}
		}
		a.expr(x.UpdateStmt.WhereClause, sc)
		return a.project(x.UpdateStmt.ReturningList, sc)
	case *pg.Node_DeleteStmt:
		sc := a.withClause(x.DeleteStmt.WithClause, nil)
		sc = a.from(x.DeleteStmt.UsingClause, sc, x.DeleteStmt.Relation)
		a.expr(x.DeleteStmt.WhereClause, sc)
		return a.project(x.DeleteStmt.ReturningList, sc)
	case *pg.Node_MergeStmt:
		m := x.MergeStmt
		sc := a.withClause(m.WithClause, nil)
		sc = a.from([]*pg.Node{m.SourceRelation}, sc, m.Relation)
		for _, w := range m.MergeWhenClauses {
			wc := w.GetMergeWhenClause()
			for _, t := range wc.GetTargetList() {
				if rt := t.GetResTarget(); rt != nil && a.expr(rt.Val, sc) {
					a.store("MERGE from a masked value")
				}
			}
			for _, v := range wc.GetValues() {
				if a.expr(v, sc) {
					a.store("MERGE from a masked value")
				}
			}
		}
		return a.project(m.ReturningList, sc)
	case *pg.Node_CreateTableAsStmt:
		if out := a.queryNode(x.CreateTableAsStmt.Query, nil); out.any {
			a.store("CREATE TABLE AS")
		}
		return columns{}
	case *pg.Node_CopyStmt:
		cp := x.CopyStmt
		var out columns
		switch {
		case cp.Query != nil:
			out = a.queryNode(cp.Query, nil)
		case cp.Relation != nil && !cp.IsFrom:
			out = a.relation(cp.Relation, nil).cols
		}
		if out.any || out.unsure {
			a.store("COPY of a masked column")
		}
		return columns{}
	case *pg.Node_DeclareCursorStmt:
		return a.queryNode(x.DeclareCursorStmt.Query, nil)
	case *pg.Node_ExplainStmt:
		// EXPLAIN outputs a plan, not rows; ANALYZE runs the query.
		a.statement(x.ExplainStmt.Query)
		return columns{}
	case *pg.Node_PrepareStmt:
		return a.statement(x.PrepareStmt.Query)
	case *pg.Node_ViewStmt:
		// A view stores a query, not data: what it reads is masked when
		// it is read.
		a.queryNode(x.ViewStmt.Query, nil)
		return columns{}
	case *pg.Node_DoStmt, *pg.Node_CallStmt:
		a.fail("its code is not visible to interlock and could read masked columns")
	default:
		a.schemaChange(n)
	}
	return columns{}
}

func (a *flowAnalyzer) queryNode(n *pg.Node, parent *scope) columns {
	if s := n.GetSelectStmt(); s != nil {
		return a.query(s, parent)
	}
	// A DML statement with RETURNING, in a CTE.
	return a.statement(n)
}

func (a *flowAnalyzer) withClause(w *pg.WithClause, parent *scope) *scope {
	if w == nil {
		return parent
	}
	sc := &scope{ctes: map[string]*columns{}, parent: parent}
	for _, c := range w.Ctes {
		cte := c.GetCommonTableExpr()
		if cte == nil {
			continue
		}
		if w.Recursive {
			// A first pass finds what the non-recursive part gives; the
			// second sees the CTE's own taint.
			first := a.queryNode(cte.Ctequery, sc)
			sc.ctes[cte.Ctename] = &first
		}
		out := a.queryNode(cte.Ctequery, sc)
		renameColumns(&out, cte.Aliascolnames)
		sc.ctes[cte.Ctename] = &out
	}
	return sc
}

func renameColumns(c *columns, names []*pg.Node) {
	for i, n := range names {
		if i < len(c.names) {
			c.names[i] = n.GetString_().GetSval()
		}
	}
}

// query analyzes a SELECT (or a set operation, or VALUES).
func (a *flowAnalyzer) query(s *pg.SelectStmt, parent *scope) columns {
	a.depth++
	defer func() { a.depth-- }()
	if a.depth > maxFlowDepth {
		a.fail("the query nests deeper than interlock follows")
		return columns{unsure: true, any: true}
	}
	sc := a.withClause(s.WithClause, parent)
	if s.Op != pg.SetOperation_SETOP_NONE && s.Op != pg.SetOperation_SET_OPERATION_UNDEFINED {
		l := a.query(s.Larg, sc)
		r := a.query(s.Rarg, sc)
		out := columns{names: l.names, unsure: l.unsure || r.unsure || len(l.taint) != len(r.taint)}
		for i := range l.taint {
			t := l.taint[i]
			if i < len(r.taint) {
				t = t || r.taint[i]
			}
			out.taint = append(out.taint, t)
			out.any = out.any || t
		}
		out.any = out.any || l.any || r.any
		return out
	}
	if len(s.ValuesLists) > 0 {
		var out columns
		for _, row := range s.ValuesLists {
			for i, v := range row.GetList().GetItems() {
				t := a.expr(v, sc)
				if i >= len(out.taint) {
					out.add(fmt.Sprintf("column%d", i+1), t)
				} else if t {
					out.taint[i], out.any = true, true
				}
			}
		}
		return out
	}
	sc = a.from(s.FromClause, sc, nil)
	out := a.project(s.TargetList, sc)
	for _, n := range []*pg.Node{s.WhereClause, s.HavingClause, s.LimitCount, s.LimitOffset} {
		a.expr(n, sc)
	}
	for _, l := range [][]*pg.Node{s.GroupClause, s.SortClause, s.DistinctClause, s.WindowClause} {
		for _, n := range l {
			a.expr(n, sc)
		}
	}
	return out
}

// from builds the scope of a FROM list (and of a DML statement's target
// relation).
func (a *flowAnalyzer) from(list []*pg.Node, parent *scope, target *pg.RangeVar) *scope {
	sc := &scope{parent: parent}
	if target != nil {
		sc.items = append(sc.items, a.relation(target, parent))
	}
	for _, n := range list {
		sc.items = append(sc.items, a.fromItem(n, sc)...)
	}
	return sc
}

func (a *flowAnalyzer) fromItem(n *pg.Node, sc *scope) []*item {
	switch x := n.GetNode().(type) {
	case *pg.Node_RangeVar:
		return []*item{a.relation(x.RangeVar, sc)}
	case *pg.Node_RangeSubselect:
		out := a.queryNode(x.RangeSubselect.Subquery, sc)
		it := &item{cols: out}
		if al := x.RangeSubselect.Alias; al != nil {
			it.alias = al.Aliasname
			renameColumns(&it.cols, al.Colnames)
		}
		return []*item{it}
	case *pg.Node_RangeFunction:
		rf := x.RangeFunction
		t := false
		for _, f := range rf.Functions {
			for _, part := range f.GetList().GetItems() {
				t = a.expr(part, sc) || t
			}
		}
		it := &item{cols: columns{unsure: true, any: t}}
		if al := rf.Alias; al != nil {
			it.alias = al.Aliasname
			if len(al.Colnames) > 0 {
				it.cols = columns{}
				for _, c := range al.Colnames {
					it.cols.add(c.GetString_().GetSval(), t)
				}
			}
		}
		if len(rf.Coldeflist) > 0 {
			it.cols = columns{}
			for _, c := range rf.Coldeflist {
				it.cols.add(c.GetColumnDef().GetColname(), t)
			}
		}
		if it.alias == "" && len(rf.Functions) == 1 {
			if fc := rf.Functions[0].GetList().GetItems(); len(fc) > 0 {
				if r, ok := nameRef(fc[0].GetFuncCall().GetFuncname()); ok {
					it.alias = r.Name
				}
			}
		}
		return []*item{it}
	case *pg.Node_JoinExpr:
		j := x.JoinExpr
		left := a.fromItem(j.Larg, sc)
		right := a.fromItem(j.Rarg, sc)
		items := append(left, right...)
		inner := &scope{items: items, parent: sc.parent}
		a.expr(j.Quals, inner)
		if j.Alias != nil {
			// The join's alias names all its columns together.
			var cols columns
			for _, it := range items {
				cols.names = append(cols.names, it.cols.names...)
				cols.taint = append(cols.taint, it.cols.taint...)
				cols.unsure = cols.unsure || it.cols.unsure
				cols.any = cols.any || it.cols.any
			}
			renameColumns(&cols, j.Alias.Colnames)
			return []*item{{alias: j.Alias.Aliasname, cols: cols}}
		}
		return items
	case *pg.Node_RangeTableSample:
		return a.fromItem(x.RangeTableSample.Relation, sc)
	default:
		// Table functions (XMLTABLE, JSON_TABLE): what they produce comes
		// from their arguments.
		t := a.expr(n, sc)
		return []*item{{cols: columns{unsure: true, any: t}}}
	}
}

// relation resolves a relation name: a CTE in scope, or the catalog's.
func (a *flowAnalyzer) relation(rv *pg.RangeVar, sc *scope) *item {
	it := &item{alias: rv.Relname}
	if rv.Alias != nil {
		it.alias = rv.Alias.Aliasname
	}
	if rv.Schemaname == "" {
		if c := sc.cte(rv.Relname); c != nil {
			it.cols = *c
			if rv.Alias != nil {
				it.cols = copyColumns(*c)
				renameColumns(&it.cols, rv.Alias.Colnames)
			}
			return it
		}
	}
	rels, err := a.res.Relations(Ref{Schema: rv.Schemaname, Name: rv.Relname})
	if err != nil {
		a.fail("interlock could not read relation %s from the catalog: %v", Ref{Schema: rv.Schemaname, Name: rv.Relname}, err)
		it.cols = columns{unsure: true, any: true}
		return it
	}
	if len(rels) == 0 {
		a.fail("relation %s is not in the catalog interlock reads", Ref{Schema: rv.Schemaname, Name: rv.Relname})
		it.cols = columns{unsure: true, any: true}
		return it
	}
	for _, r := range rels {
		if statisticsRelations[r.Name] {
			a.fail("%s holds sample values of the columns it describes, masked ones among them", r.Name)
		}
	}
	// Every candidate's columns, by name; positions only when all agree.
	first := rels[0]
	it.cols.names = append([]string(nil), first.Columns...)
	it.cols.taint = make([]bool, len(first.Columns))
	for _, r := range rels {
		masked := a.masked(r)
		if !sameColumns(r.Columns, first.Columns) {
			it.cols.unsure = true
		}
		for i, name := range r.Columns {
			t := i < len(masked) && masked[i]
			if !t {
				continue
			}
			it.cols.any = true
			for j, n := range it.cols.names {
				if n == name {
					it.cols.taint[j] = true
				}
			}
		}
	}
	if rv.Alias != nil {
		renameColumns(&it.cols, rv.Alias.Colnames)
	}
	a.touches = a.touches || it.cols.any
	return it
}

func sameColumns(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func copyColumns(c columns) columns {
	return columns{names: append([]string(nil), c.names...), taint: append([]bool(nil), c.taint...), unsure: c.unsure, any: c.any}
}

// masked is a relation's masked columns: the rules' for a table, the
// data flow of its definition for a view.
func (a *flowAnalyzer) masked(r *Relation) []bool {
	if r.Definition == "" {
		return r.Masked
	}
	if m, ok := a.views[r]; ok {
		return m
	}
	a.views[r] = nil // a view that reads itself: the recursion stops here
	tree, err := pg.Parse(r.Definition)
	if err != nil || len(tree.Stmts) != 1 {
		a.fail("the definition of view %s does not parse", r.Name)
		return nil
	}
	out := a.queryNode(tree.Stmts[0].Stmt, nil)
	m := make([]bool, len(r.Columns))
	for i := range m {
		switch {
		case out.unsure && out.any:
			m[i] = true
		case i < len(out.taint):
			m[i] = out.taint[i] || (i < len(r.Masked) && r.Masked[i])
		}
	}
	a.views[r] = m
	return m
}
