package model

// Entry kinds of kubernetes sessions. An exec or attach is recorded as a
// terminal: k8s.exec opens it (Channel numbers the session's execs),
// k8s.io, k8s.resize and k8s.exit carry the data of ssh.io, ssh.resize
// and ssh.exit (SSHIO, SSHResize, SSHExit), so one renderer replays both.
// SSHDataKind is the ssh kind whose data an entry of kind carries
// (k8s.io: ssh.io, k8s.resize: ssh.resize, k8s.exit: ssh.exit, k8s.mask:
// ssh.mask), else kind itself: renderers of terminals and masking read
// both protocols' entries as one.
func SSHDataKind(kind string) string {
	switch kind {
	case KindK8sIO:
		return KindSSHIO
	case KindK8sResize:
		return KindSSHResize
	case KindK8sExit:
		return KindSSHExit
	case KindK8sMask:
		return KindSSHMask
	}
	return kind
}

const (
	KindK8sRequest  = "k8s.request"     // one API request, with policy's decision
	KindK8sResponse = "k8s.response"    // how it ended
	KindK8sExec     = "k8s.exec"        // an exec or attach stream began
	KindK8sIO       = "k8s.io"          // a chunk of an exec's stdin, stdout or stderr (data: SSHIO)
	KindK8sResize   = "k8s.resize"      // a terminal resize (data: SSHResize)
	KindK8sExit     = "k8s.exit"        // an exec's exit code (data: SSHExit)
	KindK8sMask     = "k8s.mask"        // what masking did to a response (data: MaskDecision)
	KindK8sPortFwd  = "k8s.portforward" // one port-forward stream closed, with its byte counts
	// KindK8sIdentity: a session of a pass_bearer target first called
	// as the owner of a client's bearer token (data: K8sIdentity).
	KindK8sIdentity = "k8s.identity"
)

// K8sStartup is who a kubernetes session calls the API server as;
// SessionOpen.Kubernetes carries it.
type K8sStartup struct {
	// User and Groups are the identity interlock impersonates: the
	// subject of the client certificate the cluster's client CA
	// verified, or the process's identity (Source says which).
	User   string   `json:"user"`
	Groups []string `json:"groups,omitempty"`
	// Source is "client-certificate" or "process".
	Source string `json:"source"`
	// PassBearer: the target lets a client's bearer token through, so
	// a request may be made as the token's owner instead (its
	// k8s.request names who; k8s.identity entries the session's tokens).
	PassBearer bool `json:"pass_bearer,omitempty"`
	// ServerName is the TLS server name the client asked for.
	ServerName string `json:"server_name,omitempty"`
	// ALPN is the HTTP version the client leg negotiated (h2, http/1.1).
	ALPN string `json:"alpn,omitempty"`
}

// K8sRequest is the data of a k8s.request entry: one API request as
// interlock parsed it, and what policy decided.
type K8sRequest struct {
	// Seq numbers the session's requests; its k8s.response has the same.
	Seq    uint64 `json:"seq"`
	Method string `json:"method"`
	Path   string `json:"path"`
	Query  string `json:"query,omitempty"`
	// Verb is the Kubernetes verb (get, list, watch, create, update,
	// patch, delete, deletecollection) or exec, attach, portforward;
	// Resource, Subresource, APIGroup, APIVersion, Namespace and Name
	// are empty for non-resource paths (/version, /apis, ...).
	Verb        string `json:"verb"`
	APIGroup    string `json:"api_group,omitempty"`
	APIVersion  string `json:"api_version,omitempty"`
	Resource    string `json:"resource,omitempty"`
	Subresource string `json:"subresource,omitempty"`
	Namespace   string `json:"namespace,omitempty"`
	Name        string `json:"name,omitempty"`
	// User and Groups are who the request was made as: the identity
	// impersonated (the session's), or the owner of the client's bearer
	// token as a SelfSubjectReview told (Source "bearer-token", with UID
	// and TokenID).
	User   string   `json:"user"`
	Groups []string `json:"groups,omitempty"`
	UID    string   `json:"uid,omitempty"`
	Source string   `json:"source,omitempty"`
	// TokenID tells a client's bearer tokens apart (the first 8 bytes of
	// its SHA-256, in hex): it correlates requests, and is no token.
	TokenID string `json:"token_id,omitempty"`
	// Command is an exec's command; Pod what interlock read of the pod
	// a stream opens into (nil: it could not be read). Command, and the
	// command parameters of Query, are journaled with the values of
	// secrets in them replaced (identity/argvredact); Redacted counts
	// them. Policy judges the command as sent.
	Command  []string `json:"command,omitempty"`
	Redacted int      `json:"redacted,omitempty"`
	Pod      *K8sPod  `json:"pod,omitempty"`
	// BodyBytes is the request body's size as far as it was read;
	// BodyTruncated says the payload holds only its first bytes. The
	// body of a write is the entry's payload, with a Secret's values
	// masked (BodyMasked).
	BodyBytes     int64    `json:"body_bytes,omitempty"`
	BodyTruncated bool     `json:"body_truncated,omitempty"`
	BodyMasked    bool     `json:"body_masked,omitempty"`
	Decision      Decision `json:"decision"`
}

// K8sResponse is the data of a k8s.response entry.
type K8sResponse struct {
	Seq  uint64 `json:"seq"`
	Code int    `json:"code"`
	// Bytes is the size of the response body sent to the client.
	Bytes      int64 `json:"bytes"`
	DurationNS int64 `json:"duration_ns"`
	// Masked counts the Secret values replaced in the response.
	Masked int    `json:"masked,omitempty"`
	Error  string `json:"error,omitempty"`
	// BodyRecorded: the target records responses and the entry's payload
	// is the body as the client got it, its first record_response_max
	// bytes when BodyTruncated (Bytes is the whole size). BodyWithheld
	// says why a body was not recorded (a credential in it that could
	// not be masked).
	BodyRecorded  bool   `json:"body_recorded,omitempty"`
	BodyTruncated bool   `json:"body_truncated,omitempty"`
	BodyWithheld  string `json:"body_withheld,omitempty"`
}

// K8sIdentity is the data of a k8s.identity entry: whose a client's
// bearer token is, as the API server told interlock with a
// SelfSubjectReview made with the token. The token itself is never
// journaled; TokenID (8 bytes of its SHA-256) tells tokens apart.
type K8sIdentity struct {
	User    string   `json:"user"`
	UID     string   `json:"uid,omitempty"`
	Groups  []string `json:"groups,omitempty"`
	TokenID string   `json:"token_id"`
}

// K8sPod is what policy may judge of the pod a stream opens into, read
// from the API server just before.
type K8sPod struct {
	// Privileged: a container (init and ephemeral ones too) runs
	// privileged.
	Privileged bool `json:"privileged,omitempty"`
	// HostPID, HostNetwork and HostIPC share the node's namespaces.
	HostPID        bool   `json:"host_pid,omitempty"`
	HostNetwork    bool   `json:"host_network,omitempty"`
	HostIPC        bool   `json:"host_ipc,omitempty"`
	ServiceAccount string `json:"service_account,omitempty"`
	// UID is the pod's: a pod deleted and made again under the same name
	// is another pod, whatever its facts.
	UID string `json:"uid,omitempty"`
}

// K8sExec is the data of a k8s.exec entry: a stream began.
type K8sExec struct {
	Channel uint32 `json:"channel"`
	// Seq is the k8s.request the stream belongs to.
	Seq       uint64 `json:"seq"`
	Type      string `json:"type"` // exec or attach
	Namespace string `json:"namespace"`
	Pod       string `json:"pod"`
	Container string `json:"container,omitempty"`
	// Command is journaled as k8s.request has it: secrets' values
	// replaced, Redacted counting them.
	Command  []string `json:"command,omitempty"`
	Redacted int      `json:"redacted,omitempty"`
	TTY      bool     `json:"tty,omitempty"`
	Stdin    bool     `json:"stdin,omitempty"`
	// Protocol is the client leg's stream protocol (v5.channel.k8s.io
	// over websocket, v4.channel.k8s.io over SPDY, ...).
	Protocol string `json:"protocol,omitempty"`
	OffsetNS int64  `json:"offset_ns"`
}

// K8sPortForward is one stream of a port-forward (one connection to a
// port of the pod), journaled when it closes.
type K8sPortForward struct {
	// Seq is the k8s.request the port-forward belongs to; Stream numbers
	// its streams from 1, in the order the client opened them.
	Seq       uint64 `json:"seq"`
	Stream    uint32 `json:"stream"`
	Namespace string `json:"namespace"`
	Pod       string `json:"pod"`
	Port      int32  `json:"port"`
	// BytesUp went from the client to the pod's port, BytesDown back.
	BytesUp   int64 `json:"bytes_up"`
	BytesDown int64 `json:"bytes_down"`
	// Error is why the stream failed ("": it closed normally), as the
	// API server or interlock said it. Refused: interlock did not relay
	// it at all (a port policy did not judge, too many streams open).
	Error      string `json:"error,omitempty"`
	Refused    bool   `json:"refused,omitempty"`
	OffsetNS   int64  `json:"offset_ns"`
	DurationNS int64  `json:"duration_ns"`
}
