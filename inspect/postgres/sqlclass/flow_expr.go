package sqlclass

import (
	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// The expressions of the flow analysis: target lists, column references
// and the taint an expression carries.

// returning is an INSERT's RETURNING: the target relation is in scope.
func (a *flowAnalyzer) returning(rv *pg.RangeVar, list []*pg.Node, _ []*pg.Node, sc *scope) columns {
	if len(list) == 0 {
		return columns{}
	}
	return a.project(list, a.from(nil, sc, rv))
}

// project analyzes a target list.
func (a *flowAnalyzer) project(list []*pg.Node, sc *scope) columns {
	var out columns
	for _, n := range list {
		rt := n.GetResTarget()
		if rt == nil {
			continue
		}
		if cr := rt.Val.GetColumnRef(); cr != nil && isStar(cr) {
			a.star(cr, sc, &out)
			continue
		}
		t := a.expr(rt.Val, sc)
		name := rt.Name
		if name == "" {
			name = "?column?"
			if cr := rt.Val.GetColumnRef(); cr != nil && len(cr.Fields) > 0 {
				name = cr.Fields[len(cr.Fields)-1].GetString_().GetSval()
			}
		}
		out.add(name, t)
	}
	return out
}

func isStar(cr *pg.ColumnRef) bool {
	return len(cr.Fields) > 0 && cr.Fields[len(cr.Fields)-1].GetAStar() != nil
}

// star expands * or t.* into output columns.
func (a *flowAnalyzer) star(cr *pg.ColumnRef, sc *scope, out *columns) {
	var items []*item
	if len(cr.Fields) == 1 {
		if sc != nil {
			items = sc.items
		}
	} else {
		name := cr.Fields[len(cr.Fields)-2].GetString_().GetSval()
		if it := lookupItem(sc, name); it != nil {
			items = []*item{it}
		} else {
			out.unsure, out.any = true, out.any || sc.anyTaint()
			return
		}
	}
	for _, it := range items {
		if it.cols.unsure {
			out.unsure = true
			out.any = out.any || it.cols.any
			continue
		}
		for i, n := range it.cols.names {
			out.add(n, it.cols.taint[i])
		}
	}
}

func lookupItem(sc *scope, alias string) *item {
	for ; sc != nil; sc = sc.parent {
		for i := len(sc.items) - 1; i >= 0; i-- {
			if sc.items[i].alias == alias {
				return sc.items[i]
			}
		}
	}
	return nil
}

// column is the taint of a column name in scope: any column of that name
// in the innermost scope that has one; a name no relation has (an outer
// reference interlock cannot place) counts as tainted when anything in
// scope is.
func column(sc *scope, name string) bool {
	for s := sc; s != nil; s = s.parent {
		found, t := false, false
		for _, it := range s.items {
			for i, n := range it.cols.names {
				if n == name {
					found = true
					t = t || it.cols.taint[i]
				}
			}
			if it.cols.unsure {
				// Columns it cannot list may include this one.
				t = t || it.cols.any
			}
		}
		if found {
			return t
		}
		// A whole-row reference to a relation of that name.
		for _, it := range s.items {
			if it.alias == name {
				return it.cols.any
			}
		}
	}
	return sc.anyTaint()
}

// expr says whether an expression may carry a masked value, and refuses
// what hides the data flow.
func (a *flowAnalyzer) expr(n *pg.Node, sc *scope) bool {
	if n == nil {
		return false
	}
	switch x := n.GetNode().(type) {
	case *pg.Node_ColumnRef:
		return a.columnRef(x.ColumnRef, sc)
	case *pg.Node_AConst, *pg.Node_ParamRef:
		return false
	case *pg.Node_SubLink:
		sl := x.SubLink
		a.expr(sl.Testexpr, sc)
		out := a.queryNode(sl.Subselect, sc)
		switch sl.SubLinkType {
		case pg.SubLinkType_EXPR_SUBLINK, pg.SubLinkType_ARRAY_SUBLINK, pg.SubLinkType_MULTIEXPR_SUBLINK:
			return out.any || out.unsure
		}
		// EXISTS, ANY, ALL: a boolean; what it tells of a masked value is
		// an inference interlock does not mask (docs).
		return false
	case *pg.Node_FuncCall:
		fc := x.FuncCall
		r, _ := nameRef(fc.Funcname)
		if (r.Schema == "" || r.Schema == "pg_catalog") && readsRelations[r.Name] {
			a.fail("%s() reads relations or queries named in its arguments, whose data flow interlock cannot follow", r.Name)
		}
		t := false
		for _, arg := range fc.Args {
			t = a.expr(arg, sc) || t
		}
		for _, o := range fc.AggOrder {
			a.expr(o, sc)
		}
		a.expr(fc.AggFilter, sc)
		if t && (r.Schema == "" || r.Schema == "pg_catalog") && storesArgs[r.Name] {
			a.store(r.Name + "() of a masked value")
		}
		return t
	}
	// Anything else: tainted when any part is.
	t := false
	m := n.ProtoReflect()
	a.children(m, sc, &t)
	return t
}

// children visits the node-typed fields of any message.
func (a *flowAnalyzer) children(m protoreflect.Message, sc *scope, t *bool) {
	fds := m.Descriptor().Fields()
	for i := 0; i < fds.Len(); i++ {
		fd := fds.Get(i)
		if fd.Message() == nil || !m.Has(fd) {
			continue
		}
		visit := func(v protoreflect.Message) {
			if node, ok := v.Interface().(*pg.Node); ok {
				*t = a.expr(node, sc) || *t
				return
			}
			a.children(v, sc, t)
		}
		v := m.Get(fd)
		if fd.IsList() {
			l := v.List()
			for j := 0; j < l.Len(); j++ {
				visit(l.Get(j).Message())
			}
			continue
		}
		visit(v.Message())
	}
}

func (a *flowAnalyzer) columnRef(cr *pg.ColumnRef, sc *scope) bool {
	var names []string
	for _, f := range cr.Fields {
		if f.GetAStar() != nil {
			// t.* inside an expression (ROW(t.*)): the whole row.
			if len(names) == 0 {
				return sc.anyTaint()
			}
			if it := lookupItem(sc, names[len(names)-1]); it != nil {
				return it.cols.any
			}
			return sc.anyTaint()
		}
		names = append(names, f.GetString_().GetSval())
	}
	switch len(names) {
	case 0:
		return sc.anyTaint()
	case 1:
		return column(sc, names[0])
	}
	// rel.col, schema.rel.col, or col.field of a composite column.
	rel, col := names[len(names)-2], names[len(names)-1]
	if it := lookupItem(sc, rel); it != nil {
		for i, n := range it.cols.names {
			if n == col {
				return it.cols.taint[i]
			}
		}
		return it.cols.any
	}
	return column(sc, names[0])
}
