package sqlclass

import (
	pg "github.com/pganalyze/pg_query_go/v6"

	"github.com/interlock/interlock/model"
)

// Defines is what a catalog-changing statement may have defined or
// changed so that a name resolves to code the catalog snapshot does not
// show: inside the transaction that ran it, statements naming these are
// suspect. All means any name may now resolve elsewhere (an extension, a
// cast, a rename, a role's memberships, code of any kind).
type Defines struct {
	All       bool
	Funcs     []string
	Ops       []string
	Domains   []string
	Relations []string
}

// relationAlters are the ALTER TABLE commands after which writing (or
// reading) the table can run code: a trigger or rule enabled, row
// security, inheritance, a partition, a new column type.
var relationAlters = map[pg.AlterTableType]bool{
	pg.AlterTableType_AT_EnableTrig: true, pg.AlterTableType_AT_EnableAlwaysTrig: true,
	pg.AlterTableType_AT_EnableReplicaTrig: true, pg.AlterTableType_AT_EnableTrigAll: true,
	pg.AlterTableType_AT_EnableTrigUser: true, pg.AlterTableType_AT_EnableRule: true,
	pg.AlterTableType_AT_EnableAlwaysRule: true, pg.AlterTableType_AT_EnableReplicaRule: true,
	pg.AlterTableType_AT_EnableRowSecurity: true, pg.AlterTableType_AT_ForceRowSecurity: true,
	pg.AlterTableType_AT_AddInherit: true, pg.AlterTableType_AT_AttachPartition: true,
	pg.AlterTableType_AT_AlterColumnType: true, pg.AlterTableType_AT_AddOf: true,
	pg.AlterTableType_AT_SetExpression: true,
}

func lastName(parts []*pg.Node) string {
	if r, ok := nameRef(parts); ok {
		return r.Name
	}
	return ""
}

// defines works out a statement's Defines. A catalog-changing statement
// this does not know is taken to change anything (fail closed).
func defines(n *pg.Node, c *Class) Defines {
	var d Defines
	code := len(c.Funcs)+len(c.Ops)+len(c.Casts) > 0
	switch x := n.GetNode().(type) {
	case *pg.Node_CreateFunctionStmt:
		d.Funcs = append(d.Funcs, lastName(x.CreateFunctionStmt.Funcname))
	case *pg.Node_AlterFunctionStmt:
		if f := x.AlterFunctionStmt.Func; f != nil {
			d.Funcs = append(d.Funcs, lastName(f.Objname))
		}
	case *pg.Node_DefineStmt:
		switch x.DefineStmt.Kind {
		case pg.ObjectType_OBJECT_AGGREGATE:
			d.Funcs = append(d.Funcs, lastName(x.DefineStmt.Defnames))
		case pg.ObjectType_OBJECT_OPERATOR:
			d.Ops = append(d.Ops, lastName(x.DefineStmt.Defnames))
		default:
			d.All = true
		}
	case *pg.Node_AlterOperatorStmt:
		if o := x.AlterOperatorStmt.Opername; o != nil {
			d.Ops = append(d.Ops, lastName(o.Objname))
		}
	case *pg.Node_CreateDomainStmt:
		d.Domains = append(d.Domains, lastName(x.CreateDomainStmt.Domainname))
	case *pg.Node_AlterDomainStmt:
		d.Domains = append(d.Domains, lastName(x.AlterDomainStmt.TypeName))
	case *pg.Node_ViewStmt:
		d.Relations = append(d.Relations, x.ViewStmt.View.GetRelname())
	case *pg.Node_CreateTrigStmt:
		d.Relations = append(d.Relations, x.CreateTrigStmt.Relation.GetRelname())
	case *pg.Node_RuleStmt:
		d.Relations = append(d.Relations, x.RuleStmt.Relation.GetRelname())
	case *pg.Node_CreatePolicyStmt:
		d.Relations = append(d.Relations, x.CreatePolicyStmt.Table.GetRelname())
	case *pg.Node_AlterPolicyStmt:
		d.Relations = append(d.Relations, x.AlterPolicyStmt.Table.GetRelname())
	case *pg.Node_CreateForeignTableStmt:
		if b := x.CreateForeignTableStmt.BaseStmt; b != nil {
			d.Relations = append(d.Relations, b.Relation.GetRelname())
		}
	case *pg.Node_CreateStmt:
		cs := x.CreateStmt
		if code || len(cs.InhRelations) > 0 || cs.Partbound != nil || cs.Partspec != nil || cs.OfTypename != nil {
			d.Relations = append(d.Relations, cs.Relation.GetRelname())
			for _, p := range cs.InhRelations {
				d.Relations = append(d.Relations, p.GetRangeVar().GetRelname())
			}
		}
	case *pg.Node_AlterTableStmt:
		at := x.AlterTableStmt
		hit := code
		for _, cmd := range at.Cmds {
			if relationAlters[cmd.GetAlterTableCmd().GetSubtype()] {
				hit = true
			}
		}
		if hit {
			d.Relations = append(d.Relations, at.Relation.GetRelname())
		}
	case *pg.Node_IndexStmt:
		if code {
			d.Relations = append(d.Relations, x.IndexStmt.Relation.GetRelname())
		}
	case *pg.Node_RenameStmt:
		switch x.RenameStmt.RenameType {
		case pg.ObjectType_OBJECT_TABLE, pg.ObjectType_OBJECT_VIEW, pg.ObjectType_OBJECT_MATVIEW,
			pg.ObjectType_OBJECT_FOREIGN_TABLE, pg.ObjectType_OBJECT_COLUMN, pg.ObjectType_OBJECT_TABCONSTRAINT,
			pg.ObjectType_OBJECT_TRIGGER, pg.ObjectType_OBJECT_RULE, pg.ObjectType_OBJECT_POLICY:
			if r := x.RenameStmt.Relation; r != nil {
				d.Relations = append(d.Relations, r.Relname)
			}
			d.Relations = append(d.Relations, x.RenameStmt.Newname)
		case pg.ObjectType_OBJECT_INDEX, pg.ObjectType_OBJECT_SEQUENCE, pg.ObjectType_OBJECT_DATABASE:
		default:
			d.All = true
		}
	case *pg.Node_CreateSchemaStmt:
		d.All = len(x.CreateSchemaStmt.SchemaElts) > 0
	case *pg.Node_DropStmt, *pg.Node_DropOwnedStmt, *pg.Node_TruncateStmt, *pg.Node_CommentStmt,
		*pg.Node_GrantStmt, *pg.Node_CreateSeqStmt, *pg.Node_AlterSeqStmt, *pg.Node_VacuumStmt,
		*pg.Node_CreatedbStmt, *pg.Node_DropdbStmt, *pg.Node_AlterDatabaseStmt, *pg.Node_AlterDatabaseSetStmt,
		*pg.Node_AlterDatabaseRefreshCollStmt, *pg.Node_ReindexStmt, *pg.Node_ClusterStmt,
		*pg.Node_CreateTableAsStmt, *pg.Node_RefreshMatViewStmt, *pg.Node_SecLabelStmt,
		*pg.Node_CreateStatsStmt, *pg.Node_AlterStatsStmt, *pg.Node_CheckPointStmt,
		*pg.Node_AlterSystemStmt, *pg.Node_CreateTableSpaceStmt, *pg.Node_DropTableSpaceStmt,
		*pg.Node_AlterTableSpaceOptionsStmt, *pg.Node_AlterDefaultPrivilegesStmt,
		*pg.Node_CreatePublicationStmt, *pg.Node_AlterPublicationStmt, *pg.Node_DropSubscriptionStmt,
		*pg.Node_CreateEnumStmt, *pg.Node_AlterEnumStmt, *pg.Node_CompositeTypeStmt, *pg.Node_CreateRangeStmt,
		*pg.Node_DropUserMappingStmt, *pg.Node_CreateUserMappingStmt, *pg.Node_AlterUserMappingStmt:
		// Nothing here makes a name resolve to new code.
	default:
		cl, _ := model.SQLKindClass(c.Kind)
		d.All = c.Opaque || cl == model.KindDDL || cl == model.KindCode || c.Kind == model.SQLKindUnknown
	}
	return d
}
