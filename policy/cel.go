package policy

import (
	"fmt"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/interpreter"

	"github.com/interlock/interlock/internal/accounts"
	"github.com/interlock/interlock/model"
)

// The CEL environment rules' `when` conditions are checked in. Variables:
//
//	identity: map  uid, gid (int), user, group, exe, exe_sha256, cgroup,
//	               unit, container (string; "" when unknown; exe and
//	               exe_sha256 also "" unless exe_trust is "verified"),
//	               exe_trust, runner, program (string), pid (int),
//	               claimed (map of string to string: the environment's CI
//	               claims, which the process controls),
//	               login ("known", "none" for a process that descends from
//	               no login, "unknown"), login_user (string), login_uid
//	               (int; -1 unless login is "known"),
//	               agent (a name of identity.agents, "none", or "unknown"
//	               when the process could not be read), agent_provenance
//	               ("proc", "claimed" or ""),
//	               workload ("verified", "claimed", "none", or "unknown"
//	               when the process could not be read), verified
//	               (map of string to string: the claims of a verified
//	               token; empty unless workload is "verified")
//	target:   map  name, protocol, address
//	op:       map  protocol, kind, text, path, detail (string), kinds,
//	               tables (list of string), read_only, no_where (bool)
//	effects:  list of maps, one per relation a transaction about to
//	          commit changed or locked (empty for other operations):
//	          name, kind, lock (string), also (list of string),
//	          inserted, updated, deleted (int), system, dropped,
//	          rewritten, created, altered (bool)
//	now:      timestamp of the decision
func newEnv() (*cel.Env, error) {
	return cel.NewEnv(
		cel.Variable("identity", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("target", cel.MapType(cel.StringType, cel.StringType)),
		cel.Variable("op", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("effects", cel.ListType(cel.MapType(cel.StringType, cel.DynType))),
		cel.Variable("now", cel.TimestampType),
	)
}

// compileWhen compiles a condition and says what it reads (session.go).
func compileWhen(env *cel.Env, expr string) (cel.Program, celUse, error) {
	ast, iss := env.Compile(expr)
	if iss != nil && iss.Err() != nil {
		return nil, celUse{}, fmt.Errorf("CEL: %s", iss.Err())
	}
	if ast.OutputType() != cel.BoolType && ast.OutputType() != cel.DynType {
		return nil, celUse{}, fmt.Errorf("CEL: the condition must be a bool, not %s", ast.OutputType())
	}
	// No runtime cost tracking: it doubles evaluation time, and the
	// conditions come from the root-owned config over small inputs.
	prg, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize))
	return prg, usesOf(ast), err
}

// lazyActivation resolves the CEL variables for one decision, building
// each only when a condition first asks for it.
type lazyActivation struct {
	o     model.Origin
	op    model.Operation
	now   time.Time
	names *accounts.Names
	vars  map[string]any
}

func newActivation(o model.Origin, op model.Operation, now time.Time, names *accounts.Names) *lazyActivation {
	return &lazyActivation{o: o, op: op, now: now, names: names}
}

// ResolveName implements cel's interpreter.Activation.
func (a *lazyActivation) ResolveName(name string) (any, bool) {
	if v, ok := a.vars[name]; ok {
		return v, true
	}
	var v any
	switch name {
	case "identity":
		v = identityVar(a.o.Identity, a.names)
	case "target":
		v = map[string]string{"name": a.o.Target.Name, "protocol": string(a.o.Target.Protocol), "address": a.o.Target.Address}
	case "op":
		v = opVar(a.op)
	case "effects":
		v = effectsVar(a.op.Effects)
	case "now":
		v = a.now
	default:
		return nil, false
	}
	// Adapt once: CEL would otherwise wrap the Go map on every access.
	cv := types.DefaultTypeAdapter.NativeToValue(v)
	if a.vars == nil {
		a.vars = make(map[string]any, 5)
	}
	a.vars[name] = cv
	return cv, true
}

// Parent implements cel's interpreter.Activation.
func (a *lazyActivation) Parent() interpreter.Activation { return nil }

func identityVar(ident model.Identity, names *accounts.Names) map[string]any {
	k := ident.Kernel
	claimed := ident.Claimed
	if claimed == nil {
		claimed = map[string]string{}
	}
	id := map[string]any{
		"uid": int64(k.UID), "gid": int64(k.GID), "pid": int64(k.TGID),
		"user": userName(ident, names), "group": groupName(ident, names),
		"exe": "", "exe_sha256": "", "cgroup": "", "unit": "", "container": "",
		"exe_trust": model.ExeUnknown, "runner": "", "program": "",
		"claimed": claimed,
	}
	principalVars(id, ident)
	if p := ident.Proc; p != nil {
		if p.ExeTrusted() {
			id["exe"], id["exe_sha256"] = p.Exe, p.ExeSHA256
		}
		id["exe_trust"], id["runner"], id["program"] = p.ExeTrust, p.Runner, p.Program
		id["cgroup"], id["unit"], id["container"] = p.CgroupPath, p.SystemdUnit, p.ContainerID
	}
	return id
}

// principalVars adds the human, the agent and the workload. What was not
// established reads "unknown" (or -1, or empty), never as its absence: a
// condition that asks for "none" must not hold for a process interlock
// could not read.
func principalVars(id map[string]any, ident model.Identity) {
	login, user, uid := "unknown", "", int64(-1)
	if h := ident.Human; h != nil && ident.Proc != nil {
		switch {
		case h.NoLogin:
			login = "none"
		case h.LoginUID != nil:
			login, user, uid = "known", h.LoginUser, int64(*h.LoginUID)
		}
	}
	id["login"], id["login_user"], id["login_uid"] = login, user, uid

	agent, agentProv := "unknown", ""
	if ident.Proc != nil {
		if a := ident.Agent; a != nil {
			agent, agentProv = a.Name, string(a.Provenance)
		} else if ident.AgentError == "" {
			agent = "none"
		}
	}
	id["agent"], id["agent_provenance"] = agent, agentProv

	workload, verified := "unknown", map[string]string{}
	if ident.Proc != nil {
		workload = "none"
	}
	if w := ident.Workload; w != nil {
		workload = string(w.Provenance)
		if w.Provenance == model.ProvVerified && w.Claims != nil {
			verified = w.Claims
		}
	}
	id["workload"], id["verified"] = workload, verified
}

func opVar(op model.Operation) map[string]any {
	kinds, tables := op.Kinds, op.Tables
	if kinds == nil {
		kinds = []string{}
	}
	if tables == nil {
		tables = []string{}
	}
	return map[string]any{
		"protocol": string(op.Protocol), "kind": op.Kind, "text": op.Text, "path": op.Path, "detail": op.Detail,
		"kinds": kinds, "tables": tables, "read_only": op.ReadOnly, "no_where": op.NoWhere,
	}
}

func effectsVar(e *model.PGEffects) []any {
	out := []any{}
	if e == nil {
		return out
	}
	for _, t := range e.Tables {
		also := t.Also
		if also == nil {
			also = []string{}
		}
		out = append(out, map[string]any{
			"name": t.Name, "kind": t.Kind, "lock": t.Lock, "also": also,
			"inserted": t.Inserted, "updated": t.Updated, "deleted": t.Deleted,
			"system": t.System, "dropped": t.Dropped, "rewritten": t.Rewritten, "created": t.Created, "altered": t.Altered(),
		})
	}
	return out
}
