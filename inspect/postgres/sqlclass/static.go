package sqlclass

import (
	"strings"

	"github.com/interlock/interlock/model"
)

// pureFunctions are built-in functions that do not write. Without the
// target's catalog (interlock policy test), a function on this list is
// taken to be PostgreSQL's own; the live handler asks the catalog instead,
// where a function of the same name could shadow it.
var pureFunctions = words(`count sum avg min max now length char_length octet_length bit_length lower upper
	initcap abs round floor ceil ceiling trunc mod power sqrt cbrt exp ln log sign div
	substr substring concat concat_ws to_char to_date to_timestamp to_number date_trunc date_part extract
	age array_agg string_agg json_agg jsonb_agg json_build_object jsonb_build_object json_build_array
	jsonb_build_array json_object_agg jsonb_object_agg row_to_json to_json to_jsonb jsonb_pretty
	jsonb_set jsonb_insert jsonb_extract_path jsonb_extract_path_text json_extract_path json_extract_path_text
	jsonb_array_elements jsonb_array_elements_text json_array_elements jsonb_each jsonb_each_text
	jsonb_object_keys jsonb_typeof jsonb_strip_nulls array_length array_to_string array_append array_prepend
	array_cat array_position array_positions array_remove array_replace cardinality unnest generate_series
	row_number rank dense_rank percent_rank cume_dist lag lead first_value last_value nth_value ntile
	bool_and bool_or every bit_and bit_or stddev variance percentile_cont percentile_disc mode
	version current_database current_schema current_schemas current_setting current_user session_user
	pg_backend_pid pg_postmaster_start_time pg_conf_load_time
	coalesce greatest least nullif left right trim btrim ltrim rtrim replace split_part position strpos
	starts_with md5 sha224 sha256 sha384 sha512 encode decode format regexp_replace regexp_match
	regexp_matches regexp_split_to_array regexp_split_to_table regexp_like regexp_count regexp_substr
	lpad rpad repeat reverse translate chr ascii quote_ident quote_literal quote_nullable
	clock_timestamp statement_timestamp transaction_timestamp timeofday localtime localtimestamp
	make_date make_time make_timestamp make_timestamptz make_interval justify_days justify_hours
	justify_interval isfinite timezone overlaps date_bin
	pg_typeof pg_column_size pg_size_pretty pg_relation_size pg_total_relation_size pg_database_size
	pg_table_size pg_indexes_size has_table_privilege has_schema_privilege has_database_privilege
	has_column_privilege has_function_privilege has_sequence_privilege pg_has_role
	pg_is_in_recovery inet_server_addr inet_server_port inet_client_addr inet_client_port
	txid_current_snapshot pg_current_snapshot pg_get_viewdef pg_get_functiondef pg_get_indexdef
	pg_get_constraintdef pg_get_expr pg_get_userbyid format_type obj_description col_description
	pg_table_is_visible to_regclass to_regtype to_regproc to_regnamespace
	gen_random_uuid random random_normal setseed pg_sleep pg_sleep_for pg_sleep_until
	num_nonnulls num_nulls width_bucket pi degrees radians sin cos tan asin acos atan atan2
	xmlelement xmlforest xmlagg xmlconcat array_dims array_lower array_upper string_to_array
	to_tsvector to_tsquery plainto_tsquery phraseto_tsquery websearch_to_tsquery ts_rank ts_headline
	host network netmask masklen family text bool int4 int8 numeric float8 date`)

// impureBuiltins are built-in functions with effects outside what the
// statement reads: they make a statement not read-only (and not
// transactional), but they are PostgreSQL's own, so not opaque.
var impureBuiltins = words(`nextval setval currval lastval set_config pg_terminate_backend pg_cancel_backend
	pg_advisory_lock pg_advisory_xact_lock pg_advisory_unlock pg_advisory_unlock_all pg_try_advisory_lock
	pg_try_advisory_xact_lock pg_advisory_lock_shared pg_advisory_xact_lock_shared pg_try_advisory_lock_shared
	pg_try_advisory_xact_lock_shared pg_advisory_unlock_shared pg_notify pg_reload_conf pg_rotate_logfile
	pg_stat_reset pg_stat_reset_shared pg_stat_reset_single_table_counters pg_stat_force_next_flush
	lo_import lo_export lo_create lo_creat lo_unlink lo_open lo_write lowrite lo_put lo_from_bytea lo_truncate
	pg_read_file pg_read_binary_file pg_ls_dir pg_stat_file txid_current pg_current_xact_id
	pg_switch_wal pg_create_restore_point pg_start_backup pg_stop_backup pg_backup_start pg_backup_stop
	pg_create_logical_replication_slot pg_create_physical_replication_slot pg_drop_replication_slot
	pg_logical_emit_message pg_import_system_collations pg_promote pg_log_backend_memory_contexts`)

// effectKinds names what a built-in function with effects does, as the
// statement kind that does the same: SELECT nextval(...) updates a
// sequence, set_config(...) is a SET. The kind joins the statement's
// kinds, so that an allow rule for select does not cover it and a deny
// rule for that kind applies.
var effectKinds = map[string]string{
	"nextval": "update", "setval": "update",
	"set_config": "set",
	"pg_notify":  "notify",
	"lo_import":  "insert", "lo_create": "insert", "lo_creat": "insert", "lo_from_bytea": "insert",
	"lo_put": "update", "lo_write": "update", "lo_truncate": "update",
	"lo_unlink": "delete",
	"lo_export": "copy_to", "pg_read_file": "copy_to", "pg_read_binary_file": "copy_to",
	"pg_ls_dir": "copy_to", "pg_stat_file": "copy_to",
	"pg_reload_conf": "alter_system", "pg_rotate_logfile": "alter_system", "pg_promote": "alter_system",
	"pg_switch_wal": "alter_system", "pg_create_restore_point": "alter_system",
	"pg_start_backup": "alter_system", "pg_stop_backup": "alter_system", "pg_backup_start": "alter_system",
	"pg_backup_stop": "alter_system", "pg_create_logical_replication_slot": "alter_system",
	"pg_create_physical_replication_slot": "alter_system", "pg_drop_replication_slot": "alter_system",
	"pg_logical_emit_message": "alter_system", "pg_stat_reset": "alter_system",
	"pg_stat_reset_shared": "alter_system", "pg_stat_reset_single_table_counters": "alter_system",
	"pg_import_system_collations": "create_collation",
	"pg_advisory_lock":            "lock", "pg_advisory_xact_lock": "lock", "pg_try_advisory_lock": "lock",
	"pg_try_advisory_xact_lock": "lock", "pg_advisory_lock_shared": "lock", "pg_advisory_xact_lock_shared": "lock",
	"pg_try_advisory_lock_shared": "lock", "pg_try_advisory_xact_lock_shared": "lock",
	"pg_advisory_unlock": "lock", "pg_advisory_unlock_shared": "lock", "pg_advisory_unlock_all": "lock",
	"lowrite":                  "update",
	"pg_stat_force_next_flush": "alter_system", "pg_log_backend_memory_contexts": "alter_system",
}

// noEffectKind are the impure built-ins that add no kind, each for a
// reason: their effect is on the session's own state, which no rule
// judges (currval, lastval, lo_open, an xid of its own), or a built-in
// rule judges them by their arguments (the signal functions).
var noEffectKind = words(`currval lastval lo_open txid_current pg_current_xact_id
	pg_terminate_backend pg_cancel_backend`)

// EffectKind is the statement kind a call of a built-in function with
// effects adds ("" for none).
func EffectKind(r Ref) string {
	if r.Schema != "" && r.Schema != "pg_catalog" {
		return ""
	}
	return effectKinds[r.Name]
}

func words(s string) map[string]bool {
	m := map[string]bool{}
	for _, f := range strings.Fields(s) {
		m[f] = true
	}
	return m
}

// PureName says whether a function reference names one of the built-in
// functions known not to write (unqualified or in pg_catalog).
func PureName(r Ref) bool {
	return (r.Schema == "" || r.Schema == "pg_catalog") && pureFunctions[r.Name]
}

// ImpureBuiltinName says whether a function reference names a built-in
// function with effects (nextval, set_config, pg_terminate_backend, ...).
func ImpureBuiltinName(r Ref) bool {
	return (r.Schema == "" || r.Schema == "pg_catalog") && impureBuiltins[r.Name]
}

// Static resolves a class without the target's catalog, as `interlock
// policy test` does: a function on interlock's built-in lists is taken to
// be PostgreSQL's own; any other function is opaque; operators, casts and
// relations are taken to be plain. The live handler resolves against the
// catalog instead, which can only make a statement more opaque than this.
func Static(c *Class) *Class {
	out := c
	clone := func() {
		if out == c {
			out = c.Clone()
		}
	}
	for _, f := range c.Funcs {
		switch {
		case PureName(f):
		case ImpureBuiltinName(f):
			clone()
			out.ReadOnly = false
		default:
			clone()
			out.ReadOnly = false
			out.Opaque = true
			out.Catalog = true
			out.AddKind(model.SQLKindOpaque)
		}
	}
	return out
}
