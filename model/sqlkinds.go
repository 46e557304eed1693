package model

import "sort"

// KindClass groups statement kinds by what they can do. Policy uses it to
// decide which rules also apply to opaque statements (write and ddl), and
// the docs list kinds by class.
type KindClass string

const (
	// KindRead kinds only read (given that what they call only reads).
	KindRead KindClass = "read"
	// KindWrite kinds change rows.
	KindWrite KindClass = "write"
	// KindDDL kinds change the schema, privileges, roles or the server.
	KindDDL KindClass = "ddl"
	// KindTransaction kinds begin, end or mark transactions.
	KindTransaction KindClass = "transaction"
	// KindSession kinds change or read the session's own state.
	KindSession KindClass = "session"
	// KindCode kinds run code whose effects the text does not show.
	KindCode KindClass = "code"
	// KindMaintenance kinds maintain storage (vacuum, reindex, ...).
	KindMaintenance KindClass = "maintenance"
	// KindSpecial are the kinds interlock adds: opaque, unknown, empty.
	KindSpecial KindClass = "special"
)

// Special statement kinds.
const (
	// SQLKindOpaque is added to the kinds of a statement that can run code
	// the text does not show: DO, CALL, a function or operator that is not
	// built in, COPY ... PROGRAM, a write to a relation with triggers or
	// rules, a view or an inheritance parent.
	SQLKindOpaque = "opaque"
	// SQLKindUnknown is the kind of text interlock's parser rejects.
	SQLKindUnknown = "unknown"
	// SQLKindEmpty is an empty query.
	SQLKindEmpty = "empty"
)

// sqlKinds is the one list of PostgreSQL statement kinds: the classifier
// produces only these, config checks accept only these (and the ssh and
// tcp operation kinds), and docs/policy.md lists them. A kind is named
// after PostgreSQL's command tag where one exists (DROP TABLE is
// drop_table), with the object names of the parser's ObjectType.
var sqlKinds = map[string]KindClass{
	// Reads.
	"select": KindRead, "show": KindRead, "explain": KindRead, "fetch": KindRead, "move": KindRead,
	"declare_cursor": KindRead, "close_cursor": KindRead, "copy_to": KindRead,

	// Writes.
	"insert": KindWrite, "update": KindWrite, "delete": KindWrite, "merge": KindWrite,
	"copy_from": KindWrite, "truncate": KindWrite, "refresh_matview": KindWrite, "notify": KindWrite,
	"lock": KindWrite,

	// Transaction control.
	"begin": KindTransaction, "commit": KindTransaction, "rollback": KindTransaction,
	"savepoint": KindTransaction, "release_savepoint": KindTransaction, "rollback_to_savepoint": KindTransaction,
	"prepare_transaction": KindTransaction, "commit_prepared": KindTransaction, "rollback_prepared": KindTransaction,
	"set_constraints": KindTransaction,

	// Session state.
	"set": KindSession, "reset": KindSession, "discard": KindSession, "prepare": KindSession,
	"execute": KindSession, "deallocate": KindSession, "listen": KindSession, "unlisten": KindSession,
	"load": KindSession,

	// Code.
	"do": KindCode, "call": KindCode, "function_call": KindCode,

	// Maintenance.
	"vacuum": KindMaintenance, "analyze": KindMaintenance, "cluster": KindMaintenance,
	"reindex": KindMaintenance, "checkpoint": KindMaintenance,

	// Privileges, roles and other DDL without an object type in the name.
	"grant": KindDDL, "revoke": KindDDL, "grant_role": KindDDL, "revoke_role": KindDDL,
	"comment": KindDDL, "security_label": KindDDL, "reassign_owned": KindDDL, "drop_owned": KindDDL,
	"import_foreign_schema": KindDDL, "alter_default_privileges": KindDDL, "alter_system": KindDDL,
	"create_table_as": KindDDL,

	SQLKindOpaque: KindSpecial, SQLKindUnknown: KindSpecial, SQLKindEmpty: KindSpecial,
}

// ddlObjects are the object names that follow create_, alter_ and drop_.
// Not every combination exists in PostgreSQL; every one the classifier can
// produce is listed.
var ddlObjects = []string{
	"access_method", "aggregate", "cast", "collation", "conversion", "database", "domain",
	"event_trigger", "extension", "fdw", "foreign_server", "foreign_table", "function", "index",
	"language", "largeobject", "matview", "opclass", "operator", "opfamily", "policy", "procedure",
	"publication", "role", "routine", "rule", "schema", "sequence", "statistic_ext", "subscription",
	"table", "tablespace", "transform", "trigger", "tsconfiguration", "tsdictionary", "tsparser",
	"tstemplate", "type", "user_mapping", "view",
}

func init() {
	for _, o := range ddlObjects {
		for _, verb := range []string{"create_", "alter_", "drop_"} {
			sqlKinds[verb+o] = KindDDL
		}
	}
}

// SQLKinds lists every PostgreSQL statement kind, sorted.
func SQLKinds() []string {
	out := make([]string, 0, len(sqlKinds))
	for k := range sqlKinds {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// SQLKindClass returns the class of a statement kind, and false when it is
// not one.
func SQLKindClass(kind string) (KindClass, bool) {
	c, ok := sqlKinds[kind]
	return c, ok
}

// IsSQLKind says whether kind is a PostgreSQL statement kind.
func IsSQLKind(kind string) bool {
	_, ok := sqlKinds[kind]
	return ok
}

// Operation kinds of the other protocols.
var (
	// SSHKinds are the ssh operation kinds.
	SSHKinds = []string{"shell", "exec", "subsystem", "sftp", "port_forwarding", "agent_forwarding", "x11"}
	// TCPKinds are the tcp operation kinds; every protocol's sessions
	// start with a connect.
	TCPKinds = []string{"connect"}
	// K8sKinds are the kubernetes operation kinds: the API's verbs, and
	// the streams a pod's subresources open.
	K8sKinds = []string{"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection", "exec", "attach", "portforward"}
)
