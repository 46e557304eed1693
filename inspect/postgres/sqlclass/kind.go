package sqlclass

import (
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"

	"github.com/interlock/interlock/model"
)

// objName is the object part of a create_/alter_/drop_ kind: the parser's
// ObjectType in lower case (OBJECT_FOREIGN_TABLE is foreign_table).
func objName(t pg.ObjectType) string {
	return strings.ToLower(strings.TrimPrefix(t.String(), "OBJECT_"))
}

// objKind is verb_object, with the object types PostgreSQL reports under
// another command tag folded into that one: a column, a constraint or an
// attribute is altered with its table (or type, or domain); a routine, an
// aggregate and a procedure keep their own names.
func objKind(verb string, t pg.ObjectType) string {
	switch t {
	case pg.ObjectType_OBJECT_COLUMN, pg.ObjectType_OBJECT_TABCONSTRAINT:
		return verb + "_table"
	case pg.ObjectType_OBJECT_ATTRIBUTE:
		return verb + "_type"
	case pg.ObjectType_OBJECT_DOMCONSTRAINT:
		return verb + "_domain"
	case pg.ObjectType_OBJECT_DEFAULT, pg.ObjectType_OBJECT_DEFACL, pg.ObjectType_OBJECT_AMOP,
		pg.ObjectType_OBJECT_AMPROC, pg.ObjectType_OBJECT_PARAMETER_ACL,
		pg.ObjectType_OBJECT_PUBLICATION_NAMESPACE, pg.ObjectType_OBJECT_PUBLICATION_REL,
		pg.ObjectType_OBJECT_TYPE_UNDEFINED:
		return verb + "_table"
	}
	k := verb + "_" + objName(t)
	if !model.IsSQLKind(k) {
		return verb + "_table"
	}
	return k
}

// relObjKind is the kind of a statement on a relation whose object type is
// the relation's (ALTER TABLE, ALTER INDEX, ... RENAME COLUMN on a view).
func relObjKind(verb string, rename, relation pg.ObjectType) string {
	switch rename {
	case pg.ObjectType_OBJECT_COLUMN, pg.ObjectType_OBJECT_TABCONSTRAINT, pg.ObjectType_OBJECT_ATTRIBUTE:
		if relation != pg.ObjectType_OBJECT_TYPE_UNDEFINED {
			return objKind(verb, relation)
		}
	}
	return objKind(verb, rename)
}

// stmtKind names a top-level statement with one of model.SQLKinds.
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
		return objKind("drop", x.DropStmt.RemoveType)
	case *pg.Node_CreateStmt:
		return "create_table"
	case *pg.Node_CreateTableAsStmt:
		if x.CreateTableAsStmt.Objtype == pg.ObjectType_OBJECT_MATVIEW {
			return "create_matview"
		}
		return "create_table_as"
	case *pg.Node_AlterTableStmt:
		return objKind("alter", x.AlterTableStmt.Objtype)
	case *pg.Node_AlterTableMoveAllStmt:
		return objKind("alter", x.AlterTableMoveAllStmt.Objtype)
	case *pg.Node_RenameStmt:
		return relObjKind("alter", x.RenameStmt.RenameType, x.RenameStmt.RelationType)
	case *pg.Node_AlterOwnerStmt:
		return objKind("alter", x.AlterOwnerStmt.ObjectType)
	case *pg.Node_AlterObjectSchemaStmt:
		return objKind("alter", x.AlterObjectSchemaStmt.ObjectType)
	case *pg.Node_AlterObjectDependsStmt:
		return objKind("alter", x.AlterObjectDependsStmt.ObjectType)
	case *pg.Node_AlterFunctionStmt:
		return objKind("alter", x.AlterFunctionStmt.Objtype)
	case *pg.Node_DefineStmt:
		return objKind("create", x.DefineStmt.Kind)
	case *pg.Node_CompositeTypeStmt, *pg.Node_CreateEnumStmt, *pg.Node_CreateRangeStmt:
		return "create_type"
	case *pg.Node_AlterEnumStmt, *pg.Node_AlterTypeStmt:
		return "alter_type"
	case *pg.Node_CreateDomainStmt:
		return "create_domain"
	case *pg.Node_AlterDomainStmt:
		return "alter_domain"
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
		return "begin"
	case *pg.Node_VariableSetStmt:
		switch x.VariableSetStmt.Kind {
		case pg.VariableSetKind_VAR_RESET, pg.VariableSetKind_VAR_RESET_ALL:
			return "reset"
		}
		return "set"
	case *pg.Node_VariableShowStmt:
		return "show"
	case *pg.Node_ConstraintsSetStmt:
		return "set_constraints"
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
	case *pg.Node_AlterDefaultPrivilegesStmt:
		return "alter_default_privileges"
	case *pg.Node_CreateRoleStmt:
		return "create_role"
	case *pg.Node_AlterRoleStmt, *pg.Node_AlterRoleSetStmt:
		return "alter_role"
	case *pg.Node_DropRoleStmt:
		return "drop_role"
	case *pg.Node_DropOwnedStmt:
		return "drop_owned"
	case *pg.Node_ReassignOwnedStmt:
		return "reassign_owned"
	case *pg.Node_IndexStmt:
		return "create_index"
	case *pg.Node_ReindexStmt:
		return "reindex"
	case *pg.Node_ClusterStmt:
		return "cluster"
	case *pg.Node_ViewStmt:
		return "create_view"
	case *pg.Node_RefreshMatViewStmt:
		return "refresh_matview"
	case *pg.Node_CreateFunctionStmt:
		if x.CreateFunctionStmt.IsProcedure {
			return "create_procedure"
		}
		return "create_function"
	case *pg.Node_CreateSchemaStmt:
		return "create_schema"
	case *pg.Node_CreateExtensionStmt:
		return "create_extension"
	case *pg.Node_AlterExtensionStmt, *pg.Node_AlterExtensionContentsStmt:
		return "alter_extension"
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
	case *pg.Node_LoadStmt:
		return "load"
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
	case *pg.Node_CreateEventTrigStmt:
		return "create_event_trigger"
	case *pg.Node_AlterEventTrigStmt:
		return "alter_event_trigger"
	case *pg.Node_RuleStmt:
		return "create_rule"
	case *pg.Node_CommentStmt:
		return "comment"
	case *pg.Node_SecLabelStmt:
		return "security_label"
	case *pg.Node_CreatePlangStmt:
		return "create_language"
	case *pg.Node_CreateConversionStmt:
		return "create_conversion"
	case *pg.Node_CreateCastStmt:
		return "create_cast"
	case *pg.Node_CreateOpClassStmt:
		return "create_opclass"
	case *pg.Node_CreateOpFamilyStmt:
		return "create_opfamily"
	case *pg.Node_AlterOpFamilyStmt:
		return "alter_opfamily"
	case *pg.Node_AlterOperatorStmt:
		return "alter_operator"
	case *pg.Node_CreateStatsStmt:
		return "create_statistic_ext"
	case *pg.Node_AlterStatsStmt:
		return "alter_statistic_ext"
	case *pg.Node_CreatePolicyStmt:
		return "create_policy"
	case *pg.Node_AlterPolicyStmt:
		return "alter_policy"
	case *pg.Node_CreateTransformStmt:
		return "create_transform"
	case *pg.Node_CreateAmStmt:
		return "create_access_method"
	case *pg.Node_CreatePublicationStmt:
		return "create_publication"
	case *pg.Node_AlterPublicationStmt:
		return "alter_publication"
	case *pg.Node_CreateSubscriptionStmt:
		return "create_subscription"
	case *pg.Node_AlterSubscriptionStmt:
		return "alter_subscription"
	case *pg.Node_DropSubscriptionStmt:
		return "drop_subscription"
	case *pg.Node_CreateFdwStmt:
		return "create_fdw"
	case *pg.Node_AlterFdwStmt:
		return "alter_fdw"
	case *pg.Node_CreateForeignServerStmt:
		return "create_foreign_server"
	case *pg.Node_AlterForeignServerStmt:
		return "alter_foreign_server"
	case *pg.Node_CreateForeignTableStmt:
		return "create_foreign_table"
	case *pg.Node_ImportForeignSchemaStmt:
		return "import_foreign_schema"
	case *pg.Node_CreateUserMappingStmt:
		return "create_user_mapping"
	case *pg.Node_AlterUserMappingStmt:
		return "alter_user_mapping"
	case *pg.Node_DropUserMappingStmt:
		return "drop_user_mapping"
	case *pg.Node_CreateTableSpaceStmt:
		return "create_tablespace"
	case *pg.Node_DropTableSpaceStmt:
		return "drop_tablespace"
	case *pg.Node_AlterTableSpaceOptionsStmt:
		return "alter_tablespace"
	case *pg.Node_AlterCollationStmt:
		return "alter_collation"
	case *pg.Node_AlterTsdictionaryStmt:
		return "alter_tsdictionary"
	case *pg.Node_AlterTsconfigurationStmt:
		return "alter_tsconfiguration"
	}
	// A statement this version does not name (a newer grammar's, or a
	// PL/pgSQL-only node at top level): unknown, which fails closed.
	return model.SQLKindUnknown
}
