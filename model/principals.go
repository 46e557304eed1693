package model

// The principals behind a connection: the human, the workload and the
// agent. Every attribute carries its provenance: kernel and proc facts
// the process cannot change, verified claims checked against a trusted
// signature, or claimed ones it could have written itself.

// Human is the person behind a process, from the audit login uid and
// session id the kernel keeps (set at login by pam_loginuid; an
// unprivileged process cannot change them) and the changes of user along
// its parent chain (sudo, su, runuser).
type Human struct {
	// LoginUID is the audit login uid; nil when the process descends from
	// no login (started by a service), which NoLogin then says.
	LoginUID  *uint32 `json:"login_uid,omitempty"`
	LoginUser string  `json:"login_user,omitempty"`
	// SessionID is the audit session id of the login.
	SessionID *uint32 `json:"session_id,omitempty"`
	// NoLogin is set when the process has no login uid.
	NoLogin bool `json:"no_login,omitempty"`
	// Provenance of LoginUID and SessionID (proc: read from /proc against
	// the process start time).
	Provenance Provenance `json:"provenance"`
	// Chain is each change of user along the parent chain, outermost
	// first: who ran sudo (or su, runuser, setuid programs) to become whom.
	Chain []UserHop `json:"chain,omitempty"`
	// ChainIncomplete: a change of user may be missing from Chain, as
	// the uid of a process along it (or the effective uid of the process
	// itself) could not be read; no hop is made up from an unread uid.
	ChainIncomplete bool `json:"chain_incomplete,omitempty"`
	// KeyFingerprint and KeyID are what the person logged in with, where
	// sshd logged it (a public key's SHA256 fingerprint, a certificate's
	// key id).
	KeyFingerprint string `json:"key_fingerprint,omitempty"`
	KeyID          string `json:"key_id,omitempty"`
}

// UserHop is one change of user in a parent chain.
type UserHop struct {
	// PID and Exe are the process that runs as the new user (sudo's
	// child, for example) and Via the program that made the change.
	PID      uint32 `json:"pid"`
	Via      string `json:"via,omitempty"`
	FromUID  uint32 `json:"from_uid"`
	FromUser string `json:"from_user,omitempty"`
	ToUID    uint32 `json:"to_uid"`
	ToUser   string `json:"to_user,omitempty"`
}

// Workload is the CI job (or other workload) behind a process, from an
// OIDC ID token its platform signed, or from what its environment claims.
type Workload struct {
	// Provenance is verified when a token was checked against its
	// issuer's keys, claimed when the claims come from the environment
	// alone (no token, or one that failed: Error says why).
	Provenance Provenance `json:"provenance"`
	// Platform names the issuer's kind (github, gitlab, buildkite) or is
	// the issuer's URL.
	Platform string `json:"platform,omitempty"`
	Issuer   string `json:"issuer,omitempty"`
	Subject  string `json:"subject,omitempty"`
	// Claims are the job's attributes under interlock's names:
	// repository, workflow, ref, run_id, run_attempt, actor, environment,
	// job, pipeline, project.
	Claims map[string]string `json:"claims,omitempty"`
	// TokenSource says where the token came from (an environment
	// variable's name, or github-request); the token itself is never
	// recorded.
	TokenSource string `json:"token_source,omitempty"`
	ExpiresNS   int64  `json:"expires_ns,omitempty"`
	// Error is why a token was not promoted to verified.
	Error string `json:"error,omitempty"`
}

// Agent is an AI agent or automation found in the process's ancestry (or
// the process itself), by the config's identity.agents.
type Agent struct {
	Name string `json:"name"`
	// PID, Exe and ExeSHA256 are the process that matched.
	PID       uint32 `json:"pid"`
	Exe       string `json:"exe,omitempty"`
	ExeSHA256 string `json:"exe_sha256,omitempty"`
	// MatchedBy is what identified it: exe, sha256 or cmdline in the
	// ancestry, or lineage: the kernel tagged the process at fork as a
	// descendant of the agent (PID is then the agent's root, which may be
	// gone, and Exe and ExeSHA256 what it ran as interlock registered it).
	MatchedBy  string     `json:"matched_by"`
	Provenance Provenance `json:"provenance"`
}
