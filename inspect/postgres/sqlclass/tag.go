package sqlclass

import (
	"strings"

	"github.com/interlock/interlock/model"
)

// tagObjects maps the object words of PostgreSQL's command tags to the
// object names of statement kinds where the two differ.
var tagObjects = map[string]string{
	"materialized_view":         "matview",
	"foreign_data_wrapper":      "fdw",
	"server":                    "foreign_server",
	"statistics":                "statistic_ext",
	"operator_class":            "opclass",
	"operator_family":           "opfamily",
	"text_search_configuration": "tsconfiguration",
	"text_search_dictionary":    "tsdictionary",
	"text_search_parser":        "tsparser",
	"text_search_template":      "tstemplate",
	"large_object":              "largeobject",
	"constraint_trigger":        "trigger",
	"user":                      "role",
	"group":                     "role",
}

// tagKinds are the kinds a command tag (without its counts) can answer,
// where the tag's own name is not the kind.
var tagKinds = map[string][]string{
	"select":            {"select", "create_table_as", "create_matview", "execute"},
	"copy":              {"copy_from", "copy_to"},
	"start_transaction": {"begin"},
	"commit":            {"commit"},
	// COMMIT or PREPARE TRANSACTION of a failed transaction rolls it back.
	"rollback":                  {"rollback", "rollback_to_savepoint", "commit", "prepare_transaction"},
	"release":                   {"release_savepoint"},
	"lock_table":                {"lock"},
	"truncate_table":            {"truncate"},
	"discard_all":               {"discard"},
	"discard_plans":             {"discard"},
	"discard_sequences":         {"discard"},
	"discard_temp":              {"discard"},
	"deallocate_all":            {"deallocate"},
	"close_cursor_all":          {"close_cursor"},
	"refresh_materialized_view": {"refresh_matview"},
	"create_table_as":           {"create_table_as", "create_matview"},
	"alter_table":               {"alter_table", "alter_foreign_table"},
	"create_table":              {"create_table", "create_table_as"},
	"create_type":               {"create_type"},
	"set":                       {"set"},
	"set_constraints":           {"set_constraints"},
	"reset":                     {"reset"},
	"grant":                     {"grant"},
	"revoke":                    {"revoke"},
	"grant_role":                {"grant_role"},
	"revoke_role":               {"revoke_role"},
	"create_foreign_table":      {"create_foreign_table"},
}

// countedTags are the tags of the statements that run most, one word and
// counts: TagKind names them without building a string per statement.
var countedTags = map[string]string{
	"SELECT": "select", "INSERT": "insert", "UPDATE": "update", "DELETE": "delete", "MERGE": "merge",
	"FETCH": "fetch", "MOVE": "move", "COPY": "copy", "BEGIN": "begin", "COMMIT": "commit",
	"ROLLBACK": "rollback", "SET": "set", "SHOW": "show", "RESET": "reset", "SAVEPOINT": "savepoint",
	"RELEASE": "release", "PREPARE": "prepare", "DEALLOCATE": "deallocate", "EXPLAIN": "explain",
	"LISTEN": "listen", "NOTIFY": "notify",
}

// TagKind turns a CommandComplete tag into the kind it names: the words
// before any count, in lower case, joined by _, with the object words
// renamed as statement kinds name them.
func TagKind(tag string) string {
	if word, counts, _ := strings.Cut(tag, " "); countedTags[word] != "" && onlyCounts(counts) {
		return countedTags[word]
	}
	return tagKind(tag)
}

// tagKind is TagKind for any tag.
func tagKind(tag string) string {
	fields := strings.Fields(tag)
	for len(fields) > 0 {
		last := fields[len(fields)-1]
		if strings.Trim(last, "0123456789") != "" {
			break
		}
		fields = fields[:len(fields)-1]
	}
	k := strings.ToLower(strings.Join(fields, "_"))
	for _, verb := range []string{"create_", "alter_", "drop_"} {
		if obj, ok := strings.CutPrefix(k, verb); ok {
			if o, ok := tagObjects[obj]; ok {
				return verb + o
			}
		}
	}
	return k
}

// TagFits says whether a CommandComplete tag can be the answer to a
// statement of this class. A statement interlock could not parse fits any
// tag; otherwise the tag's kind must be among the statement's kinds (the
// top-level one, or a nested one for EXECUTE and EXPLAIN).
func TagFits(tag string, c *Class) bool {
	if c == nil || c.Has(model.SQLKindUnknown) {
		return true
	}
	k := TagKind(tag)
	if k == "" {
		return false
	}
	if c.Has(k) {
		return true
	}
	for _, alt := range tagKinds[k] {
		if c.Has(alt) {
			return true
		}
	}
	return false
}

// onlyCounts says whether s is nothing but counts: digits and spaces.
func onlyCounts(s string) bool {
	for i := 0; i < len(s); i++ {
		if (s[i] < '0' || s[i] > '9') && s[i] != ' ' {
			return false
		}
	}
	return true
}
