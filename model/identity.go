// Package model is interlock's shared vocabulary: who connected (Identity), to
// what (Target), through which intercepted connection (Origin), and the
// journal records every layer writes. It is a leaf: it imports nothing of
// interlock's, so every other package can depend on it.
package model

// Provenance says how far an identity attribute can be trusted.
type Provenance string

const (
	// ProvKernel facts were captured by the BPF connect hook in the
	// connecting task's own context; the process cannot forge them.
	ProvKernel Provenance = "kernel"
	// ProvProc facts were read from /proc and checked against the process
	// start time, so a reused pid cannot lend its attributes.
	ProvProc Provenance = "proc"
	// ProvClaimed facts come from the process environment; the process can
	// set them to anything, so policy must opt in to trust them.
	ProvClaimed Provenance = "claimed"
	// ProvVerified facts were checked against a signature of an issuer
	// the config trusts, such as a CI platform's OIDC ID token.
	ProvVerified Provenance = "verified"
)

// KernelFacts are what the cgroup connect hook recorded for a connection.
type KernelFacts struct {
	// PID is the kernel task id of the connecting thread (an io_uring
	// worker or a plain thread, not necessarily the main one).
	PID uint32 `json:"pid"`
	// TGID is the process id; identity is resolved from it.
	TGID uint32 `json:"tgid"`
	// UID and GID are the connecting task's real ids.
	UID  uint32 `json:"uid"`
	GID  uint32 `json:"gid"`
	Comm string `json:"comm"`
	// CgroupID is the cgroup v2 id (the cgroup directory's inode number).
	CgroupID    uint64 `json:"cgroup_id"`
	NetnsCookie uint64 `json:"netns_cookie"`
	// ConnectBootNS is CLOCK_BOOTTIME at the connect call, in nanoseconds;
	// it is compared with the process start time to detect pid reuse.
	ConnectBootNS uint64 `json:"connect_boot_ns"`
	// SocketUID is the socket owner uid reported by sock_diag at accept
	// time; it cross-checks the BPF record. Zero when not checked.
	SocketUID *uint32 `json:"socket_uid,omitempty"`
	// SocketInode is the client socket's inode from sock_diag.
	SocketInode uint32 `json:"socket_inode,omitempty"`

	// The program as the kernel held it at connect (zero when the hook
	// could not read it; no file has inode 0 or a ctime of 0): the
	// executable file's device and inode, its ctime as a change marker,
	// the task's user and mount namespaces (their inode numbers), and the
	// process's start time.
	ExeDev      uint64 `json:"exe_dev,omitempty"`
	ExeIno      uint64 `json:"exe_ino,omitempty"`
	ExeCtimeNS  int64  `json:"exe_ctime_ns,omitempty"`
	UserNS      uint32 `json:"userns,omitempty"`
	MntNS       uint32 `json:"mntns,omitempty"`
	ProcStartNS uint64 `json:"proc_start_ns,omitempty"`
}

// ProcessRef names one ancestor in a parent chain.
type ProcessRef struct {
	PID  uint32 `json:"pid"`
	Comm string `json:"comm"`
	Exe  string `json:"exe,omitempty"`
	UID  uint32 `json:"uid"`
	// UIDUnread: the uid could not be read (status unreadable), so UID
	// is 0 and means nothing.
	UIDUnread bool `json:"uid_unread,omitempty"`
	// StartBootNS is the ancestor's start time, as ProcFacts has it: a
	// later read of the pid (its cmdline, its executable for an agent's
	// hash) is checked against it.
	StartBootNS uint64 `json:"start_boot_ns,omitempty"`
}

// ProcFacts are read from /proc and the cgroup filesystem at accept time.
type ProcFacts struct {
	Exe       string `json:"exe"`
	ExeSHA256 string `json:"exe_sha256,omitempty"`
	// Cmdline is the command line with the values of secrets in it
	// replaced (identity/argvredact); CmdlineRedacted counts them, so
	// the record says it is not the argv the process ran with.
	Cmdline         []string `json:"cmdline"`
	CmdlineRedacted int      `json:"cmdline_redacted,omitempty"`
	// StartBootNS is the process start time since boot, in nanoseconds
	// (resolution is one clock tick).
	StartBootNS uint64 `json:"start_boot_ns"`
	PPID        uint32 `json:"ppid"`
	// Parents is the chain from the parent up to (and including) pid 1,
	// nearest first.
	Parents []ProcessRef `json:"parents,omitempty"`
	// EUID and EGID differ from the kernel facts' real ids for setuid
	// programs.
	EUID uint32 `json:"euid"`
	EGID uint32 `json:"egid"`
	// IDsUnread: status could not be read, so EUID and EGID are 0 and
	// mean nothing.
	IDsUnread   bool   `json:"ids_unread,omitempty"`
	User        string `json:"user,omitempty"`
	Group       string `json:"group,omitempty"`
	CgroupPath  string `json:"cgroup_path"`
	SystemdUnit string `json:"systemd_unit,omitempty"`
	ContainerID string `json:"container_id,omitempty"`
	PodUID      string `json:"pod_uid,omitempty"`

	// ExeTrust says how far Exe and ExeSHA256 name the program that
	// connected (see the ExeTrust* values). Policy matches executables
	// only when it is ExeVerified.
	ExeTrust string `json:"exe_trust,omitempty"`
	// Runner is "loader" or "interpreter" when Exe is a dynamic loader or
	// a language interpreter: the program it runs is then not Exe but
	// Program, as the command line claims it.
	Runner  string `json:"runner,omitempty"`
	Program string `json:"program,omitempty"`
}

// ExeTrust values.
const (
	// ExeVerified: the executable read at accept is the file the kernel
	// ran at connect, unchanged, for a process in the initial user
	// namespace and the host mount namespace.
	ExeVerified = "verified"
	// ExeClaimed: the process runs in another user or mount namespace,
	// where it can make its executable link and paths say anything
	// (PR_SET_MM_EXE_FILE, bind mounts); the facts are only what it
	// claims.
	ExeClaimed = "claimed"
	// ExeUnknown: the facts could not be checked against the kernel's
	// record, or did not match it (an exec or a replaced executable
	// between connect and accept).
	ExeUnknown = "unknown"
)

// ExeTrusted says whether policy may rely on the executable facts.
func (p *ProcFacts) ExeTrusted() bool { return p != nil && p.ExeTrust == ExeVerified }

// Identity is everything interlock knows about who opened a connection,
// grouped by provenance.
type Identity struct {
	Kernel KernelFacts `json:"kernel"`
	// Proc is nil when the process was gone (or its pid reused) before it
	// could be read; ProcError then says why.
	Proc      *ProcFacts `json:"proc,omitempty"`
	ProcError string     `json:"proc_error,omitempty"`
	// Claimed holds CI job claims read from the environment, keyed by the
	// variable name (GITHUB_REPOSITORY, CI_JOB_ID, ...).
	Claimed map[string]string `json:"claimed,omitempty"`

	// Human, Workload and Agent are who is behind the process: the person
	// who logged in, the CI job, the AI agent or automation in its
	// ancestry. Each is nil when interlock found none (principals.go).
	Human    *Human    `json:"human,omitempty"`
	Workload *Workload `json:"workload,omitempty"`
	Agent    *Agent    `json:"agent,omitempty"`
	// Container is the container the process runs in, as its runtime's
	// root-owned state describes it; nil outside a container (or when
	// the runtime's state could not be read: ContainerError says why).
	Container      *Container `json:"container,omitempty"`
	ContainerError string     `json:"container_error,omitempty"`
	// AgentError says why which agent is behind the process is unknown:
	// the look through its ancestors could not finish (an ancestor that
	// could not be read, an executable that could not be hashed, a parent
	// chain short of pid 1), or, with none in the ancestry, the
	// kernel-kept lineage that would find one it was orphaned from could
	// not be read. Agent, when set too, is the nearest one found, and an
	// unread one may be nearer. Policy takes the agent as unknown, never
	// as none.
	AgentError string `json:"agent_error,omitempty"`
}

// Container is a container a process runs in. ID and Runtime come from
// the process's cgroup path (the kernel's); the rest from the runtime's
// state on the host, read only from root-owned files no other user may
// write, so the job inside cannot write it (Provenance proc, Source the
// file). The process's own facts stay the host's: Kernel.TGID is its pid
// in the initial pid namespace, Kernel.UID its uid mapped to the host.
type Container struct {
	ID string `json:"id"`
	// Runtime is docker, podman, containerd, cri-o, kubernetes or runc.
	Runtime string `json:"runtime"`
	Name    string `json:"name,omitempty"`
	Image   string `json:"image,omitempty"`
	// ImageDigest is the image's content digest (docker's image id, or
	// the digest the runtime's annotations name).
	ImageDigest string `json:"image_digest,omitempty"`
	// Labels are the runtime's labels (OCI annotations for runc and
	// containerd): CI runners put the job there
	// (com.gitlab.gitlab-runner.job.id, com.buildkite.job_id).
	Labels     map[string]string `json:"labels,omitempty"`
	Provenance Provenance        `json:"provenance,omitempty"`
	Source     string            `json:"source,omitempty"`
}
