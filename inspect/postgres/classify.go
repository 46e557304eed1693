package postgres

import (
	"strings"
	"sync"
	"sync/atomic"

	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// class is what the parser says about one statement: what policy judges
// and what the journal records besides the text.
type class struct {
	// kind is the top-level statement's kind; kinds adds the kinds of the
	// statements nested in it (a DELETE in a WITH, the query of an
	// EXPLAIN, ...), top-level first.
	kind     string
	kinds    []string
	tables   []string
	readOnly bool
	noWhere  bool
	// transactional: every effect the statement can have is undone if its
	// transaction does not commit (plain DML and DDL, no function call
	// outside the pure list, no COPY to or from a server file or program).
	transactional bool
	// prepare names the SQL-level prepared statement that a PREPARE
	// creates, an EXECUTE runs or a DEALLOCATE drops (lower case; "*" is
	// DEALLOCATE ALL).
	prepare string
	// inner is what a PREPARE prepares.
	inner *class
	// err is the parser's message when the text did not parse; kind is
	// then "unknown".
	err string
}

// stmt is one statement of a query string; head and end are where its
// text starts and ends in the string (end is before any semicolon).
type stmt struct {
	text      string
	head, end int
	*class
}

// parsed is a whole query string: zero (an empty query), one or more
// statements.
type parsed struct {
	stmts []stmt
}

// unknownClass is what an unparsable statement is judged as: nothing is
// proven about it.
func unknownClass(err string) *class {
	return &class{kind: "unknown", kinds: []string{"unknown"}, err: err}
}

// classifier parses statements with PostgreSQL's own parser
// (pg_query_go), caching by exact text and, for single statements, by the
// text with its constants replaced (pg_query's normalisation, done by the
// same parser), so statements that differ only in literal values are
// parsed once. Literal values never change a statement's kind, tables or
// read-only-ness.
type classifier struct {
	exact  cache[*parsed]
	shapes cache[shape]
	// parses counts full parses (for tests and profiling).
	parses atomic.Int64
}

const (
	cacheEntries = 8192
	// cacheMaxText: longer statements are parsed every time rather than
	// kept in memory.
	cacheMaxText = 16 << 10
)

// shape is what the shape cache keeps of a single statement: its class,
// and where its text starts and how much follows it in the query string
// (blanks, comments, semicolons: no constants, so the same in every query
// string of that shape).
type shape struct {
	*class
	head, tail int
}

type cache[V any] struct {
	m sync.Map
	n atomic.Int64
}

func (c *cache[V]) get(k string) (V, bool) {
	v, ok := c.m.Load(k)
	if !ok {
		var zero V
		return zero, false
	}
	return v.(V), true
}

func (c *cache[V]) put(k string, v V) {
	if len(k) > cacheMaxText {
		return
	}
	if c.n.Add(1) > cacheEntries {
		// Full: start again rather than track recency on the hot path.
		c.m.Clear()
		c.n.Store(1)
	}
	c.m.Store(k, v)
}

// parse classifies a query string.
func (c *classifier) parse(text string) *parsed {
	if p, ok := c.exact.get(text); ok {
		return p
	}
	if len(text) <= cacheMaxText {
		if key, err := pg.Normalize(text); err == nil && key != text {
			if sh, ok := c.shapes.get(key); ok && sh.head <= len(text)-sh.tail {
				end := len(text) - sh.tail
				return &parsed{stmts: []stmt{{text: strings.TrimSpace(text[sh.head:end]), head: sh.head, end: end, class: sh.class}}}
			}
			p := c.full(text)
			if len(p.stmts) == 1 && p.stmts[0].err == "" {
				st := p.stmts[0]
				c.shapes.put(key, shape{class: st.class, head: st.head, tail: len(text) - st.end})
				return p
			}
			c.exact.put(text, p)
			return p
		}
	}
	p := c.full(text)
	c.exact.put(text, p)
	return p
}

func (c *classifier) full(text string) *parsed {
	c.parses.Add(1)
	tree, err := pg.Parse(text)
	if err != nil {
		t := strings.TrimSpace(text)
		if t == "" || strings.Trim(t, "; \t\r\n") == "" {
			return &parsed{}
		}
		return &parsed{stmts: []stmt{{text: t, end: len(text), class: unknownClass(err.Error())}}}
	}
	p := &parsed{}
	for _, raw := range tree.Stmts {
		loc, n := int(raw.StmtLocation), int(raw.StmtLen)
		if loc < 0 || loc > len(text) {
			loc = 0
		}
		end := len(text)
		if n > 0 && loc+n <= len(text) {
			end = loc + n
		}
		p.stmts = append(p.stmts, stmt{text: strings.TrimSpace(text[loc:end]), head: loc, end: end, class: classify(raw.Stmt)})
	}
	return p
}

// classify judges one statement's tree.
func classify(n *pg.Node) *class {
	c := &class{kind: stmtKind(n)}
	c.kinds = []string{c.kind}
	w := walker{c: c, ro: true, ctes: map[string]bool{}}
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
			w.ro = true // EXPLAIN without ANALYZE runs nothing
		}
	case *pg.Node_PrepareStmt:
		c.prepare = strings.ToLower(x.PrepareStmt.Name)
		if q := x.PrepareStmt.Query; q != nil {
			c.inner = classify(q)
		}
		w.walk(n.ProtoReflect())
		w.ro = true // preparing runs nothing
	default:
		w.walk(n.ProtoReflect())
	}
	switch x := n.GetNode().(type) {
	case *pg.Node_SelectStmt:
		if x.SelectStmt.IntoClause != nil {
			w.addKind("select")
		}
	case *pg.Node_ExecuteStmt:
		c.prepare = strings.ToLower(x.ExecuteStmt.Name)
	case *pg.Node_DeallocateStmt:
		c.prepare = strings.ToLower(x.DeallocateStmt.Name)
		if x.DeallocateStmt.Isall || c.prepare == "" {
			c.prepare = "*"
		}
	case *pg.Node_CopyStmt:
		if x.CopyStmt.Filename != "" || x.CopyStmt.IsProgram {
			w.ro = false // COPY TO a server file or program writes there
			w.impure = true
		}
	}
	c.readOnly = w.ro && readOnlyKinds[c.kind]
	c.transactional = !w.impure && transactionalKinds[c.kind]
	for _, k := range c.kinds[1:] {
		c.transactional = c.transactional && transactionalKinds[k]
	}
	for _, t := range w.tables {
		if !w.ctes[t] {
			c.tables = append(c.tables, t)
		}
	}
	return c
}

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

// readOnlyKinds are the statement kinds that can be read-only; the walk
// then checks what is inside them.
var readOnlyKinds = map[string]bool{
	"select": true, "show": true, "explain": true, "begin": true, "commit": true, "rollback": true,
	"savepoint": true, "release_savepoint": true, "rollback_to_savepoint": true,
	"listen": true, "unlisten": true, "prepare": true, "deallocate": true,
	"fetch": true, "move": true, "close_cursor": true, "declare_cursor": true, "copy_to": true,
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
}

// pureFunctions are built-in functions that do not write: a SELECT that
// calls only these (unqualified or in pg_catalog) is read-only. Anything
// else (nextval, set_config, pg_terminate_backend, user functions) may
// write, so the statement is synced like a write.
var pureFunctions = func() map[string]bool {
	m := map[string]bool{}
	for _, f := range strings.Fields(`count sum avg min max now length char_length octet_length lower upper
		abs round floor ceil ceiling trunc mod power sqrt substr substring concat concat_ws to_char to_date
		to_timestamp to_number date_trunc date_part extract age array_agg string_agg json_agg jsonb_agg
		json_build_object jsonb_build_object json_build_array jsonb_build_array json_object_agg jsonb_object_agg
		row_to_json to_json to_jsonb jsonb_pretty array_length array_to_string unnest generate_series
		row_number rank dense_rank lag lead first_value last_value ntile bool_and bool_or every
		version current_database current_schema current_schemas pg_backend_pid pg_sleep
		coalesce greatest least nullif left right trim btrim ltrim rtrim replace split_part position strpos
		md5 sha256 encode decode format regexp_replace regexp_match regexp_matches lpad rpad repeat reverse
		clock_timestamp statement_timestamp transaction_timestamp timeofday random
		pg_typeof pg_column_size pg_size_pretty pg_relation_size pg_total_relation_size pg_database_size
		has_table_privilege has_schema_privilege has_database_privilege pg_has_role
		pg_is_in_recovery inet_server_addr inet_server_port txid_current_snapshot quote_ident quote_literal`) {
		m[f] = true
	}
	return m
}()

type walker struct {
	c      *class
	ro     bool
	impure bool
	tables []string
	seen   map[string]bool
	ctes   map[string]bool
	depth  int
}

// walk visits every message of the tree.
func (w *walker) walk(m protoreflect.Message) {
	w.depth++
	defer func() { w.depth-- }()
	if w.depth > 10000 {
		w.ro = false
		return
	}
	switch x := m.Interface().(type) {
	case *pg.Node:
		if w.depth > 1 {
			if k, nested := nestedKind(x); nested {
				w.addKind(k)
			}
		}
	case *pg.SelectStmt:
		if x.IntoClause != nil || len(x.LockingClause) > 0 {
			w.ro = false
		}
	case *pg.InsertStmt, *pg.MergeStmt:
		w.ro = false
	case *pg.UpdateStmt:
		w.ro = false
		if x.WhereClause == nil {
			w.c.noWhere = true
		}
	case *pg.DeleteStmt:
		w.ro = false
		if x.WhereClause == nil {
			w.c.noWhere = true
		}
	case *pg.FuncCall:
		if !pureCall(x.Funcname) {
			w.ro = false
			w.impure = true
		}
	case *pg.RangeVar:
		w.addTable(qualified(x.Catalogname, x.Schemaname, x.Relname))
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
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				w.walk(l.Get(i).Message())
			}
		case fd.IsMap():
		case fd.Message() != nil:
			w.walk(v.Message())
		}
		return true
	})
}

func (w *walker) addKind(k string) {
	for _, have := range w.c.kinds {
		if have == k {
			return
		}
	}
	w.c.kinds = append(w.c.kinds, k)
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

func pureCall(name []*pg.Node) bool {
	switch len(name) {
	case 1:
		return pureFunctions[name[0].GetString_().GetSval()]
	case 2:
		return name[0].GetString_().GetSval() == "pg_catalog" && pureFunctions[name[1].GetString_().GetSval()]
	}
	return false
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

func objName(t pg.ObjectType) string {
	return strings.ToLower(strings.TrimPrefix(t.String(), "OBJECT_"))
}

// stmtKind names a top-level statement: select, insert, drop_database,
// drop_table, create_index, ... (docs/postgres.md lists them).
func stmtKind(n *pg.Node) string {
	switch x := n.GetNode().(type) {
	case *pg.Node_SelectStmt:
		if x.SelectStmt.IntoClause != nil {
			return "create_table_as"
		}
		return "select"
	case *pg.Node_InsertStmt:
		return "insert"
	case *pg.Node_UpdateStmt:
		return "update"
	case *pg.Node_DeleteStmt:
		return "delete"
	case *pg.Node_MergeStmt:
		return "merge"
	case *pg.Node_DropdbStmt:
		return "drop_database"
	case *pg.Node_CreatedbStmt:
		return "create_database"
	case *pg.Node_AlterDatabaseStmt, *pg.Node_AlterDatabaseSetStmt, *pg.Node_AlterDatabaseRefreshCollStmt:
		return "alter_database"
	case *pg.Node_DropStmt:
		return "drop_" + objName(x.DropStmt.RemoveType)
	case *pg.Node_CreateStmt:
		return "create_table"
	case *pg.Node_CreateTableAsStmt:
		if x.CreateTableAsStmt.Objtype == pg.ObjectType_OBJECT_MATVIEW {
			return "create_matview"
		}
		return "create_table_as"
	case *pg.Node_AlterTableStmt:
		return "alter_" + objName(x.AlterTableStmt.Objtype)
	case *pg.Node_RenameStmt:
		return "alter_" + objName(x.RenameStmt.RenameType)
	case *pg.Node_TruncateStmt:
		return "truncate"
	case *pg.Node_CopyStmt:
		if x.CopyStmt.IsFrom {
			return "copy_from"
		}
		return "copy_to"
	case *pg.Node_TransactionStmt:
		switch x.TransactionStmt.Kind {
		case pg.TransactionStmtKind_TRANS_STMT_BEGIN, pg.TransactionStmtKind_TRANS_STMT_START:
			return "begin"
		case pg.TransactionStmtKind_TRANS_STMT_COMMIT:
			return "commit"
		case pg.TransactionStmtKind_TRANS_STMT_ROLLBACK:
			return "rollback"
		case pg.TransactionStmtKind_TRANS_STMT_SAVEPOINT:
			return "savepoint"
		case pg.TransactionStmtKind_TRANS_STMT_RELEASE:
			return "release_savepoint"
		case pg.TransactionStmtKind_TRANS_STMT_ROLLBACK_TO:
			return "rollback_to_savepoint"
		case pg.TransactionStmtKind_TRANS_STMT_PREPARE:
			return "prepare_transaction"
		case pg.TransactionStmtKind_TRANS_STMT_COMMIT_PREPARED:
			return "commit_prepared"
		case pg.TransactionStmtKind_TRANS_STMT_ROLLBACK_PREPARED:
			return "rollback_prepared"
		}
		return "transaction"
	case *pg.Node_VariableSetStmt:
		switch x.VariableSetStmt.Kind {
		case pg.VariableSetKind_VAR_RESET, pg.VariableSetKind_VAR_RESET_ALL:
			return "reset"
		}
		return "set"
	case *pg.Node_VariableShowStmt:
		return "show"
	case *pg.Node_ExplainStmt:
		return "explain"
	case *pg.Node_DoStmt:
		return "do"
	case *pg.Node_CallStmt:
		return "call"
	case *pg.Node_GrantStmt:
		if x.GrantStmt.IsGrant {
			return "grant"
		}
		return "revoke"
	case *pg.Node_GrantRoleStmt:
		if x.GrantRoleStmt.IsGrant {
			return "grant_role"
		}
		return "revoke_role"
	case *pg.Node_CreateRoleStmt:
		return "create_role"
	case *pg.Node_AlterRoleStmt, *pg.Node_AlterRoleSetStmt:
		return "alter_role"
	case *pg.Node_DropRoleStmt:
		return "drop_role"
	case *pg.Node_IndexStmt:
		return "create_index"
	case *pg.Node_ViewStmt:
		return "create_view"
	case *pg.Node_CreateFunctionStmt:
		if x.CreateFunctionStmt.IsProcedure {
			return "create_procedure"
		}
		return "create_function"
	case *pg.Node_CreateSchemaStmt:
		return "create_schema"
	case *pg.Node_CreateExtensionStmt:
		return "create_extension"
	case *pg.Node_AlterSystemStmt:
		return "alter_system"
	case *pg.Node_VacuumStmt:
		if x.VacuumStmt.IsVacuumcmd {
			return "vacuum"
		}
		return "analyze"
	case *pg.Node_PrepareStmt:
		return "prepare"
	case *pg.Node_ExecuteStmt:
		return "execute"
	case *pg.Node_DeallocateStmt:
		return "deallocate"
	case *pg.Node_ListenStmt:
		return "listen"
	case *pg.Node_UnlistenStmt:
		return "unlisten"
	case *pg.Node_NotifyStmt:
		return "notify"
	case *pg.Node_LockStmt:
		return "lock"
	case *pg.Node_DeclareCursorStmt:
		return "declare_cursor"
	case *pg.Node_FetchStmt:
		if x.FetchStmt.Ismove {
			return "move"
		}
		return "fetch"
	case *pg.Node_ClosePortalStmt:
		return "close_cursor"
	case *pg.Node_DiscardStmt:
		return "discard"
	case *pg.Node_CheckPointStmt:
		return "checkpoint"
	case *pg.Node_CreateSeqStmt:
		return "create_sequence"
	case *pg.Node_AlterSeqStmt:
		return "alter_sequence"
	case *pg.Node_CreateTrigStmt:
		return "create_trigger"
	case *pg.Node_RuleStmt:
		return "create_rule"
	case *pg.Node_CommentStmt:
		return "comment"
	case *pg.Node_AlterOwnerStmt:
		return "alter_owner"
	}
	// Everything else: the parse node's name, such as "create_event_trig"
	// for CreateEventTrigStmt.
	m := n.ProtoReflect()
	if od := m.Descriptor().Oneofs(); od.Len() > 0 {
		if fd := m.WhichOneof(od.Get(0)); fd != nil {
			return strings.TrimSuffix(string(fd.Name()), "_stmt")
		}
	}
	return "unknown"
}
