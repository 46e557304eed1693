package config

import (
	"fmt"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/interlock/interlock/model"
)

// PolicyConfig is the policy section: the rules that decide what each
// operation may do.
type PolicyConfig struct {
	// Default is the action for an operation no rule allows (a mask rule
	// never does): allow (default) or deny.
	Default string `yaml:"default"`
	// ReviewTimeout is how long a held operation waits for approval when
	// its rule does not say; a timeout denies.
	ReviewTimeout Duration `yaml:"review_timeout"`
	// Webhook is notified of every approval request.
	Webhook *WebhookConfig `yaml:"webhook,omitempty"`
	// Unknown is what happens to a statement interlock cannot parse on a
	// target where any deny or review rule applies: deny (default),
	// review or allow.
	Unknown string `yaml:"unknown,omitempty"`
	// UnknownReview holds the approvers of unparsable statements when
	// Unknown is review.
	UnknownReview *ReviewConfig `yaml:"unknown_review,omitempty"`
	// UnknownIdentity is what happens to a session whose program identity
	// interlock could not establish (the process was gone before it could
	// be read, or its executable at accept is not the one that connected):
	// deny or allow. Unset, it is deny on a target where any deny or
	// review rule applies, and allow elsewhere.
	UnknownIdentity string       `yaml:"unknown_identity,omitempty"`
	Rules           []RuleConfig `yaml:"rules,omitempty"`
}

// WebhookConfig is policy.webhook.
type WebhookConfig struct {
	// URL receives a JSON POST per approval request.
	URL string `yaml:"url"`
	// Timeout bounds each POST (default 5s).
	Timeout Duration `yaml:"timeout,omitempty"`
	// SecretFile, when set, holds a key used to sign each body
	// (X-Interlock-Signature: sha256=HMAC).
	SecretFile string `yaml:"secret_file,omitempty"`
}

// RuleConfig is one policy rule.
type RuleConfig struct {
	Name  string      `yaml:"name"`
	Match MatchConfig `yaml:"match"`
	// When is an optional CEL condition over the documented variables
	// (identity, target, op); the rule applies only when it is true.
	When   string `yaml:"when,omitempty"`
	Action string `yaml:"action"`
	Reason string `yaml:"reason,omitempty"`
	// Review configures a review action.
	Review *ReviewConfig `yaml:"review,omitempty"`
	// Mask configures a mask action.
	Mask *MaskConfig `yaml:"mask,omitempty"`
}

// MatchConfig is what a rule applies to. Every part that is set must
// match; within a list, any entry may.
type MatchConfig struct {
	// Targets are target-name globs.
	Targets []string `yaml:"targets,omitempty"`
	// Protocols are tcp, postgres, ssh.
	Protocols []string        `yaml:"protocols,omitempty"`
	Identity  *IdentityMatch  `yaml:"identity,omitempty"`
	Operation *OperationMatch `yaml:"operation,omitempty"`
	// Effects makes the rule an effects rule: it judges what a postgres
	// transaction did, read from the server before its COMMIT goes
	// through, instead of the statement text. Only deny and review rules
	// may have it.
	Effects *EffectsMatch `yaml:"effects,omitempty"`
}

// EffectsMatch matches what a postgres transaction did. The rule applies
// when any of the conditions that are set holds for a relation that Tables
// selects (all relations when Tables is empty).
type EffectsMatch struct {
	// Tables are relation globs, matched as operation.tables are against
	// the relation's name, the name it had when the transaction began,
	// and the names of its inheritance ancestors. System catalogs match
	// only a glob that names their schema (pg_catalog.*).
	Tables []string `yaml:"tables,omitempty"`
	// RowsInsertedOver, RowsUpdatedOver, RowsDeletedOver and
	// RowsWrittenOver (the three summed) hold when a selected relation
	// had more rows so changed than the number given (0: any).
	RowsInsertedOver *int64 `yaml:"rows_inserted_over,omitempty"`
	RowsUpdatedOver  *int64 `yaml:"rows_updated_over,omitempty"`
	RowsDeletedOver  *int64 `yaml:"rows_deleted_over,omitempty"`
	RowsWrittenOver  *int64 `yaml:"rows_written_over,omitempty"`
	// Dropped, Truncated (any new storage: TRUNCATE, VACUUM FULL, a type
	// change) and Altered (locked ACCESS EXCLUSIVE otherwise) hold when
	// a selected relation was so changed.
	Dropped   bool `yaml:"dropped,omitempty"`
	Truncated bool `yaml:"truncated,omitempty"`
	Altered   bool `yaml:"altered,omitempty"`
	// Catalog holds when any system catalog row changed (DDL of any
	// kind); Roles when a role, a membership or a role's settings
	// changed.
	Catalog bool `yaml:"catalog,omitempty"`
	Roles   bool `yaml:"roles,omitempty"`
}

// IdentityMatch matches who is connecting. Every field but Claimed uses
// attributes interlock established itself (kernel facts, /proc checked
// against pid reuse); Claimed matches the environment, which the process
// controls, and must be asked for by name.
type IdentityMatch struct {
	Users      []string `yaml:"users,omitempty"`
	UIDs       []int    `yaml:"uids,omitempty"`
	Groups     []string `yaml:"groups,omitempty"`
	GIDs       []int    `yaml:"gids,omitempty"`
	Exes       []string `yaml:"exes,omitempty"`
	ExeSHA256  []string `yaml:"exe_sha256,omitempty"`
	Cgroups    []string `yaml:"cgroups,omitempty"`
	Units      []string `yaml:"units,omitempty"`
	Containers []string `yaml:"containers,omitempty"`
	// Claimed entries are NAME=glob over the CI claims (GITHUB_REPOSITORY,
	// CI_PROJECT_PATH, ...).
	Claimed []string `yaml:"claimed,omitempty"`
	// LoginUsers and LoginUIDs match the human behind the process: the
	// audit login uid (identity.Human), whatever users sudo or su made it
	// since.
	LoginUsers []string `yaml:"login_users,omitempty"`
	LoginUIDs  []int    `yaml:"login_uids,omitempty"`
	// Verified maps workload claim names (repository, ref, workflow, ...)
	// to globs that a verified OIDC token's claims must match; a rule
	// with it never matches claimed provenance.
	Verified map[string]string `yaml:"verified,omitempty"`
	// Agents are names from identity.agents; "none" matches a process
	// with no agent in its ancestry.
	Agents []string `yaml:"agents,omitempty"`
}

// OperationMatch matches what is being done.
type OperationMatch struct {
	// Kinds are statement kinds (select, delete, drop_database, ...), ssh
	// operations (shell, exec, subsystem, sftp, port_forwarding,
	// agent_forwarding, x11) or connect.
	Kinds []string `yaml:"kinds,omitempty"`
	// Tables are relation globs (customers, public.*, *.secrets).
	Tables []string `yaml:"tables,omitempty"`
	// NoWhere, when set, matches UPDATE/DELETE with (true) or without
	// (false) a missing WHERE clause.
	NoWhere *bool `yaml:"no_where,omitempty"`
	// ReadOnly matches statements the parser proved read-only (true) or
	// not (false).
	ReadOnly *bool `yaml:"read_only,omitempty"`
	// IncludeOpaque: a deny or review rule naming a write or DDL kind also
	// applies to opaque statements (DO, CALL, functions that are not built
	// in, writes to relations with triggers, ...), whose effects the text
	// does not show, whatever their tables. Set false to leave those to
	// effects rules. Default true.
	IncludeOpaque *bool `yaml:"include_opaque,omitempty"`
	// Commands are ssh exec command-line globs.
	Commands []string `yaml:"commands,omitempty"`
	// Paths are sftp path globs, matched against the path as the target
	// resolves it (absolute, without ".", ".." or "//").
	Paths []string `yaml:"paths,omitempty"`
	// Open matches the access an sftp operation needs, in open's terms:
	// read, write, create, truncate, append. An open needs its flags;
	// the other operations what the same change needs through open
	// (remove, rmdir, a rename's source: write; setstat: write, and
	// truncate when it sets the size; mkdir, a rename's destination, a
	// new link: create and write; what a link points to: read and write;
	// opendir: read). Deny, review and mask
	// rules match when the operation needs any of the listed accesses,
	// allow rules only when every access it needs is listed.
	Open []string `yaml:"open,omitempty"`
	// Resources, Namespaces and Names match a kubernetes request's
	// resource (pods, secrets, deployments.apps: resource.group for a
	// named API group; pods/exec with a subresource), namespace and
	// object name, as globs.
	Resources  []string `yaml:"resources,omitempty"`
	Namespaces []string `yaml:"namespaces,omitempty"`
	Names      []string `yaml:"names,omitempty"`
	// K8sUsers and K8sGroups are globs over who a kubernetes request is
	// made as: the identity interlock impersonates (a client
	// certificate's subject, or the process's), or the owner of a
	// client's bearer token on a pass_bearer target. A group glob
	// matches when any of the request's groups matches.
	K8sUsers  []string `yaml:"k8s_users,omitempty"`
	K8sGroups []string `yaml:"k8s_groups,omitempty"`
	// Pod matches facts of the pod a kubernetes exec, attach or
	// port-forward opens into.
	Pod *PodMatch `yaml:"pod,omitempty"`
}

// PodMatch matches what interlock reads of a pod before a stream into it.
// When the pod could not be read the facts are unknown: deny, review and
// mask rules with a pod part apply, allow rules do not.
type PodMatch struct {
	// Privileged matches a pod with (true) or without (false) a
	// privileged container.
	Privileged *bool `yaml:"privileged,omitempty"`
	// HostNamespaces matches a pod that shares (true) or shares none of
	// (false) the node's PID, network or IPC namespace.
	HostNamespaces *bool `yaml:"host_namespaces,omitempty"`
	// ServiceAccounts are globs over the pod's service account.
	ServiceAccounts []string `yaml:"service_accounts,omitempty"`
}

// ReviewConfig is a review rule's review section.
type ReviewConfig struct {
	// Approvers may approve: user names, and groups as "@group".
	Approvers []string `yaml:"approvers"`
	// Needed is how many distinct approvers must approve (default 1).
	Needed int `yaml:"needed,omitempty"`
	// Timeout denies the operation if no decision came (default
	// policy.review_timeout).
	Timeout Duration `yaml:"timeout,omitempty"`
	// Scope of a grant: once (default), session, or ttl.
	Scope string `yaml:"scope,omitempty"`
	// TTL is the grant's lifetime for scope ttl.
	TTL Duration `yaml:"ttl,omitempty"`
	// RequireExpect refuses an approval that does not name the held
	// text's SHA-256 (`approvals approve --expect`): the approver must
	// have read the exact bytes, not a summary of them.
	RequireExpect bool `yaml:"require_expect,omitempty"`
}

// MaskConfig is a mask rule's mask section.
type MaskConfig struct {
	// Columns are table.column globs (customers.email, *.card_number).
	Columns []string `yaml:"columns,omitempty"`
	// Detectors scan values: email, card, national_id, cloud_key, token,
	// private_key.
	Detectors []string `yaml:"detectors,omitempty"`
	// Live also masks what the client sees over ssh (postgres results are
	// always masked live).
	Live bool `yaml:"live,omitempty"`
	// Transfers says what an ssh file download the rule applies to (an
	// sftp read, scp's source side) gets: mask (default; its contents
	// pass through the detectors like a live shell's output, when the
	// rule is live) or refuse (the download is refused).
	Transfers string `yaml:"transfers,omitempty"`
}

// Defaults of the policy section.
const (
	DefaultReviewTimeout  = Duration(5 * time.Minute)
	DefaultWebhookTimeout = Duration(5 * time.Second)
)

// Rule actions, grant scopes, detectors and policy.unknown's actions.
var (
	ruleActions    = []string{"allow", "deny", "review", "mask"}
	grantScopes    = []string{"once", "session", "ttl"}
	maskTransfers  = []string{"mask", "refuse"}
	maskDetector   = []string{"email", "card", "national_id", "cloud_key", "token", "private_key"}
	unknownActions = []string{"deny", "review", "allow"}
	// openAccess is what operation.open may list (exclusive comes with
	// create).
	openAccess = []string{"read", "write", "create", "truncate", "append"}
)

// MaskDetectors lists the detector names a mask rule may use.
func MaskDetectors() []string { return append([]string(nil), maskDetector...) }

func (c *Config) validatePolicy(l *errorList) {
	p := c.Policy
	if p.Default != "" {
		oneOf(l, "policy.default", p.Default, "allow", "deny")
	}
	if d := time.Duration(p.ReviewTimeout); p.ReviewTimeout != 0 && (d < time.Second || d > 24*time.Hour) {
		l.add("policy.review_timeout", fmt.Sprintf("%s is out of range; write 1s to 24h", d))
	}
	if w := p.Webhook; w != nil {
		if u, err := url.Parse(w.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			l.add("policy.webhook.url", quote(w.URL)+" is not an http(s) URL")
		}
		if w.SecretFile != "" {
			absPath(l, "policy.webhook.secret_file", w.SecretFile, true)
		}
	}
	if p.Unknown != "" {
		oneOf(l, "policy.unknown", p.Unknown, unknownActions...)
	}
	if p.UnknownIdentity != "" {
		oneOf(l, "policy.unknown_identity", p.UnknownIdentity, "deny", "allow")
	}
	switch {
	case p.Unknown == "review" && p.UnknownReview == nil:
		// Reported on policy.unknown's line: that is what asks for it.
		l.at(lineOf(l.lines, "policy.unknown"), "policy.unknown_review",
			"is required with policy.unknown: review: name the approvers of statements interlock cannot parse")
	case p.Unknown == "review":
		validateReview(l, "policy.unknown_review", p.UnknownReview)
	case p.UnknownReview != nil:
		l.add("policy.unknown_review", "applies to policy.unknown: review only")
	}
	names := map[string]int{}
	for i, r := range p.Rules {
		key := "policy.rules[" + strconv.Itoa(i) + "]"
		if msg := nameProblem(r.Name); msg != "" {
			l.add(key+".name", msg)
		} else if j, dup := names[r.Name]; dup {
			l.add(key+".name", quote(r.Name)+" is already the name of "+l.describeKey("policy.rules["+strconv.Itoa(j)+"]"))
		} else {
			names[r.Name] = i
		}
		oneOf(l, key+".action", r.Action, ruleActions...)
		validateMatch(l, key+".match", r.Match)
		if id := r.Match.Identity; id != nil {
			validateAgentRefs(l, key+".match.identity.agents", id.Agents, c.Identity.Agents)
		}
		if r.Match.Identity != nil && r.Match.Identity.Verified != nil {
			c.Identity.OIDC.validateVerified(l, key+".match.identity.verified", r.Match.Identity.Verified)
		}
		if r.Match.Effects != nil {
			validateEffectsRule(l, key, r)
		}
		switch r.Action {
		case "review":
			validateReview(l, key+".review", r.Review)
		case "mask":
			validateMask(l, key+".mask", r.Mask)
		}
		if r.Review != nil && r.Action != "review" {
			l.add(key+".review", "applies to action: review only")
		}
		if r.Mask != nil && r.Action != "mask" {
			l.add(key+".mask", "applies to action: mask only")
		}
	}
}

// validateEffectsRule checks what only an effects rule (one with
// match.effects) must satisfy.
func validateEffectsRule(l *errorList, key string, r RuleConfig) {
	e := r.Match.Effects
	ekey := key + ".match.effects"
	if r.Action != "deny" && r.Action != "review" && slices.Contains(ruleActions, r.Action) {
		l.add(ekey, "applies to deny and review rules only (this rule's action is "+r.Action+
			"): an effects rule judges a transaction before its COMMIT, and can only refuse or hold it")
	}
	if r.Match.Operation != nil {
		l.add(key+".match.operation", "an effects rule (match.effects) judges what a transaction did, not its statements; "+
			"it cannot also have match.operation: write two rules")
	}
	for j, g := range e.Tables {
		globOK(l, ekey+".tables["+strconv.Itoa(j)+"]", g)
	}
	for _, c := range []struct {
		name string
		n    *int64
	}{
		{"rows_inserted_over", e.RowsInsertedOver}, {"rows_updated_over", e.RowsUpdatedOver},
		{"rows_deleted_over", e.RowsDeletedOver}, {"rows_written_over", e.RowsWrittenOver},
	} {
		if c.n != nil && *c.n < 0 {
			l.add(ekey+"."+c.name, fmt.Sprintf("%d is negative; write 0 (any row) or more", *c.n))
		}
	}
	if !e.HasCondition() {
		l.add(ekey, "names no condition; set at least one of rows_inserted_over, rows_updated_over, rows_deleted_over, "+
			"rows_written_over, dropped, truncated, altered, catalog, roles")
	}
}

// HasCondition says whether any condition of the effects match is set
// (tables alone select relations, they are not a condition).
func (e EffectsMatch) HasCondition() bool {
	return e.RowsInsertedOver != nil || e.RowsUpdatedOver != nil || e.RowsDeletedOver != nil || e.RowsWrittenOver != nil ||
		e.Dropped || e.Truncated || e.Altered || e.Catalog || e.Roles
}

func validateMatch(l *errorList, key string, m MatchConfig) {
	for j, g := range m.Targets {
		globOK(l, key+".targets["+strconv.Itoa(j)+"]", g)
	}
	for j, p := range m.Protocols {
		oneOf(l, key+".protocols["+strconv.Itoa(j)+"]", p, model.ProtoTCP, model.ProtoPostgres, model.ProtoSSH, model.ProtoKubernetes)
	}
	if id := m.Identity; id != nil {
		for field, globs := range map[string][]string{"exes": id.Exes, "cgroups": id.Cgroups, "units": id.Units, "containers": id.Containers,
			"users": id.Users, "groups": id.Groups, "login_users": id.LoginUsers} {
			for j, g := range globs {
				globOK(l, key+".identity."+field+"["+strconv.Itoa(j)+"]", g)
			}
		}
		for j, h := range id.ExeSHA256 {
			if len(h) != 64 || strings.Trim(strings.ToLower(h), "0123456789abcdef") != "" {
				l.add(key+".identity.exe_sha256["+strconv.Itoa(j)+"]", quote(h)+" is not a SHA-256 in hex (64 characters)")
			}
		}
		for j, c := range id.Claimed {
			name, glob, ok := strings.Cut(c, "=")
			if !ok || name == "" {
				l.add(key+".identity.claimed["+strconv.Itoa(j)+"]", quote(c)+" must be NAME=glob, such as GITHUB_REPOSITORY=org/*")
				continue
			}
			globOK(l, key+".identity.claimed["+strconv.Itoa(j)+"]", glob)
		}
		for j, u := range id.UIDs {
			if u < 0 || u > 1<<32-1 {
				l.add(key+".identity.uids["+strconv.Itoa(j)+"]", "is not a uid")
			}
		}
		for j, u := range id.LoginUIDs {
			if u < 0 || u >= 1<<32-1 {
				l.add(key+".identity.login_uids["+strconv.Itoa(j)+"]", "is not a login uid (0 to 4294967294; 4294967295 is the kernel's \"unset\")")
			}
		}
		for j, g := range id.GIDs {
			if g < 0 || g > 1<<32-1 {
				l.add(key+".identity.gids["+strconv.Itoa(j)+"]", "is not a gid")
			}
		}
	}
	if op := m.Operation; op != nil {
		for j, k := range op.Kinds {
			if msg := KindProblem(k); msg != "" {
				l.add(key+".operation.kinds["+strconv.Itoa(j)+"]", msg)
			}
		}
		for j, f := range op.Open {
			oneOf(l, key+".operation.open["+strconv.Itoa(j)+"]", f, openAccess...)
		}
		for field, globs := range map[string][]string{"tables": op.Tables, "commands": op.Commands, "paths": op.Paths,
			"resources": op.Resources, "namespaces": op.Namespaces, "names": op.Names,
			"k8s_users": op.K8sUsers, "k8s_groups": op.K8sGroups} {
			for j, g := range globs {
				globOK(l, key+".operation."+field+"["+strconv.Itoa(j)+"]", g)
			}
		}
	}
}

func validateReview(l *errorList, key string, r *ReviewConfig) {
	if r == nil {
		l.add(key, "is required for action: review: name the approvers")
		return
	}
	if len(r.Approvers) == 0 {
		l.add(key+".approvers", "is required: user names, or @group")
	}
	if r.Needed < 0 || r.Needed > 16 {
		l.add(key+".needed", fmt.Sprintf("%d is out of range; write 1 to 16", r.Needed))
	}
	if r.Needed > len(r.Approvers) && len(r.Approvers) > 0 && !hasGroup(r.Approvers) {
		l.add(key+".needed", fmt.Sprintf("needs %d approvals but only %d approvers are named", r.Needed, len(r.Approvers)))
	}
	if d := time.Duration(r.Timeout); r.Timeout != 0 && (d < time.Second || d > 24*time.Hour) {
		l.add(key+".timeout", fmt.Sprintf("%s is out of range; write 1s to 24h", d))
	}
	if r.Scope != "" {
		oneOf(l, key+".scope", r.Scope, grantScopes...)
	}
	if r.Scope == "ttl" && r.TTL == 0 {
		l.add(key+".ttl", "is required with scope: ttl, such as 1h")
	}
	if r.TTL != 0 && r.Scope != "ttl" {
		l.add(key+".ttl", "applies to scope: ttl only")
	}
}

func hasGroup(approvers []string) bool {
	for _, a := range approvers {
		if strings.HasPrefix(a, "@") {
			return true
		}
	}
	return false
}

func validateMask(l *errorList, key string, m *MaskConfig) {
	if m == nil || (len(m.Columns) == 0 && len(m.Detectors) == 0) {
		l.add(key, "is required for action: mask: give columns, detectors or both")
		return
	}
	for j, c := range m.Columns {
		if !strings.Contains(c, ".") {
			l.add(key+".columns["+strconv.Itoa(j)+"]", quote(c)+" must be table.column (globs allowed, such as *.email)")
			continue
		}
		globOK(l, key+".columns["+strconv.Itoa(j)+"]", c)
	}
	for j, d := range m.Detectors {
		oneOf(l, key+".detectors["+strconv.Itoa(j)+"]", d, maskDetector...)
	}
	if m.Transfers != "" {
		oneOf(l, key+".transfers", m.Transfers, maskTransfers...)
	}
}

func globOK(l *errorList, key, g string) {
	if g == "" {
		l.add(key, "is empty")
		return
	}
	if _, err := path.Match(g, ""); err != nil {
		l.add(key, quote(g)+" is not a valid glob: "+err.Error())
	}
}

// UnknownAction is policy.unknown, with its default.
func (p PolicyConfig) UnknownAction() string {
	if p.Unknown == "" {
		return "deny"
	}
	return p.Unknown
}

// EffectsChecked is check_effects, with its default.
func (t TargetConfig) EffectsChecked() bool { return t.CheckEffects == nil || *t.CheckEffects }

// DefaultAction is policy.default, with its default.
func (p PolicyConfig) DefaultAction() string {
	if p.Default == "" {
		return "allow"
	}
	return p.Default
}

// Timeout is the review timeout of a rule, falling back to
// policy.review_timeout and then to DefaultReviewTimeout.
func (p PolicyConfig) Timeout(r *ReviewConfig) time.Duration {
	switch {
	case r != nil && r.Timeout != 0:
		return time.Duration(r.Timeout)
	case p.ReviewTimeout != 0:
		return time.Duration(p.ReviewTimeout)
	}
	return time.Duration(DefaultReviewTimeout)
}

// kindAliases are names people write for kinds that are spelt otherwise.
var kindAliases = map[string]string{
	"copy":                        "copy_from or copy_to",
	"port_forward":                "port_forwarding or portforward",
	"create_materialized_view":    "create_matview",
	"alter_materialized_view":     "alter_matview",
	"drop_materialized_view":      "drop_matview",
	"refresh_materialized_view":   "refresh_matview",
	"create_foreign_data_wrapper": "create_fdw",
	"alter_foreign_data_wrapper":  "alter_fdw",
	"drop_foreign_data_wrapper":   "drop_fdw",
	"create_user":                 "create_role",
	"alter_user":                  "alter_role",
	"drop_user":                   "drop_role",
	"create_group":                "create_role",
	"select_into":                 "create_table_as",
	"upsert":                      "insert",
	"start_transaction":           "begin",
	"end":                         "commit",
	"abort":                       "rollback",
}

// isOpKind says whether k is an operation kind of any protocol: a
// PostgreSQL statement kind (model.SQLKinds), an ssh operation or connect.
func isOpKind(k string) bool {
	return model.IsSQLKind(k) || slices.Contains(model.SSHKinds, k) || slices.Contains(model.TCPKinds, k) || slices.Contains(model.K8sKinds, k)
}

// KindProblem says what is wrong with an operation kind as written in
// operation.kinds or deny_statements, or "" when it is one: a PostgreSQL
// statement kind (model.SQLKinds), an ssh operation kind or connect.
func KindProblem(k string) string {
	if isOpKind(k) {
		return ""
	}
	if lower := strings.ToLower(k); lower != k && isOpKind(lower) {
		return quote(k) + " must be written in lowercase: " + lower
	}
	if strings.ContainsAny(k, "*?[") {
		return quote(k) + " is not an operation kind; kinds are not globs: list each kind (docs/policy.md lists them)"
	}
	if members := classKinds(model.KindClass(k)); len(members) > 0 {
		list := strings.Join(members, ", ")
		if len(members) > 12 {
			list = strings.Join(members[:12], ", ") + ", … (docs/policy.md lists them all)"
		}
		return quote(k) + " is a class of kinds, not a kind; name the kinds: " + list
	}
	msg := quote(k) + " is not an operation kind"
	if g := suggestKind(k); g != "" {
		msg += "; did you mean " + g + "?"
	}
	return msg + " (docs/policy.md lists the kinds)"
}

// classKinds lists the statement kinds of a class, or nil when c is not
// one.
func classKinds(c model.KindClass) []string {
	var out []string
	for _, k := range model.SQLKinds() {
		if kc, _ := model.SQLKindClass(k); kc == c {
			out = append(out, k)
		}
	}
	return out
}

// suggestKind returns the kind k was most likely meant to be, or "".
func suggestKind(k string) string {
	lower := strings.ToLower(k)
	if a, ok := kindAliases[lower]; ok {
		return a
	}
	all := append(append(append(model.SQLKinds(), model.SSHKinds...), model.TCPKinds...), model.K8sKinds...)
	best, bestDist := "", 3
	for _, c := range all {
		if d := editDistance(lower, c); d < bestDist {
			best, bestDist = c, d
		}
	}
	if best == "" && len(lower) >= 4 {
		// A kind cut short (port_forward): the shortest kind it begins.
		for _, c := range all {
			if strings.HasPrefix(c, lower) && (best == "" || len(c) < len(best)) {
				best = c
			}
		}
	}
	return best
}
