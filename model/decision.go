package model

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
}

// Decision is policy's answer for one operation, with the rule that made it.
type Decision struct {
	Action Action `json:"action"`
	Rule   string `json:"rule,omitempty"`
	Reason string `json:"reason,omitempty"`
}
