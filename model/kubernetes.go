package model

// Entry kinds of kubernetes sessions. An exec or attach is recorded as a
// terminal: k8s.exec opens it (Channel numbers the session's execs),
// k8s.io, k8s.resize and k8s.exit carry the data of ssh.io, ssh.resize
// and ssh.exit (SSHIO, SSHResize, SSHExit), so one renderer replays both.
const (
	KindK8sRequest  = "k8s.request"     // one API request, with policy's decision
	KindK8sResponse = "k8s.response"    // how it ended
	KindK8sExec     = "k8s.exec"        // an exec or attach stream began
	KindK8sIO       = "k8s.io"          // a chunk of an exec's stdin, stdout or stderr (data: SSHIO)
	KindK8sResize   = "k8s.resize"      // a terminal resize (data: SSHResize)
	KindK8sExit     = "k8s.exit"        // an exec's exit code (data: SSHExit)
	KindK8sMask     = "k8s.mask"        // what masking did to a response (data: MaskDecision)
	KindK8sPortFwd  = "k8s.portforward" // one port-forward stream closed, with its byte counts
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
	// User and Groups are the identity impersonated (the session's).
	User   string   `json:"user"`
	Groups []string `json:"groups,omitempty"`
	// Command is an exec's command; Pod what interlock read of the pod
	// a stream opens into (nil: it could not be read).
	Command []string `json:"command,omitempty"`
	Pod     *K8sPod  `json:"pod,omitempty"`
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
	Seq       uint64   `json:"seq"`
	Type      string   `json:"type"` // exec or attach
	Namespace string   `json:"namespace"`
	Pod       string   `json:"pod"`
	Container string   `json:"container,omitempty"`
	Command   []string `json:"command,omitempty"`
	TTY       bool     `json:"tty,omitempty"`
	Stdin     bool     `json:"stdin,omitempty"`
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
