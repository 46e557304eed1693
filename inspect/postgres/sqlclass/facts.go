package sqlclass

import (
	"strconv"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// Facts about a statement that interlock's built-in rules judge: signals to
// backends, connection strings with passwords, settings, roles.

func (w *walker) funcCall(x *pg.FuncCall) {
	r, ok := nameRef(x.Funcname)
	if !ok {
		w.c.Opaque = true
		return
	}
	c := w.c
	if x.Funcformat == pg.CoercionForm_COERCE_SQL_SYNTAX && sqlSyntaxSince[r.Name] > 0 {
		c.MinServer = max(c.MinServer, sqlSyntaxSince[r.Name])
	}
	c.Funcs = appendRef(c.Funcs, r)
	if !PureName(r) {
		w.impure = true
	}
	if k := EffectKind(r); k != "" {
		c.AddKind(k)
		w.ro = false
	}
	builtin := r.Schema == "" || r.Schema == "pg_catalog"
	switch {
	case builtin && (r.Name == "pg_terminate_backend" || r.Name == "pg_cancel_backend"):
		sig := Signal{Func: r.Name}
		if len(x.Args) > 0 {
			sig.PID, sig.Self = pidArg(x.Args[0])
			sig.Param = paramArg(x.Args[0])
		}
		c.Signals = append(c.Signals, sig)
		w.literal = true
	case strings.HasPrefix(r.Name, "dblink"):
		// dblink's connection strings can carry credentials of their own.
		w.literal = true
		for _, a := range x.Args {
			if s, ok := stringConst(a); ok && mentionsPassword(s) {
				c.ConnSecrets = true
				c.Secrets = true
			}
		}
	}
}

// sqlSyntaxSince are SQL-syntax functions newer than PostgreSQL 15, by the
// version that reads them so (an older one reads a name).
var sqlSyntaxSince = map[string]int{"system_user": 16}

// pidArg reads the argument of a signal function: a constant pid, or
// pg_backend_pid() (the session's own backend).
func pidArg(n *pg.Node) (int64, bool) {
	if tc := n.GetTypeCast(); tc != nil {
		n = tc.Arg
	}
	if ac := n.GetAConst(); ac != nil {
		switch v := ac.Val.(type) {
		case *pg.A_Const_Ival:
			return int64(v.Ival.Ival), false
		case *pg.A_Const_Sval:
			if p, err := strconv.ParseInt(strings.TrimSpace(v.Sval.Sval), 10, 64); err == nil {
				return p, false
			}
		}
		return 0, false
	}
	if fc := n.GetFuncCall(); fc != nil && len(fc.Args) == 0 {
		if r, ok := nameRef(fc.Funcname); ok && r.Name == "pg_backend_pid" && (r.Schema == "" || r.Schema == "pg_catalog") {
			return 0, true
		}
	}
	return 0, false
}

// paramArg is the number of a $n argument (0: not one).
func paramArg(n *pg.Node) int {
	if tc := n.GetTypeCast(); tc != nil {
		n = tc.Arg
	}
	if p := n.GetParamRef(); p != nil {
		return int(p.Number)
	}
	return 0
}

func stringConst(n *pg.Node) (string, bool) {
	if tc := n.GetTypeCast(); tc != nil {
		n = tc.Arg
	}
	if ac := n.GetAConst(); ac != nil {
		if v, ok := ac.Val.(*pg.A_Const_Sval); ok {
			return v.Sval.Sval, true
		}
	}
	return "", false
}

func mentionsPassword(s string) bool {
	l := strings.ToLower(s)
	for _, key := range []string{"password", "passfile"} {
		for i := strings.Index(l, key); i >= 0; {
			rest := strings.TrimLeft(l[i+len(key):], " \t\r\n")
			if strings.HasPrefix(rest, "=") {
				return true
			}
			j := strings.Index(l[i+1:], key)
			if j < 0 {
				break
			}
			i += 1 + j
		}
	}
	// postgresql://user:secret@host
	if i := strings.Index(l, "://"); i >= 0 {
		rest := l[i+3:]
		if at := strings.IndexByte(rest, '@'); at > 0 && strings.Contains(rest[:at], ":") {
			return true
		}
	}
	return false
}

// conninfo looks at a subscription's connection string for a password:
// the string is a plain field of the statement, which the walk does not
// visit, so it is redacted from the journal only when marked here.
func (w *walker) conninfo(s string) {
	w.literal = true
	if mentionsPassword(s) {
		w.c.Secrets = true
	}
}

// mappingOptions looks at user mapping and foreign server options for a
// password.
func (w *walker) mappingOptions(opts []*pg.Node) {
	w.literal = true
	for _, o := range opts {
		if d := o.GetDefElem(); d != nil && (strings.EqualFold(d.Defname, "password") || strings.EqualFold(d.Defname, "passfile")) {
			w.c.ConnSecrets = true
			w.c.Secrets = true
		}
	}
}

func (w *walker) setting(x *pg.VariableSetStmt) {
	w.literal = true
	s := Setting{Name: strings.ToLower(x.Name)}
	switch x.Kind {
	case pg.VariableSetKind_VAR_RESET, pg.VariableSetKind_VAR_RESET_ALL, pg.VariableSetKind_VAR_SET_DEFAULT:
		s.Reset = true
	case pg.VariableSetKind_VAR_SET_VALUE:
		if len(x.Args) > 0 {
			if ac := x.Args[0].GetAConst(); ac != nil {
				switch v := ac.Val.(type) {
				case *pg.A_Const_Sval:
					s.Value = v.Sval.Sval
				case *pg.A_Const_Ival:
					s.Value = strconv.Itoa(int(v.Ival.Ival))
				case *pg.A_Const_Fval:
					s.Value = v.Fval.Fval
				case *pg.A_Const_Boolval:
					s.Value = strconv.FormatBool(v.Boolval.Boolval)
				}
			}
		}
	case pg.VariableSetKind_VAR_SET_MULTI:
		// SET TRANSACTION, SET SESSION CHARACTERISTICS: not a variable the
		// parser depends on.
		s.Name = strings.ToLower(x.Name)
	}
	if x.Kind == pg.VariableSetKind_VAR_RESET_ALL {
		s.Name = ""
	}
	w.c.Settings = append(w.c.Settings, s)
}

func role(r *pg.RoleSpec) Role {
	if r == nil {
		return Role{Spec: "all"}
	}
	switch r.Roletype {
	case pg.RoleSpecType_ROLESPEC_CSTRING:
		return Role{Name: r.Rolename}
	case pg.RoleSpecType_ROLESPEC_CURRENT_ROLE:
		return Role{Spec: "current_role"}
	case pg.RoleSpecType_ROLESPEC_CURRENT_USER:
		return Role{Spec: "current_user"}
	case pg.RoleSpecType_ROLESPEC_SESSION_USER:
		return Role{Spec: "session_user"}
	case pg.RoleSpecType_ROLESPEC_PUBLIC:
		return Role{Spec: "public"}
	}
	return Role{Spec: "all"}
}
