package model

// KindPGEffects is the journal kind of a transaction's effects, read from
// the server before its COMMIT went through, with the decision taken on
// them (data: PGEffects).
const KindPGEffects = "pg.effects"

// PGEffects is what a transaction did, as the server reports it from
// inside the transaction before it commits: the rows it inserted, updated
// and deleted per relation (pg_stat_xact_all_tables), the relation locks it
// holds (pg_locks), and which relations it dropped or rewrote. Effects
// rules judge it; Operation.Effects carries it to policy and to approvers.
type PGEffects struct {
	// Statements are the sequence numbers of the pg.statement entries of
	// the transaction.
	Statements []uint64 `json:"statements,omitempty"`
	// Tables lists each relation the transaction changed or locked beyond
	// reading, user relations and system catalogs alike.
	Tables []PGTableEffect `json:"tables,omitempty"`
	// Rows is the CommandComplete count of the statements, summed.
	Rows int64 `json:"rows"`
	// Error says why the effects could not be read in full; policy then
	// fails closed.
	Error string `json:"error,omitempty"`
}

// PGTableEffect is one relation's part of a transaction's effects.
type PGTableEffect struct {
	OID uint32 `json:"oid"`
	// Name is schema.relation as the transaction sees it (or as it was
	// committed, for a relation the transaction dropped).
	Name string `json:"name"`
	// Also are the relation's other names: the committed name when the
	// transaction renamed it, and its inheritance ancestors (a row
	// deleted through a parent is deleted from a child).
	Also []string `json:"also,omitempty"`
	// Kind is pg_class.relkind: r table, p partitioned, v view, m
	// materialized view, f foreign, S sequence, i index, t toast.
	Kind string `json:"kind,omitempty"`
	// System is set for a system catalog (pg_catalog, information_schema,
	// pg_toast): its rows change when the transaction runs DDL, changes
	// roles, functions, settings.
	System   bool  `json:"system,omitempty"`
	Inserted int64 `json:"inserted,omitempty"`
	Updated  int64 `json:"updated,omitempty"`
	Deleted  int64 `json:"deleted,omitempty"`
	// Lock is the strongest lock the transaction holds on the relation,
	// when stronger than RowExclusiveLock (ShareUpdateExclusiveLock ...
	// AccessExclusiveLock).
	Lock string `json:"lock,omitempty"`
	// Dropped: the relation no longer exists inside the transaction.
	// Rewritten: it has new storage (TRUNCATE, VACUUM FULL, CLUSTER, a
	// column type change). Created: it did not exist before.
	Dropped   bool `json:"dropped,omitempty"`
	Rewritten bool `json:"rewritten,omitempty"`
	Created   bool `json:"created,omitempty"`
}

// Altered says the relation was locked ACCESS EXCLUSIVE (ALTER, LOCK,
// REINDEX, ...) without being dropped or rewritten.
func (t PGTableEffect) Altered() bool {
	return t.Lock == "AccessExclusiveLock" && !t.Dropped && !t.Rewritten && !t.Created
}

// Changes names what happened to the relation beyond its row counts, in
// the words the approval views (console page, interlock approvals) show.
func (t PGTableEffect) Changes() []string {
	var out []string
	for _, c := range []struct {
		set  bool
		what string
	}{
		{t.Created, "created"}, {t.Dropped, "dropped"}, {t.Rewritten, "rewritten (truncated)"},
		{t.Altered(), "altered"}, {t.System, "system catalog"},
	} {
		if c.set {
			out = append(out, c.what)
		}
	}
	return out
}

// RoleCatalogs are the system catalogs that hold roles, their memberships
// and their settings: a change to any of them changes a role.
var RoleCatalogs = []string{"pg_catalog.pg_authid", "pg_catalog.pg_auth_members", "pg_catalog.pg_db_role_setting"}

// AccessCatalogs are the system catalogs whose change can lock a role out
// of a database (pg_database: connection limits, names, owners) or change
// a role: interlock refuses their change by statements it cannot read.
var AccessCatalogs = append([]string{"pg_catalog.pg_database"}, RoleCatalogs...)

// PGEffectsEntry is the data of a pg.effects entry: a transaction's
// effects and what was decided on them. It is synced before the COMMIT
// (or the ROLLBACK a denial sends) reaches the server.
type PGEffectsEntry struct {
	PGEffects
	Decision Decision `json:"decision"`
	// Commit is the pg.statement entry of the client's COMMIT, when the
	// client ended the transaction; zero when interlock held the
	// transaction around autocommit statements.
	Commit uint64 `json:"commit,omitempty"`
}
