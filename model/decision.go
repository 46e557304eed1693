package model

import "context"

// Decider judges the operations of one session, for the origin it was
// made for: a handler asks for one when the session starts, so that the
// policy can keep what it decided from one operation to the next.
type Decider interface {
	Decide(ctx context.Context, op Operation) Decision
}

// Action is what policy decided for an operation.
type Action string

const (
	Allow  Action = "allow"
	Deny   Action = "deny"
	Review Action = "review"
	Mask   Action = "mask"
)

// Operation is one thing a client asks a target to do: what policy judges.
type Operation struct {
	Protocol Protocol `json:"protocol"`
	// Kind is protocol-specific: "connect" for tcp; for postgres the
	// statement's kind (select, delete, drop_database, ...); for ssh
	// shell, exec, subsystem, sftp, port_forwarding, agent_forwarding or
	// x11.
	Kind string `json:"kind"`
	// Text is the SQL statement or the command line, when there is one.
	Text string `json:"text,omitempty"`
	// Postgres: every statement kind the parser found, the relations it
	// names, whether it provably only reads, and whether it is an UPDATE
	// or DELETE without a WHERE clause.
	Kinds    []string `json:"kinds,omitempty"`
	Tables   []string `json:"tables,omitempty"`
	ReadOnly bool     `json:"read_only,omitempty"`
	NoWhere  bool     `json:"no_where,omitempty"`
	// SSH: the sftp path or subsystem name, or a forwarding destination.
	Path   string `json:"path,omitempty"`
	Detail string `json:"detail,omitempty"`
	// Open is the access an sftp operation needs on Path, in open's
	// terms (read, write, create, truncate, append, exclusive): an
	// open's own flags; for the other operations what the same change
	// would need through open (remove: write; mkdir: create; ...), so
	// that one rule can make a directory read-only.
	Open []string `json:"open,omitempty"`
	// Kubernetes: the resource (resource, resource.group for a named API
	// group, with /subresource when there is one), the namespace and the
	// object's name.
	Resource  string `json:"resource,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name,omitempty"`
	// Pod is what interlock read of the pod an exec, attach or
	// port-forward opens a stream into; nil when it could not be read
	// (unknown: deny and review rules on pod facts apply).
	Pod *K8sPod `json:"pod,omitempty"`
	// K8sUser and K8sGroups are who a kubernetes request is made as: the
	// identity interlock impersonates, or the owner of the client's
	// bearer token (a pass_bearer target).
	K8sUser   string   `json:"k8s_user,omitempty"`
	K8sGroups []string `json:"k8s_groups,omitempty"`
	// Effects is set when the operation is a postgres transaction about to
	// commit (Kind "commit"): what it did, for effects rules and approvers.
	Effects *PGEffects `json:"effects,omitempty"`
}

// Decision is policy's answer for one operation, with the rule that made it.
type Decision struct {
	Action Action `json:"action"`
	Rule   string `json:"rule,omitempty"`
	Reason string `json:"reason,omitempty"`
	// Request is the approval request a review created; Grant the grant
	// that let the operation through without a new request.
	Request string `json:"request,omitempty"`
	Grant   string `json:"grant,omitempty"`
	// Mask says what to mask in what flows back (Action is Mask, or Allow
	// after a review whose operation is also masked).
	Mask *MaskSpec `json:"mask,omitempty"`
}

// MaskSpec is the masking an operation's results get.
type MaskSpec struct {
	Rules []MaskRule `json:"rules"`
}

// MaskRule is one mask rule that applies.
type MaskRule struct {
	Rule string `json:"rule"`
	// Columns are table.column globs; Detectors name content detectors.
	Columns   []string `json:"columns,omitempty"`
	Detectors []string `json:"detectors,omitempty"`
	// Live: an ssh session's live output is masked too, not only the
	// recorded copy.
	Live bool `json:"live,omitempty"`
	// Transfers is what a file transfer (an sftp read, an scp source)
	// the rule applies to gets: "" or "mask" (its contents pass through
	// the detectors, live or not as Live says), or "refuse".
	Transfers string `json:"transfers,omitempty"`
}

// MaskColumn describes one result column to the masker.
type MaskColumn struct {
	// Table is schema.table ("" for a computed column); Name is the
	// column's name in that table (not its alias in the query).
	Table, Name string
	TypeOID     uint32
	// Binary is set for binary-format values.
	Binary bool
	// Derived names the mask rule of a column the output is computed
	// from (an expression, an aggregate, a view's column): the value is
	// masked whole, with its type's mask.
	Derived string
}

// Finding is a sensitive value a content detector found in text: bytes
// Start to End.
type Finding struct {
	Detector   string
	Start, End int
}

// MaskDecision is what masking did for one rule, column and detector in
// one result: journaled with the statement (the hashes go in the payload).
type MaskDecision struct {
	Rule     string `json:"rule"`
	Column   string `json:"column"`
	Detector string `json:"detector,omitempty"`
	Count    int    `json:"count"`
	// Hashes are HMAC-SHA256 of each original value, truncated to 128
	// bits, 16 bytes each, concatenated in order; keyed with the state
	// directory's mask.key: two equal values hash alike, and no value can
	// be read back. They are journaled as the entry's payload.
	Hashes []byte `json:"-"`
}
