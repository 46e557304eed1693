package model

// Action is what policy decided for an operation.
type Action string

const (
	Allow  Action = "allow"
	Deny   Action = "deny"
	Review Action = "review"
	Mask   Action = "mask"
)

// Operation is one thing a client asks a target to do.
type Operation struct {
	// Kind is protocol-specific: "connect" for tcp, a statement kind for
	// postgres, "shell"/"exec"/"sftp" for ssh.
	Kind string `json:"kind"`
	// Text is the statement or command line, when there is one.
	Text string `json:"text,omitempty"`
}

// Decision is policy's answer for one operation, with the rule that made it.
type Decision struct {
	Action Action `json:"action"`
	Rule   string `json:"rule,omitempty"`
	Reason string `json:"reason,omitempty"`
}
