package sqlclass

import (
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/interlock/interlock/model"
)

// readOnlyKinds are the statement kinds whose text can show a read-only
// statement; the walk then checks what is inside them.
var readOnlyKinds = map[string]bool{
	"select": true, "show": true, "explain": true, "begin": true, "commit": true, "rollback": true,
	"savepoint": true, "release_savepoint": true, "rollback_to_savepoint": true,
	"listen": true, "unlisten": true, "prepare": true, "deallocate": true,
	"fetch": true, "move": true, "close_cursor": true, "declare_cursor": true, "copy_to": true,
	model.SQLKindEmpty: true,
}

// transactionalKinds are the statement kinds whose effects, inside a
// transaction block, take effect only when the block commits.
var transactionalKinds = map[string]bool{
	"select": true, "insert": true, "update": true, "delete": true, "merge": true,
	"create_table": true, "create_table_as": true, "create_index": true, "create_view": true,
	"create_sequence": true, "alter_sequence": true, "create_schema": true, "create_trigger": true,
	"alter_table": true, "alter_index": true, "alter_view": true, "drop_table": true, "drop_index": true,
	"drop_view": true, "drop_sequence": true, "truncate": true, "comment": true, "lock": true,
	"copy_from": true, "copy_to": true, "savepoint": true, "release_savepoint": true,
	"rollback_to_savepoint": true, "declare_cursor": true, "fetch": true, "move": true, "close_cursor": true,
	"create_function": true, "create_procedure": true, "drop_function": true, "drop_procedure": true,
	"create_type": true, "drop_type": true, "create_domain": true, "drop_domain": true,
	"create_matview": true, "drop_matview": true, "refresh_matview": true, "drop_schema": true,
	"grant": true, "revoke": true, "create_role": true, "alter_role": true, "drop_role": true,
	"grant_role": true, "revoke_role": true, "drop_owned": true, "reassign_owned": true,
	"create_rule": true, "drop_rule": true, "drop_trigger": true, "create_policy": true, "drop_policy": true,
	"alter_function": true, "alter_schema": true, "create_operator": true, "drop_operator": true,
	"explain": true, "show": true, "set": true, "reset": true, "set_constraints": true, "prepare": true,
	"execute": true, "deallocate": true, "notify": true, model.SQLKindEmpty: true,
}

// classify judges one statement's tree.
func classify(n *pg.Node) *Class {
	c := &Class{Kind: stmtKind(n), tree: n}
	c.Kinds = []string{c.Kind}
	w := walker{c: c, ro: true, ctes: map[string]bool{}, writeTarget: map[*pg.RangeVar]bool{}}
	switch x := n.GetNode().(type) {
	case *pg.Node_ExplainStmt:
		analyze := false
		for _, o := range x.ExplainStmt.Options {
			if d := o.GetDefElem(); d != nil && d.Defname == "analyze" {
				analyze = d.Arg == nil || !isFalse(d.Arg)
			}
		}
		w.walk(n.ProtoReflect())
		if !analyze {
			w.ro = true // EXPLAIN without ANALYZE plans but runs nothing
		}
	case *pg.Node_PrepareStmt:
		c.Prepare = x.PrepareStmt.Name
		if q := x.PrepareStmt.Query; q != nil {
			c.Inner = classify(q)
		}
		w.walk(n.ProtoReflect())
		w.ro = true // preparing runs nothing
		// What it prepares is judged when it is executed; its names are
		// not this statement's.
		c.Funcs, c.Ops, c.Casts, c.Reads, c.Writes = nil, nil, nil, nil, nil
	default:
		w.walk(n.ProtoReflect())
	}
	switch x := n.GetNode().(type) {
	case *pg.Node_SelectStmt:
		if x.SelectStmt.IntoClause != nil {
			c.AddKind("select")
		}
	case *pg.Node_ExecuteStmt:
		c.Prepare = x.ExecuteStmt.Name
	case *pg.Node_DeallocateStmt:
		c.Prepare = x.DeallocateStmt.Name
		if x.DeallocateStmt.Isall || c.Prepare == "" {
			c.Prepare = "*"
		}
	case *pg.Node_CopyStmt:
		if x.CopyStmt.Filename != "" || x.CopyStmt.IsProgram {
			// COPY with a server file or program reaches outside the
			// database.
			w.ro = false
			w.impure = true
			c.Opaque = true
		}
	case *pg.Node_DoStmt, *pg.Node_CallStmt, *pg.Node_LoadStmt:
		w.ro = false
		w.impure = true
		c.Opaque = true
	case *pg.Node_DeclareCursorStmt:
		c.Cursor = x.DeclareCursorStmt.Portalname
		c.Hold = x.DeclareCursorStmt.Options&cursorOptHold != 0
		c.literal = true
	case *pg.Node_FetchStmt:
		c.Cursor = x.FetchStmt.Portalname
	case *pg.Node_ClosePortalStmt:
		c.Cursor = x.ClosePortalStmt.Portalname
		if c.Cursor == "" {
			c.Cursor = "*"
		}
	case *pg.Node_DiscardStmt:
		if x.DiscardStmt.Target == pg.DiscardMode_DISCARD_ALL {
			c.Settings = append(c.Settings, Setting{Reset: true})
			c.Prepare = "*"
			c.Cursor = "*"
		}
	}
	if c.Opaque {
		c.AddKind(model.SQLKindOpaque)
	}
	c.ReadOnly = w.ro && readOnlyKinds[c.Kind]
	c.Transactional = !w.impure && transactionalKinds[c.Kind]
	for _, k := range c.Kinds[1:] {
		if k != model.SQLKindOpaque && k != "lock" {
			c.Transactional = c.Transactional && transactionalKinds[k]
		}
	}
	if cl, _ := model.SQLKindClass(c.Kind); cl == model.KindDDL || cl == model.KindCode || c.Opaque {
		c.Catalog = true
		c.Defines = defines(n, c)
	}
	for _, t := range w.tables {
		if !w.ctes[t] {
			c.Tables = append(c.Tables, t)
		}
	}
	c.Reads = w.dropCTEs(c.Reads)
	c.Writes = w.dropCTEs(c.Writes)
	c.literal = c.literal || w.literal
	return c
}

// cursorOptHold is CURSOR_OPT_HOLD of PostgreSQL's parsenodes.h.
const cursorOptHold = 0x0020

func isFalse(n *pg.Node) bool {
	switch v := n.GetNode().(type) {
	case *pg.Node_Boolean:
		return !v.Boolean.Boolval
	case *pg.Node_String_:
		s := strings.ToLower(v.String_.Sval)
		return s == "false" || s == "off" || s == "0"
	case *pg.Node_Integer:
		return v.Integer.Ival == 0
	}
	return false
}

type walker struct {
	c       *Class
	ro      bool
	impure  bool
	literal bool
	tables  []string
	seen    map[string]bool
	ctes    map[string]bool
	depth   int
	// writeTarget marks the RangeVars that are written, so the walk does
	// not count them as read.
	writeTarget map[*pg.RangeVar]bool
}

// maxDepth bounds the walk; a deeper tree is judged as writing.
const maxDepth = 10000

// walk visits every message of the tree.
func (w *walker) walk(m protoreflect.Message) {
	w.depth++
	defer func() { w.depth-- }()
	if w.depth > maxDepth {
		w.ro = false
		w.c.Opaque = true
		return
	}
	c := w.c
	switch x := m.Interface().(type) {
	case *pg.Node:
		if w.depth > 1 {
			if k, nested := nestedKind(x); nested {
				c.AddKind(k)
			}
		}
	case *pg.SelectStmt:
		if x.IntoClause != nil {
			w.ro = false
		}
		if len(x.LockingClause) > 0 {
			w.ro = false
			c.AddKind("lock")
		}
	case *pg.InsertStmt:
		w.ro = false
		w.write(x.Relation)
	case *pg.MergeStmt:
		w.ro = false
		w.write(x.Relation)
		if len(x.ReturningList) > 0 {
			c.MinServer = max(c.MinServer, 17)
		}
	case *pg.JsonIsPredicate, *pg.JsonObjectConstructor, *pg.JsonArrayConstructor, *pg.JsonArrayQueryConstructor,
		*pg.JsonAggConstructor, *pg.JsonObjectAgg, *pg.JsonArrayAgg, *pg.JsonValueExpr, *pg.JsonOutput, *pg.JsonKeyValue:
		c.MinServer = max(c.MinServer, 16)
	case *pg.JsonFuncExpr, *pg.JsonTable, *pg.JsonTableColumn, *pg.JsonParseExpr, *pg.JsonScalarExpr,
		*pg.JsonSerializeExpr, *pg.MergeSupportFunc:
		c.MinServer = max(c.MinServer, 17)
	case *pg.MergeWhenClause:
		if x.MatchKind == pg.MergeMatchKind_MERGE_WHEN_NOT_MATCHED_BY_SOURCE {
			c.MinServer = max(c.MinServer, 17)
		}
		// MERGE ... THEN DELETE deletes: rules on delete apply to it.
		switch x.CommandType {
		case pg.CmdType_CMD_DELETE:
			c.AddKind("delete")
		case pg.CmdType_CMD_UPDATE:
			c.AddKind("update")
		case pg.CmdType_CMD_INSERT:
			c.AddKind("insert")
		}
	case *pg.UpdateStmt:
		w.ro = false
		w.write(x.Relation)
		if x.WhereClause == nil {
			c.NoWhere = true
		}
	case *pg.DeleteStmt:
		w.ro = false
		w.write(x.Relation)
		if x.WhereClause == nil {
			c.NoWhere = true
		}
	case *pg.TruncateStmt:
		for _, r := range x.Relations {
			w.write(r.GetRangeVar())
		}
	case *pg.LockStmt:
		for _, r := range x.Relations {
			w.write(r.GetRangeVar())
		}
	case *pg.CopyStmt:
		if x.IsFrom {
			w.write(x.Relation)
		}
	case *pg.FuncCall:
		w.funcCall(x)
	case *pg.A_Expr:
		w.aExpr(x)
	case *pg.SubLink:
		w.op(x.OperName)
	case *pg.CaseExpr:
		if x.Arg != nil {
			w.c.Ops = appendRef(w.c.Ops, Ref{Name: "="})
		}
	case *pg.SortBy:
		w.op(x.UseOp)
	case *pg.TypeCast:
		if x.TypeName != nil {
			if r, ok := nameRef(x.TypeName.Names); ok {
				c.Casts = appendRef(c.Casts, r)
			}
		}
	case *pg.RangeVar:
		w.addTable(qualified(x.Catalogname, x.Schemaname, x.Relname))
		if !w.writeTarget[x] {
			c.Reads = appendRef(c.Reads, Ref{Schema: x.Schemaname, Name: x.Relname})
		}
	case *pg.CommonTableExpr:
		w.ctes[x.Ctename] = true
	case *pg.DropStmt:
		switch x.RemoveType {
		case pg.ObjectType_OBJECT_TABLE, pg.ObjectType_OBJECT_VIEW, pg.ObjectType_OBJECT_MATVIEW,
			pg.ObjectType_OBJECT_INDEX, pg.ObjectType_OBJECT_SEQUENCE, pg.ObjectType_OBJECT_FOREIGN_TABLE:
			for _, o := range x.Objects {
				var parts []string
				for _, p := range o.GetList().GetItems() {
					parts = append(parts, p.GetString_().GetSval())
				}
				if len(parts) > 0 {
					w.addTable(strings.Join(parts, "."))
				}
			}
		}
	case *pg.AlterRoleStmt:
		c.Roles = append(c.Roles, role(x.Role))
		for _, o := range x.Options {
			if d := o.GetDefElem(); d != nil && d.Defname == "password" {
				c.Secrets = true
			}
		}
		w.literal = true
	case *pg.AlterRoleSetStmt:
		c.Roles = append(c.Roles, role(x.Role))
		w.literal = true
	case *pg.RenameStmt:
		switch x.RenameType {
		case pg.ObjectType_OBJECT_ROLE:
			c.Roles = append(c.Roles, Role{Name: x.Subname})
		case pg.ObjectType_OBJECT_DATABASE:
			c.DatabaseAccess = true
		}
	case *pg.CreateRoleStmt:
		for _, o := range x.Options {
			if d := o.GetDefElem(); d != nil && d.Defname == "password" {
				c.Secrets = true
			}
		}
		w.literal = true
	case *pg.CreateSubscriptionStmt:
		w.conninfo(x.Conninfo)
	case *pg.AlterSubscriptionStmt:
		w.conninfo(x.Conninfo)
	case *pg.CreateUserMappingStmt:
		w.mappingOptions(x.Options)
	case *pg.AlterUserMappingStmt:
		w.mappingOptions(x.Options)
	case *pg.CreateForeignServerStmt:
		w.mappingOptions(x.Options)
	case *pg.AlterForeignServerStmt:
		w.mappingOptions(x.Options)
	case *pg.AlterDatabaseStmt:
		for _, o := range x.Options {
			if d := o.GetDefElem(); d != nil && (d.Defname == "connection_limit" || d.Defname == "allow_connections") {
				c.DatabaseAccess = true
			}
		}
	case *pg.VariableSetStmt:
		w.setting(x)
	case *pg.String:
		// A DO body or a string run as SQL may hold a password literal.
		if _, origs := redactInside(x.Sval); len(origs) > 0 {
			c.Secrets = true
			w.literal = true
		}
	}
	// Fields in declaration order (Range's order is undefined): tables and
	// names come out in the order the statement has them, every time.
	fds := m.Descriptor().Fields()
	for i := 0; i < fds.Len(); i++ {
		fd := fds.Get(i)
		if fd.Message() == nil || fd.IsMap() || !m.Has(fd) {
			continue
		}
		v := m.Get(fd)
		if fd.IsList() {
			l := v.List()
			for j := 0; j < l.Len(); j++ {
				w.walk(l.Get(j).Message())
			}
			continue
		}
		w.walk(v.Message())
	}
}

func (w *walker) write(rv *pg.RangeVar) {
	if rv == nil {
		return
	}
	w.writeTarget[rv] = true
	w.c.Writes = appendRef(w.c.Writes, Ref{Schema: rv.Schemaname, Name: rv.Relname})
}

func (w *walker) dropCTEs(refs []Ref) []Ref {
	out := refs[:0]
	for _, r := range refs {
		if r.Schema == "" && w.ctes[r.Name] {
			continue
		}
		out = append(out, r)
	}
	return out
}

// aExpr records the operators an expression uses, including those the
// grammar implies (BETWEEN is >= and <=).
func (w *walker) aExpr(x *pg.A_Expr) {
	switch x.Kind {
	case pg.A_Expr_Kind_AEXPR_BETWEEN, pg.A_Expr_Kind_AEXPR_BETWEEN_SYM:
		w.c.Ops = appendRef(w.c.Ops, Ref{Name: ">="})
		w.c.Ops = appendRef(w.c.Ops, Ref{Name: "<="})
	case pg.A_Expr_Kind_AEXPR_NOT_BETWEEN, pg.A_Expr_Kind_AEXPR_NOT_BETWEEN_SYM:
		w.c.Ops = appendRef(w.c.Ops, Ref{Name: "<"})
		w.c.Ops = appendRef(w.c.Ops, Ref{Name: ">"})
	default:
		w.op(x.Name)
	}
}

func (w *walker) op(name []*pg.Node) {
	if len(name) == 0 {
		return
	}
	if r, ok := nameRef(name); ok {
		w.c.Ops = appendRef(w.c.Ops, r)
	}
}

// nameRef turns a parser name list (schema, name or catalog, schema,
// name) into a Ref.
func nameRef(parts []*pg.Node) (Ref, bool) {
	var s []string
	for _, p := range parts {
		v := p.GetString_()
		if v == nil {
			return Ref{}, false
		}
		s = append(s, v.Sval)
	}
	switch len(s) {
	case 1:
		return Ref{Name: s[0]}, true
	case 2:
		return Ref{Schema: s[0], Name: s[1]}, true
	case 3:
		return Ref{Schema: s[1], Name: s[2]}, true
	}
	return Ref{}, false
}

func appendRef(refs []Ref, r Ref) []Ref {
	for _, have := range refs {
		if have == r {
			return refs
		}
	}
	return append(refs, r)
}

func (w *walker) addTable(t string) {
	if t == "" {
		return
	}
	if w.seen == nil {
		w.seen = map[string]bool{}
	}
	if !w.seen[t] {
		w.seen[t] = true
		w.tables = append(w.tables, t)
	}
}

func qualified(parts ...string) string {
	var out []string
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, ".")
}

// nestedKind is the kind a statement nested in another adds.
func nestedKind(n *pg.Node) (string, bool) {
	switch n.GetNode().(type) {
	case *pg.Node_SelectStmt:
		return "select", true
	case *pg.Node_InsertStmt:
		return "insert", true
	case *pg.Node_UpdateStmt:
		return "update", true
	case *pg.Node_DeleteStmt:
		return "delete", true
	case *pg.Node_MergeStmt:
		return "merge", true
	}
	return "", false
}
